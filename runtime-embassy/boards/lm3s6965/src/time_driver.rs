//! embassy-time driver on the Cortex-M SysTick.
//!
//! SysTick runs from the core clock (QEMU's lm3s6965evb wires no SysTick reference clock, so
//! CLKSOURCE must be the processor clock) and interrupts every 1 ms. Each interrupt advances a
//! 64-bit tick count and, when the earliest deadline has passed, runs the timer queue.
//! The tick rate is 1 kHz (`tick-hz-1_000`): MQTT keep-alives and TCP timers need no finer
//! resolution, and a periodic 1 kHz interrupt is cheap at 50 MHz.
//!
//! Not done here: tickless idle (reprogramming SysTick to the next deadline). The 24-bit
//! SysTick would cap a sleep at ~335 ms at 50 MHz anyway; a GPTM one-shot is the way if power
//! ever matters.

use core::cell::RefCell;
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// SysTick interrupts per second; must match the `tick-hz-*` feature of embassy-time-driver.
pub const TICK_HZ: u32 = 1_000;
const _: () = assert!(embassy_time_driver::TICK_HZ == TICK_HZ as u64);

struct State {
    /// Ticks since `init`; 64 bits never wrap (5.8e8 years at 1 kHz).
    ticks: u64,
    /// Earliest deadline in the queue (`u64::MAX`: none).
    alarm: u64,
    queue: Queue,
}

struct SysTickDriver {
    state: Mutex<RefCell<State>>,
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        // Before `init` this is 0 and stays 0: monotonic, as the trait requires.
        critical_section::with(|cs| self.state.borrow_ref(cs).ticks)
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        critical_section::with(|cs| {
            let mut state = self.state.borrow_ref_mut(cs);
            let state = &mut *state;
            if state.queue.schedule_wake(at, waker) {
                // Wakes anything already due (including `waker` if `at` has passed).
                state.alarm = state.queue.next_expiration(state.ticks);
            }
        });
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    state: Mutex::new(RefCell::new(State { ticks: 0, alarm: u64::MAX, queue: Queue::new() })),
});

/// Starts the 1 kHz tick. `core_hz` is the clock returned by `board::init_clocks`.
pub fn init(mut syst: SYST, core_hz: u32) {
    // 50 MHz / 1 kHz = 50_000, well inside SysTick's 24-bit reload.
    let reload = (core_hz / TICK_HZ).saturating_sub(1).min(0x00FF_FFFF);
    syst.disable_counter();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(reload);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let mut state = DRIVER.state.borrow_ref_mut(cs);
        let state = &mut *state;
        state.ticks += 1;
        if state.ticks >= state.alarm {
            state.alarm = state.queue.next_expiration(state.ticks);
        }
    });
}
