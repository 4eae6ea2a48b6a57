//! weftd in lease mode on a testbed: leased nodes on a real etcd in a node's namespace, and the
//! probes the fault, hostility and soak runs share.
//!
//! Contract:
//! - The etcd is the test kit's ([`weft_testkit::etcd::Etcd::start`]: inside a node's
//!   namespace, on its underlay address and loopback, killed by PID on drop);
//!   [`cut_from_etcd`] cuts a node off it with an iptables rule and lets it through again.
//! - [`LeasedNode::start`] runs weftd in lease mode on node `i` (`--public-ip` = the node's
//!   underlay, its own subnet file, the default control socket, `-v`) and waits for
//!   `weftd: ready`; [`LeasedNode::start_publishing`] tells weftd its underlay address
//!   another way ([`Publish`]: both families, IPv6 only, `--public-ipv6` alone, `--iface`).
//!   Its control socket is found from inside the node's namespace. [`LeasedNode::subnet`]
//!   reads the leased subnet from the subnet file; its first address (`.0`, the TUN's) is
//!   where traffic to the node goes ([`LeasedNode::tun_ip`]); likewise the IPv6 subnet of a
//!   dual-stack network ([`LeasedNode::subnet6`], [`LeasedNode::tun_ip6`]).
//! - [`UdpFlow`] sends sequence-numbered UDP datagrams between two TUN addresses at a fixed
//!   rate and reports which sequence numbers never arrived, when they were sent, and the
//!   longest silence at the receiver.
//! - [`proc_stats`] reads a process's CPU time, RSS and open fds from `/proc`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::process::{Pid, Signal};

use super::{Netns, Node, Testbed, UNDERLAY_DEV};
use crate::control;
use engine::model::Ipv6Net;
use weft_testkit::etcd::CLIENT_PORT;

/// A vxlan network config as an operator writes it.
pub const CONFIG_VXLAN: &str =
    r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "Backend": {"Type": "vxlan"}}"#;
/// Node letters.
pub const ROLES: [&str; 3] = ["a", "b", "c"];
/// How long a leased weftd gets to print `weftd: ready`.
pub const READY: Duration = Duration::from_secs(20);

/// Cuts the namespace `ns` off etcd (`cut`: an iptables rule resetting its connections to
/// etcd's client port) or lets it through again (`!cut`: the rule deleted).
pub fn cut_from_etcd(ns: &Netns, cut: bool) -> anyhow::Result<()> {
    let port = CLIENT_PORT.to_string();
    let rule = [
        "OUTPUT",
        "-p",
        "tcp",
        "--dport",
        &port,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    let mut args = vec![if cut { "-I" } else { "-D" }];
    args.extend(rule);
    ns.exec_checked("iptables", &args).map(drop)
}

/// How a leased weftd is told its underlay address (flanneld's flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Publish {
    /// `--public-ip <IPv4 underlay>` (the default). On a dual-stack network weftd then finds
    /// the IPv6 one on the interface holding it.
    #[default]
    Ipv4,
    /// `--public-ip <IPv4 underlay> --public-ipv6 <IPv6 underlay>`.
    DualStack,
    /// `--public-ip <IPv6 underlay>`: an IPv6-only underlay.
    Ipv6,
    /// `--public-ipv6 <IPv6 underlay>` alone: weftd takes the IPv4 address of its interface as
    /// the PublicIP.
    Ipv6Flag,
    /// `--iface veth0` and no address: weftd takes the interface's.
    Iface,
}

impl Publish {
    /// The flags for `node` (an error when its underlay lacks the family asked for).
    pub fn args(self, node: &Node) -> anyhow::Result<Vec<String>> {
        let v6 = || {
            node.underlay6()
                .map(|a| a.to_string())
                .context("the testbed's underlay has no IPv6 address (Options::underlay)")
        };
        let v4 = || node.underlay().to_string();
        Ok(match self {
            Publish::Ipv4 => vec!["--public-ip".into(), v4()],
            Publish::DualStack => vec!["--public-ip".into(), v4(), "--public-ipv6".into(), v6()?],
            Publish::Ipv6 => vec!["--public-ip".into(), v6()?],
            Publish::Ipv6Flag => vec!["--public-ipv6".into(), v6()?],
            Publish::Iface => vec!["--iface".into(), UNDERLAY_DEV.into()],
        })
    }
}

