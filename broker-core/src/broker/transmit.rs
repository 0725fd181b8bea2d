//! `poll_transmit`: control packets first, then messages to resend after a reconnect, then
//! the retained backlog of new subscriptions and the queue, within the client's Receive
//! Maximum and Maximum Packet Size. Each PUBLISH costs one small encoded header; payloads above
//! `inline_payload_max` are passed as shared segments, never copied.

use super::Broker;
use crate::conn::{Conn, ConnState, Ctrl};
use crate::policy::{ConnId, DropReason};
use crate::session::{Inflight, InflightState, Queued};
use crate::time::Instant;
use crate::tx::TxBuf;
use mqtt_proto::{
    Ack, BufMutSink, Disconnect, Packet, PacketId, PacketType, Properties, PublishHeader, QoS,
    ReasonCode,
};

/// What `poll_transmit` produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Frames appended to the buffer.
    pub frames: usize,
    /// More frames are ready: call again once the buffer has been written.
    pub more: bool,
}

/// Why a PUBLISH was not encoded.
enum Skip {
    TooLarge,
}

/// Encodes one PUBLISH for `c` into `tx`, choosing a topic alias when the client allows
/// them (aliases are per connection, [MQTT-3.3.2-7] v5).
fn encode_publish(
    c: &mut Conn,
    item: &Queued,
    pid: Option<u16>,
    dup: bool,
    now: Instant,
    tx: &mut TxBuf,
    inline_max: usize,
) -> Result<(), Skip> {
    let msg = &item.msg;
    let v = c.version;
    let mut topic = msg.topic_bytes();
    let mut topic_alias = None;
    let mut new_alias = None;
    // The table is allocated at CONNECT when the client allows aliases.
    if let Some(out) = c
        .rare
        .as_deref()
        .map(|r| &r.alias_out)
        .filter(|_| c.alias_out_max > 0)
    {
        if let Some(&a) = out.get(msg.topic()) {
            topic_alias = Some(a);
            topic = b"";
        } else if out.len() < usize::from(c.alias_out_max) {
            let a = out.len() as u16 + 1;
            topic_alias = Some(a);
            new_alias = Some(a);
        }
    }
    let payload = msg.payload();
    // The topic and the forwarded properties were validated when the message was stored:
    // only the per-delivery fields are encoded here.
    let header = PublishHeader {
        dup,
        qos: item.qos,
        retain: item.retain,
        topic,
        packet_id: pid.and_then(PacketId::new),
        properties: msg.props_block(),
        // [MQTT-3.3.2-6] the remaining lifetime is forwarded.
        message_expiry_interval: msg.remaining_expiry_secs(now),
        topic_alias,
        // [MQTT-3.3.4-3] the identifiers of the matching subscriptions.
        subscription_identifiers: item.ids.as_slice(),
        payload_len: payload.len(),
    };
    let from = tx.buf.len();
    if header.emit_to(v, &mut BufMutSink(&mut tx.buf)).is_err() {
        tx.buf.truncate(from);
        return Err(Skip::TooLarge);
    }
    let total = tx.buf.len() - from + payload.len();
    // [MQTT-3.1.2-25] never send a packet above the client's Maximum Packet Size.
    if total > c.max_packet_out as usize {
        tx.buf.truncate(from);
        return Err(Skip::TooLarge);
    }
    if let (Some(a), Some(r)) = (new_alias, c.rare.as_deref_mut()) {
        r.alias_out.insert(msg.topic().into(), a);
    }
    if payload.len() <= inline_max {
        tx.buf.extend_from_slice(payload);
        tx.commit_local(from);
    } else {
        tx.commit_local(from);
        tx.push_shared(msg.payload_bytes());
    }
    Ok(())
}

