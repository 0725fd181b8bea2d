//! A one-function logging shim: the board (or host) registers how a line is printed (a UART,
//! stdout). Without a registered sink, lines are discarded.

use core::cell::Cell;
use core::fmt::Arguments;
use critical_section::Mutex;

/// Prints one line.
pub type LogFn = fn(Arguments<'_>);

static SINK: Mutex<Cell<Option<LogFn>>> = Mutex::new(Cell::new(None));

/// Sets where log lines go.
pub fn set_sink(f: LogFn) {
    critical_section::with(|cs| SINK.borrow(cs).set(Some(f)));
}

/// Writes one line (used through the `log!` macro).
#[cfg(not(feature = "defmt"))]
pub fn line(args: Arguments<'_>) {
    if let Some(f) = critical_section::with(|cs| SINK.borrow(cs).get()) {
        f(args);
    }
}

/// Writes one line (used through the `log!` macro): to defmt, and to the sink if one is set.
/// A line longer than 160 bytes is cut.
#[cfg(feature = "defmt")]
pub fn line(args: Arguments<'_>) {
    let mut buf = heapless::String::<160>::new();
    // `Err` only means the line was cut: log what fits.
    let _ = core::fmt::write(&mut buf, args);
    defmt::info!("{=str}", buf.as_str());
    if let Some(f) = critical_section::with(|cs| SINK.borrow(cs).get()) {
        f(args);
    }
}

/// `log!("fmt", args..)`: one line to the registered sink.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
pub(crate) use log;
