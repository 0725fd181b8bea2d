//! `decode`: arbitrary bytes into `Packet::parse`.
//!
//! Input: the first byte picks the protocol version (low two bits: 0 = 3.1, 1 = 3.1.1,
//! otherwise 5.0) and whether a small maximum packet size applies (bit 7); the rest is a
//! byte stream decoded packet after packet, as a connection would.
//!
//! Checks: no panic; `Complete` consumes 1..=len bytes; `Incomplete` asks for at least one
//! more byte; every decoded packet encodes again (the decoder accepts nothing the encoder
//! refuses), the encoding is no longer than the input, decodes to an equal packet, and is a
//! fixed point (encoding that again gives the same bytes); `emit_header` + payload equals
//! `emit` for PUBLISH; errors have a reason code and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_proto::{topic, Packet, ProtocolVersion, Status};

const MAX: usize = 1 << 24;

fn version(sel: u8) -> ProtocolVersion {
    match sel & 0x03 {
        0 => ProtocolVersion::V3_1,
        1 => ProtocolVersion::V3_1_1,
        _ => ProtocolVersion::V5,
    }
}

fn encode(p: &Packet<'_>, v: ProtocolVersion) -> Vec<u8> {
    let len = match p.encoded_len(v) {
        Ok(n) => n,
        Err(e) => panic!("decoded packet does not encode ({e}): {p:?}"),
    };
    let mut out = vec![0u8; len];
    assert_eq!(p.emit(v, &mut out), Ok(len));
    // The BufMut path writes the same bytes.
    let mut bm = bytes::BytesMut::new();
    assert_eq!(p.emit_buf(v, &mut bm), Ok(len));
    assert_eq!(&bm[..], &out[..]);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut buf)) = data.split_first() else {
        return;
    };
    let v = version(sel);
    let max = if sel & 0x80 != 0 {
        usize::from(sel & 0x7F)
    } else {
        MAX
    };
    loop {
        match Packet::parse(buf, v, max) {
            Ok(Status::Complete((p, n))) => {
                assert!(n >= 2 && n <= buf.len() && n <= max);
                // Debug walks every lazy iterator of the packet.
                let _ = format!("{p:?}");
                let pv = match p {
                    Packet::Connect(c) => c.protocol,
                    _ => v,
                };
                let out = encode(&p, pv);
                assert!(out.len() <= n, "re-encoding grew: {} > {n}", out.len());
                match Packet::parse(&out, pv, MAX) {
                    Ok(Status::Complete((q, m))) => {
                        assert_eq!(m, out.len());
                        assert_eq!(q, p);
                        assert_eq!(encode(&q, pv), out, "encoding is not a fixed point");
                    }
                    other => panic!("re-encoding of {p:?} does not decode: {other:?}"),
                }
                if let Packet::Publish(pb) = p {
                    let h = pb.header_len(pv).expect("header_len");
                    let mut hdr = vec![0u8; h];
                    assert_eq!(pb.emit_header(pv, &mut hdr), Ok(h));
                    hdr.extend_from_slice(pb.payload);
                    assert_eq!(hdr, out);
                }
                buf = &buf[n..];
            }
            Ok(Status::Incomplete { needed }) => {
                assert!(needed >= 1);
                break;
            }
            Err(e) => {
                let _ = e.reason_code();
                assert!(!e.to_string().is_empty());
                break;
            }
        }
    }
    // The topic functions on whatever UTF-8 the input holds.
    if let Ok(s) = core::str::from_utf8(&data[1..]) {
        let mid = (0..=s.len() / 2)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        let (f, t) = s.split_at(mid);
        let _ = topic::validate_filter(f);
        let _ = topic::validate_name(t);
        let _ = topic::Filter::parse(f);
        if topic::validate_filter(f).is_ok() && topic::validate_name(t).is_ok() {
            let _ = topic::matches(f, t);
        }
    }
});
