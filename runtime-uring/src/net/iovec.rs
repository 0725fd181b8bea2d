//! Vectored writes of a `TxBuf` (encoded headers plus shared payloads).

use broker_core::TxBuf;

/// A `TxBuf` with the iovec array that describes its unwritten bytes (see `sock::send_tx`,
/// which rebuilds the array before each write).
#[derive(Debug, Default)]
pub struct TxIoVecs {
    pub tx: TxBuf,
    iovecs: Vec<libc::iovec>,
}

/// At most this many iovecs per write (the kernel's IOV_MAX is 1024).
const MAX_IOV: usize = 512;

impl TxIoVecs {
    /// The iovec array as [`prepare`](Self::prepare) left it: valid only until `tx` changes.
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