/// One weftd in lease mode on a testbed node.
#[derive(Debug)]
pub struct LeasedNode {
    /// The node's index in the testbed.
    pub index: usize,
    /// Its subnet.env.
    pub subnet_file: PathBuf,
    /// The node's network namespace, where weftd's default control socket is found.
    pub netns: String,
    /// weftd's arguments.
    pub args: Vec<String>,
    /// The testbed process handle of the current weftd.
    pub handle: usize,
    generation: usize,
    weftd: PathBuf,
    /// `NAME=value` pairs added to weftd's environment.
    env: Vec<String>,
}

impl LeasedNode {
    /// Starts weftd (`weftd`) on node `i` with the store flags `store` and `extra`, and waits
    /// until it is ready.
    pub fn start(
        bed: &mut Testbed,
        weftd: &Path,
        i: usize,
        store: &[String],
        extra: &[&str],
    ) -> anyhow::Result<LeasedNode> {
        let node = LeasedNode::spawn_only(bed, weftd, i, store, extra)?;
        node.wait_ready(bed)?;
        Ok(node)
    }

    /// Like [`LeasedNode::start`] without waiting for `weftd: ready`.
    pub fn spawn_only(
        bed: &mut Testbed,
        weftd: &Path,
        i: usize,
        store: &[String],
        extra: &[&str],
    ) -> anyhow::Result<LeasedNode> {
        LeasedNode::spawn_with_env(bed, weftd, i, store, extra, &[])
    }

    /// Like [`LeasedNode::spawn_only`], with `NAME=value` pairs (`env`) added to weftd's
    /// environment, on this start and every [`LeasedNode::respawn`].
    pub fn spawn_with_env(
        bed: &mut Testbed,
        weftd: &Path,
        i: usize,
        store: &[String],
        extra: &[&str],
        env: &[String],
    ) -> anyhow::Result<LeasedNode> {
        LeasedNode::spawn_publishing(bed, weftd, i, Publish::Ipv4, store, extra, env)
    }

    /// Like [`LeasedNode::start`] with the underlay address given as `publish` says.
    pub fn start_publishing(
        bed: &mut Testbed,
        weftd: &Path,
        i: usize,
        publish: Publish,
        store: &[String],
        extra: &[&str],
    ) -> anyhow::Result<LeasedNode> {
        let node = LeasedNode::spawn_publishing(bed, weftd, i, publish, store, extra, &[])?;
        node.wait_ready(bed)?;
        Ok(node)
    }

    /// Like [`LeasedNode::spawn_with_env`] with the underlay address given as `publish` says.
    pub fn spawn_publishing(
        bed: &mut Testbed,
        weftd: &Path,
        i: usize,
        publish: Publish,
        store: &[String],
        extra: &[&str],
        env: &[String],
    ) -> anyhow::Result<LeasedNode> {
        let dir = bed.dir().to_owned();
        let role = ROLES.get(i).context("node index")?;
        let subnet_file = dir.join(format!("subnet-{role}.env"));
        let mut args = publish.args(bed.node(i))?;
        args.extend([
            "--subnet-file".into(),
            subnet_file.display().to_string(),
            "--pump-threads".into(),
            "1".into(),
            "-v".into(),
        ]);
        args.extend(store.iter().cloned());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut node = LeasedNode {
            index: i,
            subnet_file,
            netns: bed.node(i).ns().name().to_owned(),
            args,
            handle: 0,
            generation: 0,
            weftd: weftd.to_owned(),
            env: env.to_vec(),
        };
        node.spawn(bed)?;
        Ok(node)
    }

    fn spawn(&mut self, bed: &mut Testbed) -> anyhow::Result<()> {
        let label = self.label();
        self.handle = if self.env.is_empty() {
            bed.spawn(self.index, &label, &self.weftd, &self.args)?
        } else {
            let mut with_env = self.env.clone();
            with_env.push(self.weftd.display().to_string());
            with_env.extend(self.args.iter().cloned());
            bed.spawn(self.index, &label, Path::new("/usr/bin/env"), &with_env)?
        };
        Ok(())
    }

    fn label(&self) -> String {
        format!("leased-{}-{}", ROLES[self.index], self.generation)
    }

    /// Waits for the current weftd's `weftd: ready`.
    pub fn wait_ready(&self, bed: &mut Testbed) -> anyhow::Result<()> {
        bed.process(self.handle)
            .wait_for_line("weftd: ready", READY)
            .with_context(|| format!("weftd on node {}", ROLES[self.index]))
    }

