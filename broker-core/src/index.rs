//! The subscription index: a trie of topic filter levels that finds every filter matching a
//! topic name in time proportional to the topic's depth, not the number of filters.
//!
//! Literal children are found through one hash map keyed by (parent node, level), so a node
//! costs no map of its own; `+` and `#` children are direct links. Matching keeps its
//! work stack in the index and allocates nothing once warm.
//!
//! Filters without wildcards are not in the trie: a map from the whole filter to its
//! entries (kept in the map itself) finds them with one lookup, and keeps the trie and its
//! edge map to the levels of wildcard filters, small and cache-resident even with many
//! thousands of exact filters. The trie walk then only looks for wildcard filters,
//! and only goes down subtrees that hold some (each node counts the wildcard filters at or
//! below it), so a topic with no wildcard subscriber in its path costs one hash lookup.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hash::{Hash, Hasher};
use hashbrown::{Equivalent, HashMap};

const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

#[derive(Debug)]
struct Node<T> {
    parent: u32,
    level: Box<str>,
    plus: u32,
    hash: u32,
    literal_children: u32,
    /// Filters with a wildcard whose node is this one or below it.
    wild_below: u32,
    /// Literal children whose `wild_below` is not zero: matching looks a topic level up
    /// among the literal children only when some has a wildcard filter to find.
    wild_literals: u32,
    entries: Entries<T>,
}

impl<T> Node<T> {
    fn new(parent: u32, level: &str) -> Self {
        Self {
            parent,
            level: level.into(),
            plus: NONE,
            hash: NONE,
            literal_children: 0,
            wild_below: 0,
            wild_literals: 0,
            entries: Entries::new(),
        }
    }

    fn is_unused(&self) -> bool {
        self.entries.is_empty()
            && self.plus == NONE
            && self.hash == NONE
            && self.literal_children == 0
    }
}

/// A node's entries. Most filters have one, kept inline in the node: matching then reads
/// it with the node instead of following a pointer to a separate allocation (with
/// thousands of filters, that cache miss per matched filter was the largest single cost of
/// matching).
#[derive(Debug)]
enum Entries<T> {
    One(T),
    /// None (empty) or several.
    Many(Vec<T>),
}

impl<T> Entries<T> {
    const fn new() -> Self {
        Entries::Many(Vec::new())
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Entries::One(e) => core::slice::from_ref(e),
            Entries::Many(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Entries::One(e) => core::slice::from_mut(e),
            Entries::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, e: T) {
        match self {
            Entries::Many(v) if !v.is_empty() => v.push(e),
            Entries::Many(_) => *self = Entries::One(e),
            Entries::One(_) => {
                if let Entries::One(first) = core::mem::replace(self, Entries::new()) {
                    *self = Entries::Many(alloc::vec![first, e]);
                }
            }
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match self {
            Entries::One(e) => {
                if !keep(e) {
                    *self = Entries::new();
                }
            }
            Entries::Many(v) => v.retain(keep),
        }
    }
}

/// Bytes kept inline in [`SmallKey`].
const INLINE: usize = 22;

/// A map key that holds short byte strings (most topic levels and topics) inside the
/// table itself. With `Box<str>` keys, confirming a hash match follows a pointer to a
/// cold heap string: that cache miss was the largest cost of matching topics against
/// many thousands of filters.
#[derive(Debug, Clone)]
pub(crate) enum SmallKey {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

impl SmallKey {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            SmallKey::Inline(n, b) => b.get(..usize::from(*n)).unwrap_or_default(),
            SmallKey::Heap(b) => b,
        }
    }
}

impl From<&[u8]> for SmallKey {
    fn from(b: &[u8]) -> Self {
        let mut inline = [0u8; INLINE];
        match inline.get_mut(..b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                SmallKey::Inline(b.len() as u8, inline)
            }
            None => SmallKey::Heap(b.into()),
        }
    }
}

impl From<&str> for SmallKey {
    fn from(s: &str) -> Self {
        s.as_bytes().into()
    }
}

impl PartialEq for SmallKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallKey {}

impl Hash for SmallKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        KeyRef(self.as_bytes()).hash(h)
    }
}

/// A borrowed [`SmallKey`] for lookups.
#[derive(Debug)]
pub(crate) struct KeyRef<'a>(pub(crate) &'a [u8]);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.0);
    }
}

impl Equivalent<SmallKey> for KeyRef<'_> {
    fn equivalent(&self, key: &SmallKey) -> bool {
        self.0 == key.as_bytes()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EdgeKey {
    pub(crate) parent: u32,
    pub(crate) level: SmallKey,
}

impl Hash for EdgeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        EdgeRef {
            parent: self.parent,
            level: self.level.as_bytes(),
        }
        .hash(h)
    }
}

