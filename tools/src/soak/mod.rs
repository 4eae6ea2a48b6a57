//! `weftctl soak`: three weftd nodes in lease mode on a real etcd, mixed TCP and UDP traffic
//! across every pair while leases churn, for minutes; resources sampled, counters checked.
//!
//! Contract ([`run`]): a three-node testbed, etcd inside node a, weftd in lease mode (vxlan)
//! on each node. For [`Config::duration`]:
//! - a sequence-numbered UDP flow ([`UdpFlow`]) for each of the six ordered pairs at
//!   [`Config::udp_rate`] datagrams/s;
//! - a verified TCP stream of [`TCP_BYTES`] for each of the three pairs, over and over (one
//!   second apart, the direction alternating);
//! - lease churn: every [`CHURN_EVERY`], [`CHURN_BURST`] leases of fictitious nodes are put in
//!   one etcd transaction, and removed the next time;
//! - every [`Config::sample_every`] each weftd's RSS, open fds, threads and CPU time.
//!
//! Then the traffic stops and [`Report`] holds the verdict: no UDP datagram lost, every TCP
//! stream verified, every weftd alive and without a panic, no WARN / ERROR line in their logs,
//! RSS and fds flat (RSS growth from the first sample after warm-up at most
//! [`RSS_GROWTH_KIB`]; fds within [`FD_SLACK`]), and the counters add up: for each ordered
//! pair, the datagrams the sender's weftd sent to that peer = the datagrams the receiver's
//! weftd received from it + those the kernel counted as lost between them (UDP receive errors
//! in the receiver's namespace, drops on the underlay links); on each node every datagram
//! received went into the TUN or was dropped with a count (weftd's drop counters).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::pump::DropReason;
use serde_json::Value;

use crate::control;
use crate::testbed::leased::{
    problem_lines, proc_stats, vxlan_lease, FlowReport, LeasedNode, ProcStats, UdpFlow,
    CONFIG_VXLAN, ROLES,
};
use crate::testbed::traffic::{self, End};
use crate::testbed::{Binaries, Testbed};
use weft_testkit::etcd::{Etcd, PREFIX};

/// Bytes in each TCP stream.
pub const TCP_BYTES: u64 = 8 << 20;
/// Lease churn period.
pub const CHURN_EVERY: Duration = Duration::from_secs(3);
/// Leases per churn burst.
pub const CHURN_BURST: usize = 50;
/// Allowed RSS growth from the first sample after warm-up, KiB.
pub const RSS_GROWTH_KIB: u64 = 4096;
/// Allowed spread of open fds over the run.
pub const FD_SLACK: u64 = 2;
/// UDP flow datagram size.
const UDP_SIZE: usize = 400;
/// First UDP flow port.
const UDP_PORT: u16 = 7700;

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long the traffic runs.
    pub duration: Duration,
    /// Resource sampling period.
    pub sample_every: Duration,
    /// Datagrams/s of each UDP flow.
    pub udp_rate: u32,
    /// weftctl and weftd.
    pub binaries: Binaries,
}

/// One resource sample of one node.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the traffic started.
    pub at: Duration,
    /// The node.
    pub node: usize,
    /// Its weftd.
    pub proc: ProcStats,
}

/// The outcome.
#[derive(Debug, Default)]
pub struct Report {
    /// Resource samples.
    pub samples: Vec<Sample>,
    /// UDP flows: label and report.
    pub flows: Vec<(String, FlowReport)>,
    /// TCP streams completed and verified, bytes, failures (text).
    pub tcp_streams: u64,
    /// Bytes in verified TCP streams.
    pub tcp_bytes: u64,
    /// TCP stream failures.
    pub tcp_failures: Vec<String>,
    /// Churn bursts applied.
    pub churn_bursts: u64,
    /// Counter identities, as lines (`ok` or not).
    pub counters: Vec<(bool, String)>,
    /// Failures found.
    pub failures: Vec<String>,
}

