//! The store thread: applies the shards' record batches to fjall, one commit for whatever
//! has arrived (group commit), fsync under `durability = "power"`, then tells each shard
//! which of its batches are written. Nothing here runs on a shard thread.

use super::Durability;
use broker_core::store::{records, Op, Space};
use std::collections::HashMap;
use std::time::Duration;

/// One shard's records of one event-loop turn.
pub struct Job {
    pub shard: u16,
    pub batch: u64,
    pub records: Vec<u8>,
}

/// A shard's request to read back part of a session's queue (`Event::StoreLoad`).
pub struct Load {
    pub shard: u16,
    pub client: Box<str>,
    pub after: u64,
    pub max: usize,
}

/// What shards (and the cluster thread) send the store thread, in order.
pub enum Request {
    Write(Job),
    Load(Load),
    /// Answered once everything sent before is written (and in the cluster's shared
    /// copy): a session moved away has its last records there.
    Barrier(async_channel::Sender<()>),
    /// A session read back from the cluster's shared copy, to write here (replacing any
    /// copy of it here) and read back as a session: its records and how many appends
    /// they came in.
    Seed {
        client: Box<str>,
        records: Vec<u8>,
        appends: u32,
        reply: async_channel::Sender<Option<broker_core::store::RestoredSession>>,
    },
    /// The client's subject in the cluster's shared copy is rolled up to this store's copy
    /// of its session now (records another node appended, with its own sequence numbers,
    /// go), unless the session left this node.
    RollUp(Box<str>),
}

/// What the store thread tells a shard.
pub enum Reply {
    /// Its batches up to this one are written; an emptied record buffer for reuse.
    Committed(u64, Vec<u8>),
    /// Messages read back for `Load`: the client, the request's `after`, the messages.
    Loaded(Box<str>, u64, Vec<broker_core::store::StoredMessage>),
}

/// Reaches one shard.
pub type Notify = Box<dyn Fn(Reply) + Send>;

enum Pending {
    /// `fresh`: the key did not exist before this commit.
    Put {
        value: Vec<u8>,
        fresh: bool,
    },
    Delete,
}

/// Collects records into one commit. Within a commit the last record of a key wins, and a
/// key inserted and deleted again is never written at all (a message acknowledged within
/// the same few milliseconds costs nothing on disk).
pub struct Applier<'a> {
    db: &'a fjall::Database,
    spaces: &'a [fjall::Keyspace],
    pending: HashMap<(u8, Vec<u8>), Pending>,
}

impl<'a> Applier<'a> {
    pub fn new(db: &'a fjall::Database, spaces: &'a [fjall::Keyspace]) -> Self {
        Self {
            db,
            spaces,
            pending: HashMap::new(),
        }
    }

