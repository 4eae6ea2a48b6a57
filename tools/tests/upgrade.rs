//! Upgrade without loss. A new weftd started beside the running one with the
//! same flags and `--upgrade` takes its TUN queues, UDP sockets and control socket over
//! (daemon/handover.rs), while a 1-ms ICMP echo probe (the testbed's own, sequence-numbered)
//! and a verified TCP stream run between the two nodes' pods.
//!
//! - Static mode, vxlan, 2 pump threads: today's way first (SIGTERM, then the new weftd: the
//!   baseline, measured with the same probe), then an upgrade (poll -> io_uring driver) and a
//!   downgrade (io_uring -> poll, asked with `--pump-threads 1`: it adapts to the 2 queues).
//!   Upgrade and downgrade: no probe lost, the stream never stands still for 200 ms (a
//!   retransmission timeout), no reset, every byte verified. A handover asked at another
//!   protocol version is refused and the running weftd carries on.
//! - Lease mode (lease directory), udp backend, `--ip-blackhole-route` (and `--ip-masq` when
//!   iptables is installed): the same across an upgrade; the subnet, the lease, the subnet
//!   file, the blackhole route and the rules stay; then once more by SIGUSR2 (what the unit's
//!   `ExecReload` sends: weftd starts its own successor), the same; the last weftd then
//!   stops cleanly (TUN and rules gone).
//! - The old weftd killed in the middle of the handover (test knob
//!   `WEFTD_TEST_DIE_IN_HANDOVER`): before the descriptors went, the new weftd starts
//!   normally and forwards; after they went, it carries on with them and forwards.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`).

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;

use engine::config::DriverArg;
use engine::model::Backend;
use weft_testkit::{require_root, wait};
use weftctl::testbed::leased::LeasedNode;
use weftctl::testbed::ping::{self, Echo, EchoReport};
use weftctl::testbed::traffic::{self, End, StreamReport};
use weftctl::testbed::{Netns, Overlay, Process, Testbed, WEFTD_READY};

/// Probe requests, one per millisecond.
const PROBES: u16 = 3000;
/// The stream runs as long as the probe.
const STREAM_TIME: Duration = Duration::from_millis(3000);
/// When the upgrade starts after the traffic (a schedule, not a wait for a condition).
const LEAD: Duration = Duration::from_millis(700);
/// A stream that stands still this long is a failure outright.
const STALL: Duration = Duration::from_secs(5);
/// A TCP retransmission timeout: the upgrade must stall the stream for well under it.
const RTO: Duration = Duration::from_millis(200);
/// How long a weftd gets to be ready, and an old one to exit after a handover.
const READY: Duration = Duration::from_secs(20);

/// What the probe and the stream saw across one change of weftd.
struct Window {
    probe: EchoReport,
    stream: anyhow::Result<StreamReport>,
}

impl Window {
    fn lost(&self) -> usize {
        self.probe.sent() - self.probe.received()
    }

    /// The longest run of consecutive lost probes, in probes (about milliseconds).
    fn longest_probe_hole(&self) -> usize {
        let mut longest = 0;
        let mut run = 0;
        for r in &self.probe.rtts {
            run = if r.is_none() { run + 1 } else { 0 };
            longest = longest.max(run);
        }
        longest
    }

    fn line(&self, what: &str) -> String {
        let stream = match &self.stream {
            Ok(s) => format!(
                "stream {} MiB verified, longest gap {:.1} ms",
                s.bytes >> 20,
                s.longest_gap.as_secs_f64() * 1e3
            ),
            Err(e) => format!("stream FAILED: {e:#}"),
        };
        format!(
            "{what}: probe {} sent, {} lost (longest hole {} probes); {stream}",
            self.probe.sent(),
            self.lost(),
            self.longest_probe_hole()
        )
    }

    /// No probe lost, the stream intact and never still for an RTO.
    fn assert_lossless(&self, what: &str) {
        let line = self.line(what);
        assert_eq!(self.lost(), 0, "{line}; {}", self.probe);
        let stream = self
            .stream
            .as_ref()
            .unwrap_or_else(|e| panic!("{line}: {e:#}"));
        assert!(stream.bytes > 0, "{line}");
        assert!(stream.longest_gap < RTO, "{line}");
    }
}

