//! System calls a broker makes during a measurement, from
//! `perf stat -e raw_syscalls:sys_enter -p PID` (issue 23 compares them per delivered
//! message between the io_uring and epoll drivers). None when perf is missing or refused.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Count {
    child: Child,
    out: PathBuf,
}

/// Starts counting the system calls of `pid`.
pub(crate) fn start(pid: u32) -> Option<Count> {
    let out = std::env::temp_dir().join(format!("petrel-load-perf-{}-{pid}", std::process::id()));
    let child = Command::new("perf")
        .args([
            "stat",
            "-x,",
            "-e",
            "raw_syscalls:sys_enter",
            "-p",
            &pid.to_string(),
            "-o",
        ])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // perf attaches after it starts: give it a moment, or the first calls go uncounted.
    std::thread::sleep(Duration::from_millis(50));
    Some(Count { child, out })
}

impl Count {
    /// Stops counting; the count, if perf gave one.
    pub(crate) fn finish(mut self) -> Option<u64> {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        let text = std::fs::read_to_string(&self.out).ok()?;
        let _ = std::fs::remove_file(&self.out);
        parse(&text)
    }
}

/// The count in perf's CSV output (`-x,`): "1306988,,raw_syscalls:sys_enter,...".
fn parse(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn perf_csv_lines_parse() {
        let out = "# started on Mon\n\n1306988,,raw_syscalls:sys_enter,2000,100.00,,\n";
        assert_eq!(super::parse(out), Some(1_306_988));
        assert_eq!(
            super::parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,"),
            None
        );
    }
}