    /// Adds a batch's records.
    pub fn apply(&mut self, batch: &[u8]) -> Result<(), fjall::Error> {
        for r in records(batch) {
            let key = (r.space as u8, r.key.to_vec());
            match r.op {
                Op::Put => {
                    let fresh = matches!(
                        self.pending.get(&key),
                        Some(Pending::Put { fresh: true, .. })
                    );
                    self.pending.insert(
                        key,
                        Pending::Put {
                            value: r.value.to_vec(),
                            fresh,
                        },
                    );
                }
                Op::Insert => {
                    self.pending.insert(
                        key,
                        Pending::Put {
                            value: r.value.to_vec(),
                            fresh: true,
                        },
                    );
                }
                Op::Delete => {
                    if let Some(Pending::Put { fresh: true, .. }) = self.pending.get(&key) {
                        self.pending.remove(&key);
                    } else {
                        self.pending.insert(key, Pending::Delete);
                    }
                }
                Op::DeleteClient | Op::Forget => {
                    // What came before is committed first, so the scan below sees it.
                    self.commit(false)?;
                    for (space, ks) in Space::ALL.iter().zip(self.spaces) {
                        if *space == Space::Retained {
                            continue;
                        }
                        for item in ks.prefix(r.key) {
                            let k = item.key()?;
                            self.pending
                                .insert((*space as u8, k.to_vec()), Pending::Delete);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes what was collected as one batch (reaching the kernel); `sync`: and fsyncs it.
    pub fn commit(&mut self, sync: bool) -> Result<(), fjall::Error> {
        if !self.pending.is_empty() {
            let mut b = self.db.batch();
            for ((space, key), p) in self.pending.drain() {
                let Some(ks) = self.spaces.get(usize::from(space)) else {
                    continue;
                };
                match p {
                    Pending::Put { value, .. } => b.insert(ks, key, value),
                    Pending::Delete => b.remove(ks, key),
                }
            }
            b.commit()?;
        }
        if sync {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }
}

/// The store thread and the channel that feeds it.
pub struct Writer {
    tx: async_channel::Sender<Request>,
    handle: std::thread::JoinHandle<()>,
}

/// Store commits and fsyncs so far (for metrics and the benchmark).
pub static COMMITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FSYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Writer {
    /// Starts the thread; `notify[i]` reaches shard `i`.
    /// `journal`: a cluster's shared copy of sessions, written after each commit.
    pub fn spawn(
        opened: super::Opened,
        durability: Durability,
        clock: u64,
        notify: Vec<Notify>,
        journal: Option<crate::cluster::Journal>,
    ) -> anyhow::Result<Writer> {
        let (tx, rx) = async_channel::unbounded::<Request>();
        let handle = std::thread::Builder::new()
            .name("petrel-store".into())
            .spawn(move || run(opened, durability, clock, notify, rx, journal))?;
        Ok(Writer { tx, handle })
    }

    /// The channel shards send their batches on.
    pub fn sender(&self) -> async_channel::Sender<Request> {
        self.tx.clone()
    }

    /// Waits for everything sent to be written (call once every shard has stopped).
    pub fn finish(self) {
        // Closed for every sender (a stopped shard's handle may outlive its thread); what
        // was sent before is still received.
        self.tx.close();
        if self.handle.join().is_err() {
            tracing::error!("the store thread panicked");
        }
    }
}

fn run(
    opened: super::Opened,
    durability: Durability,
    clock: u64,
    notify: Vec<Notify>,
    rx: async_channel::Receiver<Request>,
    journal: Option<crate::cluster::Journal>,
) {
    let started = std::time::Instant::now();
    let mut shared = journal.map(super::shared::Shared::new);
    let super::Opened {
        db, spaces, path, ..
    } = opened;
    // Test hook of the power-loss test: the store as of each fsync.
    let snapshots = std::env::var_os("PETREL_TEST_POWER_SNAPSHOT").map(std::path::PathBuf::from);
    let mut a = Applier::new(&db, &spaces);
    let sync = durability == Durability::Power;
    let mut jobs: Vec<Job> = Vec::new();
    let mut done: Vec<Option<(u64, Vec<u8>)>> = (0..notify.len()).map(|_| None).collect();
    let mut next = rx.recv_blocking().ok();
    while let Some(first) = next.take() {
        // Everything that arrived meanwhile joins this commit, up to another request,
        // which is answered after it (it must see what was sent before it).
        let mut after = None;
        let mut req = Some(first);
        while let Some(r) = req.take() {
            match r {
                Request::Write(j) => jobs.push(j),
                other => {
                    after = Some(other);
                    break;
                }
            }
            if jobs.len() < 4096 {
                req = rx.try_recv().ok();
            }
        }
        if !jobs.is_empty() {
            let appends = shared.as_mut().map(|s| s.collect(&jobs));
            commit_jobs(&mut a, &mut jobs, sync, &mut done);
            if let (Some(s), Some(appends)) = (shared.as_mut(), appends) {
                s.write(appends, &spaces);
            }
            if sync {
                if let Some(to) = &snapshots {
                    if let Err(e) = power_snapshot(&path, to) {
                        tracing::error!("test snapshot: {e}");
                    }
                }
            }
            for (slot, tell) in done.iter_mut().zip(&notify) {
                if let Some((batch, buf)) = slot.take() {
                    tell(Reply::Committed(batch, buf));
                }
            }
        }
        match after {
            Some(Request::Load(l)) => {
                let msgs = read_queue(&spaces, &l, clock);
                tracing::debug!("read back {} queued message(s) of {}", msgs.len(), l.client);
                if let Some(tell) = notify.get(usize::from(l.shard)) {
                    tell(Reply::Loaded(l.client, l.after, msgs));
                }
            }
            Some(Request::Barrier(reply)) => {
                let _ = reply.try_send(());
            }
            Some(Request::RollUp(client)) => {
                if let Some(s) = shared.as_mut() {
                    s.roll_up(&client, &spaces);
                }
            }
            Some(Request::Seed {
                client,
                records,
                appends,
                reply,
            }) => {
                let mut batch = Vec::new();
                super::shared::forget(&client, &mut batch);
                batch.extend_from_slice(&records);
                let mut failures = 0u32;
                while let Err(e) = a.apply(&batch).and_then(|()| a.commit(sync)) {
                    a.pending.clear();
                    if failures.is_multiple_of(50) {
                        tracing::error!("cannot write a session taken over to the store: {e}");
                    }
                    failures += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                if let Some(s) = shared.as_mut() {
                    s.seeded(&client, &records, appends);
                }
                let _ = reply.try_send(super::shared::read_session(&spaces, &client, clock));
            }
            _ => {}
        }
        next = rx.recv_blocking().ok();
    }
    // Shutdown: everything is on disk before the process exits.
    if let Err(e) = a
        .commit(false)
        .and_then(|()| db.persist(fjall::PersistMode::SyncAll))
    {
        tracing::error!("cannot flush the store at exit: {e}");
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let commits = COMMITS.load(std::sync::atomic::Ordering::Relaxed);
    let fsyncs = FSYNCS.load(std::sync::atomic::Ordering::Relaxed);
    tracing::info!(
        "store: {commits} commits ({:.0}/s), {fsyncs} fsyncs ({:.0}/s) in {secs:.1} s",
        commits as f64 / secs,
        fsyncs as f64 / secs
    );
}

/// Copies the store (as it is on disk right after an fsync, before anything that waited
/// for it is released) to `to`, replacing the previous copy: what a power cut at any later
/// moment, before the next fsync, leaves at best. Used only by the power-loss test.
fn power_snapshot(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let target = to.join(e.file_name());
            if e.file_type()?.is_dir() {
                copy_dir(&e.path(), &target)?;
            } else {
                std::fs::copy(e.path(), target)?;
            }
        }
        Ok(())
    }
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    copy_dir(from, &tmp)?;
    // Renames only, so that a kill at any point leaves a whole copy: `to`, or else
    // `<to>.old` (between the two renames).
    let mut old = to.as_os_str().to_owned();
    old.push(".old");
    let old = std::path::PathBuf::from(old);
    let _ = std::fs::remove_dir_all(&old);
    if to.exists() {
        std::fs::rename(to, &old)?;
    }
    std::fs::rename(&tmp, to)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Applies and commits `jobs` (retrying while the disk refuses: nothing is released
/// meanwhile), noting each shard's last batch in `done`.
fn commit_jobs(
    a: &mut Applier<'_>,
    jobs: &mut Vec<Job>,
    sync: bool,
    done: &mut [Option<(u64, Vec<u8>)>],
) {
    let mut failures = 0u32;
    loop {
        let r = jobs
            .iter()
            .try_for_each(|j| a.apply(&j.records))
            .and_then(|()| a.commit(sync));
        match r {
            Ok(()) => break,
            Err(e) => {
                // Nothing is acknowledged until it is written: the shards' publishers
                // wait (their acknowledgements are held) while this retries.
                if failures.is_multiple_of(50) {
                    tracing::error!(
                        "cannot write the store (acknowledgements are held until it can): {e}"
                    );
                }
                failures += 1;
                a.pending.clear();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    COMMITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if sync {
        FSYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    for mut j in jobs.drain(..) {
        if let Some(slot) = done.get_mut(usize::from(j.shard)) {
            j.records.clear();
            *slot = Some((j.batch, j.records));
        }
    }
}

/// Up to `l.max` of a session's queued messages above `l.after`, in order.
fn read_queue(
    spaces: &[fjall::Keyspace],
    l: &Load,
    clock: u64,
) -> Vec<broker_core::store::StoredMessage> {
    let mut prefix = Vec::new();
    broker_core::store::client_prefix(&l.client, &mut prefix);
    let mut from = prefix.clone();
    from.extend_from_slice(&l.after.saturating_add(1).to_be_bytes());
    let mut to = prefix.clone();
    to.extend_from_slice(&u64::MAX.to_be_bytes());
    let Some(ks) = spaces.get(Space::Msg as usize) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in ks.range(from..=to) {
        let Ok((k, v)) = item.into_inner() else {
            tracing::error!("cannot read {}'s queue from the store", l.client);
            break;
        };
        let Some(m) = k
            .get(prefix.len()..)
            .and_then(|suffix| broker_core::store::decode_message_record(suffix, &v, clock))
        else {
            continue;
        };
        out.push(m);
        if out.len() >= l.max {
            break;
        }
    }
    out
}