#[derive(Debug)]
pub(crate) struct EdgeRef<'a> {
    pub(crate) parent: u32,
    /// The level's bytes (matching compares bytes: no `str` slicing per level).
    pub(crate) level: &'a [u8],
}

impl Hash for EdgeRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u32(self.parent);
        h.write(self.level);
    }
}

impl Equivalent<EdgeKey> for EdgeRef<'_> {
    fn equivalent(&self, key: &EdgeKey) -> bool {
        self.parent == key.parent && self.level == key.level.as_bytes()
    }
}

/// The hasher used by the core's maps: seeded by the shell, deterministic for a seed.
pub type Hasher64 = foldhash::fast::FixedState;

/// Topic filters mapped to entries of type `T`.
#[derive(Debug)]
pub struct TopicIndex<T> {
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    edges: HashMap<EdgeKey, u32, Hasher64>,
    /// Filters without wildcards (with at least one entry) to their node.
    exact: HashMap<SmallKey, Entries<T>, Hasher64>,
    /// (node, depth, whether the path to it went through a `+`).
    stack: Vec<(u32, u32, bool)>,
    levels: Vec<(u32, u32)>,
    filters: usize,
}

impl<T> TopicIndex<T> {
    /// An empty index whose hash map uses `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            nodes: alloc::vec![Node::new(NONE, "")],
            free: Vec::new(),
            edges: HashMap::with_hasher(Hasher64::with_seed(seed)),
            exact: HashMap::with_hasher(Hasher64::with_seed(seed ^ 0x9E37_79B9_7F4A_7C15)),
            stack: Vec::new(),
            levels: Vec::new(),
            filters: 0,
        }
    }

    /// Number of distinct filters with at least one entry.
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    fn node(&self, id: u32) -> Option<&Node<T>> {
        self.nodes.get(id as usize)
    }

    fn node_mut(&mut self, id: u32) -> Option<&mut Node<T>> {
        self.nodes.get_mut(id as usize)
    }

    fn alloc_node(&mut self, parent: u32, level: &str) -> u32 {
        let n = Node::new(parent, level);
        if let Some(id) = self.free.pop() {
            if let Some(slot) = self.node_mut(id) {
                *slot = n;
            }
            id
        } else {
            self.nodes.push(n);
            (self.nodes.len() - 1) as u32
        }
    }

    fn find_or_create(&mut self, filter: &str) -> u32 {
        let mut cur = ROOT;
        for level in filter.split('/') {
            let existing = match level {
                "+" => self.node(cur).map_or(NONE, |n| n.plus),
                "#" => self.node(cur).map_or(NONE, |n| n.hash),
                _ => self
                    .edges
                    .get(&EdgeRef {
                        parent: cur,
                        level: level.as_bytes(),
                    })
                    .copied()
                    .unwrap_or(NONE),
            };
            if existing != NONE {
                cur = existing;
                continue;
            }
            let child = self.alloc_node(cur, level);
            match level {
                "+" => {
                    if let Some(n) = self.node_mut(cur) {
                        n.plus = child;
                    }
                }
                "#" => {
                    if let Some(n) = self.node_mut(cur) {
                        n.hash = child;
                    }
                }
                _ => {
                    self.edges.insert(
                        EdgeKey {
                            parent: cur,
                            level: level.into(),
                        },
                        child,
                    );
                    if let Some(n) = self.node_mut(cur) {
                        n.literal_children += 1;
                    }
                }
            }
            cur = child;
        }
        cur
    }

    fn find(&self, filter: &str) -> Option<u32> {
        let mut cur = ROOT;
        for level in filter.split('/') {
            let n = self.node(cur)?;
            cur = match level {
                "+" => n.plus,
                "#" => n.hash,
                _ => *self.edges.get(&EdgeRef {
                    parent: cur,
                    level: level.as_bytes(),
                })?,
            };
            if cur == NONE {
                return None;
            }
        }
        Some(cur)
    }

    /// Adds `delta` to the wildcard filter count of `id` and every node above it.
    fn add_wild(&mut self, mut id: u32, delta: i32) {
        // Whether the previous node (a child of this one) became or stopped being one
        // with wildcard filters below it, as a literal child.
        let mut literal_flip = 0i32;
        while let Some(n) = self.nodes.get_mut(id as usize) {
            n.wild_literals = n.wild_literals.saturating_add_signed(literal_flip);
            let before = n.wild_below;
            n.wild_below = n.wild_below.saturating_add_signed(delta);
            if id == ROOT {
                break;
            }
            let literal = &*n.level != "+" && &*n.level != "#";
            literal_flip = match (before == 0, n.wild_below == 0) {
                (true, false) if literal => 1,
                (false, true) if literal => -1,
                _ => 0,
            };
            id = n.parent;
        }
    }

    /// Adds an entry under `filter` (a validated, non-shared filter).
    pub fn insert(&mut self, filter: &str, entry: T) {
        if !has_wildcard(filter) {
            match self.exact.get_mut(&KeyRef(filter.as_bytes())) {
                Some(e) => e.push(entry),
                None => {
                    self.exact.insert(filter.into(), Entries::One(entry));
                    self.filters += 1;
                }
            }
            return;
        }
        let id = self.find_or_create(filter);
        let mut new_filter = false;
        if let Some(n) = self.nodes.get_mut(id as usize) {
            new_filter = n.entries.is_empty();
            n.entries.push(entry);
        }
        if new_filter {
            self.filters += 1;
            self.add_wild(id, 1);
        }
    }

    /// The entries of exactly `filter`.
    pub fn get(&self, filter: &str) -> &[T] {
        if !has_wildcard(filter) {
            return self
                .exact
                .get(&KeyRef(filter.as_bytes()))
                .map_or(&[], Entries::as_slice);
        }
        self.find(filter)
            .and_then(|id| self.node(id))
            .map_or(&[], |n| n.entries.as_slice())
    }

    /// Mutable access to the entries of exactly `filter`, if it has any.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut [T]> {
        if !has_wildcard(filter) {
            return self
                .exact
                .get_mut(&KeyRef(filter.as_bytes()))
                .map(Entries::as_mut_slice);
        }
        let id = self.find(filter)?;
        self.node_mut(id).map(|n| n.entries.as_mut_slice())
    }

    /// Removes the entries of `filter` for which `pred` holds; returns how many.
    pub fn remove_where(&mut self, filter: &str, mut pred: impl FnMut(&T) -> bool) -> usize {
        if !has_wildcard(filter) {
            let key = KeyRef(filter.as_bytes());
            let Some(e) = self.exact.get_mut(&key) else {
                return 0;
            };
            let before = e.len();
            e.retain(|x| !pred(x));
            let removed = before - e.len();
            if e.is_empty() {
                self.exact.remove(&key);
                self.filters -= 1;
            }
            return removed;
        }
        let Some(id) = self.find(filter) else {
            return 0;
        };
        let mut removed = 0;
        let mut gone = false;
        if let Some(n) = self.node_mut(id) {
            let before = n.entries.len();
            n.entries.retain(|e| !pred(e));
            removed = before - n.entries.len();
            gone = before > 0 && n.entries.is_empty();
        }
        if gone {
            self.filters -= 1;
            self.add_wild(id, -1);
        }
        self.prune_from(id);
        removed
    }

    fn prune_from(&mut self, mut id: u32) {
        while id != ROOT {
            let Some(n) = self.node(id) else { return };
            if !n.is_unused() {
                return;
            }
            let parent = n.parent;
            let level: Box<str> = self
                .node_mut(id)
                .map(|n| core::mem::take(&mut n.level))
                .unwrap_or_default();
            if let Some(p) = self.node_mut(parent) {
                if p.plus == id {
                    p.plus = NONE;
                } else if p.hash == id {
                    p.hash = NONE;
                } else {
                    p.literal_children = p.literal_children.saturating_sub(1);
                }
            }
            if &*level != "+" && &*level != "#" {
                self.edges.remove(&EdgeRef {
                    parent,
                    level: level.as_bytes(),
                });
            }
            self.free.push(id);
            id = parent;
        }
    }

    /// Calls `f` for every entry whose filter matches `topic` (a valid topic name), each
    /// filter once. A topic starting with `$` is not matched by a leading wildcard
    /// ([MQTT-4.7.2-1]).
    pub fn for_each_match(&mut self, topic: &str, f: impl FnMut(&T)) {
        self.for_each_match_bytes(topic.as_bytes(), f)
    }

    /// [`TopicIndex::for_each_match`] for a topic name's bytes (a stored message's topic
    /// need not be turned into a `str` again: matching compares bytes).
    pub fn for_each_match_bytes(&mut self, topic: &[u8], mut f: impl FnMut(&T)) {
        let Self {
            nodes,
            edges,
            exact,
            stack,
            levels,
            ..
        } = self;
        // The filter equal to the topic, if anyone subscribed to it.
        if let Some(e) = exact.get(&KeyRef(topic)) {
            e.as_slice().iter().for_each(&mut f);
        }
        let wild = |id: u32| nodes.get(id as usize).is_some_and(|n| n.wild_below > 0);
        if !wild(ROOT) {
            return;
        }
        levels.clear();
        // Level boundaries with a plain byte loop ('/' is ASCII, never inside a UTF-8
        // sequence); `str::split` costs several times more on short topics.
        let bytes = topic;
        let mut start = 0u32;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'/' {
                levels.push((start, i as u32));
                start = i as u32 + 1;
            }
        }
        levels.push((start, bytes.len() as u32));
        let depth_max = levels.len() as u32;
        let dollar = topic.first() == Some(&b'$');
        stack.clear();
        stack.push((ROOT, 0, false));
        // Only wildcard filters from here on: the exact one was found above.
        while let Some((id, depth, via_plus)) = stack.pop() {
            let Some(node) = nodes.get(id as usize) else {
                continue;
            };
            let wild_ok = !(depth == 0 && dollar);
            // '#' matches the parent level and any number of children ([MQTT-4.7.1-2]).
            if node.hash != NONE && wild_ok {
                if let Some(h) = nodes.get(node.hash as usize) {
                    h.entries.as_slice().iter().for_each(&mut f);
                }
            }
            if depth == depth_max {
                if via_plus {
                    node.entries.as_slice().iter().for_each(&mut f);
                }
                continue;
            }
            if node.plus != NONE && wild_ok && wild(node.plus) {
                stack.push((node.plus, depth + 1, true));
            }
            // No literal child has a wildcard filter below it: nothing to look up (the
            // exact filters were found above).
            if node.wild_literals == 0 {
                continue;
            }
            let Some(&(s, e)) = levels.get(depth as usize) else {
                continue;
            };
            let level = bytes.get(s as usize..e as usize).unwrap_or_default();
            if let Some(&child) = edges.get(&EdgeRef { parent: id, level }) {
                if wild(child) {
                    stack.push((child, depth + 1, via_plus));
                }
            }
        }
    }

    /// Every (filter, entries) pair, for snapshots and tests. Allocates the filter strings.
    pub fn for_each_filter(&self, mut f: impl FnMut(&str, &[T])) {
        for (k, e) in &self.exact {
            if let Ok(filter) = core::str::from_utf8(k.as_bytes()) {
                f(filter, e.as_slice());
            }
        }
        let mut path = alloc::string::String::new();
        for (id, n) in self.nodes.iter().enumerate() {
            if n.entries.is_empty() || self.free.contains(&(id as u32)) {
                continue;
            }
            path.clear();
            let mut chain = Vec::new();
            let mut cur = id as u32;
            while cur != ROOT && cur != NONE {
                chain.push(cur);
                cur = self.node(cur).map_or(NONE, |n| n.parent);
            }
            for (i, c) in chain.iter().rev().enumerate() {
                if i > 0 {
                    path.push('/');
                }
                if let Some(n) = self.node(*c) {
                    path.push_str(&n.level);
                }
            }
            f(&path, n.entries.as_slice());
        }
    }
}

