//! The durable store behind `persistence = true`: a fjall database (one keyspace per
//! `broker_core::store::Space`) written ahead by one store thread. Shards hand it the
//! records of each event-loop turn (`Job`); it commits what has arrived as one batch (a
//! group commit across shards), fsyncs it too under `durability = "power"`, and tells each
//! shard which of its batches are written, so that their acknowledgements can go.
//!
//! At start the store is read back (`open`): a store that cannot be opened or read is
//! moved aside as `<name>.corrupt-<UTC time>` and the broker starts empty; an older
//! Petrel's snapshot files (`<name>.shard<N>`) are migrated once.

pub mod legacy;
mod shared;
mod writer;

use broker_core::store::{Loader, RestoredSession, Space};
use broker_core::Message;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use writer::{Job, Load, Notify, Reply, Request, Writer, COMMITS, FSYNCS};

/// What an acknowledgement survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// A crash or `kill -9` of the broker: commits reach the kernel, no fsync.
    #[default]
    Process,
    /// Power loss too: acknowledgements wait for a group fsync.
    Power,
}

/// Where the store lives and what it promises.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `<persistence_location>/<persistence_file>`, a directory.
    pub path: PathBuf,
    pub durability: Durability,
    /// Queued messages a persistent session keeps in memory; its queue continues on disk.
    pub queued_in_memory: usize,
}

/// Stores found corrupt and moved aside since the process started.
pub static CORRUPT_STORES: AtomicU64 = AtomicU64::new(0);

/// Everything read back at start.
#[derive(Default)]
pub struct Restored {
    pub sessions: Vec<RestoredSession>,
    pub retained: Vec<Message>,
    /// Records read, and how long that took.
    pub records: u64,
    pub elapsed: std::time::Duration,
}

/// An open store and what it held.
pub struct Opened {
    pub path: PathBuf,
    pub db: fjall::Database,
    pub spaces: Vec<fjall::Keyspace>,
    pub restored: Restored,
}

fn keyspaces(db: &fjall::Database) -> Result<Vec<fjall::Keyspace>, fjall::Error> {
    Space::ALL
        .iter()
        .map(|s| db.keyspace(s.name(), fjall::KeyspaceCreateOptions::default))
        .collect()
}

fn open_db(path: &Path) -> Result<(fjall::Database, Vec<fjall::Keyspace>), fjall::Error> {
    // One background worker: the broker's cores belong to its shards.
    let db = fjall::Database::builder(path).worker_threads(1).open()?;
    let spaces = keyspaces(&db)?;
    Ok((db, spaces))
}

/// Why reading failed: the engine, or a record the broker cannot understand.
fn read_all(
    spaces: &[fjall::Keyspace],
    clock: u64,
) -> Result<(Vec<RestoredSession>, Vec<Message>, u64), String> {
    let mut loader = Loader::new(clock);
    for (space, ks) in Space::ALL.iter().zip(spaces) {
        for item in ks.iter() {
            let (k, v) = item.into_inner().map_err(|e| format!("{e}"))?;
            loader
                .add(*space, &k, &v)
                .map_err(|c| format!("unreadable record in {}", c.space))?;
        }
    }
    let records = loader.records;
    let (sessions, retained) = loader.finish();
    Ok((sessions, retained, records))
}

/// `<path>.corrupt-<UTC>` beside `path`.
fn aside_name(path: &Path) -> PathBuf {
    let stamp = utc_stamp(std::time::SystemTime::now());
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".corrupt-{stamp}"));
    let mut p = PathBuf::from(&s);
    let mut n = 1;
    while p.exists() {
        let mut t = s.clone();
        t.push(format!("-{n}"));
        p = PathBuf::from(t);
        n += 1;
    }
    p
}

