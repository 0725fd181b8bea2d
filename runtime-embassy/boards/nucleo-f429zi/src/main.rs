//! Petrel gateway firmware for the ST NUCLEO-F429ZI (STM32F429ZI: Cortex-M4F, 2 MiB flash,
//! 192 KiB + 64 KiB CCM RAM, on-board LAN8742A PHY over RMII).
//!
//! The board part only: clocks (168 MHz from the ST-LINK's 8 MHz clock), the embassy-stm32
//! Ethernet driver and RNG, the heap arena and embassy-net's runner. Everything MQTT is
//! `runtime-embassy`'s shell, configured by `runtime-embassy/gateway.toml`, exactly as on the
//! LM3S6965. Built in CI; not run there (no hardware).
//!
//! Deliberately not here: DHCP (static address from gateway.toml), a console (logs are
//! discarded; attach defmt/RTT when debugging on hardware), a watchdog.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use cortex_m_rt::entry;
use embassy_executor::{Executor, Spawner};
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::Rng;
use embassy_stm32::time::Hertz;
use embassy_stm32::{bind_interrupts, eth, rng, Config};
use runtime_embassy::config::{ADDRESS, CLIENTS, GATEWAY, HEAP_SIZE, MAC, PREFIX_LEN};
use runtime_embassy::heap::MeteredLlff;
use static_cell::{ConstStaticCell, StaticCell};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<RNG>;
});

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

/// Sockets of the network stack: the clients, the one that refuses a client too many, and
/// the uplink.
const SOCKETS: usize = CLIENTS + 2;

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

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    // TODO(hardware): report through defmt/RTT and reset through the watchdog.
    loop {
        cortex_m::asm::wfi();
    }
}

#[entry]
fn main() -> ! {
    init_heap();
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor = EXECUTOR.init(Executor::new());
    executor.run(setup)
}

fn clocks() -> Config {
    use embassy_stm32::rcc::{
        AHBPrescaler, APBPrescaler, Hse, HseMode, Pll, PllMul, PllPDiv, PllPreDiv, PllQDiv,
        PllSource, Sysclk,
    };
    let mut config = Config::default();
    // 8 MHz from the ST-LINK (bypass) -> PLL -> 168 MHz SYSCLK, 48 MHz for the RNG.
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2),
        divq: Some(PllQDiv::DIV7),
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

#[inline(never)]
fn setup(spawner: Spawner) {
    let p = embassy_stm32::init(clocks());

    let mut rng = Rng::new(p.RNG, Irqs);
    let mut seed = [0u8; 8];
    rng.fill_bytes(&mut seed);
    let seed = u64::from_le_bytes(seed);

    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    // NUCLEO-F429ZI RMII pins (UM1974): REF_CLK PA1, CRS_DV PA7, RXD0 PC4, RXD1 PC5,
    // TXD0 PG13, TXD1 PB13, TX_EN PG11; MDIO PA2, MDC PC1.
    let device: Device = Ethernet::new(
        PACKETS.init(PacketQueue::<4, 4>::new()),
        p.ETH,
        Irqs,
        p.PA1,
        p.PA7,
        p.PC4,
        p.PC5,
        p.PG13,
        p.PB13,
        p.PG11,
        MAC,
        p.ETH_SMA,
        p.PA2,
        p.PC1,
    );

    let [a, b, c, d] = ADDRESS;
    let [ga, gb, gc, gd] = GATEWAY;
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), PREFIX_LEN),
        gateway: Some(Ipv4Address::new(ga, gb, gc, gd)),
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    let resources = RESOURCES.init_with(StackResources::new);
    let (stack, runner) = embassy_net::new(device, config, resources, seed);

    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => panic!("net task already running"),
    }
    runtime_embassy::start(spawner, stack, &HEAP, seed.rotate_left(17));
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Device>) -> ! {
    runner.run().await
}
