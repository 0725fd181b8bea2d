//! LM3S6965 board support that no HAL crate provides: register access, the system clock,
//! the UART0 console, the device part of the vector table and the panic handler.
//!
//! Deliberately not here: a full PAC. Only the registers the gateway touches are named.

use core::fmt::{self, Write};
use core::ptr::{read_volatile, write_volatile};

use cortex_m::interrupt::InterruptNumber;

/// A 32-bit memory-mapped peripheral register.
///
/// The only way to build one is [`Reg::at`], whose contract makes every later volatile access
/// sound, so `read`/`write` are safe to call.
#[derive(Clone, Copy, Debug)]
pub struct Reg(usize);

impl Reg {
    /// # Safety
    /// `addr` must be the address of a 32-bit register of the LM3S6965 that may be read and
    /// written with word-sized volatile accesses at any time (the peripheral's clock gate only
    /// decides whether the access has an effect, it never faults).
    pub const unsafe fn at(addr: usize) -> Self {
        Reg(addr)
    }

    /// Volatile 32-bit read.
    #[inline(always)]
    pub fn read(self) -> u32 {
        // SAFETY: `Reg::at`'s contract: an aligned, always-accessible MMIO register.
        unsafe { read_volatile(self.0 as *const u32) }
    }

    /// Volatile 32-bit write.
    #[inline(always)]
    pub fn write(self, value: u32) {
        // SAFETY: `Reg::at`'s contract: an aligned, always-accessible MMIO register.
        unsafe { write_volatile(self.0 as *mut u32, value) }
    }

    /// Read-modify-write. Not atomic: callers that share a register with an interrupt handler
    /// run this inside a critical section.
    #[inline(always)]
    pub fn modify(self, f: impl FnOnce(u32) -> u32) {
        self.write(f(self.read()));
    }
}

