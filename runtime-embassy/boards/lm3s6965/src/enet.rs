//! `embassy_net_driver::Driver` for the Stellaris LM3S6965 Ethernet controller (MAC at
//! 0x4004_8000, integrated PHY).
//!
//! The MAC has no DMA: frames go through 2 KiB RX and TX FIFOs that software reads and writes
//! one 32-bit word at a time through MACDATA. Frame layout in both FIFOs (little-endian words):
//!
//! ```text
//! RX: [len lo][len hi][dst0][dst1] [dst2..] ... [FCS0..FCS3] (pad to a word)
//!     len = 2 (length field) + frame bytes + 4 (FCS); read ceil(len / 4) words per frame.
//! TX: [dlen lo][dlen hi][dst0][dst1] [dst2..] ...            (pad to a word)
//!     dlen = frame bytes - 14 (payload only, without the Ethernet header); then MACTR.NEWTX.
//! ```
//!
//! RX is interrupt driven (IRQ 42): the handler masks the sources that fired and wakes the
//! embassy-net runner, which drains MACNP frames and only unmasks RXINT again once the FIFO is
//! empty (acknowledging first, then re-checking MACNP, so a frame that lands in between is not
//! missed). TX waits on MACTR.NEWTX, with TXEMP as the wake-up when the MAC is still busy.
//!
//! Not done here (phase 1): PHY management over MII (the link is reported up; QEMU does not
//! model the PHY), multicast filtering beyond AMUL, statistics beyond error counters.

use core::sync::atomic::{AtomicU32, Ordering};
use core::task::Context;

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;
use static_cell::ConstStaticCell;

use crate::board::{self, registers, Irq};

registers! { 0x4004_8000;
    /// Raw interrupt status (read) / interrupt acknowledge (write 1 to clear).
    MACRIS = 0x000;
    MACIM = 0x004;
    MACRCTL = 0x008;
    MACTCTL = 0x00C;
    MACDATA = 0x010;
    MACIA0 = 0x014;
    MACIA1 = 0x018;
    MACTHR = 0x01C;
    MACMDV = 0x024;
    MACNP = 0x034;
    MACTR = 0x038;
}
/// MACIACK shares MACRIS's address.
const MACIACK: board::Reg = MACRIS;

// MACRIS / MACIACK / MACIM bits.
const INT_RX: u32 = 1 << 0;
const INT_TXER: u32 = 1 << 1;
const INT_TXEMP: u32 = 1 << 2;
const INT_FOV: u32 = 1 << 3;
const INT_RXER: u32 = 1 << 4;
const INT_ALL: u32 = 0x7F;

// MACRCTL bits.
const RCTL_RXEN: u32 = 1 << 0;
const RCTL_AMUL: u32 = 1 << 1;
const RCTL_BADCRC: u32 = 1 << 3;
const RCTL_RSTFIFO: u32 = 1 << 4;

// MACTCTL bits.
const TCTL_TXEN: u32 = 1 << 0;
const TCTL_PADEN: u32 = 1 << 1;
const TCTL_CRC: u32 = 1 << 2;
const TCTL_DUPLEX: u32 = 1 << 4;

const TR_NEWTX: u32 = 1 << 0;
const NP_MASK: u32 = 0x3F;
/// MACTHR value that disables early transmission: a frame leaves on NEWTX only.
const THR_DISABLED: u32 = 0x3F;

const ETH_HEADER: usize = 14;
/// Largest frame handed to or taken from embassy-net: 1500-byte IP MTU + header, no FCS.
pub const MTU: usize = 1514;
/// RX length-field value bounds (frame + 2-byte length + 4-byte FCS). Anything outside means
/// the FIFO is out of sync, and it gets reset.
const RX_LEN_MIN: usize = ETH_HEADER + 6;
const RX_LEN_MAX: usize = 2048;
/// RX scratch: a maximal frame with a VLAN tag (1518) plus the FCS and word padding.
const RX_BUF: usize = 1528;

static WAKER: AtomicWaker = AtomicWaker::new();
// Frame buffers live in statics rather than in `Enet`, so the driver (moved by value into
// embassy-net's runner and its task) stays small and never crosses the stack by the KiB.
static RX_FRAME: ConstStaticCell<[u8; RX_BUF]> = ConstStaticCell::new([0; RX_BUF]);
static TX_FRAME: ConstStaticCell<[u8; MTU]> = ConstStaticCell::new([0; MTU]);

