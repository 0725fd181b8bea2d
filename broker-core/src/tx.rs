//! The transmit buffer a shell passes to `poll_transmit`: encoded headers (and small
//! payloads) in one reused byte buffer, large payloads as shared segments, in order, so
//! the shell can write everything with one vectored write.

use alloc::vec::Vec;
use bytes::Bytes;

#[derive(Debug, Clone)]
enum Seg {
    Local { start: usize, end: usize },
    Shared(Bytes),
}

/// Frames ready to be written, as an ordered list of byte chunks.
#[derive(Debug, Default)]
pub struct TxBuf {
    pub(crate) buf: Vec<u8>,
    segs: Vec<Seg>,
    /// Segments already fully written.
    head: usize,
    /// Bytes of the first unwritten segment already written.
    head_offset: usize,
    len: usize,
}

impl TxBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty buffer with room for `bytes` of headers.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            segs: Vec::with_capacity(16),
            ..Self::default()
        }
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything, keeping the allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.segs.clear();
        self.head = 0;
        self.head_offset = 0;
        self.len = 0;
    }

    /// The unwritten bytes as chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let first_offset = self.head_offset;
        self.segs
            .get(self.head..)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(move |(i, s)| {
                let whole: &[u8] = match s {
                    Seg::Local { start, end } => self.buf.get(*start..*end).unwrap_or_default(),
                    Seg::Shared(b) => b,
                };
                let skip = if i == 0 { first_offset } else { 0 };
                whole.get(skip..).unwrap_or_default()
            })
    }

    /// Shared payload segments still unwritten (for shells that need owned buffers).
    pub fn shared_segments(&self) -> impl Iterator<Item = &Bytes> {
        self.segs
            .get(self.head..)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| match s {
                Seg::Shared(b) => Some(b),
                Seg::Local { .. } => None,
            })
    }

    /// Marks `n` bytes as written. Clears the buffer once everything is written.
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(seg) = self.segs.get(self.head) else {
                break;
            };
            let seg_len = match seg {
                Seg::Local { start, end } => end - start,
                Seg::Shared(b) => b.len(),
            } - self.head_offset;
            if n >= seg_len {
                n -= seg_len;
                self.head += 1;
                self.head_offset = 0;
            } else {
                self.head_offset += n;
                n = 0;
            }
        }
        if self.len == 0 {
            self.clear();
        }
    }

    /// Extends the local bytes just written to `buf` (from `from`) into the segment list.
    pub(crate) fn commit_local(&mut self, from: usize) {
        let end = self.buf.len();
        if end == from {
            return;
        }
        self.len += end - from;
        if let Some(Seg::Local { end: last_end, .. }) = self.segs.last_mut() {
            if *last_end == from {
                *last_end = end;
                return;
            }
        }
        self.segs.push(Seg::Local { start: from, end });
    }

    /// Appends a shared payload segment.
    pub(crate) fn push_shared(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.len += b.len();
        self.segs.push(Seg::Shared(b));
    }

    /// Copies everything unwritten into one contiguous vector (for tests and simple shells).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for c in self.chunks() {
            v.extend_from_slice(c);
        }
        v
    }
}