/// `YYYYMMDDTHHMMSSZ` (civil-from-days, so no time-zone crate is needed).
pub fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Moves a store that cannot be used aside (never deletes it) and says so.
fn move_aside(path: &Path, why: &str) -> anyhow::Result<()> {
    let to = aside_name(path);
    std::fs::rename(path, &to).map_err(|e| {
        anyhow::anyhow!(
            "the store {} is corrupt ({why}) and cannot be moved aside to {}: {e}",
            path.display(),
            to.display()
        )
    })?;
    CORRUPT_STORES.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        "the store {} is corrupt ({why}): moved aside to {}; starting with an empty store",
        path.display(),
        to.display()
    );
    Ok(())
}

/// Opens (or creates) the store and reads it back. `clock`: the wall clock in Unix
/// milliseconds at the core's `Instant` 0. Only a failure to move a corrupt store aside
/// (or to create a new one) is an error.
pub fn open(settings: &StoreSettings, clock: u64) -> anyhow::Result<Opened> {
    let path = &settings.path;
    let started = std::time::Instant::now();
    // Not a directory: not a store of ours (a file of another format, or junk).
    if path.exists() && !path.is_dir() {
        move_aside(path, "not a store directory")?;
    }
    let first = match open_db(path) {
        Ok((db, spaces)) => match read_all(&spaces, clock) {
            Ok(r) => Some((db, spaces, r)),
            Err(why) => {
                drop(spaces);
                drop(db);
                move_aside(path, &why)?;
                None
            }
        },
        Err(fjall::Error::Locked) => {
            anyhow::bail!("the store {} is in use by another process", path.display())
        }
        Err(e) => {
            move_aside(path, &format!("{e}"))?;
            None
        }
    };
    let (db, spaces, (mut sessions, mut retained, records)) = match first {
        Some(x) => x,
        None => {
            let (db, spaces) = open_db(path)
                .map_err(|e| anyhow::anyhow!("cannot create the store {}: {e}", path.display()))?;
            (db, spaces, (Vec::new(), Vec::new(), 0))
        }
    };
    let mut w = writer::Applier::new(&db, &spaces);
    // An older Petrel's snapshot: written into the store once, then renamed.
    let snap = legacy::find(path);
    if !snap.is_empty() {
        let old = legacy::load(&snap)?;
        let migrated: Vec<RestoredSession> =
            old.sessions.into_iter().map(legacy::convert).collect();
        let batch = broker_core::store::migration_records(&migrated, &old.retained, clock);
        w.apply(&batch)
            .and_then(|()| w.commit(true))
            .map_err(|e| anyhow::anyhow!("migrating {}: {e}", path.display()))?;
        for f in &snap {
            let mut to = f.as_os_str().to_owned();
            to.push(".migrated");
            std::fs::rename(f, &to)
                .map_err(|e| anyhow::anyhow!("renaming {}: {e}", f.display()))?;
        }
        tracing::info!(
            "migrated {} session(s) and {} retained message(s) from the snapshot format",
            migrated.len(),
            old.retained.len()
        );
        sessions.extend(migrated);
        retained.extend(old.retained);
    }
    let restored = Restored {
        sessions,
        retained,
        records,
        elapsed: started.elapsed(),
    };
    tracing::info!(
        "store {}: {} session(s), {} queued or in-flight message(s), {} retained message(s) restored from {} record(s) in {:.3} s",
        path.display(),
        restored.sessions.len(),
        restored.sessions.iter().map(|s| s.messages.len()).sum::<usize>(),
        restored.retained.len(),
        restored.records,
        restored.elapsed.as_secs_f64()
    );
    Ok(Opened {
        path: path.clone(),
        db,
        spaces,
        restored,
    })
}

/// The wall clock, Unix milliseconds, at the moment `epoch` was taken.
pub fn clock_at(epoch: std::time::Instant) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.saturating_sub(epoch.elapsed().as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_are_civil_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_601_600 + 3_723);
        assert_eq!(utc_stamp(t), "20261207T010203Z");
        assert_eq!(utc_stamp(std::time::UNIX_EPOCH), "19700101T000000Z");
    }
}