/// Runs the probe and the stream from `from` to `to`, and `change` [`LEAD`] into them.
fn across(from: End<'_>, to: End<'_>, change: impl FnOnce()) -> Window {
    let echo = Echo {
        count: PROBES,
        interval: Duration::from_millis(1),
        wait: Duration::from_secs(1),
        ..Echo::default()
    };
    std::thread::scope(|scope| {
        let probe = scope.spawn(|| ping::echo(from, to.ip, &echo));
        let stream =
            scope.spawn(|| traffic::tcp_stream_for(from, to, STREAM_TIME, common::seed(), STALL));
        std::thread::sleep(LEAD);
        change();
        let probe = probe
            .join()
            .expect("probe thread")
            .unwrap_or_else(|e| panic!("probe: {e:#}"));
        let stream = stream.join().expect("stream thread");
        Window { probe, stream }
    })
}

fn weftd() -> PathBuf {
    common::binaries_with_weftd().weftd.expect("weftd")
}

/// `args` with the value after `flag` replaced by `value` (added when missing).
fn with_flag(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut out = args.to_vec();
    match out.iter().position(|a| a == flag) {
        Some(i) if i + 1 < out.len() => out[i + 1] = value.to_owned(),
        _ => out.extend([flag.to_owned(), value.to_owned()]),
    }
    out
}

/// Starts `weftd args` in `ns`, logging to `<dir>/<label>.log`, and waits until it is ready.
fn start_weftd(ns: &Netns, dir: &Path, label: &str, args: &[String]) -> Process {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let weftd = weftd();
    let cmd = ns.command(weftd.to_str().expect("UTF-8 path"), &args);
    let mut p = Process::spawn(label, cmd, &dir.join(format!("{label}.log"))).expect("spawn");
    p.wait_for_line(WEFTD_READY, READY)
        .unwrap_or_else(|e| panic!("{e:#}"));
    p
}

/// Starts `weftd args --upgrade` beside the running one, in `ns`; returns once it is ready.
fn start_successor(ns: &Netns, dir: &Path, label: &str, args: &[String]) -> Process {
    let mut args = args.to_vec();
    args.push("--upgrade".to_owned());
    let new = start_weftd(ns, dir, label, &args);
    let log = new.log();
    assert!(log.contains("took over TUN"), "{label}:\n{log}");
    new
}

/// Checks that `old` handed over and exited 0.
fn assert_handed_over(old: &mut Process) {
    let status = old
        .wait(READY)
        .unwrap_or_else(|e| panic!("the old weftd did not go: {e:#}"));
    let log = old.log();
    assert!(status.success(), "{}: {status}\n{log}", old.label());
    assert!(
        log.contains("handed the data path over"),
        "{}:\n{log}",
        old.label()
    );
}

/// Whether our child `pid` has exited (a zombie not reaped yet, or gone).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Sends SIGTERM to `pid` (ours, or started by a weftd of ours) and waits until it exited.
fn terminate(pid: u32) {
    signal(pid, Signal::TERM);
    let gone = wait::until_every(READY, Duration::from_millis(1), || exited(pid));
    assert!(gone.is_some(), "pid {pid} ignored SIGTERM");
}

