//! The snapshot format of earlier Petrel versions (`<db>.shard<N>`, written at exit and
//! every `autosave_interval`): read once at start and migrated into the store.

use broker_core::persist::{decode_message, decode_session, FORMAT};
use broker_core::policy::SessionSnapshot;
use broker_core::store::{RestoredSession, StoredMessage};
use broker_core::{Instant, Message};
use std::path::{Path, PathBuf};

/// Everything read back at start.
#[derive(Default)]
pub struct Restored {
    pub sessions: Vec<SessionSnapshot>,
    pub retained: Vec<Message>,
}

/// The snapshot parts of the database `db` (`<db>.shard<N>`).
pub fn find(db: &Path) -> Vec<PathBuf> {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(stem) = db.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let prefix = format!("{stem}.shard");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(&prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                })
            })
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Reads snapshot parts. A part that cannot be read is moved aside like a corrupt store
/// (the broker starts without it).
pub fn load(parts: &[PathBuf]) -> anyhow::Result<Restored> {
    let mut out = Restored::default();
    for path in parts {
        let data = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let mut one = Restored::default();
        if parse(&data, Instant::ZERO, &mut one).is_some() {
            out.sessions.extend(one.sessions);
            out.retained.extend(one.retained);
        } else {
            super::move_aside(path, "unreadable snapshot")?;
        }
    }
    Ok(out)
}

/// A snapshot session as the store restores sessions: its messages queued in order (a
/// snapshot kept no packet identifiers).
pub fn convert(s: SessionSnapshot) -> RestoredSession {
    RestoredSession {
        client_id: s.client_id,
        username: s.username,
        protocol: s.protocol,
        expiry_interval: s.expiry_interval,
        subscriptions: s.subscriptions,
        messages: s
            .messages
            .into_iter()
            .zip(1u64..)
            .map(|((msg, qos, _sent), seq)| StoredMessage {
                seq,
                msg,
                qos,
                retain: false,
                inflight: None,
            })
            .collect(),
        qos2_in: Vec::new(),
        will: None,
    }
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
