//! Retained messages (3.3.1.3): a trie of topic levels holding at most one message per
//! topic, searched by topic filter when a subscription is made.

use crate::index::{EdgeKey, EdgeRef, Hasher64};
use crate::message::Message;
use crate::time::Instant;
use alloc::boxed::Box;
use alloc::vec::Vec;
use hashbrown::HashMap;

const ROOT: u32 = 0;

#[derive(Debug)]
struct RNode {
    parent: u32,
    level: Box<str>,
    children: Vec<u32>,
    msg: Option<Message>,
}

/// The retained message store.
#[derive(Debug)]
pub struct RetainedStore {
    nodes: Vec<RNode>,
    free: Vec<u32>,
    edges: HashMap<EdgeKey, u32, Hasher64>,
    count: usize,
    bytes: usize,
}

impl RetainedStore {
    /// An empty store.
    pub fn new(seed: u64) -> Self {
        Self {
            nodes: alloc::vec![RNode {
                parent: u32::MAX,
                level: "".into(),
                children: Vec::new(),
                msg: None,
            }],
            free: Vec::new(),
            edges: HashMap::with_hasher(Hasher64::with_seed(seed)),
            count: 0,
            bytes: 0,
        }
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Total bytes of retained messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn child(&self, parent: u32, level: &str) -> Option<u32> {
        self.edges
            .get(&EdgeRef {
                parent,
                level: level.as_bytes(),
            })
            .copied()
    }

    fn find(&self, topic: &str) -> Option<u32> {
        topic
            .split('/')
            .try_fold(ROOT, |cur, level| self.child(cur, level))
    }

    /// Stores `msg` as the retained message of its topic, replacing the previous one; an
    /// empty payload deletes it instead ([MQTT-3.3.1-6], [MQTT-3.3.1-7]). Returns the
    /// change in message count (-1, 0, +1).
    pub fn set(&mut self, msg: Message) -> isize {
        if msg.payload().is_empty() {
            return if self.remove(msg.topic()) { -1 } else { 0 };
        }
        let mut cur = ROOT;
        for level in msg.topic().split('/') {
            cur = match self.child(cur, level) {
                Some(c) => c,
                None => {
                    let node = RNode {
                        parent: cur,
                        level: level.into(),
                        children: Vec::new(),
                        msg: None,
                    };
                    let id = match self.free.pop() {
                        Some(id) => {
                            if let Some(slot) = self.nodes.get_mut(id as usize) {
                                *slot = node;
                            }
                            id
                        }
                        None => {
                            self.nodes.push(node);
                            (self.nodes.len() - 1) as u32
                        }
                    };
                    self.edges.insert(
                        EdgeKey {
                            parent: cur,
                            level: level.into(),
                        },
                        id,
                    );
                    if let Some(p) = self.nodes.get_mut(cur as usize) {
                        p.children.push(id);
                    }
                    id
                }
            };
        }
        let size = msg.size();
        let Some(node) = self.nodes.get_mut(cur as usize) else {
            return 0;
        };
        let old = node.msg.replace(msg);
        self.bytes += size;
        match old {
            Some(o) => {
                self.bytes -= o.size();
                0
            }
            None => {
                self.count += 1;
                1
            }
        }
    }

    /// Deletes the retained message of `topic`.
    pub fn remove(&mut self, topic: &str) -> bool {
        let Some(mut id) = self.find(topic) else {
            return false;
        };
        let Some(old) = self.nodes.get_mut(id as usize).and_then(|n| n.msg.take()) else {
            return false;
        };
        self.count -= 1;
        self.bytes -= old.size();
        // Prune empty leaves up the chain.
        while id != ROOT {
            let Some(n) = self.nodes.get(id as usize) else {
                break;
            };
            if n.msg.is_some() || !n.children.is_empty() {
                break;
            }
            let parent = n.parent;
            let level = self
                .nodes
                .get_mut(id as usize)
                .map(|n| core::mem::take(&mut n.level))
                .unwrap_or_default();
            self.edges.remove(&EdgeRef {
                parent,
                level: level.as_bytes(),
            });
            if let Some(p) = self.nodes.get_mut(parent as usize) {
                p.children.retain(|&c| c != id);
            }
            self.free.push(id);
            id = parent;
        }
        true
    }

    /// The retained message of exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&Message> {
        self.find(topic)
            .and_then(|id| self.nodes.get(id as usize))
            .and_then(|n| n.msg.as_ref())
    }

    /// Calls `f` for every unexpired retained message matching `filter` (validated,
    /// non-shared). Leading wildcards do not match `$` topics ([MQTT-4.7.2-1]).
    pub fn for_each_match(&self, filter: &str, now: Instant, mut f: impl FnMut(&Message)) {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut stack: Vec<(u32, usize)> = alloc::vec![(ROOT, 0)];
        let mut emit = |n: &RNode| {
            if let Some(m) = &n.msg {
                if !m.is_expired(now) {
                    f(m);
                }
            }
        };
        while let Some((id, depth)) = stack.pop() {
            let Some(node) = self.nodes.get(id as usize) else {
                continue;
            };
            let Some(&level) = levels.get(depth) else {
                emit(node);
                continue;
            };
            let skip_dollar = |c: u32| {
                depth == 0
                    && self
                        .nodes
                        .get(c as usize)
                        .is_some_and(|n| n.level.starts_with('$'))
            };
            match level {
                "#" => {
                    // The parent level itself, then every descendant.
                    if depth > 0 {
                        emit(node);
                    }
                    let mut sub: Vec<u32> = node
                        .children
                        .iter()
                        .copied()
                        .filter(|&c| !skip_dollar(c))
                        .collect();
                    while let Some(c) = sub.pop() {
                        if let Some(n) = self.nodes.get(c as usize) {
                            emit(n);
                            sub.extend(n.children.iter().copied());
                        }
                    }
                }
                "+" => {
                    for &c in &node.children {
                        if !skip_dollar(c) {
                            stack.push((c, depth + 1));
                        }
                    }
                }
                l => {
                    if let Some(c) = self.child(id, l) {
                        stack.push((c, depth + 1));
                    }
                }
            }
        }
    }

    /// Drops retained messages whose expiry has passed.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let expired: Vec<Box<str>> = self
            .nodes
            .iter()
            .filter_map(|n| n.msg.as_ref())
            .filter(|m| m.is_expired(now))
            .map(|m| m.topic().into())
            .collect();
        for t in &expired {
            self.remove(t);
        }
        expired.len()
    }

    /// Every retained message (for snapshots).
    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.nodes.iter().filter_map(|n| n.msg.as_ref())
    }
}
