//! `runtime-embassy`: Petrel's gateway shell for microcontrollers, the same on every board.
//!
//! What it does: runs one `broker-core` shard behind a fixed number of embassy-net TCP
//! sockets (MQTT on port 1883), answers clients beyond that number with a refusing CONNACK,
//! drives the core's timers, and bridges selected topics to an upstream broker through a
//! `broker_core::client::Client` (see [`bridge`]). Every buffer is sized at build time from
//! `gateway.toml` ([`config`]); the core's heap comes from a fixed arena whose exhaustion is
//! prevented by admission gates ([`guard`]), because `alloc` cannot recover from it.
//!
//! What it deliberately does not do: set up a board (clocks, NIC driver, time driver, the
//! network stack's runner and its address: static from `gateway.toml`, or DHCP with the
//! LM3S6965 board's `dhcp` feature; the allocator's arena), TLS, persistence across resets.
//! A board crate does the first part and calls [`start`]. Logging goes to a sink the board
//! registers ([`set_sink`]), or to defmt with the `defmt` feature.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

pub mod bridge;
pub mod config;
pub mod guard;
pub mod heap;
pub mod listener;
pub mod log;
pub mod shell;

use crate::config::{CLIENTS, PORT, UPLINK_ENABLED};
use crate::guard::{get, COUNTERS};
use crate::heap::HeapMeter;
use crate::log::log;
use crate::shell::{now, to_embassy, Shell};
use bridge::BridgeBuffers;
use broker_core::Broker;
use embassy_executor::{SpawnToken, Spawner};
use embassy_futures::select::select;
use embassy_net::Stack;
use embassy_time::{Duration, Timer};
use listener::SlotBuffers;
use static_cell::{ConstStaticCell, StaticCell};

pub use log::{set_sink, LogFn};

/// Period of the gateway's stats line on the log.
pub const STATS_PERIOD: Duration = Duration::from_secs(30);

/// Every client slot's buffers, in `.bss`.
static SLOT_BUFFERS: ConstStaticCell<[SlotBuffers; CLIENTS]> =
    ConstStaticCell::new([const { SlotBuffers::new() }; CLIENTS]);
/// The bridge's buffers, in `.bss`.
static BRIDGE_BUFFERS: ConstStaticCell<BridgeBuffers> = ConstStaticCell::new(BridgeBuffers::new());

/// Starts the gateway on `stack`: the broker, the client sockets, the refusing socket, the
/// timer task, the bridge (if `uplink.enabled`) and the stats line. `meter` reads the heap
/// the broker allocates from; `seed` seeds the broker's hash maps. Call once; the network
/// stack's runner is the caller's task.
pub fn start(spawner: Spawner, stack: Stack<'static>, meter: &'static dyn HeapMeter, seed: u64) {
    guard::set_meter(meter);
    let broker = Broker::new(config::broker_config(seed), guard::policy());
    static SHELL: StaticCell<Shell> = StaticCell::new();
    let shell: &'static Shell = SHELL.init(Shell::new(broker));

    let Some(slots) = SLOT_BUFFERS.try_take() else {
        panic!("runtime_embassy::start called twice");
    };
    for (index, bufs) in slots.iter_mut().enumerate() {
        spawn(spawner, listener::client_task(shell, stack, index, bufs));
    }
    spawn(spawner, listener::refuse_task(shell, stack));
    spawn(spawner, timer_task(shell));
    if UPLINK_ENABLED {
        let bufs = BRIDGE_BUFFERS.take();
        spawn(spawner, bridge::bridge_task(shell, stack, bufs));
    }
    spawn(spawner, stats_task(shell));
    log!("gateway: MQTT on port {} ({} clients)", PORT, CLIENTS);
}

/// Spawns a task; an exhausted pool is a programming error, not a run-time condition.
fn spawn<S, E>(spawner: Spawner, token: Result<SpawnToken<S>, E>) {
    match token {
        Ok(token) => spawner.spawn(token),
        Err(_) => panic!("task pool exhausted"),
    }
}

/// Calls `handle_timeout` at the broker's deadlines.
#[embassy_executor::task]
async fn timer_task(shell: &'static Shell) -> ! {
    loop {
        match shell.peek(|b| b.poll_timeout()) {
            Some(at) => {
                select(Timer::at(to_embassy(at)), shell.timer.wait()).await;
            }
            None => shell.timer.wait().await,
        }
        if shell
            .peek(|b| b.poll_timeout())
            .is_some_and(|at| at <= now())
        {
            shell.with_broker(|b, now| b.handle_timeout(now));
        }
        // `with_broker` signalled us; that wake-up is this very call.
        shell.timer.reset();
    }
}

/// Logs the gateway's resource use and counters now and then.
#[embassy_executor::task]
async fn stats_task(shell: &'static Shell) -> ! {
    loop {
        Timer::after(STATS_PERIOD).await;
        log_stats(shell);
    }
}

/// One stats line.
pub fn log_stats(shell: &Shell) {
    let (used, peak, size) = guard::meter().map_or((0, 0, 0), |m| (m.used(), m.peak(), m.size()));
    let (conns, sessions, retained, m) = shell.peek(|b| {
        (
            b.connection_count(),
            b.session_count(),
            b.retained_count(),
            b.metrics().clone(),
        )
    });
    let c = &COUNTERS;
    log!(
        "gateway: heap {}/{} B (peak {}), conns {}, sessions {}, retained {}, pub in {} out {}, \
         refused accept {} connect {} (heap {}) busy {} sub {} pub {}, dropped {}, \
         up fwd {} overflow {} qos0-down {} rejected {}, down fwd {} dropped {}, uplink conn {} fail {}",
        used,
        size,
        peak,
        conns,
        sessions,
        retained,
        // Shown modulo 2^32: u64 formatting costs flash on a 32-bit core.
        m.publish_received as u32,
        m.publish_sent as u32,
        get(&c.accept_refused_heap),
        // Every CONNACK refusal (sessions over `max_sessions`, authentication, heap).
        m.connects_refused as u32,
        get(&c.connect_refused_heap),
        get(&c.connect_refused_busy),
        get(&c.subscribe_refused_heap),
        get(&c.publish_refused_heap),
        get(&c.delivery_dropped),
        get(&c.up_forwarded),
        get(&c.up_overflow),
        get(&c.up_dropped_qos0),
        get(&c.up_rejected),
        get(&c.down_forwarded),
        get(&c.down_dropped),
        get(&c.uplink_connects),
        get(&c.uplink_failures),
    );
}
