//! Petrel gateway firmware for the TI Stellaris LM3S6965 (Cortex-M3, 256 KiB flash, 64 KiB
//! RAM, on-chip Ethernet), as modelled by `qemu-system-arm -M lm3s6965evb`.
//!
//! Phase 1 (this file): board bring-up and networking. A TCP echo server on port 1883 with
//! [`SOCKETS`] concurrent connections proves the Ethernet driver, the time driver, the
//! executor and the heap. The MQTT broker (`broker-core`) replaces the echo later; everything
//! except `echo_task` stays.
//!
//! Deliberately not here: DHCP (static 192.168.69.2/24), IPv6, a hardware RNG (the chip has
//! none), the PHY (see `enet`).

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

mod board;
mod enet;
mod executor;
mod time_driver;

use embassy_executor::Spawner;
use embassy_net::tcp::{self, TcpSocket};
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_time::{with_timeout, Duration};
use embedded_alloc::LlffHeap as Heap;
use static_cell::StaticCell;

use crate::board::log;
use crate::enet::Enet;

/// Heap for `alloc` users (the broker core, later).
const HEAP_SIZE: usize = 24 * 1024;
/// Concurrent TCP connections (one task and one socket each).
const SOCKETS: usize = 8;
/// Per-socket receive buffer; also the advertised TCP window.
const SOCKET_RX: usize = 1024;
/// Per-socket transmit buffer.
const SOCKET_TX: usize = 1024;
/// Copy buffer of each echo task.
const ECHO_CHUNK: usize = 256;
/// MQTT's port.
const PORT: u16 = 1883;
/// A connection whose peer sends nothing (not even keep-alive ACKs) for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keep-alive probe interval, so live but quiet peers survive `IDLE_TIMEOUT`.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How long a closing socket may take to get its FIN or RST out before it is reused.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Period of the console's health line (heap, stack, NIC error counters).
const STATS_PERIOD: Duration = Duration::from_secs(30);

/// Locally administered (bit 1 of the first octet), unicast.
const MAC: [u8; 6] = [0x02, 0x50, 0x45, 0x54, 0x52, 0x4C];
const ADDRESS: Ipv4Address = Ipv4Address::new(192, 168, 69, 2);
const PREFIX_LEN: u8 = 24;
const GATEWAY: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// Hands the heap arena to the allocator. Called once, before anything allocates.
fn init_heap() {
    static ARENA: StaticCell<[u8; HEAP_SIZE]> = StaticCell::new();
    // `uninit` (no stack temporary) panics on a second call: the arena is handed out once.
    let arena = ARENA.uninit();
    // SAFETY: `arena` is a `&'static mut` nobody else can reach, so the allocator owns that
    // memory for the rest of the program; this is the only `init` call and it precedes every
    // allocation.
    unsafe { HEAP.init(arena.as_mut_ptr() as usize, HEAP_SIZE) };
}

#[cortex_m_rt::entry]
fn main() -> ! {
    board::paint_stack();
    init_heap();

    let core_hz = board::init_clocks();
    board::init_console(core_hz);
    log!("petrel-gateway {} on LM3S6965, core {} Hz", env!("CARGO_PKG_VERSION"), core_hz);

    let Some(core) = cortex_m::Peripherals::take() else {
        panic!("core peripherals already taken");
    };
    time_driver::init(core.SYST, core_hz);

    // Prove the allocator is wired up (and keep the cost visible).
    let probe = core::hint::black_box(alloc::vec![0u8; 64]);
    log!("heap: {} B, {} B used by probe", HEAP_SIZE, HEAP.used());
    drop(probe);

    executor::run(|spawner| setup(spawner, core_hz))
}

/// Brings up the network and spawns every task. Runs once, inside the executor, and is kept
/// out of line so its frame (the stack, the runner) is popped before the first poll instead of
/// staying reserved under the executor loop for ever.
#[inline(never)]
fn setup(spawner: Spawner, core_hz: u32) {
    let Some(nic) = Enet::new(MAC, core_hz) else {
        panic!("Ethernet controller already taken");
    };
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(ADDRESS, PREFIX_LEN),
        gateway: Some(GATEWAY),
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    let resources = RESOURCES.init_with(StackResources::new);
    let (stack, runner) = embassy_net::new(nic, config, resources, random_seed());

    spawn(spawner, net_task(runner));
    for id in 0..SOCKETS {
        spawn(spawner, echo_task(stack, id));
    }
    spawn(spawner, stats_task());
    log!("listening on {}:{} ({} sockets)", ADDRESS, PORT, SOCKETS);
}