/// Declares named registers at `base + offset`.
macro_rules! registers {
    ($base:expr; $($(#[$m:meta])* $name:ident = $off:expr;)*) => {
        $(
            $(#[$m])*
            // SAFETY: the address is a documented 32-bit register of the LM3S6965 (data sheet
            // DS-LM3S6965, register maps of the named peripheral).
            pub(crate) const $name: $crate::board::Reg = unsafe { $crate::board::Reg::at($base + $off) };
        )*
    };
}
pub(crate) use registers;

/// System control block (clocks and clock gating).
mod sysctl {
    registers! { 0x400F_E000;
        /// Raw interrupt status: bit 6 PLLLRIS (PLL locked).
        RIS = 0x050;
        /// Masked interrupt status and clear (write 1 to clear).
        MISC = 0x058;
        /// Run-mode clock configuration.
        RCC = 0x060;
        /// Run-mode clock gating 1: bit 0 UART0.
        RCGC1 = 0x104;
        /// Run-mode clock gating 2: bit 0 GPIOA, bit 28 EMAC0, bit 30 EPHY0.
        RCGC2 = 0x108;
    }
}

const RCC_MOSCDIS: u32 = 1 << 0;
const RCC_OSCSRC_MASK: u32 = 0b11 << 4;
const RCC_XTAL_MASK: u32 = 0xF << 6;
const RCC_XTAL_8MHZ: u32 = 0xE << 6; // the EK-LM3S6965 board's crystal
const RCC_BYPASS: u32 = 1 << 11;
const RCC_OEN: u32 = 1 << 12;
const RCC_PWRDN: u32 = 1 << 13;
const RCC_USESYSDIV: u32 = 1 << 22;
const RCC_SYSDIV_MASK: u32 = 0xF << 23;
const PLLLRIS: u32 = 1 << 6;

/// Core clock with the PLL: 400 MHz VCO / 2 / (SYSDIV 3 + 1) = 50 MHz, the part's maximum.
pub const CORE_HZ_PLL: u32 = 50_000_000;
/// Core clock if the PLL does not lock: the 8 MHz crystal, undivided.
pub const CORE_HZ_XTAL: u32 = 8_000_000;

/// Clock gates (RCGC1/RCGC2 bits).
pub const RCGC1_UART0: u32 = 1 << 0;
pub const RCGC2_GPIOA: u32 = 1 << 0;
pub const RCGC2_EMAC0: u32 = 1 << 28;
pub const RCGC2_EPHY0: u32 = 1 << 30;

/// Switches the core to the PLL at 50 MHz and returns the core clock in Hz.
///
/// QEMU models the clock as 200 MHz / (SYSDIV + 1) whatever BYPASS and USESYSDIV say (so
/// 12.5 MHz after reset); programming SYSDIV = 3 gives 50 MHz both there and on silicon, so
/// timers and baud rates agree on both. QEMU raises PLLLRIS as soon as PWRDN is cleared.
pub fn init_clocks() -> u32 {
    use sysctl::{MISC, RCC, RIS};
    // Data sheet 6.3, "Initialization and Configuration": run from the raw oscillator first.
    let mut rcc = RCC.read();
    rcc |= RCC_BYPASS;
    rcc &= !RCC_USESYSDIV;
    RCC.write(rcc);

    rcc &= !(RCC_XTAL_MASK | RCC_OSCSRC_MASK | RCC_PWRDN | RCC_OEN | RCC_MOSCDIS);
    rcc |= RCC_XTAL_8MHZ; // OSCSRC = 0: main oscillator
    MISC.write(PLLLRIS);
    RCC.write(rcc);

    rcc = (rcc & !RCC_SYSDIV_MASK) | (3 << 23) | RCC_USESYSDIV;
    RCC.write(rcc);

    // The PLL locks within 0.5 ms on silicon; this bound is far beyond that even at 8 MHz.
    let mut locked = false;
    for _ in 0..100_000 {
        if RIS.read() & PLLLRIS != 0 {
            locked = true;
            break;
        }
    }
    if locked {
        RCC.write(rcc & !RCC_BYPASS);
        CORE_HZ_PLL
    } else {
        // Stay on the crystal, undivided.
        RCC.write(rcc & !RCC_USESYSDIV);
        CORE_HZ_XTAL
    }
}

/// Opens clock gates and waits the few cycles the data sheet asks before the peripheral's
/// registers may be touched.
pub fn enable_clocks(rcgc1: u32, rcgc2: u32) {
    use sysctl::{RCGC1, RCGC2};
    critical_section::with(|_| {
        RCGC1.modify(|v| v | rcgc1);
        RCGC2.modify(|v| v | rcgc2);
    });
    // Read-backs are the documented way to wait ("at least 3 system clocks").
    for _ in 0..3 {
        let _ = RCGC2.read();
    }
}

// ---------------------------------------------------------------------------------------------
// Console on UART0 (PA0/PA1). `qemu-system-arm -nographic` prints it on stdio.

mod uart0 {
    registers! { 0x4000_C000;
        DR = 0x000;
        FR = 0x018;
        IBRD = 0x024;
        FBRD = 0x028;
        LCRH = 0x02C;
        CTL = 0x030;
    }
}
mod gpioa {
    registers! { 0x4000_4000;
        AFSEL = 0x420;
        DEN = 0x51C;
    }
}

const UART_FR_TXFF: u32 = 1 << 5;
const UART_LCRH_FEN: u32 = 1 << 4;
const UART_LCRH_WLEN8: u32 = 0b11 << 5;
const UART_CTL_EN: u32 = (1 << 0) | (1 << 8) | (1 << 9); // UARTEN | TXE | RXE
/// Console baud rate.
pub const BAUD: u32 = 115_200;

/// Sets up UART0 as an 8N1 console at [`BAUD`].
pub fn init_console(core_hz: u32) {
    enable_clocks(RCGC1_UART0, RCGC2_GPIOA);
    gpioa::AFSEL.modify(|v| v | 0b11);
    gpioa::DEN.modify(|v| v | 0b11);
    uart0::CTL.write(0);
    // Divisor in 1/64ths: core_hz / (16 * baud) * 64 = core_hz * 4 / baud.
    let div64 = core_hz.saturating_mul(4) / BAUD;
    uart0::IBRD.write(div64 / 64);
    uart0::FBRD.write(div64 % 64);
    uart0::LCRH.write(UART_LCRH_WLEN8 | UART_LCRH_FEN);
    uart0::CTL.write(UART_CTL_EN);
}

/// Blocking writer to UART0.
#[derive(Debug)]
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            while uart0::FR.read() & UART_FR_TXFF != 0 {}
            uart0::DR.write(u32::from(b));
        }
        Ok(())
    }
}

