//! UDP at the highest rate: `iperf3 -u -b 0 -l <len>` from pod a to pod b; and the no-drop
//! rate.
//!
//! Contract: [`udp`] reports the datagrams the receiver got per second (`sum_received.packets`
//! minus `sum_received.lost_packets`, over the receiver's seconds), the datagrams sent per
//! second and the loss (1 - received / sent, with sent = `sum_sent.packets`), in %.
//! [`no_drop`] searches, RFC 2544 style, the highest offered rate whose loss is at most
//! [`NO_DROP_LOSS_PCT`]: a run at the highest rate first (if it loses no more than that, its
//! rate is the answer), then a binary search between 0 and the rate the sender reached, each
//! trial a fresh `iperf3 -u -b <rate>` run of the same length, until the bounds are within
//! [`NO_DROP_PRECISION`] of each other or [`NO_DROP_TRIALS`] trials ran; the answer is the
//! highest rate that passed (0 when none did).

use anyhow::Context;

use super::throughput;
use crate::testbed::Testbed;

/// The loss a no-drop trial may have, in %.
pub const NO_DROP_LOSS_PCT: f64 = 0.1;
/// The search stops when the failing and passing rates are this close (fraction of the
/// failing one).
pub const NO_DROP_PRECISION: f64 = 0.05;
/// The most trials of the binary search (after the highest-rate run).
pub const NO_DROP_TRIALS: usize = 7;

/// What one UDP run measured.
#[derive(Debug, Clone, Copy)]
pub struct Udp {
    /// Datagrams received per second.
    pub rx_pps: f64,
    /// Datagrams sent per second.
    pub tx_pps: f64,
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

/// Datagrams of `len` payload bytes offered at `pps` per second for `seconds`.
fn udp_at(bed: &mut Testbed, len: usize, pps: f64, seconds: u32) -> anyhow::Result<Udp> {
    let bits_per_second = (pps * len as f64 * 8.0).round().max(1.0) as u64;
    let report = throughput::iperf(
        bed,
        &format!("nodrop{len}"),
        seconds,
        &[
            "-u",
            "-b",
            &bits_per_second.to_string(),
            "-l",
            &len.to_string(),
        ],
    )?;
    parse(&report)
}

/// The highest offered rate, in datagrams per second, at which `len`-byte datagrams lose at
/// most [`NO_DROP_LOSS_PCT`] (see the module documentation).
pub fn no_drop(bed: &mut Testbed, len: usize, seconds: u32) -> anyhow::Result<f64> {
    let top = udp(bed, len, seconds)?;
    search(top, |pps| udp_at(bed, len, pps, seconds))
}

/// The search of [`no_drop`] after the highest-rate run `top`, with `trial` running one rate.
fn search(top: Udp, mut trial: impl FnMut(f64) -> anyhow::Result<Udp>) -> anyhow::Result<f64> {
    if top.loss_pct <= NO_DROP_LOSS_PCT {
        return Ok(top.tx_pps);
    }
    let (mut pass, mut fail) = (0.0, top.tx_pps);
    for _ in 0..NO_DROP_TRIALS {
        if fail - pass <= fail * NO_DROP_PRECISION {
            break;
        }
        let rate = (pass + fail) / 2.0;
        let got = trial(rate)?;
        if got.loss_pct <= NO_DROP_LOSS_PCT {
            pass = rate;
        } else {
            fail = rate;
        }
    }
    Ok(pass)
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
    let sent_seconds = field("sum_sent", "seconds")?.max(1e-9);
    Ok(Udp {
        rx_pps: received / seconds,
        tx_pps: sent / sent_seconds,
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
        assert!((u.tx_pps - 150090.0).abs() < 1e-6, "{u:?}");
        assert!((u.loss_pct - 46.6633).abs() < 1e-3, "{u:?}");
        assert!(parse(&serde_json::json!({"end": {}})).is_err());
    }

    /// A path that loses nothing up to `limit` pps and 10 % above it.
    fn path(limit: f64) -> impl FnMut(f64) -> anyhow::Result<Udp> {
        move |pps| {
            Ok(Udp {
                rx_pps: pps,
                tx_pps: pps,
                loss_pct: if pps <= limit { 0.0 } else { 10.0 },
            })
        }
    }

    #[test]
    fn no_drop_search_brackets_the_limit() {
        let top = Udp {
            rx_pps: 50_000.0,
            tx_pps: 100_000.0,
            loss_pct: 50.0,
        };
        let mut trials = Vec::new();
        let mut limit = path(37_000.0);
        let found = search(top, |pps| {
            trials.push(pps);
            limit(pps)
        })
        .expect("search");
        assert!(found <= 37_000.0, "{found} passed above the limit");
        assert!(
            found >= 37_000.0 * (1.0 - 2.0 * NO_DROP_PRECISION),
            "{found}"
        );
        assert!(trials.len() <= NO_DROP_TRIALS, "{trials:?}");
        // Nothing passes: 0.
        assert_eq!(search(top, path(0.0)).expect("search"), 0.0);
        // The highest rate lost nothing: it is the answer, with no trial.
        let clean = Udp {
            loss_pct: 0.05,
            ..top
        };
        let found = search(clean, |_| panic!("no trial needed")).expect("search");
        assert_eq!(found, 100_000.0);
    }
}
