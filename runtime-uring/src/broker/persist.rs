//! The durable store behind `persistence = true`: each shard writes its persistent sessions
//! (and shard 0 the retained messages, which every shard holds) to `<db>.shard<N>` at
//! shutdown and every `autosave_interval`; at start every part is read and each session goes
//! to the shard that owns it, whatever the number of shards was before.

use broker_core::persist::{
    decode_message, decode_session, encode_message, encode_session, FORMAT,
};
use broker_core::policy::SessionSnapshot;
use broker_core::{Broker, Instant, Message};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where and how often to save.
#[derive(Debug, Clone)]
pub struct PersistSettings {
    /// The database path; parts are `<db>.shard<N>`.
    pub db: PathBuf,
    /// Save this often (zero: only at exit).
    pub autosave: Duration,
}

fn part(db: &Path, shard: u16) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(format!(".shard{shard}"));
    PathBuf::from(s)
}

/// Everything read back at start.
#[derive(Default)]
pub struct Restored {
    pub sessions: Vec<SessionSnapshot>,
    pub retained: Vec<Message>,
}

/// Reads every part of the database. A missing database is empty; a corrupt part is an
/// error naming the file (the broker refuses to start rather than lose data silently).
pub fn load(db: &Path, now: Instant) -> anyhow::Result<Restored> {
    let mut out = Restored::default();
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(stem) = db.file_name().and_then(|n| n.to_str()) else {
        anyhow::bail!("invalid persistence path {}", db.display());
    };
    let prefix = format!("{stem}.shard");
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => anyhow::bail!("cannot read {}: {e}", dir.display()),
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(&prefix) || name.ends_with(".tmp") {
            continue;
        }
        let path = e.path();
        let data = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        parse(&data, now, &mut out)
            .ok_or_else(|| anyhow::anyhow!("{}: corrupt persistence file", path.display()))?;
    }
    tracing::info!(
        "restored {} session(s) and {} retained message(s) from {}",
        out.sessions.len(),
        out.retained.len(),
        db.display()
    );
    Ok(out)
}

fn parse(data: &[u8], now: Instant, out: &mut Restored) -> Option<()> {
    let rest = data.strip_prefix(&FORMAT[..])?;
    let mut pos = 0;
    let count = |pos: &mut usize| -> Option<u32> {
        let b = rest.get(*pos..*pos + 4)?;
        *pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    for _ in 0..count(&mut pos)? {
        let (s, n) = decode_session(now, rest.get(pos..)?)?;
        pos += n;
        out.sessions.push(s);
    }
    for _ in 0..count(&mut pos)? {
        let (m, n) = decode_message(now, rest.get(pos..)?)?;
        pos += n;
        out.retained.push(m);
    }
    (pos == rest.len()).then_some(())
}

/// Writes this shard's part atomically (temporary file, fsync, rename).
pub fn save(
    db: &Path,
    shard: u16,
    shards: u16,
    broker: &Broker,
    now: Instant,
) -> std::io::Result<()> {
    let sessions = broker.snapshot_sessions();
    let retained = if shard == 0 {
        broker.retained_messages()
    } else {
        Vec::new()
    };
    let mut buf = Vec::with_capacity(4096);
    buf.extend_from_slice(FORMAT);
    buf.extend_from_slice(&(sessions.len() as u32).to_be_bytes());
    for s in &sessions {
        encode_session(now, s, &mut buf);
    }
    buf.extend_from_slice(&(retained.len() as u32).to_be_bytes());
    for m in &retained {
        encode_message(now, m, &mut buf);
    }
    let target = part(db, shard);
    let mut tmp = target.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &target)?;
    if shard == 0 {
        // Parts from an earlier run with more shards were restored into today's owners.
        let mut n = shards;
        while part(db, n).exists() {
            let _ = std::fs::remove_file(part(db, n));
            n += 1;
        }
    }
    Ok(())
}