impl Report {
    /// Whether the soak passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The table and the verdict, for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:>6}  {:>4}  {:>9}  {:>4}  {:>7}  {:>8}",
            "t (s)", "node", "RSS KiB", "fds", "threads", "CPU (s)"
        );
        for s in &self.samples {
            let _ = writeln!(
                out,
                "{:>6}  {:>4}  {:>9}  {:>4}  {:>7}  {:>8.2}",
                s.at.as_secs(),
                ROLES[s.node],
                s.proc.rss_kib,
                s.proc.fds,
                s.proc.threads,
                s.proc.cpu.as_secs_f64()
            );
        }
        let _ = writeln!(out);
        for (label, flow) in &self.flows {
            let _ = writeln!(out, "udp {label}: {flow}");
        }
        let _ = writeln!(
            out,
            "tcp: {} streams verified ({} MiB), {} failed",
            self.tcp_streams,
            self.tcp_bytes >> 20,
            self.tcp_failures.len()
        );
        for f in &self.tcp_failures {
            let _ = writeln!(out, "  {f}");
        }
        let _ = writeln!(
            out,
            "lease churn: {} bursts of {CHURN_BURST}",
            self.churn_bursts
        );
        for (ok, line) in &self.counters {
            let _ = writeln!(out, "counters {}: {line}", if *ok { "ok " } else { "BAD" });
        }
        if self.passed() {
            let _ = writeln!(out, "verdict: PASS");
        } else {
            let _ = writeln!(out, "verdict: FAIL");
            for f in &self.failures {
                let _ = writeln!(out, "  - {f}");
            }
        }
        out
    }
}

/// The kernel's UDP receive drops in a namespace (`InErrors` of
/// /proc/net/snmp, which include `RcvbufErrors`, read from inside it).
fn kernel_udp_drops(bed: &Testbed, node: usize) -> anyhow::Result<u64> {
    let text = bed
        .node(node)
        .ns()
        .exec_checked("cat", &["/proc/net/snmp"])?;
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        anyhow::bail!("no Udp lines in /proc/net/snmp");
    };
    let mut total = 0;
    for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
        if name == "InErrors" {
            total += value.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(total)
}

/// Frames the kernel dropped on the underlay's links (`ip -s link`: rx + tx `dropped` and
/// `errors` of every link in the node namespaces and the switch namespace).
fn link_drops(bed: &Testbed) -> anyhow::Result<u64> {
    let mut names: Vec<String> = bed
        .nodes()
        .iter()
        .map(|n| n.ns().name().to_owned())
        .collect();
    names.push(format!("{}-sw", bed.id()));
    let mut total = 0;
    for ns in names {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ip", "-s", "-j", "link", "show"])
            .output()
            .context("ip -s link")?;
        if !out.status.success() {
            continue; // two-node testbeds have no switch
        }
        let links: Value = serde_json::from_slice(&out.stdout).context("ip -s -j link JSON")?;
        for link in links.as_array().map(Vec::as_slice).unwrap_or_default() {
            for dir in ["rx", "tx"] {
                for field in ["dropped", "errors"] {
                    total += link
                        .pointer(&format!("/stats64/{dir}/{field}"))
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                }
            }
        }
    }
    Ok(total)
}

fn pump(stats: &Value, name: &str) -> u64 {
    control::counter(stats, name)
}

