//! Petrel gateway firmware for the TI Stellaris LM3S6965 (Cortex-M3, 256 KiB flash, 64 KiB
//! RAM, on-chip Ethernet), as modelled by `qemu-system-arm -M lm3s6965evb`.
//!
//! The board part: clocks, console, SysTick time driver, the Ethernet driver, the WFI
//! executor, the heap arena and embassy-net's runner. Everything MQTT (the broker, the
//! client sockets, the uplink bridge) is `runtime-embassy`'s shell, configured at build time
//! by `runtime-embassy/gateway.toml`.
//!
//! Deliberately not here: DHCP (static address from gateway.toml), IPv6, a hardware RNG
//! (the chip has none), the PHY (see `enet`).

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
#[cfg(not(feature = "dhcp"))]
use embassy_net::{Ipv4Address, Ipv4Cidr, StaticConfigV4};
use embassy_net::{Runner, StackResources};
use embassy_time::Duration;
#[cfg(not(feature = "dhcp"))]
use runtime_embassy::config::GATEWAY;
use runtime_embassy::config::{ADDRESS, CLIENTS, HEAP_SIZE, MAC, PREFIX_LEN};
use runtime_embassy::heap::MeteredLlff;
use static_cell::{ConstStaticCell, StaticCell};

use crate::board::log;
use crate::enet::Enet;

/// Sockets of the network stack: the clients, the one that refuses a client too many, the
/// uplink, and the DHCP client's if enabled.
const SOCKETS: usize = CLIENTS + 2 + cfg!(feature = "dhcp") as usize;

/// Period of the board's health line (stack, NIC error counters).
const STATS_PERIOD: Duration = Duration::from_secs(30);

#[global_allocator]
static HEAP: MeteredLlff = MeteredLlff::empty();

/// Hands the heap arena to the allocator. Called once, before anything allocates.
fn init_heap() {
    static ARENA: ConstStaticCell<[u8; HEAP_SIZE]> = ConstStaticCell::new([0; HEAP_SIZE]);
    let arena = ARENA.take();
    // SAFETY: `arena` is a `&'static mut` nobody else can reach (`take` panics on a second
    // call), so the allocator owns that memory for the rest of the program; this is the only
    // `init` call and it precedes every allocation.
    unsafe { HEAP.init(arena.as_mut_ptr() as usize, HEAP_SIZE) };
}

fn console_line(args: core::fmt::Arguments<'_>) {
    board::log_line(args);
}

#[cortex_m_rt::entry]
fn main() -> ! {
    board::paint_stack();
    init_heap();

    let core_hz = board::init_clocks();
    board::init_console(core_hz);
    log!(
        "petrel-gateway {} on LM3S6965, core {} Hz",
        env!("CARGO_PKG_VERSION"),
        core_hz
    );

    let Some(core) = cortex_m::Peripherals::take() else {
        panic!("core peripherals already taken");
    };
    time_driver::init(core.SYST, core_hz);
    runtime_embassy::set_sink(console_line);

    executor::run(|spawner| setup(spawner, core_hz))
}

/// Brings up the network and the gateway. Runs once, inside the executor, and is kept out
/// of line so its frame is popped before the first poll instead of staying reserved under
/// the executor loop for ever.
#[inline(never)]
fn setup(spawner: Spawner, core_hz: u32) {
    let Some(nic) = Enet::new(MAC, core_hz) else {
        panic!("Ethernet controller already taken");
    };
    let config = net_config();
    static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    let resources = RESOURCES.init_with(StackResources::new);
    let seed = random_seed();
    let (stack, runner) = embassy_net::new(nic, config, resources, seed);

    spawn(spawner, net_task(runner));
    spawn(spawner, stats_task());
    runtime_embassy::start(spawner, stack, &HEAP, seed.rotate_left(17));
    if cfg!(feature = "dhcp") {
        log!("address from DHCP, heap {} B", HEAP_SIZE);
    } else {
        let [a, b, c, d] = ADDRESS;
        log!(
            "address {}.{}.{}.{}/{}, heap {} B",
            a,
            b,
            c,
            d,
            PREFIX_LEN,
            HEAP_SIZE
        );
    }
}

/// The static address of gateway.toml.
#[cfg(not(feature = "dhcp"))]
fn net_config() -> embassy_net::Config {
    let [a, b, c, d] = ADDRESS;
    let [ga, gb, gc, gd] = GATEWAY;
    embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), PREFIX_LEN),
        gateway: Some(Ipv4Address::new(ga, gb, gc, gd)),
        dns_servers: heapless::Vec::new(),
    })
}

/// An address from DHCP (feature `dhcp`).
#[cfg(feature = "dhcp")]
fn net_config() -> embassy_net::Config {
    embassy_net::Config::dhcpv4(embassy_net::DhcpConfig::default())
}

/// Spawns a task; pool exhaustion is a programming error, not a run-time condition.
fn spawn<S, E>(spawner: Spawner, token: Result<embassy_executor::SpawnToken<S>, E>) {
    match token {
        Ok(token) => spawner.spawn(token),
        Err(_) => panic!("task pool exhausted"),
    }
}

/// Seed for smoltcp (TCP initial sequence numbers, ephemeral ports) and the broker's hashes.
///
/// The LM3S6965 has no RNG. This mixes the MAC with the SysTick phase at boot, which is not
/// secret. TODO(phase 2, entropy): gather ADC noise on silicon before exposing the gateway to
/// untrusted networks.
fn random_seed() -> u64 {
    let mac = MAC.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let phase = u64::from(cortex_m::peripheral::SYST::get_current());
    (mac ^ (phase << 40) ^ embassy_time::Instant::now().as_ticks())
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Logs the board's resource use now and then (the gateway logs its own line).
#[embassy_executor::task]
async fn stats_task() -> ! {
    loop {
        embassy_time::Timer::after(STATS_PERIOD).await;
        let (stack_used, stack_size) = board::stack_usage();
        let s = &enet::STATS;
        let get = |c: &core::sync::atomic::AtomicU32| c.load(core::sync::atomic::Ordering::Relaxed);
        log!(
            "board: uptime {} s, stack {}/{} B, rx overrun {} err {} resync {} oversize {}, tx err {} dropped {}",
            embassy_time::Instant::now().as_secs() as u32,
            stack_used,
            stack_size,
            get(&s.rx_overrun),
            get(&s.rx_error),
            get(&s.rx_resync),
            get(&s.rx_oversize),
            get(&s.tx_error),
            get(&s.tx_dropped),
        );
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Enet>) -> ! {
    runner.run().await
}