#[test]
fn static_mode_upgrade_and_downgrade_lose_nothing() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    bed.set_pump_threads(Some(2));
    // The health port too is the old weftd's until it goes: the new one takes it then.
    bed.add_weftd_args(0, &["--healthz-port", "9464"]);
    let overlay = Overlay::Weftd {
        backend: Backend::Vxlan,
        driver: DriverArg::Poll,
    };
    bed.start(&[overlay, overlay]).expect("weftd on both nodes");
    let args = bed.weftd_args(0);
    let first_pid = bed.overlay_process(0).and_then(|p| p.pid()).expect("pid");

    // Another protocol version (a binary that would not understand us) is refused, and the
    // running weftd carries on.
    let refused = bed.control(0, "handover 99").expect("control");
    let error = refused["error"].as_str().unwrap_or_default();
    assert!(error.contains("version 99 refused"), "{refused}");
    assert_eq!(refused["handover_version"], 1, "{refused}");
    assert_eq!(bed.control(0, "stats").expect("stats")["threads"], 2);

    let dir = bed.dir().to_owned();
    let ns = bed.node(0).ns();
    let (a, b) = (bed.node(0).pod(), bed.node(1).pod());
    // Before: today's way, SIGTERM then the same weftd again.
    let mut restarted = None;
    let baseline = across(a, b, || {
        terminate(first_pid);
        restarted = Some(start_weftd(ns, &dir, "weftd-a-restarted", &args));
    });
    let mut old = restarted.expect("restarted");

    // The upgrade: poll -> io_uring, same threads.
    let uring = with_flag(&args, "--io-driver", "uring");
    let mut upgraded = None;
    let up = across(a, b, || {
        upgraded = Some(start_successor(ns, &dir, "weftd-a-upgraded", &uring));
    });
    assert_handed_over(&mut old);
    let mut old = upgraded.expect("upgraded");
    old.wait_for_line("healthz http://", READY)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stats = bed.control(0, "stats").expect("stats");
    assert_eq!(stats["driver"], "uring", "{stats}");

    // The downgrade: back to poll, asking for 1 thread: it takes the 2 queues there are.
    let poll = with_flag(&args, "--pump-threads", "1");
    let mut downgraded = None;
    let down = across(a, b, || {
        downgraded = Some(start_successor(ns, &dir, "weftd-a-downgraded", &poll));
    });
    assert_handed_over(&mut old);
    let mut current = downgraded.expect("downgraded");
    current
        .wait_for_line("healthz http://", READY)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stats = bed.control(0, "stats").expect("stats");
    assert_eq!(stats["driver"], "poll", "{stats}");
    assert_eq!(stats["threads"], 2, "{stats}");
    assert!(
        current.log().contains("a running TUN keeps its queues"),
        "{}",
        current.log()
    );

    eprintln!("{}", baseline.line("before: SIGTERM + restart"));
    eprintln!("{}", up.line("upgrade (poll -> uring)"));
    eprintln!("{}", down.line("downgrade (uring -> poll)"));
    up.assert_lossless("upgrade");
    down.assert_lossless("downgrade");
    traffic::ping(a, b.ip, 3, None).expect("ping after the downgrade");
    let status = bed.overlay_process(0).and_then(Process::try_status);
    assert!(
        status.is_some_and(|s| s.success()),
        "first weftd: {status:?}"
    );
}

/// A lease-directory network of the udp backend for 2 weftd nodes; the store flags.
fn lease_dir(bed: &Testbed) -> Vec<String> {
    let dir = bed.dir().join("leases");
    std::fs::create_dir_all(&dir).expect("lease dir");
    std::fs::write(
        dir.join("config"),
        r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "Backend": {"Type": "udp"}}"#,
    )
    .expect("config");
    vec!["--lease-dir".to_owned(), dir.display().to_string()]
}

fn start_leased(
    bed: &mut Testbed,
    store: &[String],
    extra: &[&str],
    env: [&[String]; 2],
) -> Vec<LeasedNode> {
    let weftd = weftd();
    let nodes: Vec<LeasedNode> = (0..2)
        .map(|i| {
            let n =
                LeasedNode::spawn_with_env(bed, &weftd, i, store, extra, env[i]).expect("weftd");
            n.wait_ready(bed).expect("ready");
            n
        })
        .collect();
    for n in &nodes {
        let other = nodes[1 - n.index].subnet().expect("subnet");
        n.wait_route(&other, true, READY).expect("mesh");
    }
    nodes
}

fn tun_end<'a>(bed: &'a Testbed, node: &LeasedNode) -> End<'a> {
    End {
        ns: bed.node(node.index).ns(),
        ip: IpAddr::V4(node.tun_ip().expect("tun ip")),
    }
}

fn ip_in(bed: &Testbed, node: usize, args: &[&str]) -> String {
    bed.node(node)
        .ns()
        .exec_checked("ip", args)
        .unwrap_or_default()
}