    /// Starts a new weftd with the same arguments (the old one must be gone); waits for ready.
    pub fn respawn(&mut self, bed: &mut Testbed) -> anyhow::Result<()> {
        self.generation += 1;
        self.spawn(bed)?;
        self.wait_ready(bed)
    }

    /// The current weftd's pid.
    pub fn pid(&self, bed: &mut Testbed) -> Option<u32> {
        bed.process(self.handle).pid()
    }

    /// Sends `signal` to the current weftd (our child, by PID).
    pub fn signal(&self, bed: &mut Testbed, signal: Signal) -> anyhow::Result<()> {
        let pid = self.pid(bed).context("weftd already reaped")?;
        let pid = Pid::from_raw(pid as i32).context("pid 0")?;
        rustix::process::kill_process(pid, signal).context("kill")?;
        Ok(())
    }

    /// The current weftd's log.
    pub fn log(&self, bed: &mut Testbed) -> String {
        bed.process(self.handle).log()
    }

    /// The leased subnet from the subnet file (`10.244.105.0/24`).
    pub fn subnet(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(&self.subnet_file)
            .with_context(|| format!("reading {}", self.subnet_file.display()))?;
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
            .with_context(|| format!("no FLANNEL_SUBNET in {text}"))?;
        let (ip, len) = line.split_once('/').context("FLANNEL_SUBNET has no /")?;
        let ip: Ipv4Addr = ip.parse().context("FLANNEL_SUBNET address")?;
        let base = Ipv4Addr::from(u32::from(ip) & !0xff);
        Ok(format!("{base}/{len}"))
    }

    /// The leased IPv6 subnet from the subnet file (`fd00:10:244:1a::/64`), None when the
    /// network is IPv4 only.
    pub fn subnet6(&self) -> anyhow::Result<Option<Ipv6Net>> {
        let text = std::fs::read_to_string(&self.subnet_file)
            .with_context(|| format!("reading {}", self.subnet_file.display()))?;
        text.lines()
            .find_map(|l| l.strip_prefix("FLANNEL_IPV6_SUBNET="))
            .map(|s| Ipv6Net::parse_masked(s).map_err(|e| anyhow::anyhow!("{e}")))
            .transpose()
            .context("FLANNEL_IPV6_SUBNET")
    }

    /// The TUN's IPv6 address (the IPv6 subnet's first address, weftd's `/128`).
    pub fn tun_ip6(&self) -> anyhow::Result<Ipv6Addr> {
        Ok(self
            .subnet6()?
            .context("no FLANNEL_IPV6_SUBNET in the subnet file")?
            .addr())
    }

    /// The lease's key as flannel writes it (`10.244.105.0-24`, dual stack
    /// `10.244.105.0-24&fd00:10:244:1a::-64`): its file name in a lease directory.
    pub fn lease_key(&self) -> anyhow::Result<String> {
        let mut key = self.subnet()?.replace('/', "-");
        if let Some(v6) = self.subnet6()? {
            key.push_str(&format!("&{}-{}", v6.addr(), v6.prefix_len()));
        }
        Ok(key)
    }

    /// The TUN's address (the subnet's `.0`), where traffic to this node goes.
    pub fn tun_ip(&self) -> anyhow::Result<Ipv4Addr> {
        let s = self.subnet()?;
        s.split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .context("subnet address")
    }

    /// weftd's `routes` reply as text.
    pub fn routes(&self) -> anyhow::Result<String> {
        Ok(control::request_in(&self.netns, None, "routes")?.to_string())
    }

    /// weftd's `stats` reply.
    pub fn stats(&self) -> anyhow::Result<serde_json::Value> {
        control::request_in(&self.netns, None, "stats")
    }

