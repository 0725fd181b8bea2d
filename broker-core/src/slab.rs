//! A generational slab: stable small handles for connections and sessions, with stale
//! handles detected instead of aliasing a reused slot.

use alloc::vec::Vec;
use core::num::NonZeroU32;

/// A handle into a [`Slab`]. Generations start at 1, so an `Option<Key>` is 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Key {
    pub(crate) index: u32,
    pub(crate) generation: NonZeroU32,
}

impl Key {
    /// A key no slab hands out: a remote node's place in a shared group (feature
    /// `cluster`), where a member's session would be.
    #[cfg(feature = "cluster")]
    pub(crate) const REMOTE: Key = Key {
        index: u32::MAX,
        generation: NonZeroU32::MAX,
    };

    /// Slot index (stable while the entry lives).
    pub const fn index(self) -> u32 {
        self.index
    }

    /// Packs the key into a u64 (for logs and maps in shells).
    pub const fn as_u64(self) -> u64 {
        ((self.generation.get() as u64) << 32) | self.index as u64
    }
}

#[derive(Debug)]
enum Slot<T> {
    Full {
        generation: NonZeroU32,
        value: T,
    },
    Empty {
        generation: NonZeroU32,
        next_free: u32,
    },
}

/// The generation after `g` (1 follows `u32::MAX`).
fn next_generation(g: NonZeroU32) -> NonZeroU32 {
    g.checked_add(1).unwrap_or(NonZeroU32::MIN)
}

const NONE: u32 = u32::MAX;

/// Vec-backed storage with a free list.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free_head: NONE,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn insert_with(&mut self, f: impl FnOnce(Key) -> T) -> Key {
        self.len += 1;
        if self.free_head != NONE {
            let index = self.free_head;
            if let Some(slot) = self.slots.get_mut(index as usize) {
                if let Slot::Empty {
                    generation,
                    next_free,
                } = *slot
                {
                    let key = Key { index, generation };
                    self.free_head = next_free;
                    *slot = Slot::Full {
                        generation,
                        value: f(key),
                    };
                    return key;
                }
            }
        }
        let key = Key {
            index: self.slots.len() as u32,
            generation: NonZeroU32::MIN,
        };
        self.slots.push(Slot::Full {
            generation: NonZeroU32::MIN,
            value: f(key),
        });
        key
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        match self.slots.get(key.index as usize) {
            Some(Slot::Full { generation, value }) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        match self.slots.get_mut(key.index as usize) {
            Some(Slot::Full { generation, value }) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        match slot {
            Slot::Full { generation, .. } if *generation == key.generation => {
                let next = Slot::Empty {
                    generation: next_generation(key.generation),
                    next_free: self.free_head,
                };
                let old = core::mem::replace(slot, next);
                self.free_head = key.index;
                self.len -= 1;
                match old {
                    Slot::Full { value, .. } => Some(value),
                    Slot::Empty { .. } => None,
                }
            }
            _ => None,
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| match s {
            Slot::Full { generation, value } => Some((
                Key {
                    index: i as u32,
                    generation: *generation,
                },
                value,
            )),
            Slot::Empty { .. } => None,
        })
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = Key> + '_ {
        self.iter().map(|(k, _)| k)
    }
}