/// A peer's counter in a `stats` reply: the peer whose `public_ip` is `ip`.
fn peer_counter(stats: &Value, ip: Ipv4Addr, name: &str) -> u64 {
    stats
        .get("peers")
        .and_then(Value::as_array)
        .and_then(|peers| {
            peers
                .iter()
                .find(|p| p.get("public_ip").and_then(Value::as_str) == Some(&ip.to_string()))
        })
        .and_then(|p| p.get(name))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Checks the counter identities; returns (ok, line) pairs.
fn check_counters(bed: &Testbed, nodes: &[LeasedNode]) -> anyhow::Result<Vec<(bool, String)>> {
    let mut lines = Vec::new();
    let mut all = Vec::new();
    for n in nodes {
        all.push(n.stats()?);
    }
    let links = link_drops(bed)?;
    for (n, stats) in nodes.iter().zip(&all) {
        let rx = pump(stats, "udp_rx_datagrams");
        let into_tun = pump(stats, "tun_tx_packets") + pump(stats, "gro_merged");
        let rx_drops: u64 = DropReason::ALL
            .iter()
            .filter(|r| r.on_receive())
            .map(|r| control::drops(stats, r.as_str()))
            .sum();
        let tun_err = control::drops(stats, "tun_write_error");
        let ok = rx == into_tun + rx_drops + tun_err;
        lines.push((
            ok,
            format!(
                "node {}: received {rx} = into the TUN {into_tun} + receive drops {rx_drops} + \
                 TUN write errors {tun_err}{}",
                ROLES[n.index],
                if ok { "" } else { " (does not add up)" }
            ),
        ));
    }
    // Each ordered pair: what x sent to y = what y received from x + what the kernel counted
    // as lost between them (y's UDP receive errors, the underlay link drops: upper bounds).
    for (x, xs) in nodes.iter().zip(&all) {
        for (y, ys) in nodes.iter().zip(&all) {
            if x.index == y.index {
                continue;
            }
            let x_ip = bed.node(x.index).underlay();
            let y_ip = bed.node(y.index).underlay();
            let sent = peer_counter(xs, y_ip, "tx_packets");
            let received = peer_counter(ys, x_ip, "rx_packets");
            let kernel = kernel_udp_drops(bed, y.index)?;
            let ok = sent >= received && sent - received <= kernel + links;
            lines.push((
                ok,
                format!(
                    "{} -> {}: sent {sent} = received {received} + {} lost (kernel counted: UDP \
                     receive errors {kernel}, underlay link drops {links}){}",
                    ROLES[x.index],
                    ROLES[y.index],
                    sent as i128 - received as i128,
                    if ok { "" } else { " (not all counted)" }
                ),
            ));
        }
    }
    // The pump totals, for information: they also count sends the peers do not.
    let total = |name: &str| all.iter().map(|s| pump(s, name)).sum::<u64>();
    lines.push((
        true,
        format!(
            "info: pump totals: udp_tx_datagrams {} udp_rx_datagrams {} udp_tx_bytes {} \
             udp_rx_bytes {}",
            total("udp_tx_datagrams"),
            total("udp_rx_datagrams"),
            total("udp_tx_bytes"),
            total("udp_rx_bytes")
        ),
    ));
    Ok(lines)
}

/// Runs the soak (as root; see the module documentation).
pub fn run(config: &Config) -> anyhow::Result<Report> {
    let weftd: PathBuf = config
        .binaries
        .weftd
        .clone()
        .context("no weftd: build it with `cargo build --release -p engine` or pass --weftd")?;
    let mut bed = Testbed::new(3, config.binaries.clone())?;
    let etcd = Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), bed.dir())?;
    etcd.put("config", CONFIG_VXLAN)?;
    let store = etcd.store_args();
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(LeasedNode::start(&mut bed, &weftd, i, &store, &[])?);
    }
    for n in &nodes {
        for m in &nodes {
            if n.index != m.index {
                n.wait_route(&m.subnet()?, true, Duration::from_secs(15))?;
            }
        }
    }
    let pids: Vec<u32> = nodes
        .iter()
        .map(|n| n.pid(&mut bed).context("weftd pid"))
        .collect::<anyhow::Result<_>>()?;
    let ips: Vec<Ipv4Addr> = nodes
        .iter()
        .map(LeasedNode::tun_ip)
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "soak: 3 nodes ({}), {:?} of traffic, samples every {:?}",
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        config.duration,
        config.sample_every
    );

    let mut report = Report::default();
    let mut flows = Vec::new();
    let mut port = UDP_PORT;
    for from in 0..3 {
        for to in 0..3 {
            if from != to {
                let flow = UdpFlow::start(
                    bed.node(from).ns(),
                    ips[from],
                    bed.node(to).ns(),
                    ips[to],
                    port,
                    config.udp_rate,
                    UDP_SIZE,
                )?;
                flows.push((format!("{} -> {}", ROLES[from], ROLES[to]), flow));
                port += 1;
            }
        }
    }

    let stop = AtomicBool::new(false);
    let tcp_streams = AtomicU64::new(0);
    let tcp_bytes = AtomicU64::new(0);
    let churn_bursts = AtomicU64::new(0);
    let started = Instant::now();
    let (tcp_failures, churn_failure) = std::thread::scope(|scope| {
        let bed = &bed;
        let stop = &stop;
        let (tcp_streams, tcp_bytes, ips) = (&tcp_streams, &tcp_bytes, &ips);
        let mut tcp = Vec::new();
        for (a, b) in [(0usize, 1usize), (1, 2), (2, 0)] {
            tcp.push(scope.spawn(move || {
                let mut failures = Vec::new();
                let mut forward = true;
                let mut seed = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let (x, y) = if forward { (a, b) } else { (b, a) };
                    forward = !forward;
                    seed += 1;
                    let from = End {
                        ns: bed.node(x).ns(),
                        ip: ips[x].into(),
                    };
                    let to = End {
                        ns: bed.node(y).ns(),
                        ip: ips[y].into(),
                    };
                    match traffic::tcp_stream(
                        from,
                        to,
                        TCP_BYTES,
                        seed,
                        Duration::from_secs(20),
                        Duration::from_secs(120),
                    ) {
                        Ok(r) => {
                            tcp_streams.fetch_add(1, Ordering::Relaxed);
                            tcp_bytes.fetch_add(r.bytes, Ordering::Relaxed);
                        }
                        Err(e) => failures.push(format!("{} -> {}: {e:#}", ROLES[x], ROLES[y])),
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
                failures
            }));
        }
        let churn = scope.spawn(|| -> Option<String> {
            let key = |i: usize| format!("{PREFIX}/subnets/10.244.{}.0-24", 1 + i);
            let mut present = false;
            while !stop.load(Ordering::Relaxed) {
                let ops: Vec<String> = (0..CHURN_BURST)
                    .map(|i| {
                        if present {
                            format!("del {}", key(i))
                        } else {
                            let ip = Ipv4Addr::new(172, 16, 0, 1 + i as u8);
                            format!("put {} {}", key(i), vxlan_lease(ip, 0x100 + i as u16))
                        }
                    })
                    .collect();
                if let Err(e) = etcd.txn(&ops) {
                    return Some(format!("lease churn: {e:#}"));
                }
                present = !present;
                churn_bursts.fetch_add(1, Ordering::Relaxed);
                let until = Instant::now() + CHURN_EVERY;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if present {
                let ops: Vec<String> = (0..CHURN_BURST)
                    .map(|i| format!("del {}", key(i)))
                    .collect();
                if let Err(e) = etcd.txn(&ops) {
                    return Some(format!("lease churn clean-up: {e:#}"));
                }
            }
            None
        });
        // Sampling on this thread.
        let mut next = started;
        loop {
            let now = Instant::now();
            if now >= next {
                for (node, pid) in pids.iter().enumerate() {
                    match proc_stats(*pid) {
                        Ok(proc) => report.samples.push(Sample {
                            at: started.elapsed(),
                            node,
                            proc,
                        }),
                        Err(e) => report
                            .failures
                            .push(format!("node {}: weftd gone? {e:#}", ROLES[node])),
                    }
                }
                if let Some(last) = report.samples.chunks(3).last() {
                    eprintln!(
                        "soak {:>4} s: RSS {} KiB, fds {}",
                        started.elapsed().as_secs(),
                        last.iter()
                            .map(|s| s.proc.rss_kib.to_string())
                            .collect::<Vec<_>>()
                            .join(" / "),
                        last.iter()
                            .map(|s| s.proc.fds.to_string())
                            .collect::<Vec<_>>()
                            .join(" / ")
                    );
                }
                next += config.sample_every;
            }
            if started.elapsed() >= config.duration {
                break;
            }
            std::thread::sleep(
                next.saturating_duration_since(Instant::now())
                    .min(config.duration.saturating_sub(started.elapsed()))
                    .max(Duration::from_millis(10)),
            );
        }
        stop.store(true, Ordering::Relaxed);
        let tcp_failures: Vec<String> = tcp
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec!["a TCP thread panicked".into()])
            })
            .collect();
        let churn_failure = churn
            .join()
            .unwrap_or(Some("the churn thread panicked".into()));
        (tcp_failures, churn_failure)
    });
    report.tcp_failures = tcp_failures;
    report.tcp_streams = tcp_streams.load(Ordering::Relaxed);
    report.tcp_bytes = tcp_bytes.load(Ordering::Relaxed);
    report.churn_bursts = churn_bursts.load(Ordering::Relaxed);
    if let Some(e) = churn_failure {
        report.failures.push(e);
    }
    for (label, flow) in flows {
        let r = flow.finish()?;
        if r.lost_count() > 0 || r.sent == 0 {
            report.failures.push(format!(
                "udp {label}: {} of {} lost",
                r.lost_count(),
                r.sent
            ));
        }
        report.flows.push((label, r));
    }
    if !report.tcp_failures.is_empty() {
        report.failures.push(format!(
            "{} TCP stream(s) failed",
            report.tcp_failures.len()
        ));
    }
    if report.tcp_streams == 0 {
        report.failures.push("no TCP stream completed".into());
    }
    // Let the last datagrams land, then the counters.
    std::thread::sleep(Duration::from_secs(1));
    report.counters = check_counters(&bed, &nodes)?;
    for (ok, line) in &report.counters {
        if !ok {
            report.failures.push(format!("counters: {line}"));
        }
    }
    check_resources(&mut report);
    if let Err(e) = bed.check_alive() {
        report.failures.push(format!("{e:#}"));
    }
    for n in &nodes {
        let log = n.log(&mut bed);
        for line in problem_lines(&log) {
            report.failures.push(format!(
                "node {}: unexplained log line: {line}",
                ROLES[n.index]
            ));
        }
    }
    for n in nodes.drain(..) {
        bed.process(n.handle).stop();
    }
    drop(bed);
    drop(etcd);
    Ok(report)
}

