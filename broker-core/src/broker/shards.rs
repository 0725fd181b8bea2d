//! Messages from other shards.

use super::Broker;
use crate::session::Queued;
use crate::session::SubIds;
use crate::shard::ShardMsg;
use crate::time::Instant;

impl Broker {
    /// A message another shard sent to this one (`Event::ToShard`).
    pub fn handle_shard_msg(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Interest { from, filter, add } => self.apply_interest(from, &filter, add),
            ShardMsg::Publish {
                msg,
                publisher_hash,
                ack,
            } => match ack {
                Some(r) => {
                    // Hold the publisher's acknowledgement while our subscribers lack room.
                    self.begin_ack(super::flow::AckTarget::Remote(r));
                    self.route_local(now, &msg, publisher_hash);
                    match self.end_ack() {
                        Some(key) => self.release_ack(key),
                        None => self.release_remote(r),
                    }
                }
                None => {
                    self.route_local(now, &msg, publisher_hash);
                }
            },
            ShardMsg::AckRelease { key } => self.release_ack(key),
            #[cfg(feature = "backpressure")]
            ShardMsg::AckParked { key } => self.mark_parked(key),
            ShardMsg::RetainRequest { msg } => {
                // This shard owns the topic: apply, then replicate in this order to all.
                self.apply_retained(&msg);
                self.broadcast(|| ShardMsg::RetainApply { msg: msg.clone() });
                self.retain_to_cluster(&msg);
            }
            ShardMsg::RetainApply { msg } => self.apply_retained(&msg),
            ShardMsg::SharedJoin { group, member } => self.apply_join(group, member),
            ShardMsg::SharedLeave {
                group,
                shard,
                session,
            } => self.apply_leave(&group, shard, session),
            ShardMsg::SharedDeliver {
                session,
                msg,
                qos,
                retain,
                id,
                group,
                ack,
            } => {
                if let Some(r) = ack {
                    self.begin_ack(super::flow::AckTarget::Remote(r));
                }
                if self.sessions.get(session).is_none() {
                    self.return_to_group(now, group, msg);
                } else {
                    let item = Queued::new(msg, qos, retain, SubIds::from_opt(id), Some(group));
                    self.enqueue(now, session, item);
                }
                if let Some(r) = ack {
                    match self.end_ack() {
                        Some(key) => self.release_ack(key),
                        None => self.release_remote(r),
                    }
                }
            }
            ShardMsg::SharedReturn { group, msg, ack } => match ack {
                Some(r) => {
                    self.begin_ack(super::flow::AckTarget::Remote(r));
                    self.deliver_group(now, group, &msg, 0);
                    match self.end_ack() {
                        Some(key) => self.release_ack(key),
                        None => self.release_remote(r),
                    }
                }
                None => self.deliver_group(now, group, &msg, 0),
            },
        }
    }
}
