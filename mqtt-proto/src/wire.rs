//! Wire primitives: a bounds-checked reader over borrowed input and the output sinks.
//! Every read is checked; nothing here can panic.

use crate::error::{DecodeError, EncodeError};
use crate::types::PacketType;

/// The largest remaining length a fixed header can carry (1.5.5).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Bytes needed to encode `v` as a Variable Byte Integer (1 to 4; values past the MQTT range
/// still answer 4, and encoders reject them separately).
pub const fn varint_len(v: usize) -> usize {
    if v < 128 {
        1
    } else if v < 16_384 {
        2
    } else if v < 2_097_152 {
        3
    } else {
        4
    }
}

/// Decodes a Variable Byte Integer at the start of `buf`.
/// `Ok(None)`: more bytes are needed. `Ok(Some((value, len)))` otherwise.
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // [MQTT-1.5.5-1] the minimum number of bytes: a trailing zero byte is padding.
            if i > 0 && b == 0 {
                return Err(DecodeError::NonMinimalVarInt);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    Err(DecodeError::VarIntTooLong)
}

/// A cursor over one packet body. Errors name the packet so messages say where.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    packet: PacketType,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], packet: PacketType) -> Self {
        Self { buf, packet }
    }

    /// A length-prefixed string field ([`text`] checks it) and what [`scan`] found in it
    /// ([`HAS_WILDCARD`] only looked for when `WILD`).
    #[inline(always)]
    fn str_field<const WILD: bool>(&mut self) -> Result<(&'a str, u8), DecodeError> {
        let n = usize::from(self.u16()?);
        text::<WILD>(self.take(n)?)
    }

    pub(crate) fn packet(&self) -> PacketType {
        self.packet
    }

    fn end(&self) -> DecodeError {
        DecodeError::UnexpectedEnd {
            packet: self.packet,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// What is left to read.
    pub(crate) fn as_slice(&self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, rest) = self.buf.split_first().ok_or(self.end())?;
        self.buf = rest;
        Ok(b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(self.end());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(self.buf)? {
            Some((v, n)) => {
                self.buf = self.buf.get(n..).unwrap_or_default();
                Ok(v)
            }
            None => Err(self.end()),
        }
    }

    /// Binary Data (1.5.6): a two byte length then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// UTF-8 Encoded String (1.5.4).
    #[inline]
    pub(crate) fn utf8(&mut self) -> Result<&'a str, DecodeError> {
        let (s, f) = self.str_field::<false>()?;
        if f & HAS_NUL != 0 {
            return Err(DecodeError::NullCharacter);
        }
        Ok(s)
    }

    /// A Topic Name (4.7): a UTF-8 string without U+0000 and without wildcards
    /// ([MQTT-3.3.2-2]), in one pass. An empty name is returned as is (PUBLISH allows it with
    /// a Topic Alias); callers that need a name refuse it.
    #[inline]
    pub(crate) fn topic_name(&mut self) -> Result<&'a str, DecodeError> {
        let (s, f) = self.str_field::<true>()?;
        if f & HAS_NUL != 0 {
            return Err(DecodeError::NullCharacter);
        }
        if f & HAS_WILDCARD != 0 {
            return Err(DecodeError::InvalidTopicName);
        }
        Ok(s)
    }

    /// Fails unless everything was consumed: the remaining length must match the fields.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                packet: self.packet,
            })
        }
    }
}

/// [MQTT-1.5.4-1] well-formed UTF-8 (which also excludes surrogates, U+D800..U+DFFF) and
/// [MQTT-1.5.4-2] no U+0000.
#[inline]
pub(crate) fn check_utf8(b: &[u8]) -> Result<&str, DecodeError> {
    let (s, f) = text::<false>(b)?;
    if f & HAS_NUL != 0 {
        return Err(DecodeError::NullCharacter);
    }
    Ok(s)
}

/// `b` as a string if it is well-formed UTF-8, with what [`scan`] finds in it (wildcards
/// only when `WILD`). Nearly every string on the wire is ASCII, and `from_utf8` walks a
/// short, unaligned string byte by byte (a quarter of the instructions of an MQTT 5 PUBLISH
/// decode went there): on 64-bit targets the word scan that looks for U+0000 also sees
/// whether any byte has its high bit set, and only a string that has one goes to
/// `from_utf8`.
#[inline]
pub(crate) fn text<const WILD: bool>(b: &[u8]) -> Result<(&str, u8), DecodeError> {
    let (f, ascii) = if cfg!(target_pointer_width = "64") {
        scan_words_ascii::<WILD>(b)
    } else {
        let wanted = if WILD {
            HAS_NUL | HAS_WILDCARD
        } else {
            HAS_NUL
        };
        (scan_bytes(b) & wanted, false)
    };
    if ascii {
        return Ok((ascii_str(b), f));
    }
    let s = core::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok((s, f))
}

