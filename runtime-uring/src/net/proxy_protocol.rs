//! PROXY protocol (HAProxy's v1 text and v2 binary headers): parsed by a broker listener with
//! `proxy_protocol = true`, written by `petrel proxy` towards its upstreams, so the broker
//! sees the real client address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12-byte signature that starts every v2 header.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Outcome of parsing the start of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// A header of `len` bytes naming the original source (None for LOCAL or UNSPEC).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid PROXY protocol header: {}", self.0)
    }
}

/// Parses a v1 (text) or v2 (binary) header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Invalid> {
    if buf.first() == Some(&b'P') {
        return parse_v1(buf);
    }
    parse_v2(buf)
}

/// v1: `PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n`, at most 107 bytes.
fn parse_v1(buf: &[u8]) -> Result<Parsed, Invalid> {
    let n = buf.len().min(6);
    if buf.get(..n) != b"PROXY ".get(..n) {
        return Err(Invalid("missing v1 signature"));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > 107 {
            Err(Invalid("v1 header longer than 107 bytes"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| Invalid("v1 header is not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", "TCP4" | "TCP6", src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| Invalid("bad v1 source address"))?;
            let port: u16 = sport.parse().map_err(|_| Invalid("bad v1 source port"))?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(Invalid("malformed v1 header")),
    };
    Ok(Parsed::Header {
        len: end + 2,
        source,
    })
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Invalid> {
    let n = buf.len().min(SIGNATURE.len());
    if buf.get(..n) != SIGNATURE.get(..n) {
        return Err(Invalid("missing v2 signature"));
    }
    let Some(hdr) = buf.get(..16) else {
        return Ok(Parsed::Incomplete);
    };
    let ver_cmd = hdr[12];
    if ver_cmd >> 4 != 2 {
        return Err(Invalid("version is not 2"));
    }
    let fam = hdr[13];
    let len = usize::from(u16::from_be_bytes([hdr[14], hdr[15]]));
    let Some(body) = buf.get(16..16 + len) else {
        return Ok(Parsed::Incomplete);
    };
    let total = 16 + len;
    // LOCAL command (health checks): no address.
    if ver_cmd & 0x0F == 0 {
        return Ok(Parsed::Header {
            len: total,
            source: None,
        });
    }
    if ver_cmd & 0x0F != 1 {
        return Err(Invalid("unknown command"));
    }
    let source = match fam {
        // TCP over IPv4: src addr, dst addr, src port, dst port.
        0x11 => {
            let b = body.get(..12).ok_or(Invalid("short IPv4 address block"))?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([b[8], b[9]]),
            ))
        }
        // TCP over IPv6.
        0x21 => {
            let b = body.get(..36).ok_or(Invalid("short IPv6 address block"))?;
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[..16]);
            let ip = Ipv6Addr::from(o);
            Some(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be_bytes([b[32], b[33]]),
            ))
        }
        _ => None,
    };
    Ok(Parsed::Header { len: total, source })
}

/// Encodes a v2 PROXY header for a TCP connection from `src` to `dst`.
pub fn encode(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(52);
    out.extend_from_slice(&SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src, dst) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(src).octets());
            out.extend_from_slice(&v6(dst).octets());
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_v4_and_v6() {
        for (s, d) in [
            ("10.1.2.3:4567", "127.0.0.1:1883"),
            ("[2001:db8::1]:1234", "[::1]:1883"),
        ] {
            let s: SocketAddr = s.parse().unwrap();
            let d: SocketAddr = d.parse().unwrap();
            let h = encode(s, d);
            for cut in 0..h.len() {
                assert_eq!(parse(&h[..cut]), Ok(Parsed::Incomplete), "cut {cut}");
            }
            let mut with_payload = h.clone();
            with_payload.extend_from_slice(&mqtt_connect());
            assert_eq!(
                parse(&with_payload),
                Ok(Parsed::Header {
                    len: h.len(),
                    source: Some(s)
                })
            );
        }
    }

    #[test]
    fn v1_text_header() {
        let h = b"PROXY TCP4 192.0.2.7 127.0.0.1 5555 1883\r\n\x10\x00";
        assert_eq!(
            parse(h),
            Ok(Parsed::Header {
                len: h.len() - 2,
                source: Some("192.0.2.7:5555".parse().unwrap())
            })
        );
        assert_eq!(parse(b"PROXY TCP4 192.0"), Ok(Parsed::Incomplete));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Ok(Parsed::Header {
                len: 15,
                source: None
            })
        );
        assert!(parse(b"PROXY TCP4 x y z w\r\n").is_err());
    }

    /// A CONNECT as a client without a PROXY header would start its connection.
    fn mqtt_connect() -> Vec<u8> {
        let c = mqtt_proto::Connect {
            protocol: mqtt_proto::ProtocolVersion::V3_1_1,
            clean_start: true,
            bridge: false,
            keep_alive: 60,
            properties: Default::default(),
            client_id: "c",
            will: None,
            username: None,
            password: None,
        };
        let mut out = Vec::new();
        mqtt_proto::Packet::Connect(c)
            .emit_buf(mqtt_proto::ProtocolVersion::V3_1_1, &mut out)
            .expect("encodes");
        out
    }

    #[test]
    fn refuses_plain_mqtt() {
        let c = mqtt_connect();
        for cut in 1..=c.len() {
            assert!(parse(&c[..cut]).is_err(), "cut {cut}");
        }
    }
}
