//! The broker's heap: what the shell needs to know about it (how much is free) and, for
//! boards, a metered `embedded-alloc` arena.
//!
//! `alloc` aborts on an allocation failure, so running out of heap cannot be caught: it has
//! to be prevented. `guard` refuses work before the heap gets that low; this module only
//! measures.

/// Reads the heap the broker allocates from.
pub trait HeapMeter: Sync {
    /// Arena size, bytes.
    fn size(&self) -> usize;
    /// Bytes allocated now.
    fn used(&self) -> usize;
    /// Most bytes ever allocated at once.
    fn peak(&self) -> usize;
    /// Bytes free now.
    fn free(&self) -> usize {
        self.size().saturating_sub(self.used())
    }
}

#[cfg(feature = "embedded-alloc")]
pub use llff::MeteredLlff;

#[cfg(feature = "embedded-alloc")]
mod llff {
    use core::alloc::{GlobalAlloc, Layout};
    use core::sync::atomic::{AtomicUsize, Ordering};
    use embedded_alloc::LlffHeap;

    /// `embedded-alloc`'s linked-list first-fit heap with a size, a high-water mark and a
    /// failure counter. Use it as the `#[global_allocator]` of a board.
    pub struct MeteredLlff {
        heap: LlffHeap,
        size: AtomicUsize,
        peak: AtomicUsize,
    }

    impl core::fmt::Debug for MeteredLlff {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("MeteredLlff")
                .field("size", &self.size)
                .field("peak", &self.peak)
                .finish_non_exhaustive()
        }
    }

    impl MeteredLlff {
        /// An empty heap; `init` hands it its arena.
        pub const fn empty() -> Self {
            Self {
                heap: LlffHeap::empty(),
                size: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            }
        }

        /// Gives the heap its arena.
        ///
        /// # Safety
        /// `start..start + size` must be memory that nothing else uses for the rest of the
        /// program, and this must be called once, before the first allocation.
        pub unsafe fn init(&self, start: usize, size: usize) {
            self.size.store(size, Ordering::Relaxed);
            // SAFETY: forwarded from this function's contract.
            unsafe { self.heap.init(start, size) }
        }
    }

    // SAFETY: every call is forwarded to `LlffHeap`, a correct allocator; the counters are
    // only read and written, never used to decide anything about memory.
    unsafe impl GlobalAlloc for MeteredLlff {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded with the caller's guarantees about `layout`.
            let p = unsafe { self.heap.alloc(layout) };
            if !p.is_null() {
                self.peak.fetch_max(self.heap.used(), Ordering::Relaxed);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded with the caller's guarantees (`ptr` came from `alloc`).
            unsafe { self.heap.dealloc(ptr, layout) }
        }
    }

    impl crate::heap::HeapMeter for MeteredLlff {
        fn size(&self) -> usize {
            self.size.load(Ordering::Relaxed)
        }
        fn used(&self) -> usize {
            self.heap.used()
        }
        fn peak(&self) -> usize {
            self.peak.load(Ordering::Relaxed)
        }
        fn free(&self) -> usize {
            self.heap.free()
        }
    }
}
