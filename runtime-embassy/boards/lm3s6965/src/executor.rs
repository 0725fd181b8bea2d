//! Thread-mode embassy executor that idles with `WFI` instead of `WFE`.
//!
//! embassy's stock cortex-m thread executor (`executor-thread`) sleeps with `WFE` and wakes
//! with `SEV`. QEMU implements `WFE` on M-profile as a mere yield, so the stock executor spins
//! a host core at 100 % while the gateway is idle. `WFI` halts QEMU's vCPU until an interrupt
//! and sleeps just as well on silicon.
//!
//! Race-free sleep: the "work pending" flag is checked with PRIMASK set and `WFI` executed
//! before PRIMASK is cleared. An interrupt that arrives in between stays pending, and a pending
//! interrupt ends `WFI` even while masked (ARMv7-M ARM B1.5.19; QEMU's NVIC also raises its
//! output regardless of PRIMASK), so the wake-up is never lost.

use core::sync::atomic::{AtomicBool, Ordering};

use embassy_executor::{raw, Spawner};
use static_cell::StaticCell;

/// Set when a task is woken; cleared by the run loop before it decides to sleep.
static WORK: AtomicBool = AtomicBool::new(true);

/// Called by embassy whenever a task of this executor is woken (from a task or an interrupt).
#[export_name = "__pender"]
fn pender(_context: *mut ()) {
    WORK.store(true, Ordering::Release);
}

/// Creates the executor, lets `init` spawn the first tasks, then runs forever.
pub fn run(init: impl FnOnce(Spawner)) -> ! {
    static EXECUTOR: StaticCell<raw::Executor> = StaticCell::new();
    let executor: &'static raw::Executor = EXECUTOR.init(raw::Executor::new(core::ptr::null_mut()));
    init(executor.spawner());
    loop {
        // SAFETY: `poll` is never re-entered: this loop is its only caller, it runs in thread
        // mode, and the pender above only sets a flag.
        unsafe { executor.poll() };
        cortex_m::interrupt::free(|_| {
            if !WORK.swap(false, Ordering::AcqRel) {
                cortex_m::asm::wfi();
            }
        });
    }
}
