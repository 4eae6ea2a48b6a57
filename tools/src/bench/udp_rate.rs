//! UDP at the highest rate: `iperf3 -u -b 0 -l <len>` from pod a to pod b.
//!
//! Contract: reports the datagrams the receiver got per second (`sum_received.packets` minus
//! `sum_received.lost_packets`, over the receiver's seconds) and the loss (1 - received /
//! sent, with sent = `sum_sent.packets`), in %.

use anyhow::Context;

use super::throughput;
use crate::testbed::Testbed;

/// What one UDP run measured.
#[derive(Debug, Clone, Copy)]
pub struct Udp {
    /// Datagrams received per second.
    pub rx_pps: f64,
    /// Datagrams lost, % of those sent.
    pub loss_pct: f64,
}

/// Datagrams of `len` payload bytes as fast as iperf3 sends them, for `seconds`.
pub fn udp(bed: &mut Testbed, len: usize, seconds: u32) -> anyhow::Result<Udp> {
    let report = throughput::iperf(
        bed,
        &format!("udp{len}"),
        seconds,
        &["-u", "-b", "0", "-l", &len.to_string()],
    )?;
    parse(&report)
}

fn parse(report: &serde_json::Value) -> anyhow::Result<Udp> {
    let end = &report["end"];
    let field = |sum: &str, key: &str| {
        end[sum][key]
            .as_f64()
            .with_context(|| format!("no end.{sum}.{key} in iperf3's UDP report"))
    };
    let sent = field("sum_sent", "packets")?;
    let expected = field("sum_received", "packets")?;
    let lost = field("sum_received", "lost_packets")?;
    let seconds = field("sum_received", "seconds")?.max(1e-9);
    let received = (expected - lost).max(0.0);
    Ok(Udp {
        rx_pps: received / seconds,
        loss_pct: if sent > 0.0 {
            ((sent - received) / sent * 100.0).max(0.0)
        } else {
            100.0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iperf3_udp_reports() {
        let report = serde_json::json!({"end": {
            "sum_sent": {"packets": 150090, "seconds": 1.0},
            "sum_received": {"packets": 149692, "lost_packets": 69639, "seconds": 2.0},
        }});
        let u = parse(&report).expect("a full report");
        assert!((u.rx_pps - 40026.5).abs() < 1e-6, "{u:?}");
        assert!((u.loss_pct - 46.6633).abs() < 1e-3, "{u:?}");
        assert!(parse(&serde_json::json!({"end": {}})).is_err());
    }
}
