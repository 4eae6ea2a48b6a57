//! Hostile input from the network: `weftctl attack` fires malformed and hostile
//! datagrams from node c's underlay (its own peer address and a stranger address) at the
//! weftd of nodes a and b while a steady, counted UDP flow runs between the pods of a and b.
//!
//! Measured twice with the same flow: once without the attack (the baseline) and once under
//! it. Asserted:
//! - no weftd exits or panics;
//! - the sinks in a's and b's pods see only legitimate datagrams: the flow's own (from the
//!   other pod, with its magic), or packets with a source in c's subnet (c is a peer and may
//!   send those); anything else (a spoofed source) is a failure;
//! - every drop is counted by reason: each reason that a kind sent from c's peer address must
//!   raise grew at its target, `unknown_peer` grew (the stranger), and the receive counters
//!   add up: datagrams received = receive-side drops + packets delivered from peers;
//! - the flow's loss under attack is at most the baseline's + 1 percentage point.
//!
//! Duration: `WEFT_ATTACK_SECONDS` per phase (default 20 s in CI; the long run is 60 s,
//! run with `WEFT_ATTACK_SECONDS=60`, see the README). The seed is `WEFT_ATTACK_SEED`
//! (default 1), the attack rate `WEFT_ATTACK_RATE` per target (default 1500 datagrams/s; 0
//! floods, which on a small machine measures CPU starvation rather than weftd's checks).

mod common;

use engine::config::DriverArg;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::model::{Backend, Cidr};
use weft_testkit::require_root;
use weftctl::attack::{Kind, REPORT_PREFIX};
use weftctl::control;
use weftctl::testbed::{Node, Overlay, Testbed, UNDERLAY_DEV, VNI};

