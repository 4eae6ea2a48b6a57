//! Round-trip latency, pod a -> pod b: a one-byte TCP request/response exchange
//! ([`crate::testbed::traffic::tcp_rr`]) and ICMP echo every 10 ms (weftctl's own,
//! [`crate::testbed::ping`]), each summarised as the median and the 99th percentile in
//! microseconds.

use std::time::Duration;

use anyhow::bail;

use crate::testbed::{traffic, Testbed};

/// Exchanges not recorded before the TCP ones that are (connection warm-up).
const RR_WARMUP: usize = 100;
/// The longest one exchange may take.
const RR_STALL: Duration = Duration::from_secs(2);
/// Time between pings.
const PING_INTERVAL: Duration = Duration::from_millis(10);

/// Median and 99th percentile of round trips, microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Rtt {
    /// The median.
    pub median_us: f64,
    /// The 99th percentile (nearest rank).
    pub p99_us: f64,
}

/// `count` TCP request/response exchanges.
pub fn tcp_rr(bed: &Testbed, count: usize) -> anyhow::Result<Rtt> {
    let limit = RR_STALL * 2 + Duration::from_millis(20) * u32::try_from(count).unwrap_or(0);
    let rtts = traffic::tcp_rr(
        bed.node(0).pod(),
        bed.node(1).pod(),
        RR_WARMUP,
        count,
        RR_STALL,
        limit,
    )?;
    summarise(&rtts)
}

/// `count` pings, one every 10 ms.
pub fn ping(bed: &Testbed, count: u16) -> anyhow::Result<Rtt> {
    let rtts = traffic::ping_rtts(
        bed.node(0).pod(),
        bed.node(1).pod_ip(),
        count,
        PING_INTERVAL,
    )?;
    summarise(&rtts)
}

/// Median and p99 of `samples`.
pub fn summarise(samples: &[Duration]) -> anyhow::Result<Rtt> {
    if samples.is_empty() {
        bail!("no round trip was measured");
    }
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    Ok(Rtt {
        median_us: super::median(&us).unwrap_or(0.0),
        p99_us: percentile(&us, 99.0),
    })
}

/// The nearest-rank `p`th percentile of sorted, non-empty `sorted`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let samples: Vec<Duration> = (1..=200).rev().map(Duration::from_micros).collect();
        let r = summarise(&samples).expect("samples");
        assert!((r.median_us - 100.5).abs() < 1e-6, "{r:?}");
        assert!((r.p99_us - 198.0).abs() < 1e-6, "{r:?}");
        let one = summarise(&[Duration::from_micros(7)]).expect("one sample");
        assert!((one.p99_us - 7.0).abs() < 1e-6 && (one.median_us - 7.0).abs() < 1e-6);
        assert!(summarise(&[]).is_err());
    }
}