/// Spawns a task; pool exhaustion is a programming error, not a run-time condition.
fn spawn<S, E: core::fmt::Debug>(
    spawner: Spawner,
    token: Result<embassy_executor::SpawnToken<S>, E>,
) {
    match token {
        Ok(token) => spawner.spawn(token),
        Err(e) => panic!("task pool exhausted: {e:?}"),
    }
}

/// Seed for smoltcp (TCP initial sequence numbers, ephemeral ports).
///
/// The LM3S6965 has no RNG. This mixes the MAC with the SysTick phase at boot, which is not
/// secret. TODO(phase 2, entropy): gather ADC noise on silicon before exposing the gateway to
/// untrusted networks.
fn random_seed() -> u64 {
    let mac = MAC.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let phase = u64::from(cortex_m::peripheral::SYST::get_current());
    (mac ^ (phase << 40) ^ embassy_time::Instant::now().as_ticks()).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Logs resource use now and then, so RAM headroom is visible on a running gateway.
#[embassy_executor::task]
async fn stats_task() -> ! {
    loop {
        let (stack_used, stack_size) = board::stack_usage();
        let s = &enet::STATS;
        let get = |c: &core::sync::atomic::AtomicU32| c.load(core::sync::atomic::Ordering::Relaxed);
        log!(
            "stats: uptime {} s, heap {}/{} B, stack {}/{} B, rx overrun {} err {} resync {} oversize {}, tx err {} dropped {}",
            embassy_time::Instant::now().as_secs(),
            HEAP.used(),
            HEAP_SIZE,
            stack_used,
            stack_size,
            get(&s.rx_overrun),
            get(&s.rx_error),
            get(&s.rx_resync),
            get(&s.rx_oversize),
            get(&s.tx_error),
            get(&s.tx_dropped),
        );
        embassy_time::Timer::after(STATS_PERIOD).await;
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Enet>) -> ! {
    runner.run().await
}

#[embassy_executor::task(pool_size = SOCKETS)]
async fn echo_task(stack: Stack<'static>, id: usize) -> ! {
    let mut rx = [0u8; SOCKET_RX];
    let mut tx = [0u8; SOCKET_TX];
    let mut chunk = [0u8; ECHO_CHUNK];
    loop {
        let mut socket = TcpSocket::new(stack, &mut rx, &mut tx);
        socket.set_timeout(Some(IDLE_TIMEOUT));
        socket.set_keep_alive(Some(KEEP_ALIVE));
        if let Err(e) = socket.accept(PORT).await {
            log!("[{}] accept: {:?}", id, e);
            continue;
        }
        match echo(&mut socket, &mut chunk).await {
            // Peer closed its half: close ours once the echoed bytes are out.
            Ok(()) => socket.close(),
            Err(_) => socket.abort(),
        }
        // Let the FIN or RST leave before the socket is dropped; bounded, because a vanished
        // peer never ACKs.
        if with_timeout(CLOSE_GRACE, socket.flush()).await.is_err() {
            socket.abort();
            let _ = with_timeout(CLOSE_GRACE, socket.flush()).await;
        }
    }
}

/// Echoes until the peer closes (`Ok`) or the connection fails (`Err`).
async fn echo(socket: &mut TcpSocket<'_>, chunk: &mut [u8]) -> Result<(), tcp::Error> {
    loop {
        let n = socket.read(chunk).await?;
        if n == 0 {
            return Ok(());
        }
        let mut pending = chunk.get(..n).unwrap_or_default();
        while !pending.is_empty() {
            let written = socket.write(pending).await?;
            if written == 0 {
                return Err(tcp::Error::ConnectionReset);
            }
            pending = pending.get(written..).unwrap_or_default();
        }
    }
}
