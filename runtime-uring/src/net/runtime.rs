//! Building a thread's monoio runtime: io_uring where the kernel allows it, else epoll.

use anyhow::{bail, Context};
use std::future::Future;

/// Which monoio driver a thread runs on (`--driver` of the broker and the proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Driver {
    /// io_uring when the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring only (fails where unavailable).
    Uring,
    /// epoll only.
    Epoll,
}

impl Driver {
    /// Whether to run on io_uring here; an error when io_uring was asked for and the
    /// kernel does not allow it.
    pub fn use_uring(self) -> anyhow::Result<bool> {
        let uring = monoio::utils::detect_uring();
        Ok(match self {
            Driver::Auto => uring,
            Driver::Uring if !uring => bail!("io_uring is not available on this system"),
            Driver::Uring => true,
            Driver::Epoll => false,
        })
    }
}

/// Runs `body` to completion on this thread, on an io_uring runtime when `use_uring`, else
/// on epoll.
pub fn block_on<F: Future>(use_uring: bool, body: F) -> anyhow::Result<F::Output> {
    if use_uring {
        let build = |flags: Option<io_uring::Builder>| {
            let mut b = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(4096);
            if let Some(f) = flags {
                b = b.uring_builder(f);
            }
            b.enable_timer().build()
        };
        let mut rt = build(Some(setup_flags()))
            .or_else(|e| {
                tracing::debug!("io_uring without COOP_TASKRUN ({e})");
                build(None)
            })
            .context("cannot start an io_uring runtime")?;
        Ok(rt.block_on(body))
    } else {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .context("cannot start an epoll runtime")?;
        Ok(rt.block_on(body))
    }
}

/// `COOP_TASKRUN`: a completion for a thread that is running is left for its next entry
/// into the kernel instead of interrupting it (an inter-processor interrupt, which on a VM
/// is a trip through the hypervisor paid by whoever made the socket ready: often the
/// client). monoio enters the kernel once per round of its run loop (a submit, or the wait
/// when idle), so a completion waits at most one round; a sleeping thread is still woken.
/// Kernels before 5.19 refuse the flag; `block_on` then builds the ring without it.
fn setup_flags() -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    b.setup_coop_taskrun();
    b
}