/// Error counters, readable from anywhere.
#[derive(Debug)]
pub struct Stats {
    /// RX FIFO overruns (frames lost because software did not drain in time).
    pub rx_overrun: AtomicU32,
    /// Frames received with errors (bad CRC, symbol errors).
    pub rx_error: AtomicU32,
    /// RX FIFO resets after an impossible length field.
    pub rx_resync: AtomicU32,
    /// Frames dropped on receive because they did not fit the RX buffer.
    pub rx_oversize: AtomicU32,
    /// Frames the stack asked to send that were not sendable (too short or too long).
    pub tx_dropped: AtomicU32,
    /// Transmit errors reported by the MAC.
    pub tx_error: AtomicU32,
}

/// Error counters of the one Ethernet controller.
pub static STATS: Stats = Stats {
    rx_overrun: AtomicU32::new(0),
    rx_error: AtomicU32::new(0),
    rx_resync: AtomicU32::new(0),
    rx_oversize: AtomicU32::new(0),
    tx_dropped: AtomicU32::new(0),
    tx_error: AtomicU32::new(0),
};

/// The Ethernet controller. Only one exists: [`Enet::new`] hands it out once.
#[derive(Debug)]
pub struct Enet {
    mac: [u8; 6],
    rx_buf: &'static mut [u8; RX_BUF],
    tx_buf: &'static mut [u8; MTU],
}

