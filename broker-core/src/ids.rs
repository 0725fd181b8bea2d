//! Sessions by client identifier, without a second copy of each identifier: the table
//! holds session keys and compares against the identifier in the session slot.

use crate::index::Hasher64;
use crate::session::Session;
use crate::slab::{Key, Slab};
use core::hash::BuildHasher;
use hashbrown::HashTable;

pub(crate) struct ClientIds {
    table: HashTable<Key>,
    hasher: Hasher64,
}

impl ClientIds {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            table: HashTable::new(),
            hasher: Hasher64::with_seed(seed),
        }
    }

    fn hash(hasher: &Hasher64, id: &str) -> u64 {
        hasher.hash_one(id)
    }

    pub(crate) fn get(&self, sessions: &Slab<Session>, id: &str) -> Option<Key> {
        let h = Self::hash(&self.hasher, id);
        self.table
            .find(h, |k| sessions.get(*k).is_some_and(|s| &*s.client_id == id))
            .copied()
    }

    pub(crate) fn contains(&self, sessions: &Slab<Session>, id: &str) -> bool {
        self.get(sessions, id).is_some()
    }

    /// Indexes a session (already in `sessions`) by its client identifier.
    pub(crate) fn insert(&mut self, sessions: &Slab<Session>, key: Key) {
        let Some(s) = sessions.get(key) else { return };
        let hasher = &self.hasher;
        let h = Self::hash(hasher, &s.client_id);
        self.table.insert_unique(h, key, |k| {
            sessions
                .get(*k)
                .map_or(0, |s| Self::hash(hasher, &s.client_id))
        });
    }

    /// Forgets session `key`, known by `id` (it may have left `sessions` already).
    pub(crate) fn remove(&mut self, id: &str, key: Key) {
        let h = Self::hash(&self.hasher, id);
        if let Ok(e) = self.table.find_entry(h, |k| *k == key) {
            e.remove();
        }
    }
}

impl core::fmt::Debug for ClientIds {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientIds")
            .field("len", &self.table.len())
            .finish()
    }
}