/// The sinks' port in the pods of a and b.
const SINK_PORT: u16 = 9999;
/// An address on c's underlay that is no peer.
const STRANGER: Ipv4Addr = Ipv4Addr::new(192, 168, 250, 99);
/// Marks the legitimate flow's datagrams.
const FLOW_MAGIC: &[u8; 8] = b"wLEGIT!!";
/// The flow's datagrams per second, each way.
const FLOW_RATE: u64 = 1000;
/// The flow's UDP payload size.
const FLOW_SIZE: usize = 512;
/// Attack datagrams per second, per target (`WEFT_ATTACK_RATE` overrides; 0 = flood).
const ATTACK_RATE: u32 = 1500;
/// How much more the flow may lose under attack than without, in percentage points.
const LOSS_MARGIN_PCT: f64 = 1.0;
fn phase_seconds() -> u64 {
    std::env::var("WEFT_ATTACK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn attack_rate() -> u32 {
    std::env::var("WEFT_ATTACK_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ATTACK_RATE)
}

fn attack_seed() -> u64 {
    std::env::var("WEFT_ATTACK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// What a sink saw.
#[derive(Debug, Default)]
struct Seen {
    /// Distinct flow sequence numbers received, per phase.
    flow: BTreeMap<u8, HashSet<u64>>,
    /// Datagrams from c's subnets (a peer's own traffic: allowed).
    from_peer_c: u64,
    /// Anything else: (source, length).
    intruders: Vec<(SocketAddr, usize)>,
}

/// A sink in `node`'s pod on both families: classifies every datagram until `stop`.
fn sink(
    node: &Node,
    legit_from: IpAddr,
    c_nets: [Cidr; 2],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Seen>> {
    let (v4, v6) = (node.pod_ip(), node.pod_ip6());
    node.ns().spawn_inside(move || {
        let socks = [
            UdpSocket::bind((v4, SINK_PORT))?,
            UdpSocket::bind((v6, SINK_PORT))?,
        ];
        for s in &socks {
            s.set_nonblocking(true)?;
            socket2::SockRef::from(s).set_recv_buffer_size(4 << 20)?;
        }
        let mut seen = Seen::default();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            for s in &socks {
                while let Ok((n, from)) = s.recv_from(&mut buf) {
                    idle = false;
                    let d = &buf[..n];
                    if from.ip() == legit_from && n == FLOW_SIZE && d.starts_with(FLOW_MAGIC) {
                        let phase = d[8];
                        let seq = u64::from_be_bytes(d[9..17].try_into()?);
                        seen.flow.entry(phase).or_default().insert(seq);
                    } else if c_nets.iter().any(|net| net.contains(from.ip())) {
                        seen.from_peer_c += 1;
                    } else {
                        seen.intruders.push((from, n));
                    }
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(seen)
    })
}

/// Sends the flow from `node`'s pod to `to` for `seconds` at [`FLOW_RATE`]; returns the count.
fn flow(
    node: &Node,
    to: IpAddr,
    phase: u8,
    seconds: u64,
) -> std::thread::JoinHandle<anyhow::Result<u64>> {
    let from = node.pod_ip();
    node.ns().spawn_inside(move || {
        let s = UdpSocket::bind((from, 0))?;
        let mut d = vec![0u8; FLOW_SIZE];
        d[..8].copy_from_slice(FLOW_MAGIC);
        d[8] = phase;
        let start = Instant::now();
        let total = FLOW_RATE * seconds;
        let mut seq = 0u64;
        while seq < total {
            let due = (start.elapsed().as_secs_f64() * FLOW_RATE as f64) as u64;
            if seq >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            d[9..17].copy_from_slice(&seq.to_be_bytes());
            // A failed send is loss like any other; the count is of attempts.
            let _ = s.send_to(&d, (to, SINK_PORT));
            seq += 1;
        }
        Ok(total)
    })
}

/// Runs the flow both ways for one phase; returns the datagrams sent (a -> b, b -> a).
fn run_flows(bed: &Testbed, phase: u8, seconds: u64) -> (u64, u64) {
    let (a, b) = (bed.node(0), bed.node(1));
    let ab = flow(a, b.pod_ip(), phase, seconds);
    let ba = flow(b, a.pod_ip(), phase, seconds);
    let join = |h: std::thread::JoinHandle<anyhow::Result<u64>>| {
        h.join()
            .expect("flow thread")
            .unwrap_or_else(|e| panic!("flow: {e:#}"))
    };
    (join(ab), join(ba))
}

/// The `weftctl attack` arguments against node `target` posing as node c, with `spoof` as
/// the third node.
fn attack_args(bed: &Testbed, backend: Backend, target: usize, spoof: usize) -> Vec<String> {
    let (t, c, s) = (bed.node(target), bed.node(2), bed.node(spoof));
    let mtu = bed.overlay_mtu().to_string();
    let seconds = phase_seconds().to_string();
    let seed = (attack_seed() + target as u64).to_string();
    let rate = attack_rate().to_string();
    let dst = SocketAddr::new(t.underlay().into(), backend.default_port()).to_string();
    [
        "attack",
        "--target",
        &dst,
        "--backend",
        backend.as_str(),
        "--seconds",
        &seconds,
        "--seed",
        &seed,
        "--rate",
        &rate,
        "--from",
        &c.underlay().to_string(),
        "--from",
        &STRANGER.to_string(),
        "--target-subnet",
        &t.subnet().to_string(),
        "--target-subnet6",
        &t.subnet6().to_string(),
        "--own-subnet",
        &c.subnet().to_string(),
        "--own-subnet6",
        &c.subnet6().to_string(),
        "--spoof-subnet",
        &s.subnet().to_string(),
        "--spoof-subnet6",
        &s.subnet6().to_string(),
        "--vni",
        &VNI.to_string(),
        "--target-mac",
        &engine::model::format_mac(&t.vtep_mac()),
        "--own-mac",
        &engine::model::format_mac(&c.vtep_mac()),
        "--mtu",
        &mtu,
        "--sink-port",
        &SINK_PORT.to_string(),
        "--json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// The receive-side view of a `stats` reply: (datagrams received, receive-side drops,
/// packets delivered from peers).
fn rx_accounting(stats: &serde_json::Value) -> (u64, u64, u64) {
    // The transmit side's drops are left out of the receive accounting.
    let tx = control::transmit_drops(stats);
    let recv_errors = control::drops(stats, "udp_recv_error");
    let delivered = stats["peers"].as_array().map_or(0, |p| {
        p.iter().filter_map(|p| p["rx_packets"].as_u64()).sum()
    });
    (
        control::counter(stats, "udp_rx_datagrams"),
        control::total_drops(stats) - tx - recv_errors,
        delivered,
    )
}

/// Kernel IP / UDP receive error counters of a node's namespace (`/proc/net/snmp`): what the
/// stack refused of what reached it, the TUN included.
const SNMP_COUNTERS: [(&str, &str); 6] = [
    ("Ip", "InHdrErrors"),
    ("Ip", "InAddrErrors"),
    ("Ip", "InUnknownProtos"),
    ("Ip", "InDiscards"),
    ("Udp", "InCsumErrors"),
    ("Udp", "NoPorts"),
];

fn snmp(node: &Node) -> BTreeMap<String, u64> {
    let text = node
        .ns()
        .exec_checked("cat", &["/proc/net/snmp"])
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((proto, names)), Some((_, values))) =
            (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if SNMP_COUNTERS.contains(&(proto, name)) {
                out.insert(format!("{proto}:{name}"), value.parse().unwrap_or(0));
            }
        }
    }
    out
}

fn snmp_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    after
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} +{}",
                v.saturating_sub(before.get(k).copied().unwrap_or(0))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn loss_pct(sent: u64, got: usize) -> f64 {
    if sent == 0 {
        return 0.0;
    }
    100.0 * (sent.saturating_sub(got as u64)) as f64 / sent as f64
}

fn attack(backend: Backend) {
    let seconds = phase_seconds();
    let mut bed = Testbed::new(3, common::binaries_with_weftd()).expect("testbed");
    let overlay = Overlay::Weftd {
        backend,
        driver: DriverArg::Auto,
    };
    bed.start(&[overlay, overlay, overlay])
        .expect("weftd on a, b, c");
    bed.node(2)
        .ip(&[
            "addr",
            "add",
            &format!("{STRANGER}/24"),
            "dev",
            UNDERLAY_DEV,
        ])
        .expect("a second, non-peer address on c");
    let c_nets = [bed.node(2).subnet(), bed.node(2).subnet6()];
    let stop = Arc::new(AtomicBool::new(false));
    let sink_a = sink(bed.node(0), bed.node(1).pod_ip(), c_nets, Arc::clone(&stop));
    let sink_b = sink(bed.node(1), bed.node(0).pod_ip(), c_nets, Arc::clone(&stop));
    for n in 0..2 {
        weftctl::testbed::traffic::wait_for_port(
            bed.node(n).ns(),
            true,
            SINK_PORT,
            Duration::from_secs(5),
        )
        .expect("sink listening");
    }

    // Phase 0: the baseline.
    let base_sent = run_flows(&bed, 0, seconds);
    std::thread::sleep(Duration::from_millis(500));
    let before = [0, 1].map(|n| bed.control(n, "stats").expect("stats"));
    let snmp_before = [0, 1].map(|n| snmp(bed.node(n)));

    // Phase 1: the same flow under attack from c at a and b.
    let exe = common::binaries().weftctl;
    let attackers: Vec<usize> = [(1usize, 0usize), (0, 1)]
        .iter()
        .map(|&(target, spoof)| {
            let args = attack_args(&bed, backend, target, spoof);
            bed.spawn(2, &format!("attack-{target}"), &exe, &args)
                .expect("starting weftctl attack")
        })
        .collect();
    let attack_sent = run_flows(&bed, 1, seconds);
    let mut reports = Vec::new();
    for &h in &attackers {
        let p = bed.process(h);
        let status = p
            .wait(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(status.success(), "weftctl attack failed:\n{}", p.tail());
        let log = p.log();
        let line = log
            .lines()
            .find_map(|l| l.strip_prefix(REPORT_PREFIX))
            .unwrap_or_else(|| panic!("no report in the attack's log:\n{log}"));
        eprintln!(
            "{}",
            log.lines()
                .filter(|l| !l.starts_with(REPORT_PREFIX))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let report: serde_json::Value = serde_json::from_str(line).expect("report JSON");
        reports.push(report);
    }
    std::thread::sleep(Duration::from_millis(1000));
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
    let after = [0, 1].map(|n| bed.control(n, "stats").expect("stats"));
    for n in 0..2 {
        eprintln!(
            "kernel of {} under attack (informational): {}",
            ["a", "b"][n],
            snmp_delta(&snmp_before[n], &snmp(bed.node(n)))
        );
    }
    stop.store(true, Ordering::Relaxed);
    let seen_a = sink_a
        .join()
        .expect("sink a")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let seen_b = sink_b
        .join()
        .expect("sink b")
        .unwrap_or_else(|e| panic!("{e:#}"));

    let mut failures = Vec::new();
    // Loss: a -> b is seen by b's sink, b -> a by a's.
    for (dir, sent, seen) in [
        ("a -> b", (base_sent.0, attack_sent.0), &seen_b),
        ("b -> a", (base_sent.1, attack_sent.1), &seen_a),
    ] {
        let got = |phase: u8| seen.flow.get(&phase).map_or(0, HashSet::len);
        let (base, under) = (loss_pct(sent.0, got(0)), loss_pct(sent.1, got(1)));
        eprintln!(
            "flow {dir}: baseline {} of {} received ({base:.3} % lost), under attack {} of {} ({under:.3} % lost)",
            got(0),
            sent.0,
            got(1),
            sent.1
        );
        if under > base + LOSS_MARGIN_PCT {
            failures.push(format!(
                "flow {dir} lost {under:.3} % under attack, baseline {base:.3} % (+{LOSS_MARGIN_PCT} allowed)"
            ));
        }
        if got(0) == 0 {
            failures.push(format!(
                "flow {dir}: nothing received in the baseline: the check is blind"
            ));
        }
    }
    for (name, seen) in [("a", &seen_a), ("b", &seen_b)] {
        eprintln!(
            "sink {name}: {} datagram(s) from peer c's subnets (allowed), {} intruder(s)",
            seen.from_peer_c,
            seen.intruders.len()
        );
        if !seen.intruders.is_empty() {
            let shown: Vec<String> = seen
                .intruders
                .iter()
                .take(10)
                .map(|(from, n)| format!("{n} bytes from {from}"))
                .collect();
            failures.push(format!(
                "{} datagram(s) that a check must have dropped reached the pod of {name}: {}",
                seen.intruders.len(),
                shown.join(", ")
            ));
        }
    }
    // Drops by reason, per target.
    let c_underlay = bed.node(2).underlay().to_string();
    for (i, target) in [1usize, 0].into_iter().enumerate() {
        let report = &reports[i];
        let (b4, af) = (&before[target], &after[target]);
        let name = ["a", "b"][target];
        let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for kind in Kind::ALL {
            let sent = report["by_source"][&c_underlay][kind.name()]
                .as_u64()
                .unwrap_or(0);
            if sent == 0 {
                continue;
            }
            for &r in kind.reasons().iter().filter(|r| **r != "*") {
                expected.entry(r).or_default().push(kind.name());
            }
        }
        let stranger_sent: u64 = report["by_source"][&STRANGER.to_string()]
            .as_object()
            .map_or(0, |k| {
                k.values().filter_map(serde_json::Value::as_u64).sum()
            });
        if stranger_sent > 0 {
            expected
                .entry("unknown_peer")
                .or_default()
                .push("any, from the stranger");
        }
        let mut grew = Vec::new();
        for (reason, kinds) in &expected {
            let delta = control::drops(af, reason) - control::drops(b4, reason);
            grew.push(format!("{reason} +{delta}"));
            if delta == 0 {
                failures.push(format!(
                    "weftd on {name}: drop reason {reason} did not grow although {kinds:?} were sent"
                ));
            }
        }
        eprintln!("weftd on {name}: drops under attack: {}", grew.join(", "));
        let (rx0, drop0, del0) = rx_accounting(b4);
        let (rx1, drop1, del1) = rx_accounting(af);
        let (rx, dropped, delivered) = (rx1 - rx0, drop1 - drop0, del1 - del0);
        eprintln!(
            "weftd on {name}: {rx} datagrams received = {dropped} dropped + {delivered} delivered"
        );
        if rx != dropped + delivered {
            failures.push(format!(
                "weftd on {name}: counters do not add up: {rx} datagrams received but {dropped} dropped + {delivered} delivered"
            ));
        }
        let sent: u64 = report["by_kind"]
            .as_object()
            .map_or(0, |k| k.values().filter_map(|c| c["sent"].as_u64()).sum());
        if rx < sent / 2 {
            failures.push(format!(
                "weftd on {name} received {rx} datagrams of the {sent} sent at it: the attack did not arrive"
            ));
        }
    }
    for n in 0..3 {
        if let Some(p) = bed.overlay_process(n) {
            if p.log().contains("panicked") {
                failures.push(format!("{} panicked:\n{}", p.label(), p.tail()));
            }
        }
    }
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        failures.is_empty(),
        "under attack:\n{}",
        failures.join("\n")
    );
}

#[test]
fn attack_udp_backend() {
    require_root!();
    attack(Backend::Udp);
}

#[test]
fn attack_vxlan_backend() {
    require_root!();
    attack(Backend::Vxlan);
}

/// `--allow-foreign-inner-source` on b only: c sends a's pod address as the inner source to
/// both. The strict node (a) drops it as `spoofed`; the relaxed one (b) delivers it.
#[test]
fn foreign_inner_source_dropped_unless_allowed() {
    require_root!();
    let mut bed = Testbed::new(3, common::binaries_with_weftd()).expect("testbed");
    bed.add_weftd_args(1, &["--allow-foreign-inner-source"]);
    let overlay = Overlay::Weftd {
        backend: Backend::Udp,
        driver: DriverArg::Auto,
    };
    bed.start(&[overlay, overlay, overlay])
        .expect("weftd on a, b, c");
    let stop = Arc::new(AtomicBool::new(false));
    let c_nets = [bed.node(2).subnet(), bed.node(2).subnet6()];
    // The "legitimate" source of each sink is the pod the test spoofs, so only the count of
    // flow-less datagrams from it matters: they land in `intruders`.
    let sink_a = sink(bed.node(0), bed.node(1).pod_ip(), c_nets, Arc::clone(&stop));
    let sink_b = sink(bed.node(1), bed.node(0).pod_ip(), c_nets, Arc::clone(&stop));
    for n in 0..2 {
        weftctl::testbed::traffic::wait_for_port(
            bed.node(n).ns(),
            true,
            SINK_PORT,
            Duration::from_secs(5),
        )
        .expect("sink listening");
    }
    let before = [0, 1].map(|n| bed.control(n, "stats").expect("stats"));
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!("IPv4 pod address"),
    };
    // To b: a's pod as the source. To a: b's pod as the source.
    let datagrams = [(1usize, 0usize), (0, 1)].map(|(to, spoofed)| {
        let d = weft_testkit::packet::ipv4_udp(
            v4(bed.node(spoofed).pod_ip()),
            v4(bed.node(to).pod_ip()),
            40_000,
            SINK_PORT,
            b"spoofed by c",
        );
        (SocketAddr::new(bed.node(to).underlay().into(), 8285), d)
    });
    let c_underlay = bed.node(2).underlay();
    bed.node(2)
        .ns()
        .spawn_inside(move || {
            let s = UdpSocket::bind((c_underlay, 0))?;
            for _ in 0..5 {
                for (to, d) in &datagrams {
                    s.send_to(d, to)?;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
        .join()
        .expect("sender thread")
        .unwrap_or_else(|e| panic!("sending from c: {e:#}"));
    std::thread::sleep(Duration::from_millis(500));
    let after = [0, 1].map(|n| bed.control(n, "stats").expect("stats"));
    stop.store(true, Ordering::Relaxed);
    let seen_a = sink_a
        .join()
        .expect("sink a")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let seen_b = sink_b
        .join()
        .expect("sink b")
        .unwrap_or_else(|e| panic!("{e:#}"));
    let spoofed =
        |n: usize| control::drops(&after[n], "spoofed") - control::drops(&before[n], "spoofed");
    assert_eq!(spoofed(0), 5, "strict a must drop all 5 as spoofed");
    assert!(
        seen_a.intruders.is_empty(),
        "strict a delivered {:?}",
        seen_a.intruders
    );
    assert_eq!(spoofed(1), 0, "relaxed b counted spoofed drops");
    let from_a = bed.node(0).pod_ip();
    assert_eq!(
        seen_b
            .intruders
            .iter()
            .filter(|(s, _)| s.ip() == from_a)
            .count(),
        5,
        "relaxed b must deliver all 5: {:?}",
        seen_b.intruders
    );
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}