fn masq_rules(bed: &Testbed, node: usize) -> usize {
    bed.node(node)
        .ns()
        .exec_checked("iptables", &["-t", "nat", "-S"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("flanneld masq"))
        .count()
}

#[test]
fn lease_mode_upgrade_loses_nothing_and_keeps_the_lease() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let store = lease_dir(&bed);
    let masq = weft_testkit::privileges::on_path("iptables");
    let mut extra = vec!["--ip-blackhole-route"];
    if masq {
        extra.push("--ip-masq");
    } else {
        eprintln!("iptables not installed: the masquerade rules are not checked");
    }
    let none: &[String] = &[];
    let nodes = start_leased(&mut bed, &store, &extra, [none, none]);
    let subnet = nodes[0].subnet().expect("subnet");
    let env_before = std::fs::read_to_string(&nodes[0].subnet_file).expect("subnet file");
    let rules_before = if masq { masq_rules(&bed, 0) } else { 0 };
    let lease_file = Path::new(&store[1])
        .join("subnets")
        .join(subnet.replace('/', "-"));
    assert!(lease_file.is_file(), "{}", lease_file.display());

    let (a, b) = (tun_end(&bed, &nodes[0]), tun_end(&bed, &nodes[1]));
    let args = nodes[0].args.clone();
    let dir = bed.dir().to_owned();
    let mut upgraded = None;
    let window = across(a, b, || {
        upgraded = Some(start_successor(a.ns, &dir, "leased-a-upgraded", &args));
    });
    let mut new = upgraded.expect("upgraded");
    assert_handed_over(bed.process(nodes[0].handle));
    let (a, b) = (tun_end(&bed, &nodes[0]), tun_end(&bed, &nodes[1]));
    eprintln!("{}", window.line("lease mode upgrade"));
    window.assert_lossless("lease mode upgrade");

    // Everything the old weftd set up is still there, and the new one runs it.
    assert_eq!(nodes[0].subnet().expect("subnet"), subnet);
    let env_after = std::fs::read_to_string(&nodes[0].subnet_file).expect("subnet file");
    assert_eq!(env_after, env_before);
    assert!(
        lease_file.is_file(),
        "the lease went: {}",
        lease_file.display()
    );
    let blackhole = ip_in(&bed, 0, &["route", "show", "type", "blackhole"]);
    assert!(
        blackhole.contains(&subnet),
        "blackhole route: {blackhole:?}"
    );
    if masq {
        assert_eq!(masq_rules(&bed, 0), rules_before, "masquerade rules");
    }
    nodes[1]
        .wait_route(&subnet, true, READY)
        .expect("node b still routes a's lease");
    let log = new.log();
    assert!(
        log.contains(&format!("lease {}", subnet.replace('/', "-"))),
        "{log}"
    );

    // Once more the way the systemd unit's ExecReload does it: SIGUSR2 makes the running
    // weftd start its own successor (same binary path and flags, --upgrade).
    let pid = new.pid().expect("pid");
    let mut successor = None;
    let reload = across(a, b, || {
        signal(pid, Signal::USR2);
        assert_handed_over(&mut new);
        successor = Some(successor_pid(&new.log()));
    });
    let successor = Successor(successor.expect("successor pid"));
    eprintln!("{}", reload.line("lease mode upgrade by SIGUSR2"));
    reload.assert_lossless("lease mode upgrade by SIGUSR2");
    traffic::ping(a, b.ip, 3, None).expect("ping after the SIGUSR2 upgrade");

    // The last weftd owns it all: SIGTERM tears it down as any weftd's.
    terminate(successor.0);
    assert!(
        !ip_in(&bed, 0, &["link", "show"]).contains("flannel0"),
        "TUN left after SIGTERM"
    );
    if masq {
        assert_eq!(masq_rules(&bed, 0), 0, "rules left after SIGTERM");
    }
}