impl Enet {
    /// Brings the MAC up with address `mac`, RX and TX enabled and the RX interrupt armed.
    /// Returns `None` if the controller was already taken.
    pub fn new(mac: [u8; 6], core_hz: u32) -> Option<Self> {
        // The buffers double as the singleton guard.
        let rx_buf = RX_FRAME.try_take()?;
        let tx_buf = TX_FRAME.try_take()?;
        board::enable_clocks(0, board::RCGC2_EMAC0 | board::RCGC2_EPHY0);

        MACIM.write(0);
        MACIACK.write(INT_ALL);
        // MII management clock must stay at or below 2.5 MHz: core / (2 * (MDV + 1)).
        MACMDV.write((core_hz / (2 * 2_500_000)).saturating_sub(1) & 0xFF);
        MACIA0.write(u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        MACIA1.write(u32::from(mac[4]) | (u32::from(mac[5]) << 8));
        MACTHR.write(THR_DISABLED);
        MACTCTL.write(TCTL_DUPLEX | TCTL_CRC | TCTL_PADEN | TCTL_TXEN);
        // The FIFO may only be reset while reception is disabled.
        MACRCTL.write(RCTL_RSTFIFO | RCTL_BADCRC);
        MACRCTL.write(RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC);
        MACIM.write(INT_RX);

        // SAFETY: unmasking cannot break a critical section here: no `critical_section::with`
        // is active (this is thread code), and `on_interrupt` only touches the MAC's interrupt
        // registers and the `AtomicWaker`, both of which are interrupt-safe.
        unsafe { cortex_m::peripheral::NVIC::unmask(Irq::Ethernet) };

        Some(Enet {
            mac,
            rx_buf,
            tx_buf,
        })
    }

    /// Acknowledges and counts error conditions; they do not interrupt (masked) and need no
    /// action beyond the TX FIFO reset that acknowledging TXER performs.
    fn check_errors() {
        let ris = MACRIS.read();
        let errors = ris & (INT_FOV | INT_RXER | INT_TXER);
        if errors == 0 {
            return;
        }
        MACIACK.write(errors);
        if errors & INT_FOV != 0 {
            STATS.rx_overrun.fetch_add(1, Ordering::Relaxed);
        }
        if errors & INT_RXER != 0 {
            STATS.rx_error.fetch_add(1, Ordering::Relaxed);
        }
        if errors & INT_TXER != 0 {
            STATS.tx_error.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a frame waits in the RX FIFO; if not, arms RXINT to wake `cx`.
    fn rx_ready(cx: &mut Context<'_>) -> bool {
        if MACNP.read() & NP_MASK != 0 {
            return true;
        }
        WAKER.register(cx.waker());
        critical_section::with(|_| {
            // Acknowledge first: a frame arriving after this line sets RXINT again and
            // interrupts; one that arrived before is seen by the re-check below.
            MACIACK.write(INT_RX);
            MACIM.modify(|im| im | INT_RX);
        });
        MACNP.read() & NP_MASK != 0
    }

    /// Whether the TX FIFO is free; if not, arms TXEMP to wake `cx`.
    fn tx_ready(cx: &mut Context<'_>) -> bool {
        if MACTR.read() & TR_NEWTX == 0 {
            return true;
        }
        WAKER.register(cx.waker());
        critical_section::with(|_| {
            MACIACK.write(INT_TXEMP);
            MACIM.modify(|im| im | INT_TXEMP);
        });
        MACTR.read() & TR_NEWTX == 0
    }

    /// Throws away everything in the RX FIFO (its length fields can no longer be trusted).
    fn reset_rx_fifo() {
        STATS.rx_resync.fetch_add(1, Ordering::Relaxed);
        MACRCTL.write(RCTL_BADCRC);
        MACRCTL.write(RCTL_RSTFIFO | RCTL_BADCRC);
        MACRCTL.write(RCTL_RXEN | RCTL_AMUL | RCTL_BADCRC);
    }

    /// Moves the next frame out of the RX FIFO into `rx_buf`; returns its length without FCS,
    /// or `None` if the frame was dropped (always fully drained, so the FIFO stays in sync).
    fn read_frame(&mut self) -> Option<usize> {
        let first = MACDATA.read();
        let total = (first & 0xFFFF) as usize;
        if !(RX_LEN_MIN..=RX_LEN_MAX).contains(&total) {
            Self::reset_rx_fifo();
            return None;
        }
        let frame_len = total - 6;
        let words = total.div_ceil(4);

        let [_, _, b0, b1] = first.to_le_bytes();
        let bytes = [b0, b1]
            .into_iter()
            .chain((1..words).flat_map(|_| MACDATA.read().to_le_bytes()));
        for (pos, byte) in bytes.enumerate() {
            // Bytes past the buffer (oversize frames) are read and discarded.
            if let Some(slot) = self.rx_buf.get_mut(pos) {
                *slot = byte;
            }
        }
        if frame_len > MTU {
            STATS.rx_oversize.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(frame_len)
    }
}

/// Ethernet interrupt (vector 16 + 42): masks what fired and wakes the runner, which does the
/// work and unmasks again when it needs to wait.
pub extern "C" fn on_interrupt() {
    let pending = MACRIS.read() & MACIM.read();
    // No critical section needed: thread code only modifies MACIM inside one, and nothing of
    // higher priority touches it.
    MACIM.modify(|im| im & !pending);
    WAKER.wake();
}

impl embassy_net_driver::Driver for Enet {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken<'_>, TxToken<'_>)> {
        Self::check_errors();
        // A received frame may need an immediate answer (ARP, ACK): hand out both tokens or
        // none.
        if !Self::tx_ready(cx) || !Self::rx_ready(cx) {
            return None;
        }
        let Some(len) = self.read_frame() else {
            // Dropped; come back for the rest of the FIFO.
            cx.waker().wake_by_ref();
            return None;
        };
        let rx = self.rx_buf.get_mut(..len)?;
        Some((RxToken { frame: rx }, TxToken { buf: self.tx_buf }))
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<TxToken<'_>> {
        Self::check_errors();
        if !Self::tx_ready(cx) {
            return None;
        }
        Some(TxToken { buf: self.tx_buf })
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        // TODO(phase 2, PHY): poll MR1.LINK over MII on silicon; QEMU has no PHY model.
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(1);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}

/// A received frame (without FCS), already copied out of the FIFO.
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Permission to send one frame; the MAC's TX FIFO was free when it was handed out.
#[derive(Debug)]
pub struct TxToken<'a> {
    buf: &'a mut [u8; MTU],
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // embassy-net never asks for more than `MTU`; if it did, the frame is built in a
        // truncated buffer and then dropped rather than sent cut short.
        let fits = (ETH_HEADER..=MTU).contains(&len);
        let frame = &mut self.buf[..len.min(MTU)];
        let result = f(frame);
        if !fits {
            STATS.tx_dropped.fetch_add(1, Ordering::Relaxed);
            return result;
        }
        // `len <= MTU`, so this always fits the 16-bit length field.
        let data_len = u32::try_from(len - ETH_HEADER).unwrap_or(0) & 0xFFFF;
        let (head, rest) = frame.split_at(2);
        MACDATA.write(data_len | (u32::from(head[0]) << 16) | (u32::from(head[1]) << 24));
        let mut chunks = rest.chunks_exact(4);
        for word in &mut chunks {
            MACDATA.write(u32::from_le_bytes([word[0], word[1], word[2], word[3]]));
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut word = [0u8; 4];
            word[..tail.len()].copy_from_slice(tail);
            MACDATA.write(u32::from_le_bytes(word));
        }
        MACTR.write(TR_NEWTX);
        result
    }
}