/// `b`, known to be ASCII, as a `str` without validating it again.
#[allow(unsafe_code)]
#[inline(always)]
fn ascii_str(b: &[u8]) -> &str {
    debug_assert!(b.is_ascii());
    // SAFETY: only called on bytes below 0x80 (`scan_words_ascii` saw no high bit in any
    // word covering `b`), and every ASCII sequence is well-formed UTF-8.
    unsafe { core::str::from_utf8_unchecked(b) }
}

/// [`scan`] found U+0000.
pub(crate) const HAS_NUL: u8 = 1;
/// [`scan`] found `+` or `#`.
pub(crate) const HAS_WILDCARD: u8 = 2;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Non-zero exactly when some byte of `x` is zero (the classic SWAR test: a borrow can only
/// start at a zero byte).
#[inline(always)]
const fn zero_byte(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// Up to seven bytes as one word, the missing bytes set to 0x01 (neither U+0000 nor a
/// wildcard), with overlapping loads instead of a byte loop.
#[inline(always)]
fn short_word(b: &[u8]) -> u64 {
    let n = b.len();
    let word = |lo: u64, hi: u64, shift: u32| lo | (hi << shift);
    if n >= 4 {
        let lo = b.first_chunk::<4>().map_or(0, |a| u32::from_le_bytes(*a));
        let hi = b.last_chunk::<4>().map_or(0, |a| u32::from_le_bytes(*a));
        word(u64::from(lo), u64::from(hi), 32)
    } else if n >= 2 {
        let lo = b.first_chunk::<2>().map_or(0, |a| u16::from_le_bytes(*a));
        let hi = b.last_chunk::<2>().map_or(0, |a| u16::from_le_bytes(*a));
        word(u64::from(lo), u64::from(hi), 16) | 0x0101_0101_0000_0000
    } else if let Some(&x) = b.first() {
        u64::from(x) | 0x0101_0101_0101_0100
    } else {
        LO
    }
}

/// Calls `f` on `b` as 64-bit words: whole words, then the tail as one last word that
/// overlaps the previous one (fine for "does any byte ..." questions).
#[inline(always)]
fn for_each_word(b: &[u8], mut f: impl FnMut(u64)) {
    if b.len() < 8 {
        f(short_word(b));
        return;
    }
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        if let Some(a) = c.first_chunk::<8>() {
            f(u64::from_le_bytes(*a));
        }
    }
    if !chunks.remainder().is_empty() {
        if let Some(a) = b.last_chunk::<8>() {
            f(u64::from_le_bytes(*a));
        }
    }
}

/// Does `b` contain a zero byte (U+0000)?
#[inline]
pub(crate) fn has_nul(b: &[u8]) -> bool {
    if cfg!(target_pointer_width = "64") {
        has_nul_words(b)
    } else {
        b.contains(&0)
    }
}

/// One pass over a topic: does it hold U+0000 ([`HAS_NUL`]) and does it hold a wildcard
/// ([`HAS_WILDCARD`])? UTF-8 multi-byte sequences never contain these ASCII bytes, so a
/// byte scan is exact. Eight bytes at a time on 64-bit targets; a byte loop elsewhere,
/// where the word version costs more flash than it saves time (the gateway).
#[inline]
pub(crate) fn scan(b: &[u8]) -> u8 {
    if cfg!(target_pointer_width = "64") {
        scan_words(b)
    } else {
        scan_bytes(b)
    }
}

#[inline]
fn has_nul_words(b: &[u8]) -> bool {
    scan_words_ascii::<false>(b).0 != 0
}

fn scan_bytes(b: &[u8]) -> u8 {
    b.iter().fold(0, |f, &c| {
        f | match c {
            0 => HAS_NUL,
            b'+' | b'#' => HAS_WILDCARD,
            _ => 0,
        }
    })
}

#[inline]
fn scan_words(b: &[u8]) -> u8 {
    scan_words_ascii::<true>(b).0
}

/// [`scan_words`] (wildcards only when `WILD`), and whether every byte of `b` is ASCII.
/// [`short_word`]'s padding bytes are 0x01, so they neither hide nor fake a high bit.
#[inline(always)]
fn scan_words_ascii<const WILD: bool>(b: &[u8]) -> (u8, bool) {
    let mut nul = 0u64;
    let mut wild = 0u64;
    let mut high = 0u64;
    for_each_word(b, |w| {
        nul |= zero_byte(w);
        if WILD {
            wild |= zero_byte(w ^ (LO * b'+' as u64)) | zero_byte(w ^ (LO * b'#' as u64));
        }
        high |= w;
    });
    let f = u8::from(nul != 0) | (u8::from(wild != 0) << 1);
    (f, high & HI == 0)
}

/// Where encoded bytes go. Encoders check the whole length first (see `Packet::emit`), so
/// the `put_*` calls themselves cannot fail.
pub trait Sink {
    /// Appends bytes.
    fn put_slice(&mut self, src: &[u8]);
    /// Appends one byte.
    fn put_u8(&mut self, v: u8) {
        self.put_slice(&[v]);
    }
    /// Appends a big-endian u16.
    fn put_u16(&mut self, v: u16) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Appends a big-endian u32.
    fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }
    /// Bytes that can still be appended.
    fn remaining_capacity(&self) -> usize;
}