/// DirectRouting's kernel routes are the successor's after an upgrade: the old weftd leaves
/// them in place (removing them would send the neighbours' traffic into the overlay, or
/// nowhere); the last weftd's SIGTERM removes them.
#[test]
fn direct_routes_survive_an_upgrade() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let store = lease_dir(&bed);
    std::fs::write(
        Path::new(&store[1]).join("config"),
        r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0",
            "Backend": {"Type": "udp", "DirectRouting": true}}"#,
    )
    .expect("config");
    let none: &[String] = &[];
    let nodes = start_leased(&mut bed, &store, &[], [none, none]);
    let b_subnet = nodes[1].subnet().expect("subnet");
    let via = format!("{b_subnet} via {} ", bed.node(1).underlay());
    let route = |bed: &Testbed| ip_in(bed, 0, &["route", "show", &b_subnet]);
    let deadline = std::time::Instant::now() + READY;
    while !route(&bed).contains(&via) {
        assert!(std::time::Instant::now() < deadline, "{:?}", route(&bed));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let args = nodes[0].args.clone();
    let dir = bed.dir().to_owned();
    let new = start_successor(bed.node(0).ns(), &dir, "leased-a-direct", &args);
    assert_handed_over(bed.process(nodes[0].handle));
    // The old weftd is gone; its routes are not.
    assert!(route(&bed).contains(&via), "{:?}", route(&bed));
    let (a, b) = (tun_end(&bed, &nodes[0]), tun_end(&bed, &nodes[1]));
    traffic::ping(a, b.ip, 3, None).expect("ping over the direct route after the upgrade");
    terminate(new.pid().expect("pid"));
    assert!(!route(&bed).contains(" via "), "{:?}", route(&bed));
}

/// The pid in `handed the data path over to pid N` of an old weftd's log.
fn successor_pid(log: &str) -> u32 {
    log.lines()
        .find_map(|l| l.split("handed the data path over to pid ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no successor pid in:\n{log}"))
}

/// A weftd started by a weftd of ours (SIGUSR2): stopped by pid when the test ends, also on
/// failure.
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        if !exited(self.0) {
            signal(self.0, Signal::TERM);
            let pid = self.0;
            wait::until_every(Duration::from_secs(5), Duration::from_millis(10), || {
                exited(pid)
            });
        }
    }
}

fn signal(pid: u32, signal: Signal) {
    let target = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(target, signal).expect("kill");
}

#[test]
fn old_weftd_killed_mid_handover_leaves_a_forwarding_node() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let store = lease_dir(&bed);
    let before = ["WEFTD_TEST_DIE_IN_HANDOVER=before-fds".to_owned()];
    let after = ["WEFTD_TEST_DIE_IN_HANDOVER=after-fds".to_owned()];
    let nodes = start_leased(&mut bed, &store, &[], [&before, &after]);

    let dir = bed.dir().to_owned();
    let mut successors = Vec::new();
    for (i, fell_back) in [(0, true), (1, false)] {
        let mut args = nodes[i].args.clone();
        args.push("--upgrade".to_owned());
        let new = start_weftd(
            bed.node(i).ns(),
            &dir,
            &format!("leased-{i}-successor"),
            &args,
        );
        let status = bed.process(nodes[i].handle).wait(READY).expect("old gone");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "the old weftd should have killed itself: {status}"
        );
        let log = new.log();
        if fell_back {
            assert!(
                log.contains("went away in the middle of the handover"),
                "{log}"
            );
            assert!(!log.contains("took over TUN"), "{log}");
        } else {
            assert!(log.contains("took over TUN"), "{log}");
        }
        let other = nodes[1 - i].subnet().expect("subnet");
        nodes[i].wait_route(&other, true, READY).expect("routes");
        let (from, to) = (tun_end(&bed, &nodes[i]), tun_end(&bed, &nodes[1 - i]));
        traffic::ping(from, to.ip, 3, None)
            .unwrap_or_else(|e| panic!("node {i} after the kill: {e:#}\n{log}"));
        eprintln!(
            "node {i}: old weftd killed {} the descriptors went: the new one {}",
            if fell_back { "before" } else { "after" },
            if fell_back {
                "started anew and forwards"
            } else {
                "carried on with them and forwards"
            }
        );
        successors.push(new);
    }
}
