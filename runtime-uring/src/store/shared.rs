//! The cluster's shared copy of sessions, written by the store thread after each of its
//! own commits (`crate::cluster::Journal`): per client, the records of the commit, and
//! now and then the session's whole current state instead (a rollup), read from this
//! store.

use crate::cluster::{Append, Held, Journal, ROLLUP_EVERY};
use broker_core::store::{client_of, client_prefix, put_record, records, Op, Space};
use std::collections::HashMap;
use std::time::Duration;

pub struct Shared {
    journal: Journal,
    /// Appends per client since its subject was last rolled up.
    appends: HashMap<String, u32>,
    /// Clients whose session moved away (what their shadow queues here still goes to the
    /// shared copy, for their new node, which alone rolls their subject up) until a
    /// session of theirs is here again.
    moved: std::collections::HashSet<String>,
    /// This node's persistent subscriptions, counted by filter (the routes that outlive
    /// the node).
    held: Held,
}

impl Shared {
    pub fn new(journal: Journal) -> Shared {
        Shared {
            journal,
            appends: HashMap::new(),
            moved: std::collections::HashSet::new(),
            held: Held::default(),
        }
    }

    /// The shared copy's part of a commit: each client's records, in order.
    pub fn collect(&mut self, jobs: &[super::Job]) -> Vec<Append> {
        let mut out: Vec<Append> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for j in jobs {
            for r in records(&j.records) {
                // Retained messages have a stream of their own.
                if r.space == Space::Retained {
                    continue;
                }
                self.held.record(r.op, r.space, r.key);
                if r.op == Op::Forget {
                    // A session moved away leaves only this store; its subject is the
                    // other node's now: never rolled up from here (this store no longer
                    // has it).
                    if let Some((client, _)) = client_of(r.key) {
                        self.appends.remove(client);
                        self.moved.insert(client.to_owned());
                    }
                    continue;
                }
                let Some((client, _)) = client_of(r.key) else {
                    continue;
                };
                if self.moved.contains(client) {
                    match (r.op, r.space) {
                        // A session of its own here again (a CONNECT writes it).
                        (Op::Put, Space::Session) => {
                            self.moved.remove(client);
                        }
                        // Its shadow's end is no end of the session elsewhere.
                        (Op::DeleteClient, _) => continue,
                        _ => {}
                    }
                }
                let i = *at.entry(client.to_owned()).or_insert_with(|| {
                    out.push(Append {
                        client: client.to_owned(),
                        records: Vec::new(),
                        rollup: false,
                    });
                    out.len() - 1
                });
                let Some(a) = out.get_mut(i) else {
                    continue;
                };
                if r.op == Op::DeleteClient {
                    // The session ended: nothing before stays.
                    a.records.clear();
                    a.rollup = true;
                    continue;
                }
                put_record(&mut a.records, r.op, r.space, r.key, r.value);
            }
        }
        out
    }

    /// Writes a commit's part (after the commit here), retrying while JetStream refuses:
    /// the acknowledgements that wait for it stay held meanwhile.
    pub fn write(&mut self, mut appends: Vec<Append>, spaces: &[fjall::Keyspace]) {
        for a in &mut appends {
            if self.moved.contains(&a.client) {
                continue;
            }
            let n = self.appends.entry(a.client.clone()).or_insert(0);
            *n += 1;
            if a.rollup || *n >= ROLLUP_EVERY {
                if !a.rollup {
                    a.records = snapshot(spaces, &a.client);
                    a.rollup = true;
                }
                *n = 0;
            }
            if a.rollup && a.records.is_empty() {
                self.appends.remove(&a.client);
            }
        }
        self.write_held();
        let mut failures = 0u32;
        while let Err(e) = self.journal.append(&appends) {
            if failures.is_multiple_of(20) {
                tracing::error!(
                    "cannot write sessions to the cluster's stream (acknowledgements are held until it can): {e}"
                );
            }
            failures += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Rolls the client's subject up to this store's copy of its session now (unless the
    /// session left: the subject is another node's then).
    pub fn roll_up(&mut self, client: &str, spaces: &[fjall::Keyspace]) {
        if self.moved.contains(client) {
            return;
        }
        let a = Append {
            client: client.to_owned(),
            records: snapshot(spaces, client),
            rollup: true,
        };
        self.write(vec![a], spaces);
    }

    /// A session read back from the shared copy (`records`) was written here.
    pub fn seeded(&mut self, client: &str, records: &[u8], appends: u32) {
        self.appends.insert(client.to_owned(), appends);
        self.moved.remove(client);
        self.held.seeded(client, records);
        self.write_held();
    }

    /// Writes the held routes that changed, retrying while etcd does not answer (a node
    /// cut off from etcd is fenced anyway): what waits for the commit stays held.
    fn write_held(&mut self) {
        let mut failures = 0u32;
        while let Err(e) = self.journal.hold(&mut self.held) {
            if failures.is_multiple_of(20) {
                tracing::error!(
                    "cannot write this node's held routes to etcd (acknowledgements are held until it can): {e}"
                );
            }
            failures += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Every record of a client's session in this store, as one batch of puts.
fn snapshot(spaces: &[fjall::Keyspace], client: &str) -> Vec<u8> {
    let mut prefix = Vec::new();
    client_prefix(client, &mut prefix);
    let mut out = Vec::new();
    for (space, ks) in Space::ALL.iter().zip(spaces) {
        if *space == Space::Retained {
            continue;
        }
        for item in ks.prefix(&prefix) {
            match item.into_inner() {
                Ok((k, v)) => put_record(&mut out, Op::Put, *space, &k, &v),
                Err(e) => tracing::error!("cannot read {client}'s session from the store: {e}"),
            }
        }
    }
    out
}

/// A record that removes a client's session from this store only.
pub fn forget(client: &str, out: &mut Vec<u8>) {
    let mut prefix = Vec::new();
    client_prefix(client, &mut prefix);
    put_record(out, Op::Forget, Space::Session, &prefix, &[]);
}

/// A client's session as this store has it.
pub fn read_session(
    spaces: &[fjall::Keyspace],
    client: &str,
    clock: u64,
) -> Option<broker_core::store::RestoredSession> {
    let mut prefix = Vec::new();
    client_prefix(client, &mut prefix);
    let mut loader = broker_core::store::Loader::new(clock);
    for (space, ks) in Space::ALL.iter().zip(spaces) {
        if *space == Space::Retained {
            continue;
        }
        for item in ks.prefix(&prefix) {
            let Ok((k, v)) = item.into_inner() else {
                return None;
            };
            if loader.add(*space, &k, &v).is_err() {
                tracing::error!("a record of {client}'s session taken over is unreadable");
            }
        }
    }
    loader.finish().0.into_iter().next()
}