fn encode_ctrl(ctrl: Ctrl, c: &Conn, tx: &mut TxBuf) {
    let v = c.version;
    let from = tx.buf.len();
    let packet = match ctrl {
        Ctrl::Raw(bytes) => {
            tx.buf.extend_from_slice(&bytes);
            tx.commit_local(from);
            return;
        }
        Ctrl::PingResp => Packet::PingResp,
        Ctrl::Disconnect(code) => Packet::Disconnect(Disconnect::new(code)),
        // The common acknowledgement (3.1.1, or MQTT 5 Success without properties) is four
        // fixed bytes (3.4.2.1: reason code and property length omitted): written
        // directly instead of through the general encoder, which measures an empty
        // property block for each.
        Ctrl::Ack { kind, pid, code } if !v.is_v5() || code == ReasonCode::Success => {
            let kind = match kind {
                PacketType::PubAck | PacketType::PubRec | PacketType::PubRel => kind,
                _ => PacketType::PubComp,
            };
            let flags = kind.required_flags().unwrap_or(0);
            let [hi, lo] = pid.get().to_be_bytes();
            tx.buf
                .extend_from_slice(&[((kind as u8) << 4) | flags, 2, hi, lo]);
            tx.commit_local(from);
            return;
        }
        Ctrl::Ack { kind, pid, code } => {
            let ack = Ack {
                packet_id: pid,
                reason_code: code,
                properties: Properties::default(),
            };
            match kind {
                PacketType::PubAck => Packet::PubAck(ack),
                PacketType::PubRec => Packet::PubRec(ack),
                PacketType::PubRel => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        }
    };
    if packet.emit_buf(v, &mut tx.buf).is_err() {
        tx.buf.truncate(from);
    }
    tx.commit_local(from);
}

impl Broker {
    /// Appends frames for `conn` to `tx` until about `budget` bytes were added or nothing
    /// is ready. Frames handed out here count as sent. After `more: false` the connection
    /// raises `Event::Output` again when it has something new.
    pub fn poll_transmit(
        &mut self,
        conn: ConnId,
        now: Instant,
        tx: &mut TxBuf,
        budget: usize,
    ) -> Transmit {
        let start = tx.len();
        let mut frames = 0;
        let Self {
            conns,
            sessions,
            cfg,
            policy,
            metrics,
            #[cfg(feature = "backpressure")]
            events,
            #[cfg(feature = "store")]
            store,
            ..
        } = self;
        let Some(c) = conns.get_mut(conn) else {
            return Transmit {
                frames: 0,
                more: false,
            };
        };
        let room = |tx: &TxBuf| tx.len() - start < budget;
        #[cfg(feature = "store")]
        if store.as_deref().is_some_and(|st| st.blocks(conn)) {
            // CONNACK, SUBACK or UNSUBACK waits for its records: the commit wakes it.
            c.output_flagged = false;
            return Transmit {
                frames: 0,
                more: false,
            };
        }
        let mut rare = false;
        while room(tx) {
            let Some(ctrl) = c.ctrl.pop_front() else {
                break;
            };
            rare |= matches!(ctrl, Ctrl::Raw(_));
            encode_ctrl(ctrl, c, tx);
            frames += 1;
        }
        // Input set aside may have waited for room among the control packets (or for a
        // PUBREL these answer): it may go on now.
        #[cfg(feature = "backpressure")]
        if frames > 0 && c.held == 0 && c.has_held_input() {
            events.push_back(super::Event::ResumeInput(conn));
        }
        if rare && c.ctrl.is_empty() {
            // A CONNACK or SUBACK (allocated anyway) was the last: release the queue so
            // that an idle connection holds none. Acknowledgements keep it warm.
            c.ctrl = crate::session::LazyDeque::new();
        }
        let session = c.session.and_then(|k| sessions.get_mut(k));
        let (Some(s), ConnState::Connected) = (session, c.state) else {
            let more = !c.ctrl.is_empty();
            c.output_flagged = more;
            return Transmit { frames, more };
        };
        if !c.ctrl.is_empty() {
            return Transmit { frames, more: true };
        }
        let inline = cfg.inline_payload_max;
        let mut more = false;
        // [MQTT-4.4.0-1] first the messages unacknowledged on the previous connection, in
        // their original order, PUBLISH with DUP ([MQTT-3.3.1-1]) or PUBREL. Resent PUBLISH
        // packets count against the new connection's Receive Maximum ([MQTT-3.3.4-9]);
        // PUBREL is never held back ([MQTT-3.3.4-10]).
        let window = usize::from(c.window);
        // Only after a resumption is there anything to resend (else no walk of the window).
        let mut in_window = if s.resend_pending {
            s.inflight.iter().filter(|f| !f.needs_send).count()
        } else {
            0
        };
        // Entries still to resend after this round (left out by the window or the budget).
        let mut left = false;
        let mut i = 0;
        while s.resend_pending {
            let Some(f) = s.inflight.get_mut(i) else {
                break;
            };
            if !f.needs_send {
                i += 1;
                continue;
            }
            if !room(tx) {
                more = true;
                left = true;
                break;
            }
            if f.state == InflightState::AwaitComp {
                f.needs_send = false;
                if let Some(pid) = PacketId::new(f.pid) {
                    encode_ctrl(
                        Ctrl::Ack {
                            kind: PacketType::PubRel,
                            pid,
                            code: mqtt_proto::ReasonCode::Success,
                        },
                        c,
                        tx,
                    );
                    frames += 1;
                }
                in_window += 1;
                i += 1;
                continue;
            }
            if in_window >= window {
                // An acknowledgement wakes the connection up again.
                left = true;
                i += 1;
                continue;
            }
            if encode_publish(c, &f.item, Some(f.pid), f.sent_once, now, tx, inline).is_ok() {
                f.needs_send = false;
                f.sent_once = true;
                in_window += 1;
                frames += 1;
                i += 1;
            } else if let Some(f) = s.inflight.remove(i) {
                // Too large for this connection's Maximum Packet Size: discarded as if
                // its delivery had completed ([MQTT-3.1.2-25]).
                #[cfg(feature = "store")]
                if let Some(st) = store.as_deref_mut() {
                    st.msg_done(&s.client_id, f.item.seq);
                }
                metrics.dropped_too_large += 1;
                policy
                    .hooks
                    .on_dropped(&s.client_id, &f.item.msg, DropReason::TooLarge);
            }
        }
        s.resend_pending &= left;
        if !more {
            loop {
                if !room(tx) {
                    more = true;
                    break;
                }
                // Retained messages of a new subscription go before messages queued
                // since: they are older ([MQTT-4.6.0-5]).
                let from_queue = s.backlog.is_empty();
                let front = if from_queue {
                    s.queue.front()
                } else {
                    s.backlog.front()
                };
                let Some(front) = front else { break };
                let needs_slot = front.qos != QoS::AtMostOnce;
                if !front.msg.is_expired(now)
                    && needs_slot
                    && s.inflight.len() >= usize::from(c.window)
                {
                    // Receive Maximum reached ([MQTT-3.3.4-9]): an acknowledgement wakes us.
                    break;
                }
                let popped = if from_queue {
                    s.queue.pop_front()
                } else {
                    s.backlog.pop_front()
                };
                let Some(item) = popped else { break };
                if from_queue {
                    s.queued_bytes -= item.msg.size();
                }
                // [MQTT-3.3.2-5] an expired message is not sent.
                if item.msg.is_expired(now) {
                    #[cfg(feature = "store")]
                    if let Some(st) = store.as_deref_mut() {
                        st.msg_done(&s.client_id, item.seq);
                    }
                    metrics.dropped_expired += 1;
                    policy
                        .hooks
                        .on_dropped(&s.client_id, &item.msg, DropReason::Expired);
                    continue;
                }
                let pid = needs_slot.then(|| s.alloc_pid());
                // A stored QoS 2 message goes out only once its packet identifier is in the
                // store: sent under an identifier a restart forgot, it could be delivered
                // twice (the client would take the resend, under a new identifier, for a
                // new message). It waits in flight, unsent, for the batch.
                #[cfg(feature = "store")]
                if let (Some(st), Some(pid), QoS::ExactlyOnce, true) =
                    (store.as_deref_mut(), pid, item.qos, s.stored)
                {
                    let mut item = item;
                    if item.seq == 0 {
                        // Not recorded yet (a retained message sent at SUBSCRIBE): it is
                        // now, so that its identifier is not reused after a restart.
                        st.seq += 1;
                        item.seq = st.seq;
                        st.w.msg(&s.client_id, item.seq, item.qos, item.retain, &item.msg);
                    }
                    let code = super::durable::state_code(InflightState::AwaitRec);
                    st.msg_inflight(&s.client_id, item.seq, pid, code, true);
                    st.gate(conn);
                    s.inflight.push_back(Inflight {
                        pid,
                        item,
                        state: InflightState::AwaitRec,
                        needs_send: true,
                        sent_once: false,
                    });
                    s.resend_pending = true;
                    continue;
                }
                if encode_publish(c, &item, pid, false, now, tx, inline).is_err() {
                    #[cfg(feature = "store")]
                    if let Some(st) = store.as_deref_mut() {
                        st.msg_done(&s.client_id, item.seq);
                    }
                    metrics.dropped_too_large += 1;
                    policy
                        .hooks
                        .on_dropped(&s.client_id, &item.msg, DropReason::TooLarge);
                    continue;
                }
                frames += 1;
                metrics.publish_sent += 1;
                #[cfg(feature = "ops")]
                if let Some(n) = metrics.ops.messages_sent.get_mut(item.qos as usize) {
                    *n += 1;
                }
                policy.hooks.on_deliver(&s.client_id, &item.msg);
                if let Some(pid) = pid {
                    let state = if item.qos == QoS::AtLeastOnce {
                        InflightState::AwaitAck
                    } else {
                        InflightState::AwaitRec
                    };
                    // Resent with the same identifier after a restart.
                    #[cfg(feature = "store")]
                    if let Some(st) = store.as_deref_mut() {
                        let code = super::durable::state_code(state);
                        st.msg_inflight(&s.client_id, item.seq, pid, code, true);
                    }
                    s.inflight.push_back(Inflight {
                        pid,
                        item,
                        state,
                        needs_send: false,
                        sent_once: true,
                    });
                }
            }
        }
        c.output_flagged = more;
        let parked = (!s.overflow.is_empty()).then_some(c.session).flatten();
        let session = c.session;
        // Room was made: messages held by flow control move into the queue (and their
        // publishers get their acknowledgements).
        // Another round only if something moved (it may be sendable now); otherwise a full
        // in-flight window would make this spin.
        if let Some(sk) = parked {
            if self.admit_parked(now, sk) && !more {
                more = true;
                if let Some(c) = self.conns.get_mut(conn) {
                    c.output_flagged = true;
                }
            }
        }
        if let Some(sk) = session {
            self.load_spilled(sk);
        }
        Transmit { frames, more }
    }
}
