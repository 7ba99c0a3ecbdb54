//! What a process costs, read from /proc: memory (resident now and at peak) and CPU time.

use anyhow::Context;

/// Kernel clock ticks per second for /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// A sample of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size, KiB.
    pub peak_kib: u64,
    /// CPU seconds in user mode.
    pub user_s: f64,
    /// CPU seconds in the kernel.
    pub system_s: f64,
}

/// Samples process `pid`.
pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status: is --edge-pid right?"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok(Usage {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        user_s: ticks(11) / TICKS_PER_SECOND,
        system_s: ticks(12) / TICKS_PER_SECOND,
    })
}

/// Samples `pid` if given.
pub fn sample(pid: Option<u32>) -> anyhow::Result<Option<Usage>> {
    pid.map(usage).transpose()
}
