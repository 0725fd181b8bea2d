//! Group-commit throughput of fjall 3 and redb 5 for Petrel's durable-store pattern, and a
//! kill -9 test of fjall's `Buffer` commits (no fsync): every batch the writer reported as
//! committed must be there after the process was killed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Records per batch: one event-loop turn's queue records (100 publishers' messages).
const BATCH: usize = 100;
/// A queued message record: key client-id ‖ seq, value ~ header + 64 B payload.
const VALUE: usize = 96;

fn key(client: usize, seq: u64) -> Vec<u8> {
    let mut k = format!("client-{client:04}").into_bytes();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn fjall_run(dir: &std::path::Path, batches: u64, sync: bool) -> f64 {
    let db = fjall::Database::builder(dir).open().expect("open");
    let q = db
        .keyspace("queue", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let value = vec![7u8; VALUE];
    let t = Instant::now();
    for b in 0..batches {
        let mut w = db.batch();
        for i in 0..BATCH {
            w.insert(&q, key(i, b), value.clone());
        }
        w.commit().expect("commit");
        if sync {
            db.persist(fjall::PersistMode::SyncData).expect("fsync");
        }
    }
    t.elapsed().as_secs_f64()
}

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("queue");

fn redb_run(dir: &std::path::Path, batches: u64, durable: bool) -> f64 {
    let db = redb::Database::create(dir.join("store.redb")).expect("open");
    let value = vec![7u8; VALUE];
    let t = Instant::now();
    for b in 0..batches {
        let mut tx = db.begin_write().expect("tx");
        let d = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        tx.set_durability(d).expect("durability");
        {
            let mut table = tx.open_table(TABLE).expect("table");
            for i in 0..BATCH {
                table
                    .insert(key(i, b).as_slice(), value.as_slice())
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    t.elapsed().as_secs_f64()
}

/// The child: commits batches with `Buffer` for ever, printing each committed batch number.
fn writer(dir: &str) {
    let db = fjall::Database::builder(dir).open().expect("open");
    let q = db
        .keyspace("queue", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let value = vec![7u8; VALUE];
    let mut out = std::io::stdout().lock();
    for b in 0u64.. {
        let mut w = db.batch();
        for i in 0..BATCH {
            w.insert(&q, key(i, b), value.clone());
        }
        w.commit().expect("commit");
        let _ = writeln!(out, "{b}");
        let _ = out.flush();
    }
}

fn kill_test(rounds: u32) {
    let exe = std::env::current_exe().expect("exe");
    let mut lost_total = 0;
    for r in 0..rounds {
        let dir = tempfile::tempdir().expect("tmp");
        let mut child = Command::new(&exe)
            .arg("writer")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Kill at a different point each round (after 50..1,000 reported batches).
        let at = 50 + u64::from(r) * 997 % 950;
        let mut last = None;
        for l in lines.by_ref() {
            let n: u64 = l.expect("line").parse().expect("number");
            last = Some(n);
            if n >= at {
                break;
            }
        }
        // kill -9 through the command-line tool: no signal crate needed.
        let _ = Command::new("kill")
            .arg("-9")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        // A line may still be in the pipe: those batches were committed too.
        for l in lines.map_while(Result::ok) {
            if let Ok(n) = l.parse() {
                last = Some(n);
            }
        }
        let Some(last) = last else { continue };
        let db = fjall::Database::builder(dir.path()).open().expect("reopen");
        let q = db
            .keyspace("queue", fjall::KeyspaceCreateOptions::default)
            .expect("keyspace");
        let mut lost = 0;
        for b in 0..=last {
            for i in [0, BATCH - 1] {
                if q.get(key(i, b)).expect("get").is_none() {
                    lost += 1;
                }
            }
        }
        println!(
            "kill -9 round {r}: {} batches reported committed, {lost} records missing",
            last + 1
        );
        lost_total += lost;
    }
    println!("kill -9: {rounds} rounds, {lost_total} reported-committed records missing");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("writer") {
        writer(&args[2]);
        return;
    }
    let runs: [(&str, u64, fn(&std::path::Path, u64) -> f64); 4] = [
        ("fjall Buffer (survives kill -9)", 20_000, |d, n| {
            fjall_run(d, n, false)
        }),
        (
            "fjall Buffer + persist(SyncData) per batch (power loss)",
            2_000,
            |d, n| fjall_run(d, n, true),
        ),
        (
            "redb Durability::None (memory only until a durable commit)",
            20_000,
            |d, n| redb_run(d, n, false),
        ),
        (
            "redb Durability::Immediate (fsync per batch)",
            2_000,
            |d, n| redb_run(d, n, true),
        ),
    ];
    for (name, batches, f) in runs {
        let dir = tempfile::tempdir_in(".").expect("tmp");
        let secs = f(dir.path(), batches);
        println!(
            "{name}: {:.0} batches/s, {:.0} records/s ({batches} batches of {BATCH}, {secs:.2} s)",
            batches as f64 / secs,
            (batches * BATCH as u64) as f64 / secs
        );
    }
    kill_test(20);
}
