//! Parsing and emitting never allocate. This binary installs a counting global allocator
//! (one per test binary, hence its own file) and counts the allocations made by the current
//! thread while it decodes every captured packet of `tests/data/captured`, walks every lazy
//! iterator (user properties, subscription identifiers, subscriptions, topic filters, reason
//! codes), re-encodes it with `emit`, `emit_header` and (with the `bytes` feature) into a
//! pre-sized `BytesMut`, decodes malformed input, formats the errors, and matches topics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mqtt_proto::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

struct Counting;

thread_local! {
    // `const` initialisation: touching these never allocates (nor registers a destructor).
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the only
// addition is a thread-local counter update, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns how many allocations this thread made meanwhile.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.with(Cell::get);
    let r = f();
    let after = ALLOCS.with(Cell::get);
    (r, after - before)
}

#[test]
fn the_counter_sees_allocations() {
    let (_, n) = allocations(|| black_box(vec![1u8; 16]));
    assert!(n >= 1);
    let (_, n) = allocations(|| black_box(format!("{}", black_box(42))));
    assert!(n >= 1);
    let (_, n) = allocations(|| black_box([0u8; 16]));
    assert_eq!(n, 0);
}

/// A `fmt::Write` into a fixed buffer, to format errors without a `String`.
struct Stack {
    buf: [u8; 256],
    len: usize,
}

impl std::fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = (self.len + s.len()).min(self.buf.len());
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&s.as_bytes()[..n]);
        self.len = end;
        Ok(())
    }
}

fn walk_props(p: &Properties<'_>) -> usize {
    let mut n = 0;
    for (k, v) in p.user_properties.iter() {
        n += k.len() + v.len();
    }
    for id in p.subscription_identifiers.iter() {
        n += id as usize;
    }
    n += p.content_type.map_or(0, str::len);
    n += p.correlation_data.map_or(0, <[u8]>::len);
    n += usize::from(p.is_empty());
    n
}

/// Touches every field and iterator of a decoded packet.
fn walk(p: &Packet<'_>) -> usize {
    match p {
        Packet::Connect(c) => {
            walk_props(&c.properties)
                + c.client_id.len()
                + c.will.map_or(0, |w| {
                    walk_props(&w.properties) + w.topic.len() + w.payload.len()
                })
                + c.username.map_or(0, str::len)
                + c.password.map_or(0, <[u8]>::len)
        }
        Packet::ConnAck(c) => walk_props(&c.properties) + c.reason_code as usize,
        Packet::Publish(p) => walk_props(&p.properties) + p.topic.len() + p.payload.len(),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            walk_props(&a.properties) + usize::from(a.packet_id.get())
        }
        Packet::Subscribe(s) => {
            let mut n = walk_props(&s.properties) + s.subscriptions.len();
            for sub in s.subscriptions.iter() {
                n += sub.filter.len() + sub.options.qos as usize;
            }
            n
        }
        Packet::SubAck(s) => {
            walk_props(&s.properties) + s.reason_codes.iter().map(|c| c as usize).sum::<usize>()
        }
        Packet::Unsubscribe(u) => {
            walk_props(&u.properties) + u.filters.iter().map(str::len).sum::<usize>()
        }
        Packet::UnsubAck(u) => {
            walk_props(&u.properties) + u.reason_codes.iter().map(|c| c as usize).sum::<usize>()
        }
        Packet::PingReq | Packet::PingResp => 1,
        Packet::Disconnect(d) => walk_props(&d.properties) + d.reason_code as usize,
        Packet::Auth(a) => walk_props(&a.properties) + a.reason_code as usize,
    }
}

/// Decode, walk and re-encode one packet; returns a checksum so nothing is optimised away.
fn roundtrip(bytes: &[u8], v: ProtocolVersion, out: &mut [u8]) -> usize {
    let Ok(Status::Complete((p, n))) = Packet::parse(bytes, v, MAX) else {
        return 0;
    };
    assert_eq!(n, bytes.len());
    let mut sum = walk(&p);
    let v = match p {
        Packet::Connect(c) => c.protocol,
        _ => v,
    };
    let len = p.encoded_len(v).unwrap();
    assert_eq!(p.emit(v, out).unwrap(), len);
    assert_eq!(len, bytes.len());
    let Ok(Status::Complete((q, _))) = Packet::parse(&out[..len], v, MAX) else {
        panic!("re-encoding does not decode")
    };
    assert!(q == p);
    if let Packet::Publish(pb) = p {
        let h = pb.emit_header(v, out).unwrap();
        sum += h + pb.header_len(v).unwrap();
    }
    if let Ok(Status::Complete(h)) = FixedHeader::parse(bytes, MAX) {
        sum += h.packet_len();
    }
    sum + len
}

