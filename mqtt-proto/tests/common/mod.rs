//! Helpers shared by the integration tests: loading the captured traffic in
//! `tests/data/captured/` and checking a packet in both directions.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use mqtt_proto::{EncodeError, Packet, PacketId, ProtocolVersion, Status};
use std::path::{Path, PathBuf};

/// Large enough for every test packet; the framing limit is tested separately.
pub const MAX: usize = 1 << 20;

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn version_for_level(level: u8) -> ProtocolVersion {
    ProtocolVersion::from_level(level).expect("known level")
}

/// Decodes exactly one complete packet that spans all of `bytes`.
pub fn decode(bytes: &[u8], v: ProtocolVersion) -> Packet<'_> {
    match Packet::parse(bytes, v, MAX) {
        Ok(Status::Complete((p, n))) => {
            assert_eq!(n, bytes.len(), "consumed length for {}", to_hex(bytes));
            p
        }
        other => panic!(
            "{}: expected a complete packet, got {other:?}",
            to_hex(bytes)
        ),
    }
}

pub fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Result<Vec<u8>, EncodeError> {
    let len = p.encoded_len(v)?;
    let mut buf = vec![0u8; len];
    let n = p.emit(v, &mut buf)?;
    assert_eq!(n, len, "emit wrote encoded_len bytes");
    Ok(buf)
}

/// How strictly the encoder's output must match the peer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Byte for byte.
    Exact,
    /// The peer wrote the properties in an order other than ascending identifier (mqtt-proto's
    /// order; the specification leaves the order free). The encoding must have the same length
    /// and fixed header and decode to the same packet.
    PropertyOrder,
}

/// Decode `bytes` and compare with `expected`; encode `expected` and compare with `bytes`.
pub fn check_both_ways(bytes: &[u8], v: ProtocolVersion, expected: &Packet<'_>, m: Match) {
    let got = decode(bytes, v);
    assert_eq!(&got, expected, "decode of {}", to_hex(bytes));
    let out = encode(expected, v).expect("encode expected packet");
    match m {
        Match::Exact => assert_eq!(
            to_hex(&out),
            to_hex(bytes),
            "encode of {expected:?} must reproduce the peer's bytes"
        ),
        Match::PropertyOrder => {
            assert_ne!(
                out, bytes,
                "marked PropertyOrder but the bytes are identical"
            );
            assert_eq!(out.len(), bytes.len());
            assert_eq!(out[..2], bytes[..2], "fixed header");
            let mut a = out.clone();
            let mut b = bytes.to_vec();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "same bytes in another order");
            assert_eq!(&decode(&out, v), expected);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    C2S,
    S2C,
}

#[derive(Debug, Clone)]
pub struct Captured {
    pub conn: u32,
    pub dir: Dir,
    pub kind: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub level: u8,
    pub packets: Vec<Captured>,
}

pub fn captured_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/captured")
}

impl Capture {
    pub fn load(name: &str) -> Capture {
        let path = captured_dir().join(format!("{name}.txt"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self::parse(name, &text)
    }

    pub fn parse(name: &str, text: &str) -> Capture {
        let mut level = None;
        let mut packets = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# protocol level: ") {
                level = Some(rest.trim().parse().unwrap());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut f = line.split_whitespace();
            let conn = f.next().unwrap().parse().unwrap();
            let dir = match f.next().unwrap() {
                "c2s" => Dir::C2S,
                "s2c" => Dir::S2C,
                d => panic!("direction {d}"),
            };
            let kind = f.next().unwrap().to_string();
            let bytes = hex(f.next().unwrap());
            assert!(f.next().is_none());
            packets.push(Captured {
                conn,
                dir,
                kind,
                bytes,
            });
        }
        Capture {
            name: name.to_string(),
            level: level.expect("protocol level line"),
            packets,
        }
    }

    pub fn version(&self) -> ProtocolVersion {
        version_for_level(self.level)
    }

    /// Checks every packet of the capture, in order, against the expectations.
    pub fn expect(&self, expected: &[(Dir, Packet<'_>, Match)]) {
        assert_eq!(
            self.packets.len(),
            expected.len(),
            "{}: number of packets",
            self.name
        );
        for (i, (c, (dir, p, m))) in self.packets.iter().zip(expected).enumerate() {
            assert_eq!(c.dir, *dir, "{} packet {i}: direction", self.name);
            assert_eq!(
                c.kind,
                p.packet_type().name(),
                "{} packet {i}: type",
                self.name
            );
            check_both_ways(&c.bytes, self.version(), p, *m);
        }
    }
}

pub fn all_captures() -> Vec<Capture> {
    let mut names: Vec<String> = std::fs::read_dir(captured_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".txt").map(str::to_string))
        .collect();
    names.sort();
    names.iter().map(|n| Capture::load(n)).collect()
}