/// Whether a (valid) filter has a `+` or `#` level.
fn has_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

/// A deterministic 64-bit hash for routing decisions that every shard and every process
/// must agree on (client id to shard, share group to shard): FNV-1a over the parts, then
/// a 64-bit finalizer (murmur3's fmix64). FNV-1a alone is unfit for `% shards`: its low
/// bit is just the parity of the input bytes' low bits.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xFF;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Build a seeded hasher for the core's maps.
pub fn hasher(seed: u64) -> Hasher64 {
    Hasher64::with_seed(seed)
}

#[cfg(test)]
mod tests {
    use super::stable_hash;
    extern crate std;
    use std::format;

    #[test]
    fn routing_hash_spreads_similar_ids_over_few_shards() {
        // Ids that differ in one character must not be forced apart or together.
        for shards in [2u64, 3, 4] {
            let mut same = 0;
            for i in 0..1000 {
                let a = stable_hash(&[format!("c{i}-pub-0").as_bytes()]) % shards;
                let b = stable_hash(&[format!("c{i}-sub-0").as_bytes()]) % shards;
                same += usize::from(a == b);
            }
            let expected = 1000 / shards as usize;
            assert!(
                same.abs_diff(expected) < expected / 4,
                "{shards} shards: {same} same"
            );
        }
    }
}
