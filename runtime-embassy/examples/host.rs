//! The gateway shell on Linux: embassy-net over a TAP device (`embassy-net-tuntap`) with
//! embassy-executor's std platform, for fast end-to-end tests and debugging.
//!
//! ```sh
//! ip tuntap add name tap0 mode tap && ip addr add 192.168.69.1/24 dev tap0 && ip link set tap0 up
//! cargo run -p runtime-embassy --example host -- tap0     # the stack takes 192.168.69.2
//! ```
//!
//! The broker's heap is the process heap, metered by a counting allocator against a budget
//! of twice `memory.heap` (pointers and most structures are twice as large on a 64-bit host
//! as on the 32-bit boards), so the admission gates behave as on a board.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use embassy_executor::{Executor, Spawner};
use embassy_net::{Ipv4Address, Ipv4Cidr, Runner, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use runtime_embassy::config::{ADDRESS, CLIENTS, GATEWAY, HEAP_SIZE, MAC, PREFIX_LEN};
use runtime_embassy::heap::HeapMeter;
use static_cell::StaticCell;

/// Counts the bytes allocated through the process's allocator.
struct Counting;

static USED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = USED.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from `alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        USED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The broker's share of the process heap: what was allocated since start-up.
struct HostMeter {
    baseline: AtomicUsize,
}

impl HeapMeter for HostMeter {
    fn size(&self) -> usize {
        2 * HEAP_SIZE
    }
    fn used(&self) -> usize {
        USED.load(Ordering::Relaxed)
            .saturating_sub(self.baseline.load(Ordering::Relaxed))
    }
    fn peak(&self) -> usize {
        PEAK.load(Ordering::Relaxed)
            .saturating_sub(self.baseline.load(Ordering::Relaxed))
    }
}

static METER: HostMeter = HostMeter {
    baseline: AtomicUsize::new(0),
};

fn print_line(args: std::fmt::Arguments<'_>) {
    println!("{args}");
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, TunTapDevice>) -> ! {
    runner.run().await
}

fn setup(spawner: Spawner, tap: &str) {
    let mut device = match TunTapDevice::new(tap) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("host: cannot open TAP device {tap}: {e}");
            std::process::exit(2);
        }
    };
    device.set_hardware_address(MAC);
    let [a, b, c, d] = ADDRESS;
    let [ga, gb, gc, gd] = GATEWAY;
    let config = embassy_net::Config::ipv4_static(StaticConfigV4 {
        address: Ipv4Cidr::new(Ipv4Address::new(a, b, c, d), PREFIX_LEN),
        gateway: Some(Ipv4Address::new(ga, gb, gc, gd)),
        dns_servers: heapless::Vec::new(),
    });
    static RESOURCES: StaticCell<StackResources<{ CLIENTS + 2 }>> = StaticCell::new();
    let resources = RESOURCES.init_with(StackResources::new);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let (stack, runner) = embassy_net::new(device, config, resources, seed);
    match net_task(runner) {
        Ok(token) => spawner.spawn(token),
        Err(_) => panic!("net task already running"),
    }
    METER
        .baseline
        .store(USED.load(Ordering::Relaxed), Ordering::Relaxed);
    runtime_embassy::start(spawner, stack, &METER, seed.rotate_left(17));
    println!("host: gateway on {tap} at {a}.{b}.{c}.{d}/{PREFIX_LEN}");
}

fn main() {
    let tap = std::env::args().nth(1).unwrap_or_else(|| "tap0".into());
    runtime_embassy::set_sink(print_line);
    static EXECUTOR: StaticCell<Executor> = StaticCell::new();
    let executor = EXECUTOR.init(Executor::new());
    executor.run(|spawner| setup(spawner, &tap));
}