/// RSS and fds flat: compares each node's samples after the warm-up (the first sample after
/// 10 % of the run) with the last ones.
fn check_resources(report: &mut Report) {
    for (node, role) in ROLES.iter().enumerate() {
        let samples: Vec<&Sample> = report.samples.iter().filter(|s| s.node == node).collect();
        let Some(last) = samples.last() else {
            report.failures.push(format!("node {}: no samples", role));
            continue;
        };
        let warm = samples
            .get(samples.len() / 10)
            .or(samples.first())
            .copied()
            .unwrap_or(last);
        let after: Vec<&&Sample> = samples.iter().filter(|s| s.at >= warm.at).collect();
        let max_rss = after.iter().map(|s| s.proc.rss_kib).max().unwrap_or(0);
        if max_rss > warm.proc.rss_kib + RSS_GROWTH_KIB {
            report.failures.push(format!(
                "node {}: RSS grew from {} KiB to {} KiB",
                role, warm.proc.rss_kib, max_rss
            ));
        }
        let fds_min = samples.iter().map(|s| s.proc.fds).min().unwrap_or(0);
        let fds_max = samples.iter().map(|s| s.proc.fds).max().unwrap_or(0);
        if fds_max > fds_min + FD_SLACK {
            report.failures.push(format!(
                "node {}: open fds went from {fds_min} to {fds_max}",
                role
            ));
        }
    }
}