/// A [`Sink`] writing into a caller-provided slice.
#[derive(Debug)]
pub struct SliceSink<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> SliceSink<'b> {
    /// Writes from the start of `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.pos
    }
}

impl Sink for SliceSink<'_> {
    fn put_slice(&mut self, src: &[u8]) {
        let end = self.pos + src.len();
        // Capacity was checked by the caller; a short write here would be a bug, and
        // silently truncating is better than panicking on a hot path.
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(src);
            self.pos = end;
        }
    }

    fn put_u8(&mut self, v: u8) {
        if let Some(d) = self.buf.get_mut(self.pos) {
            *d = v;
            self.pos += 1;
        }
    }

    fn remaining_capacity(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A [`Sink`] appending to any `bytes::BufMut`.
#[cfg(feature = "bytes")]
#[derive(Debug)]
pub struct BufMutSink<'b, B: bytes::BufMut>(pub &'b mut B);

#[cfg(feature = "bytes")]
impl<B: bytes::BufMut> Sink for BufMutSink<'_, B> {
    fn put_slice(&mut self, src: &[u8]) {
        self.0.put_slice(src);
    }
    fn put_u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }
    fn remaining_capacity(&self) -> usize {
        self.0.remaining_mut()
    }
}

/// Writes a Variable Byte Integer (the caller has checked `v <= MAX_REMAINING_LENGTH`).
pub(crate) fn put_varint<S: Sink + ?Sized>(s: &mut S, mut v: usize) {
    let mut buf = [0u8; 4];
    let mut n = 0;
    loop {
        let mut b = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            b |= 0x80;
        }
        if let Some(slot) = buf.get_mut(n) {
            *slot = b;
        }
        n += 1;
        if v == 0 || n == 4 {
            break;
        }
    }
    s.put_slice(buf.get(..n).unwrap_or_default());
}

/// Writes Binary Data or a UTF-8 string with its two byte length.
pub(crate) fn put_binary<S: Sink + ?Sized>(s: &mut S, b: &[u8]) {
    s.put_u16(b.len() as u16);
    s.put_slice(b);
}

/// Length of a length-prefixed field, or an error past 65,535 bytes.
pub(crate) fn binary_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong)
    } else {
        Ok(2 + b.len())
    }
}

/// Length of a string field after checking it would decode ([MQTT-1.5.4-2]).
#[inline]
pub(crate) fn str_len(s: &str) -> Result<usize, EncodeError> {
    if has_nul(s.as_bytes()) {
        return Err(EncodeError::InvalidField("string contains U+0000"));
    }
    binary_len(s.as_bytes())
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// The word scan (64-bit targets) and the byte scan (the others) agree, around every
    /// word boundary and tail length.
    #[test]
    fn word_and_byte_scans_agree() {
        let alphabet = [0u8, b'+', b'#', b'a', b'/', 0xC3, 0xA9, 0x01, 0x80, 0xFF];
        let mut seed: u32 = 0x1234_5678;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        let mut buf = [0u8; 40];
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            for b in buf.iter_mut().take(len) {
                // Mostly plain bytes, so that a single special byte is often the only one.
                *b = if next() % 8 == 0 {
                    alphabet[(next() % alphabet.len() as u32) as usize]
                } else {
                    b'a' + (next() % 26) as u8
                };
            }
            let b = &buf[..len];
            assert_eq!(scan_words(b), scan_bytes(b), "{b:?}");
            assert_eq!(scan_words_ascii::<true>(b).1, b.is_ascii(), "{b:?}");
            assert_eq!(
                scan_words_ascii::<false>(b).0,
                scan_bytes(b) & HAS_NUL,
                "{b:?}"
            );
            assert_eq!(
                text::<true>(b).ok().map(|(s, _)| s),
                core::str::from_utf8(b).ok(),
                "{b:?}"
            );
            assert_eq!(has_nul_words(b), b.contains(&0), "{b:?}");
        }
    }
}