    /// Waits (up to `limit`) until the routes do / do not contain `needle`; returns the time.
    pub fn wait_route(
        &self,
        needle: &str,
        present: bool,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let text = self.routes().unwrap_or_default();
            if text.contains(needle) == present {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!(
                    "node {}: route {needle} {} after {limit:?}: {text}",
                    ROLES[self.index],
                    if present { "not there" } else { "still there" }
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A lease value as a flanneld vxlan node writes it.
pub fn vxlan_lease(public_ip: Ipv4Addr, mac_tail: u16) -> String {
    format!(
        r#"{{"PublicIP":"{public_ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"0e:00:00:00:{:02x}:{:02x}"}}}}"#,
        mac_tail >> 8,
        mac_tail & 0xff
    )
}

/// Lines of `log` that are warnings or errors (tracing's `WARN` / `ERROR` levels) or panics.
pub fn problem_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
        .map(str::to_owned)
        .collect()
}

/// What a [`UdpFlow`] saw.
#[derive(Debug, Clone, Default)]
pub struct FlowReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Distinct sequence numbers received.
    pub received: u64,
    /// Sequence numbers sent but never received, with when they were sent (since the flow
    /// started).
    pub lost: Vec<(u64, Duration)>,
    /// Datagrams received twice.
    pub duplicates: u64,
    /// The longest time the receiver went without a datagram, and when it started.
    pub longest_gap: (Duration, Duration),
    /// Send errors (e.g. ENETUNREACH while an interface is down).
    pub send_errors: u64,
    /// Datagrams whose length or bytes differ from what was sent (not counted as received).
    pub corrupted: u64,
    /// First arrivals of a sequence number lower than one already received.
    pub reordered: u64,
}

impl FlowReport {
    /// How many were lost.
    pub fn lost_count(&self) -> u64 {
        self.lost.len() as u64
    }
}

impl std::fmt::Display for FlowReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} received {} lost {} dup {} reordered {} corrupted {} send errors {} \
             longest gap {:?} at {:?}",
            self.sent,
            self.received,
            self.lost.len(),
            self.duplicates,
            self.reordered,
            self.corrupted,
            self.send_errors,
            self.longest_gap.0,
            self.longest_gap.1
        )?;
        if let (Some(first), Some(last)) = (self.lost.first(), self.lost.last()) {
            write!(
                f,
                " (lost #{} at {:?} .. #{} at {:?})",
                first.0, first.1, last.0, last.1
            )?;
        }
        Ok(())
    }
}

/// Sequence-numbered UDP datagrams from one namespace address to another at a fixed rate.
/// Payload: sequence number (8 bytes), then bytes derived from it ([`flow_fill`]), which the
/// receiver checks, with the length, so a corrupted datagram is counted, not received.
#[derive(Debug)]
pub struct UdpFlow {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<anyhow::Result<SenderEnd>>>,
    receiver: Option<JoinHandle<anyhow::Result<ReceiverEnd>>>,
    started: Instant,
}

/// What the sender thread returns: datagrams sent, send errors, the interval.
type SenderEnd = (u64, u64, Duration);
/// What the receiver thread returns.
#[derive(Debug, Default)]
struct ReceiverEnd {
    /// Per sequence number its first arrival time.
    arrivals: Vec<Option<Duration>>,
    duplicates: u64,
    corrupted: u64,
    reordered: u64,
}

/// The bytes after the sequence number of datagram `seq`.
pub fn flow_fill(seq: u64, rest: &mut [u8]) {
    let k = (seq as u8).wrapping_mul(31) | 1;
    for (i, b) in rest.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(k) ^ (seq >> 8) as u8;
    }
}

/// How long the receiver waits for stragglers after the sender stops.
const FLOW_DRAIN: Duration = Duration::from_millis(500);

