//! `memory_limit`: a thread samples the process's resident memory every few milliseconds
//! and tells every shard when it crosses the limit. At the limit the core drops QoS 0
//! messages and stops reading QoS 1/2 publishers, whose data then waits in the kernel's
//! socket buffers, not in ours. The limit is released once the memory in use (the
//! allocator's count: freed memory is not always returned to the kernel at once) is back
//! under 90% of it; what the allocator holds free is then returned (`malloc_trim`).

use super::shard::Inbox;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The sampling thread.
pub struct Watch {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

/// Heap memory in use, bytes (glibc's count), and a chance to return free memory.
#[cfg(target_env = "gnu")]
fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    Some(m.uordblks as u64 + m.hblkhd as u64)
}

#[cfg(not(target_env = "gnu"))]
fn heap_in_use() -> Option<u64> {
    rss_bytes()
}

fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident memory of this process, bytes (`/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

impl Watch {
    pub fn spawn(limit: u64, shards: Vec<async_channel::Sender<Inbox>>) -> std::io::Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("petrel-memory".into())
            .spawn(move || {
                let mut on = false;
                let low = limit / 10 * 9;
                while !flag.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_bytes() {
                        let next = if on {
                            // Released once the heap in use is under 90% and what the
                            // allocator held free is back with the kernel: RSS under the
                            // cap too (else it would switch on again at once).
                            heap_in_use().is_none_or(|used| used > low) || {
                                trim();
                                rss_bytes().is_none_or(|r| r > limit)
                            }
                        } else {
                            rss > limit
                        };
                        if next != on {
                            on = next;
                            if on {
                                tracing::warn!(
                                    "memory_limit reached ({rss} B resident): QoS 0 is dropped and QoS 1/2 publishers wait"
                                );
                            } else {
                                tracing::info!("memory back under the limit ({rss} B resident)");
                            }
                            for s in &shards {
                                let _ = s.try_send(Inbox::MemoryPressure(on));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })?;
        Ok(Watch { stop, handle })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}
