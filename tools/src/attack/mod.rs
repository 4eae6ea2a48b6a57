//! `weftctl attack`: a fuzzing sender that fires malformed and hostile VXLAN or flannel udp
//! datagrams at a running weftd.
//!
//! Contract: [`run`] sends, for [`Config::duration`] at [`Config::rate`] datagrams per second,
//! datagrams of every [`Kind`] that applies to the target's backend (truncated headers, wrong
//! VNI, reserved bits, bad inner lengths, IPv4 options, IPv6 extension chains, zero-length and
//! 65 507-byte datagrams, inner packets to the sender's own subnet, spoofed inner sources,
//! random mutations of valid packets), each from one of the [`Config::from`] addresses (a
//! peer's underlay address and addresses that are no peer). The kind and the source of each
//! datagram come from a seeded generator, so a seed replays the same sequence. The [`Report`]
//! counts what was sent per kind and per source; a send error is counted, never fatal (the
//! attack keeps going). Traffic goes only where the caller points it: tests point it at
//! addresses inside their own namespaces.

pub mod kind;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

pub use kind::{Kind, Target};

/// The prefix of the JSON report line `weftctl attack --json` prints.
pub const REPORT_PREFIX: &str = "attack-report: ";

/// A small deterministic generator (SplitMix64): the same seed, the same attack.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// What to attack, from where, how hard and how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// weftd's underlay address and port.
    pub target: SocketAddr,
    /// What the attacker knows about the target.
    pub info: Target,
    /// How long to send.
    pub duration: Duration,
    /// The generator's seed.
    pub seed: u64,
    /// Datagrams per second (0: as fast as the sockets take them).
    pub rate: u32,
    /// Source addresses to send from (each must be an address of this host); empty: the
    /// address the kernel picks.
    pub from: Vec<IpAddr>,
}

/// What one kind (or one source) sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Count {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Their UDP payload bytes.
    pub bytes: u64,
    /// Sends that failed (counted, not sent).
    pub errors: u64,
}

/// What an attack sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// How long it ran, in seconds.
    pub seconds: f64,
    /// Per kind name.
    pub by_kind: BTreeMap<String, Count>,
    /// Per source address, then per kind name: datagrams sent.
    pub by_source: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Report {
    /// Datagrams sent in all.
    pub fn sent(&self) -> u64 {
        self.by_kind.values().map(|c| c.sent).sum()
    }

    /// A table for people: one line per kind with what weftd must make of it.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<20} {:>9} {:>13} {:>7}  expected from a peer (from a stranger: unknown_peer)\n",
            "kind", "sent", "bytes", "errors"
        );
        for kind in Kind::ALL {
            let Some(c) = self.by_kind.get(kind.name()) else {
                continue;
            };
            let expected = match kind.reasons() {
                [] => "delivered (a peer may send it)".to_owned(),
                ["*"] => "any drop reason, or delivered".to_owned(),
                r => r.join(" | "),
            };
            out.push_str(&format!(
                "{:<20} {:>9} {:>13} {:>7}  {expected}\n",
                kind.name(),
                c.sent,
                c.bytes,
                c.errors
            ));
        }
        for (source, kinds) in &self.by_source {
            out.push_str(&format!(
                "from {source}: {} datagrams\n",
                kinds.values().sum::<u64>()
            ));
        }
        out.push_str(&format!(
            "{} datagrams in {:.1} s (seed {})\n",
            self.sent(),
            self.seconds,
            self.seed
        ));
        out
    }
}

/// Sends the attack until `config.duration` is over or `stop` is set.
pub fn run(config: &Config, stop: &AtomicBool) -> anyhow::Result<Report> {
    let kinds: Vec<Kind> = Kind::ALL
        .iter()
        .copied()
        .filter(|k| k.applies(config.info.backend))
        .collect();
    let unspecified = match config.target {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let sources = if config.from.is_empty() {
        vec![unspecified]
    } else {
        config.from.clone()
    };
    let sockets = sources
        .iter()
        .map(|&ip| {
            UdpSocket::bind((ip, 0)).with_context(|| {
                format!("binding a UDP socket to {ip} (--from must be an address of this host)")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut rng = Rng::new(config.seed);
    let mut report = Report {
        seed: config.seed,
        ..Report::default()
    };
    let start = Instant::now();
    let mut seq = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= config.duration || stop.load(Ordering::Relaxed) {
            break;
        }
        if config.rate > 0 {
            let due = (elapsed.as_secs_f64() * f64::from(config.rate)) as u64;
            if seq >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let s = rng.below(sockets.len() as u64) as usize;
        let datagram = kind.build(&config.info, &mut rng, seq);
        seq += 1;
        let count = report.by_kind.entry(kind.name().to_owned()).or_default();
        match sockets[s].send_to(&datagram, config.target) {
            Ok(_) => {
                count.sent += 1;
                count.bytes += datagram.len() as u64;
                *report
                    .by_source
                    .entry(sources[s].to_string())
                    .or_default()
                    .entry(kind.name().to_owned())
                    .or_default() += 1;
            }
            Err(_) => count.errors += 1,
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use engine::model::Backend;
    use engine::model::Cidr;

    #[test]
    fn sends_every_kind_to_a_local_socket() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let info = Target {
            backend: Backend::Vxlan,
            vni: 1,
            target_mac: [2, 0, 0, 0, 0, 2],
            own_mac: [2, 0, 0, 0, 0, 3],
            target_subnet: Cidr::parse_masked("10.244.2.0/24").unwrap(),
            target_subnet6: None,
            own_subnet: Cidr::parse_masked("10.244.3.0/24").unwrap(),
            own_subnet6: None,
            spoof_subnet: Cidr::parse_masked("10.244.1.0/24").unwrap(),
            spoof_subnet6: None,
            sink_port: 9999,
            mtu: 1450,
        };
        let config = Config {
            target: sink.local_addr().unwrap(),
            info,
            duration: Duration::from_millis(300),
            seed: 3,
            rate: 0,
            from: vec!["127.0.0.1".parse().unwrap()],
        };
        let report = run(&config, &AtomicBool::new(false)).unwrap();
        for kind in Kind::ALL {
            assert!(report.by_kind.contains_key(kind.name()), "{kind:?}");
        }
        assert_eq!(
            report.by_source["127.0.0.1"].values().sum::<u64>(),
            report.sent()
        );
        let mut buf = vec![0u8; 65536];
        let (_, from) = sink.recv_from(&mut buf).unwrap();
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert!(report.table().contains("max_datagram"));
    }

    #[test]
    fn rng_is_deterministic() {
        let (mut a, mut b) = (Rng::new(9), Rng::new(9));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_eq!(Rng::new(1).below(0), 0);
    }
}
