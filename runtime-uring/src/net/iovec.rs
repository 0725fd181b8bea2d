//! Vectored writes of a `TxBuf` (encoded headers plus shared payloads) through io_uring.

use broker_core::TxBuf;
use monoio::buf::IoVecBuf;

/// A `TxBuf` with the iovec array that describes its unwritten bytes. The kernel reads the
/// buffers while the runtime owns this value.
#[derive(Debug, Default)]
pub struct TxIoVecs {
    pub tx: TxBuf,
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the iovec array only holds pointers into `tx` (its header buffer and its shared
// `Bytes` segments), which live as long as `self`; neither `tx` nor `iovecs` is modified
// while an operation owns `self` (monoio takes it by value and returns it on completion),
// and a `Vec`'s heap pointer does not change when the `Vec` itself is moved.
unsafe impl IoVecBuf for TxIoVecs {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }
    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

// SAFETY: `TxIoVecs` holds raw pointers only into data it owns (see above); moving it to
// another thread moves that data with it.
unsafe impl Send for TxIoVecs {}

/// At most this many iovecs per write (the kernel's IOV_MAX is 1024).
const MAX_IOV: usize = 512;

impl TxIoVecs {
    /// The iovec array as [`prepare`](Self::prepare) left it.
    pub fn iovecs(&self) -> &[libc::iovec] {
        &self.iovecs
    }

    /// Rebuilds the iovec array from the unwritten chunks of `tx`.
    pub fn prepare(&mut self) {
        self.iovecs.clear();
        for chunk in self.tx.chunks().take(MAX_IOV) {
            self.iovecs.push(libc::iovec {
                iov_base: chunk.as_ptr() as *mut libc::c_void,
                iov_len: chunk.len(),
            });
        }
    }
}
