//! CPU time: the calling thread's (getrusage `RUSAGE_THREAD`, user + system) and the whole
//! machine's busy time (`/proc/stat`, every CPU).
//!
//! Contract: both return a [`Duration`] that only grows; a run takes the difference of two
//! readings. [`busy_ticks`] is pure (the text of `/proc/stat` in, ticks out).

use std::time::Duration;

use anyhow::Context;

/// User + system time of the calling thread so far.
pub(crate) fn thread_time() -> anyhow::Result<Duration> {
    // SAFETY: all-zero is a valid rusage (integers and timevals).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: ru is writable and lives across the call.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage(RUSAGE_THREAD)");
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Busy time of all CPUs together so far (`/proc/stat`'s `cpu` line less idle and iowait).
pub(crate) fn machine_busy() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let ticks = busy_ticks(&text).context("/proc/stat: no cpu line")?;
    // SAFETY: sysconf with a constant name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// The busy ticks of the `cpu` line: user nice system idle iowait irq softirq steal (guest and
/// guest_nice are already inside user and nice): everything but idle and iowait.
pub(crate) fn busy_ticks(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if v.len() < 4 {
        return None;
    }
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(v.iter().sum::<u64>() - idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_is_all_but_idle_and_iowait() {
        let s = "cpu  100 5 50 1000 20 3 7 2 0 0\ncpu0 50 2 25 500 10 1 3 1 0 0\nintr 1\n";
        assert_eq!(busy_ticks(s), Some(100 + 5 + 50 + 3 + 7 + 2));
        assert_eq!(busy_ticks("intr 1\n"), None);
    }
}