/// Writes one line to the console; whole lines, interrupts masked so they do not interleave.
pub fn log_line(args: fmt::Arguments<'_>) {
    critical_section::with(|_| {
        let _ = Console.write_fmt(args);
        let _ = Console.write_str("\r\n");
    });
}

/// `log!("fmt", args..)`: one console line.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::board::log_line(format_args!($($arg)*))
    };
}
pub(crate) use log;

// ---------------------------------------------------------------------------------------------
// Interrupts.

/// Device interrupt numbers that the firmware enables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Irq {
    /// Ethernet controller (MAC and PHY).
    Ethernet = 42,
}

// SAFETY: each variant is a valid device interrupt number of the LM3S6965 (data sheet table
// 2-9, "Interrupts"), all below the table length of `__INTERRUPTS`.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self as u16
    }
}

/// Number of device interrupt vectors in the table (the LM3S6965 has IRQs 0..=42 that matter
/// here; later ones are never enabled).
const N_IRQ: usize = Irq::Ethernet as usize + 1;

extern "C" {
    /// cortex-m-rt's default handler (`DefaultHandler_` unless the application overrides it).
    fn DefaultHandler();
}

/// Device part of the vector table, placed right after cortex-m-rt's exception vectors.
#[link_section = ".vector_table.interrupts"]
#[no_mangle]
#[used]
pub static __INTERRUPTS: [unsafe extern "C" fn(); N_IRQ] = {
    let mut table = [DefaultHandler as unsafe extern "C" fn(); N_IRQ];
    table[Irq::Ethernet as usize] = crate::enet::on_interrupt;
    table
};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cortex_m::interrupt::disable();
    let _ = info;
    let _ = Console.write_str("\r\npanic\r\n");
    // TODO(phase 2, watchdog): reset through the watchdog instead of halting.
    loop {
        cortex_m::asm::wfi();
    }
}

// ---------------------------------------------------------------------------------------------
// Stack watermark: the stack grows down from the top of RAM towards the end of .bss
// (cortex-m-rt's `_stack_end`). Painting it at boot shows how deep it ever got.

const STACK_PAINT: u32 = 0xACE0_BA5E;
/// Painting stops this far below the current stack pointer (the painter's own frame).
const STACK_PAINT_MARGIN: usize = 256;

extern "C" {
    static _stack_start: u32;
    static _stack_end: u32;
}

fn stack_bounds() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their contents.
    let top = core::ptr::addr_of!(_stack_start) as usize;
    let bottom = core::ptr::addr_of!(_stack_end) as usize;
    (bottom, top)
}

/// Fills the not yet used part of the stack with a pattern. Call once, early, from `main`.
pub fn paint_stack() {
    let (bottom, _) = stack_bounds();
    let limit = (cortex_m::register::msp::read() as usize).saturating_sub(STACK_PAINT_MARGIN);
    let mut addr = bottom;
    while addr + 4 <= limit {
        // SAFETY: `[_stack_end, msp - margin)` is RAM that belongs to the stack and lies below
        // every live frame (the stack grows down and only this function's frame, above `limit`,
        // is active below `main`); nothing else references it. Word aligned: `_stack_end` is.
        unsafe { write_volatile(addr as *mut u32, STACK_PAINT) };
        addr += 4;
    }
}

/// Deepest stack use since `paint_stack`, in bytes, and the stack's size.
pub fn stack_usage() -> (usize, usize) {
    let (bottom, top) = stack_bounds();
    let mut addr = bottom;
    while addr < top {
        // SAFETY: word-aligned RAM inside the stack region; reading unused stack is harmless.
        if unsafe { read_volatile(addr as *const u32) } != STACK_PAINT {
            break;
        }
        addr += 4;
    }
    (top - addr, top - bottom)
}
