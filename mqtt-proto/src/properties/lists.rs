//! The properties that may repeat (User Property, Subscription Identifier): read lazily
//! from the borrowed block, or given as a list to encode.

use super::raw::{pair, RawIter};
use super::PropertyId;
use crate::error::EncodeError;
use crate::types::PacketType;
use crate::wire::{put_binary, put_varint, str_len, varint_len, Reader, Sink};
use core::fmt;

/// User properties in their original order: either the decoded property block (read lazily)
/// or a list supplied for encoding.
#[derive(Clone, Copy)]
pub enum UserProperties<'a> {
    /// A validated property block from the wire; only its User Property entries are used.
    Wire(&'a [u8]),
    /// Name/value pairs to encode.
    List(&'a [(&'a str, &'a str)]),
}

impl Default for UserProperties<'_> {
    fn default() -> Self {
        Self::List(&[])
    }
}

impl<'a> UserProperties<'a> {
    /// The name/value pairs, in order.
    pub fn iter(&self) -> UserPropertyIter<'a> {
        match *self {
            Self::Wire(b) => UserPropertyIter(IterInner::Wire(RawIter::new(b))),
            Self::List(l) => UserPropertyIter(IterInner::List(l.iter())),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        match *self {
            // No string needs validating to answer this.
            Self::Wire(b) => RawIter::only(b, PropertyId::UserProperty).next().is_none(),
            Self::List(l) => l.is_empty(),
        }
    }

    /// (number of pairs, encoded length of all of them with their identifiers), checking
    /// that each would decode.
    pub(super) fn measure(&self) -> Result<(usize, usize), EncodeError> {
        let mut count = 0;
        let mut n = 0;
        match *self {
            Self::Wire(b) => {
                for raw in RawIter::only(b, PropertyId::UserProperty) {
                    if pair(raw).is_none() {
                        return Err(EncodeError::InvalidField(
                            "user property is not a valid UTF-8 string pair",
                        ));
                    }
                    count += 1;
                    n += 1 + raw.len();
                }
            }
            Self::List(l) => {
                for (k, v) in l {
                    count += 1;
                    n += 1 + str_len(k)? + str_len(v)?;
                }
            }
        }
        Ok((count, n))
    }

    /// Writes each pair with its identifier; a decoded block is copied as it came.
    pub(super) fn emit<S: Sink + ?Sized>(&self, s: &mut S) {
        let id = PropertyId::UserProperty as u8;
        match *self {
            Self::Wire(b) => {
                for raw in RawIter::only(b, PropertyId::UserProperty) {
                    s.put_u8(id);
                    s.put_slice(raw);
                }
            }
            Self::List(l) => {
                for (k, v) in l {
                    s.put_u8(id);
                    put_binary(s, k.as_bytes());
                    put_binary(s, v.as_bytes());
                }
            }
        }
    }
}

/// Iterator over user properties.
#[derive(Debug, Clone)]
pub struct UserPropertyIter<'a>(IterInner<'a>);

#[derive(Debug, Clone)]
enum IterInner<'a> {
    Wire(RawIter<'a>),
    List(core::slice::Iter<'a, (&'a str, &'a str)>),
}

impl<'a> Iterator for UserPropertyIter<'a> {
    type Item = (&'a str, &'a str);
    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            IterInner::Wire(raw) => loop {
                let (id, v) = raw.next()?;
                if id == PropertyId::UserProperty {
                    return pair(v);
                }
            },
            IterInner::List(l) => l.next().copied(),
        }
    }
}

impl PartialEq for UserProperties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for UserProperties<'_> {}

impl fmt::Debug for UserProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for UserProperties<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[{} user properties]", self.iter().count())
    }
}

/// Subscription Identifiers: one in SUBSCRIBE, any number in PUBLISH ([MQTT-3.3.4-3]).
#[derive(Clone, Copy)]
pub enum SubscriptionIds<'a> {
    /// A validated property block from the wire.
    Wire(&'a [u8]),
    /// Identifiers to encode (each 1..=268,435,455).
    List(&'a [u32]),
}

impl Default for SubscriptionIds<'_> {
    fn default() -> Self {
        Self::List(&[])
    }
}

impl<'a> SubscriptionIds<'a> {
    /// The identifiers, in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let (wire, list): (&'a [u8], &'a [u32]) = match *self {
            Self::Wire(b) => (b, &[]),
            Self::List(l) => (&[], l),
        };
        RawIter::only(wire, PropertyId::SubscriptionIdentifier)
            .filter_map(|raw| Reader::new(raw, PacketType::Publish).varint().ok())
            .chain(list.iter().copied())
    }

    /// The first identifier (the only one a SUBSCRIBE may carry).
    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        match *self {
            Self::Wire(b) => RawIter::only(b, PropertyId::SubscriptionIdentifier)
                .next()
                .is_none(),
            Self::List(l) => l.is_empty(),
        }
    }

    /// (number of identifiers, encoded length with their property identifiers), checking
    /// each is in 1..=268,435,455.
    pub(super) fn measure(&self) -> Result<(usize, usize), EncodeError> {
        let mut count = 0;
        let mut n = 0;
        for id in self.iter() {
            if id == 0 || id as usize > crate::wire::MAX_REMAINING_LENGTH {
                return Err(EncodeError::InvalidField(
                    "subscription identifier out of range",
                ));
            }
            count += 1;
            n += 1 + varint_len(id as usize);
        }
        Ok((count, n))
    }

    pub(super) fn emit<S: Sink + ?Sized>(&self, s: &mut S) {
        for id in self.iter() {
            s.put_u8(PropertyId::SubscriptionIdentifier as u8);
            put_varint(s, id as usize);
        }
    }
}

impl PartialEq for SubscriptionIds<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for SubscriptionIds<'_> {}

impl fmt::Debug for SubscriptionIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for SubscriptionIds<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "[{} subscription ids]", self.iter().count())
    }
}
