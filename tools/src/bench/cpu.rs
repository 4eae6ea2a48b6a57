//! CPU figures: whole-machine busy time (`/proc/stat`), the CPU time and wake-ups of the
//! overlay processes (`/proc/<pid>/task/*/{schedstat,stat,status}`), and the idle workload.
//!
//! Contract: a [`Snapshot`] is taken before and after a workload; [`Snapshot::since`] gives
//! the deltas. A process's CPU time is the sum over its threads of the scheduler's run time
//! (`schedstat`, nanoseconds) when the kernel has it, else `utime + stime` (clock ticks of
//! 10 ms, Linux's `USER_HZ`); its wake-ups are the sum of its threads'
//! `voluntary_ctxt_switches` (each voluntary switch is one sleep, so one wake-up). Threads that
//! start or end between two snapshots are counted from when they are seen.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Linux reports process times in `USER_HZ` ticks, 100 per second on every architecture
/// this runs on.
const USER_HZ: u64 = 100;

/// Counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    /// Busy clock ticks of all CPUs (everything but idle and iowait).
    machine_busy_ticks: u64,
    /// CPU time of the processes, nanoseconds.
    process_ns: u64,
    /// Voluntary context switches of the processes' threads.
    process_wakeups: u64,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Delta {
    /// Wall time.
    pub wall: Duration,
    /// Busy CPU time of the whole machine, seconds.
    pub machine_busy_s: f64,
    /// CPU time of the processes, seconds.
    pub process_s: f64,
    /// Voluntary context switches of the processes' threads.
    pub process_wakeups: u64,
}

impl Snapshot {
    /// The machine's counters and those of the processes `pids` (empty: none).
    pub fn take(pids: &[u32]) -> anyhow::Result<Snapshot> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let machine_busy_ticks = machine_busy_ticks(&stat)?;
        let mut process_ns = 0;
        let mut process_wakeups = 0;
        for &pid in pids {
            let (ns, wakeups) = process(pid)?;
            process_ns += ns;
            process_wakeups += wakeups;
        }
        Ok(Snapshot {
            at: Instant::now(),
            machine_busy_ticks,
            process_ns,
            process_wakeups,
        })
    }

    /// The deltas from `earlier` to `self`.
    pub fn since(&self, earlier: &Snapshot) -> Delta {
        Delta {
            wall: self.at.saturating_duration_since(earlier.at),
            machine_busy_s: self
                .machine_busy_ticks
                .saturating_sub(earlier.machine_busy_ticks) as f64
                / USER_HZ as f64,
            process_s: self.process_ns.saturating_sub(earlier.process_ns) as f64 / 1e9,
            process_wakeups: self.process_wakeups.saturating_sub(earlier.process_wakeups),
        }
    }
}

/// What the overlay processes did while nothing was sent.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// CPU time of all of them, % of one core.
    pub pct_core: f64,
    /// Wake-ups of all of them per second.
    pub wakeups_per_s: f64,
}

/// Waits `duration` without traffic and reports what the processes `pids` did meanwhile.
pub fn idle(pids: &[u32], duration: Duration) -> anyhow::Result<Idle> {
    if pids.is_empty() {
        bail!("no overlay process (the kernel moves the packets)");
    }
    let before = Snapshot::take(pids)?;
    std::thread::sleep(duration);
    let d = Snapshot::take(pids)?.since(&before);
    let wall = d.wall.as_secs_f64().max(1e-9);
    Ok(Idle {
        pct_core: d.process_s / wall * 100.0,
        wakeups_per_s: d.process_wakeups as f64 / wall,
    })
}

/// Busy ticks from the `cpu ` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal (guest time is already in user).
fn machine_busy_ticks(stat: &str) -> anyhow::Result<u64> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("/proc/stat has no `cpu ` line")?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing /proc/stat's line {line:?}"))?;
    if fields.len() < 5 {
        bail!("/proc/stat's cpu line is too short: {line:?}");
    }
    let total: u64 = fields.iter().sum();
    Ok(total - fields[3] - fields[4])
}

/// (CPU nanoseconds, voluntary context switches) summed over the threads of `pid`.
fn process(pid: u32) -> anyhow::Result<(u64, u64)> {
    let tasks = Path::new("/proc").join(pid.to_string()).join("task");
    let entries = std::fs::read_dir(&tasks)
        .with_context(|| format!("listing {} (has the process exited?)", tasks.display()))?;
    let mut ns = 0;
    let mut wakeups = 0;
    for entry in entries {
        let dir = entry?.path();
        // A thread may end between the listing and the reads: skip it.
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        wakeups += status_field(&status, "voluntary_ctxt_switches:").unwrap_or(0);
        let run_ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| schedstat_ns(&s));
        ns += match run_ns {
            Some(n) => n,
            None => std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| stat_ticks(&s))
                .map_or(0, |t| t * (1_000_000_000 / USER_HZ)),
        };
    }
    Ok((ns, wakeups))
}

/// The first field of a `schedstat` file: time on a CPU, nanoseconds.
fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// utime + stime of a `stat` file (fields 14 and 15; the command name in field 2 may hold
/// spaces and parentheses, so count from the last `)`).
fn stat_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The number after `key` in a `status` file.
fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(machine_busy_ticks(stat).expect("a valid cpu line"), 161);
        assert!(machine_busy_ticks("intr 5\n").is_err());
        let pstat = "1234 (we ft) (d)) S 1 1234 1234 0 -1 4194560 100 0 0 0 42 8 0 0 20 0 3";
        assert_eq!(stat_ticks(pstat), Some(50));
        assert_eq!(stat_ticks("garbage"), None);
        assert_eq!(schedstat_ns("171066 1593780 2\n"), Some(171_066));
        let status = "Name:\tweftd\nvoluntary_ctxt_switches:\t17\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(status, "voluntary_ctxt_switches:"), Some(17));
    }

    #[test]
    fn snapshots_of_this_process_move_forward() {
        let pid = std::process::id();
        let before = Snapshot::take(&[pid]).expect("our own /proc entries");
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        std::hint::black_box(x);
        let d = Snapshot::take(&[pid])
            .expect("our own /proc entries")
            .since(&before);
        assert!(d.process_s > 0.0, "{d:?}");
        assert!(d.wall >= Duration::from_millis(30));
        assert!(Snapshot::take(&[u32::MAX]).is_err());
        assert!(idle(&[], Duration::ZERO).is_err());
    }
}