impl UdpFlow {
    /// Starts a flow of `rate` datagrams/s of `size` bytes from `src` in `from` to `dst`:`port`
    /// in `to`.
    pub fn start(
        from: &Netns,
        src: Ipv4Addr,
        to: &Netns,
        dst: Ipv4Addr,
        port: u16,
        rate: u32,
        size: usize,
    ) -> anyhow::Result<UdpFlow> {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let rstop = Arc::clone(&stop);
        let size = size.max(8);
        let receiver = to.spawn_inside(move || {
            let socket = UdpSocket::bind(SocketAddr::from((dst, port)))
                .with_context(|| format!("binding UDP {dst}:{port}"))?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = ready_tx.send(());
            let mut end = ReceiverEnd::default();
            let mut highest: Option<usize> = None;
            let mut expected = vec![0u8; size];
            let mut buf = vec![0u8; 65536];
            let mut stopped_at: Option<Instant> = None;
            loop {
                if rstop.load(Ordering::Relaxed) {
                    let at = *stopped_at.get_or_insert_with(Instant::now);
                    if at.elapsed() > FLOW_DRAIN {
                        break;
                    }
                }
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let mut seq = [0u8; 8];
                        seq.copy_from_slice(&buf[..8]);
                        let seq64 = u64::from_be_bytes(seq);
                        expected[..8].copy_from_slice(&seq);
                        flow_fill(seq64, &mut expected[8..]);
                        if n != size || buf[..n] != expected[..] || seq64 > 100_000_000 {
                            end.corrupted += 1;
                            continue;
                        }
                        let seq = seq64 as usize;
                        if end.arrivals.len() <= seq {
                            end.arrivals.resize(seq + 1, None);
                        }
                        if end.arrivals[seq].is_some() {
                            end.duplicates += 1;
                        } else {
                            end.arrivals[seq] = Some(started.elapsed());
                            if highest.is_some_and(|h| h > seq) {
                                end.reordered += 1;
                            }
                            highest = highest.max(Some(seq));
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e).context("receiving the flow"),
                }
            }
            Ok(end)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("the flow receiver did not bind {dst}:{port}"))?;
        let sstop = Arc::clone(&stop);
        let sender = from.spawn_inside(move || {
            let socket = UdpSocket::bind(SocketAddr::from((src, 0)))
                .with_context(|| format!("binding UDP {src}"))?;
            let to = SocketAddr::from((dst, port));
            let mut buf = vec![0u8; size];
            let interval = Duration::from_secs(1) / rate.max(1);
            let t0 = Instant::now();
            let mut seq = 0u64;
            let mut errors = 0u64;
            while !sstop.load(Ordering::Relaxed) {
                let due = t0 + interval * u32::try_from(seq).unwrap_or(u32::MAX);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                buf[..8].copy_from_slice(&seq.to_be_bytes());
                flow_fill(seq, &mut buf[8..]);
                if socket.send_to(&buf, to).is_err() {
                    errors += 1;
                }
                seq += 1;
            }
            Ok((seq, errors, interval))
        });
        Ok(UdpFlow {
            stop,
            sender: Some(sender),
            receiver: Some(receiver),
            started,
        })
    }

    /// How long the flow has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the flow (the receiver waits a moment for stragglers) and reports.
    pub fn finish(mut self) -> anyhow::Result<FlowReport> {
        self.stop.store(true, Ordering::Relaxed);
        let (sent, send_errors, interval) = join(self.sender.take())?;
        let end = join(self.receiver.take())?;
        let arrivals = end.arrivals;
        let mut report = FlowReport {
            sent,
            duplicates: end.duplicates,
            corrupted: end.corrupted,
            reordered: end.reordered,
            send_errors,
            ..FlowReport::default()
        };
        let mut times: Vec<Duration> = Vec::new();
        for seq in 0..sent {
            match arrivals.get(seq as usize).copied().flatten() {
                Some(t) => {
                    report.received += 1;
                    times.push(t);
                }
                None => report
                    .lost
                    .push((seq, interval * u32::try_from(seq).unwrap_or(u32::MAX))),
            }
        }
        times.sort();
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            if gap > report.longest_gap.0 {
                report.longest_gap = (gap, w[0]);
            }
        }
        Ok(report)
    }
}

fn join<T>(handle: Option<JoinHandle<anyhow::Result<T>>>) -> anyhow::Result<T> {
    match handle {
        Some(h) => h
            .join()
            .map_err(|_| anyhow::anyhow!("a flow thread panicked"))?,
        None => bail!("the flow was already finished"),
    }
}

impl Drop for UdpFlow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
    }
}

/// One process's resource use from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads `pid`'s CPU time, RSS, fd and thread counts.
pub fn proc_stats(pid: u32) -> anyhow::Result<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/pid/stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15, num_threads 20.
    let num = |i: usize| -> u64 {
        fields
            .get(i - 3)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    };
    let ticks = num(14) + num(15);
    let hz = 100; // USER_HZ on Linux
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or_default();
    Ok(ProcStats {
        cpu: Duration::from_millis(ticks * 1000 / hz),
        rss_kib,
        fds,
        threads: num(20),
    })
}

/// Sends SIGKILL to `pid` (a child of ours).
pub fn kill9(pid: u32) -> anyhow::Result<()> {
    let pid = Pid::from_raw(pid as i32).context("pid 0")?;
    rustix::process::kill_process(pid, Signal::KILL).context("SIGKILL")
}