#[test]
fn parse_walk_and_emit_allocate_nothing() {
    // Everything the measured code reads is prepared first (this allocates).
    let caps = all_captures();
    let mut inputs: Vec<(Vec<u8>, ProtocolVersion)> = Vec::new();
    for cap in &caps {
        for c in &cap.packets {
            inputs.push((c.bytes.clone(), cap.version()));
        }
    }
    assert!(inputs.len() > 150);
    let malformed: Vec<Vec<u8>> = vec![
        hex("30 80 00"),                                        // non-minimal VBI
        hex("30 FF FF FF FF 7F"),                               // VBI too long
        hex("30 04 00 02 ED A0"),                               // truncated string
        hex("30 05 00 03 ED A0 80"),                            // surrogate
        hex("30 05 00 03 61 00 62"),                            // U+0000
        hex("32 05 00 01 61 00 00"),                            // packet id 0
        hex("36 05 00 01 61 00 01"),                            // QoS 3
        hex("31 03 00 01 23"),                                  // wildcard in topic name
        hex("82 02 00 01"),                                     // SUBSCRIBE without filters
        hex("10 0C 00 04 4D 51 54 54 05 02 00 3C 03 21 00 00"), // Receive Maximum 0
        hex("F0 00"),                                           // AUTH in 3.1.1
        hex("30 FF FF 7F"),                                     // too large for the limit below
    ];
    let mut out = vec![0u8; 1 << 16];
    let up = [("k", "v"), ("k2", "v2")];
    let ids = [1u32, 268_435_455];
    let subs = [Subscription {
        filter: "a/+",
        options: SubscriptionOptions::qos(QoS::AtLeastOnce),
    }];
    let codes = [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized];
    let listed = [
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b",
            packet_id: Some(pid(1)),
            properties: Properties {
                user_properties: UserProperties::List(&up),
                subscription_identifiers: SubscriptionIds::List(&ids),
                ..Properties::default()
            },
            payload: b"payload",
        }),
        Packet::Subscribe(Subscribe {
            packet_id: pid(2),
            properties: Properties::default(),
            subscriptions: Subscriptions::List(&subs),
        }),
        Packet::SubAck(SubAck {
            packet_id: pid(2),
            properties: Properties::default(),
            reason_codes: ReasonCodes::List(&codes),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(3),
            properties: Properties::default(),
            filters: TopicFilters::List(&["a/+", "b/#"]),
        }),
    ];
    #[cfg(feature = "bytes")]
    let mut bm = bytes::BytesMut::with_capacity(1 << 16);

    let (sum, n) = allocations(|| {
        let mut sum = 0usize;
        for (bytes, v) in &inputs {
            sum += roundtrip(bytes, *v, &mut out);
            // Prefixes: Incomplete, no allocation either.
            for cut in [0, 1, bytes.len() / 2] {
                if let Ok(Status::Incomplete { needed }) = Packet::parse(&bytes[..cut], *v, MAX) {
                    sum += needed;
                }
            }
            #[cfg(feature = "bytes")]
            {
                if let Ok(Status::Complete((p, _))) = Packet::parse(bytes, *v, MAX) {
                    bm.clear();
                    let v2 = match p {
                        Packet::Connect(c) => c.protocol,
                        _ => *v,
                    };
                    sum += p.emit_buf(v2, &mut bm).unwrap();
                }
            }
        }
        for p in &listed {
            sum += walk(p);
            for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                if let Ok(n) = p.emit(v, &mut out) {
                    sum += n;
                }
            }
        }
        let mut text = Stack {
            buf: [0; 256],
            len: 0,
        };
        for bytes in &malformed {
            for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                if let Err(e) = Packet::parse(bytes, v, 100) {
                    text.len = 0;
                    std::fmt::Write::write_fmt(&mut text, format_args!("{e} {e:?}")).unwrap();
                    sum += text.len + e.reason_code() as usize;
                }
            }
        }
        for (f, t) in [("a/+/c", "a/b/c"), ("#", "$SYS/x"), ("$share/g/a/#", "a/b")] {
            sum += usize::from(topic::matches(f, t));
            sum += usize::from(topic::validate_filter(f).is_ok());
            sum += usize::from(topic::validate_name(t).is_ok());
            sum += topic::Filter::parse(f).map_or(0, |x| x.filter.len());
        }
        sum
    });
    assert!(black_box(sum) > 0);
    assert_eq!(n, 0, "parse/emit allocated {n} times");
}
