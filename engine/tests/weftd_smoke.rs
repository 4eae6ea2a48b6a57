//! End-to-end smoke tests of the `weftd` binary: two instances in two network namespaces
//! joined by a veth pair, udp and vxlan backends, pings both ways (IPv4 and IPv6 inner), the
//! control socket, SIGHUP reload and a clean SIGTERM exit. Pings are ICMP echoes sent on a
//! thread inside the namespace ([`icmp_echo`]): no iputils-ping needed.
//!
//! Needs root (network namespaces, TUN). Outside CI a missing privilege skips with a printed
//! reason; with `CI=true` it fails (the same rule as `engine::test_support::require_root!`).
//! Namespaces are named `wfp-<pid>-<n>` and deleted by a Drop guard, also on failure; weftd
//! processes are stopped by PID.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const WEFTD: &str = env!("CARGO_BIN_EXE_weftd");

/// Why these tests cannot run here, or `None`.
fn missing_privileges() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".to_owned());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun does not exist".to_owned());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("the ip tool (iproute2) is missing".to_owned()),
    }
}

macro_rules! require_root {
    ($name:literal) => {
        if let Some(reason) = missing_privileges() {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{}: cannot run: {reason}; with CI=true this test must run as root",
                $name
            );
            eprintln!("skipping {}: {reason}", $name);
            return;
        }
    };
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sh_ok(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces joined by a veth pair: `a` has 192.168.250.1/24 and fd99::1/64, `b`
/// 192.168.250.2/24 and fd99::2/64.
/// Deleted on drop.
struct Testbed {
    ns: [String; 2],
    dir: PathBuf,
}

impl Testbed {
    fn new() -> Testbed {
        let id = format!(
            "wfp-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = [format!("{id}-a"), format!("{id}-b")];
        let dir = std::env::temp_dir().join(&id);
        let bed = Testbed { ns, dir };
        std::fs::create_dir_all(&bed.dir).unwrap();
        let [a, b] = &bed.ns;
        sh(&["ip", "netns", "add", a]);
        sh(&["ip", "netns", "add", b]);
        sh(&[
            "ip", "link", "add", "wfp-va", "netns", a, "type", "veth", "peer", "name", "wfp-vb",
            "netns", b,
        ]);
        for (ns, dev, addr, addr6) in [
            (a, "wfp-va", "192.168.250.1/24", "fd99::1/64"),
            (b, "wfp-vb", "192.168.250.2/24", "fd99::2/64"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
            sh(&["ip", "-n", ns, "addr", "add", addr6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        bed
    }

    fn exec(&self, node: usize, args: &[&str]) -> bool {
        let mut full = vec!["ip", "netns", "exec", &self.ns[node]];
        full.extend_from_slice(args);
        sh_ok(&full)
    }

    /// As `ping -c 2 -i 0.2 -W 2 dst` inside node `node`: whether any echo came back.
    fn ping(&self, node: usize, dst: &str) -> bool {
        let ns = Path::new("/run/netns").join(&self.ns[node]);
        let dst: IpAddr = dst.parse().unwrap();
        std::thread::spawn(move || {
            let netns = std::fs::File::open(&ns).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&netns),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            icmp_echo(dst, 2, Duration::from_millis(200), Duration::from_secs(2))
        })
        .join()
        .unwrap()
    }
}

/// Sends `count` ICMP echo requests to `dst`, `interval` apart, from the calling thread's
/// namespace on a raw socket (a new namespace's `ping_group_range` admits no ping socket),
/// and waits until each is answered or `wait` passed since the last; true when any reply
/// came (as `ping -c count` exits 0). weftctl's `testbed::ping` is the full client (RTTs,
/// ICMP errors); this crate cannot depend on it.
fn icmp_echo(dst: IpAddr, count: u16, interval: Duration, wait: Duration) -> bool {
    let (domain, protocol, request, reply) = match dst {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4, 8, 0),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6, 128, 129),
    };
    let socket = Socket::new(domain, Type::RAW, Some(protocol)).unwrap();
    let ident = std::process::id() as u16 ^ NEXT.fetch_add(1, Ordering::Relaxed) as u16;
    let to = SockAddr::from(SocketAddr::new(dst, 0));
    let mut answered = vec![false; usize::from(count)];
    let mut buf = [0u8; 2048];
    for seq in 0..count {
        let mut packet = vec![request, 0, 0, 0];
        packet.extend_from_slice(&ident.to_be_bytes());
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(b"weft-smoke-echo.");
        // The kernel fills in ICMPv6 checksums; ICMPv4 ones are ours.
        if dst.is_ipv4() {
            let check = encap::checksum::checksum(&packet);
            packet[2..4].copy_from_slice(&check.to_be_bytes());
        }
        // A failed send (no route yet) is a lost request.
        let _ = socket.send_to(&packet, &to);
        let last = seq + 1 == count;
        let until = Instant::now() + if last { wait } else { interval };
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if last && answered.iter().all(|a| *a) {
                break;
            }
            socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok((n, _, Some(from))) =
                rustix::net::recvfrom(&socket, &mut buf[..], rustix::net::RecvFlags::empty())
            else {
                continue;
            };
            // A raw IPv4 socket reads the IP header too.
            let at = if dst.is_ipv4() {
                usize::from(buf[0] & 0x0f) * 4
            } else {
                0
            };
            let icmp = &buf[at.min(n)..n];
            let from_dst = SocketAddr::try_from(from).is_ok_and(|f| f.ip() == dst);
            if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == ident.to_be_bytes() && from_dst
            {
                let seq = usize::from(u16::from_be_bytes([icmp[6], icmp[7]]));
                if let Some(a) = answered.get_mut(seq) {
                    *a = true;
                }
            }
        }
    }
    answered.contains(&true)
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = sh_ok(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running weftd, stopped (SIGTERM, then SIGKILL) on drop.
struct Weftd {
    child: Option<Child>,
    log: PathBuf,
    control: PathBuf,
}

impl Weftd {
    fn start(bed: &Testbed, node: usize, args: &[String]) -> Weftd {
        let log = bed.dir.join(format!("weftd-{node}.log"));
        let control = bed.dir.join(format!("weftd-{node}.sock"));
        let child = Command::new("ip")
            .args(["netns", "exec", &bed.ns[node], WEFTD])
            .args(args)
            .arg("--control")
            .arg(&control)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut w = Weftd {
            child: Some(child),
            log,
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = w.log_text();
            if text.contains("weftd: ready") {
                return w;
            }
            if let Some(status) = w.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weftd exited ({status}) before ready:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "weftd not ready in 10 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> String {
        self.child.as_ref().unwrap().id().to_string()
    }

    fn ask(&self, request: &str) -> serde_json::Value {
        let mut s = UnixStream::connect(&self.control).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        serde_json::from_str(&out).unwrap()
    }

    /// SIGTERM, and the time until exit and the exit status.
    fn terminate(mut self) -> (Duration, std::process::ExitStatus) {
        let mut child = self.child.take().unwrap();
        let t0 = Instant::now();
        sh(&["kill", "-TERM", &child.id().to_string()]);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (t0.elapsed(), status);
            }
            if t0.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("weftd did not exit 5 s after SIGTERM:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Weftd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = sh_ok(&["kill", "-TERM", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

fn underlay(node: usize, v6: bool) -> String {
    if v6 {
        format!("fd99::{}", node + 1)
    } else {
        format!("192.168.250.{}", node + 1)
    }
}

fn node_args(backend: &str, driver: &str, node: usize, peers: &Path) -> Vec<String> {
    node_args_on(backend, driver, node, peers, false)
}

fn node_args_on(backend: &str, driver: &str, node: usize, peers: &Path, v6: bool) -> Vec<String> {
    let n = node + 1;
    let mut a = args(&[
        "--backend",
        backend,
        "--public-ip",
        &underlay(node, v6),
        "--subnet",
        &format!("10.244.{n}.0/24"),
        "--subnet6",
        &format!("fd00:10:244:{n}::/64"),
        "--network",
        "10.244.0.0/16",
        "--network6",
        "fd00:10:244::/48",
        "--vtep-mac",
        &format!("0e:00:00:00:00:0{n}"),
        "--io-driver",
        driver,
        "--pump-threads",
        "2",
        "-v",
    ]);
    a.push("--peers".to_owned());
    a.push(peers.display().to_string());
    a
}

fn peers_text(backend: &str, nodes: &[usize]) -> String {
    peers_text_on(backend, nodes, false)
}

fn peers_text_on(backend: &str, nodes: &[usize], v6: bool) -> String {
    let mut s = String::new();
    for &node in nodes {
        let n = node + 1;
        let ip = underlay(node, v6);
        for subnet in [format!("10.244.{n}.0/24"), format!("fd00:10:244:{n}::/64")] {
            s.push_str(&format!(
                "{{\"subnet\": \"{subnet}\", \"public_ip\": \"{ip}\", \"backend\": \"{backend}\", \"vtep_mac\": \"0e:00:00:00:00:0{n}\"}}\n"
            ));
        }
    }
    s
}

fn two_nodes_ping(backend: &str, driver: &str) {
    let bed = Testbed::new();
    let peers = bed.dir.join("peers");
    std::fs::write(&peers, peers_text(backend, &[0, 1])).unwrap();
    let a = Weftd::start(&bed, 0, &node_args(backend, driver, 0, &peers));
    let b = Weftd::start(&bed, 1, &node_args(backend, driver, 1, &peers));
    assert!(
        bed.ping(0, "10.244.2.0"),
        "a -> b v4\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    assert!(bed.ping(1, "10.244.1.0"), "b -> a v4");
    assert!(
        bed.ping(0, "fd00:10:244:2::"),
        "a -> b v6\n{}",
        a.log_text()
    );
    assert!(bed.ping(1, "fd00:10:244:1::"), "b -> a v6");
    // Unknown destination: net unreachable from the network's base address.
    assert!(!bed.ping(0, "10.244.9.9"));

    let stats = a.ask("stats\n");
    assert_eq!(stats["driver"], driver);
    assert_eq!(stats["threads"], 2);
    assert!(
        stats["pump"]["udp_tx_datagrams"].as_u64().unwrap() >= 8,
        "{stats}"
    );
    assert!(
        stats["pump"]["tun_tx_packets"].as_u64().unwrap() >= 8,
        "{stats}"
    );
    assert!(stats["pump"]["icmp_sent"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["drops"]["no_route"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["drops"]["unknown_peer"], 0);
    assert_eq!(stats["drops"]["spoofed"], 0);
    assert_eq!(stats["peers"][0]["public_ip"], "192.168.250.2");
    assert!(stats["peers"][0]["rx_packets"].as_u64().unwrap() >= 8);
    let routes = a.ask("routes\n");
    assert_eq!(routes.as_array().unwrap().len(), 2, "{routes}");
    assert_eq!(routes[0]["subnet"], "10.244.2.0/24");
    assert_eq!(routes[0]["backend"], backend);

    // SIGTERM: a clean exit within 1 s, the TUN and the control socket gone.
    let control = a.control.clone();
    let (took, status) = a.terminate();
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(!control.exists());
    let tun = if backend == "udp" {
        "flannel0"
    } else {
        "flannel.1"
    };
    assert!(
        !bed.exec(0, &["ip", "link", "show", tun]),
        "{tun} left behind"
    );
    drop(b);
}

#[test]
fn udp_backend_pings_both_ways_poll() {
    require_root!("udp_backend_pings_both_ways_poll");
    two_nodes_ping("udp", "poll");
}

#[test]
fn vxlan_backend_pings_both_ways_poll() {
    require_root!("vxlan_backend_pings_both_ways_poll");
    two_nodes_ping("vxlan", "poll");
}

#[test]
fn sighup_reloads_the_peers_file() {
    require_root!("sighup_reloads_the_peers_file");
    let bed = Testbed::new();
    let peers_a = bed.dir.join("peers-a");
    let peers_b = bed.dir.join("peers-b");
    // a starts without b; b knows a.
    std::fs::write(&peers_a, "{\"subnet\": \"10.244.7.0/24\", \"public_ip\": \"192.168.250.7\", \"backend\": \"udp\"}\nnot json\n").unwrap();
    std::fs::write(&peers_b, peers_text("udp", &[0])).unwrap();
    let a = Weftd::start(&bed, 0, &node_args("udp", "poll", 0, &peers_a));
    let _b = Weftd::start(&bed, 1, &node_args("udp", "poll", 1, &peers_b));
    assert!(a.log_text().contains("line 2"), "{}", a.log_text());
    assert!(!bed.ping(0, "10.244.2.0"));
    std::fs::write(&peers_a, peers_text("udp", &[1])).unwrap();
    sh(&["kill", "-HUP", &a.pid()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.log_text().contains("SIGHUP: reloaded") {
        assert!(Instant::now() < deadline, "{}", a.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(bed.ping(0, "10.244.2.0"), "{}", a.log_text());
    assert_eq!(a.ask("routes\n").as_array().unwrap().len(), 2);
}

#[test]
fn invalid_flags_exit_2_naming_the_flag() {
    let out = Command::new(WEFTD)
        .args([
            "--backend",
            "udp",
            "--public-ip",
            "127.0.0.1",
            "--subnet",
            "10.244.1.1/24",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--subnet") && err.contains("10.244.1.0/24"),
        "{err}"
    );
    // --peers without our own subnet (without both, weftd runs in lease mode).
    let out = Command::new(WEFTD)
        .args([
            "--backend",
            "udp",
            "--public-ip",
            "127.0.0.1",
            "--peers",
            "/dev/null",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Lease mode without a network config in the store waits for one (as flanneld), saying what
/// is missing, and SIGTERM ends the wait with exit 0. Needs no root: nothing is set up yet.
#[test]
fn lease_mode_waits_for_the_config_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("wfl-smoke-leases-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(WEFTD)
        .args(["--public-ip", "127.0.0.1", "--lease-dir"])
        .arg(&dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "weftd exited instead of waiting"
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weftd did not stop on SIGTERM while waiting for the config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("no network config"), "{log}");
}

#[test]
fn udp_backend_pings_both_ways_uring() {
    require_root!("udp_backend_pings_both_ways_uring");
    two_nodes_ping("udp", "uring");
}

#[test]
fn vxlan_backend_pings_both_ways_uring() {
    require_root!("vxlan_backend_pings_both_ways_uring");
    two_nodes_ping("vxlan", "uring");
}

#[test]
fn vxlan_over_an_ipv6_underlay() {
    require_root!("vxlan_over_an_ipv6_underlay");
    let bed = Testbed::new();
    let peers = bed.dir.join("peers");
    std::fs::write(&peers, peers_text_on("vxlan", &[0, 1], true)).unwrap();
    let a = Weftd::start(&bed, 0, &node_args_on("vxlan", "auto", 0, &peers, true));
    let _b = Weftd::start(&bed, 1, &node_args_on("vxlan", "auto", 1, &peers, true));
    // MTU: 1500 - 50 - 20 over IPv6.
    assert!(a.log_text().contains("MTU 1430"), "{}", a.log_text());
    assert!(bed.ping(0, "10.244.2.0"), "{}", a.log_text());
    assert!(bed.ping(1, "fd00:10:244:1::"));
    assert_eq!(a.ask("stats\n")["peers"][0]["public_ip"], "fd99::2");
}

/// One HTTP exchange with `127.0.0.1:port` inside `node`'s namespace (bash's /dev/tcp): the
/// raw response.
fn http_in(bed: &Testbed, node: usize, port: u16, request: &str) -> String {
    let script =
        format!("exec 3<>/dev/tcp/127.0.0.1/{port} && printf '%s' \"$1\" >&3 && timeout 5 cat <&3");
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.ns[node],
            "bash",
            "-c",
            &script,
            "http",
        ])
        .arg(request)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn healthz_readyz_and_metrics() {
    require_root!("healthz_readyz_and_metrics");
    const PORT: u16 = 9102;
    let bed = Testbed::new();
    let peers = bed.dir.join("peers");
    std::fs::write(&peers, peers_text("udp", &[0, 1])).unwrap();
    let mut a_args = node_args("udp", "poll", 0, &peers);
    a_args.extend(args(&[
        "--healthz-ip",
        "127.0.0.1",
        "--healthz-port",
        &PORT.to_string(),
        // Per-peer series are opt-in (off by default: the unit tests check that).
        "--metrics-per-peer",
    ]));
    let a = Weftd::start(&bed, 0, &a_args);
    let b = Weftd::start(&bed, 1, &node_args("udp", "poll", 1, &peers));
    assert!(bed.ping(0, "10.244.2.0"), "a -> b\n{}", a.log_text());
    assert!(!bed.ping(0, "10.244.9.9"));

    let get = |path: &str| {
        http_in(
            &bed,
            0,
            PORT,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
    };
    let healthz = get("/healthz");
    assert!(
        healthz.starts_with("HTTP/1.1 200 "),
        "{healthz}\n{}",
        a.log_text()
    );
    assert!(healthz.ends_with("\r\n\r\nok\n"), "{healthz}");
    let readyz = get("/readyz");
    assert!(readyz.starts_with("HTTP/1.1 200 "), "{readyz}");
    let metrics = get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    let value = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert!(value("weft_drops_total{reason=\"no_route\"} ") >= 1);
    assert_eq!(value("weft_drops_total{reason=\"spoofed\"} "), 0);
    assert!(value("weft_peer_tx_packets_total{peer=\"192.168.250.2\"} ") >= 2);
    assert!(value("weft_peer_rx_bytes_total{peer=\"192.168.250.2\"} ") > 0);
    assert!(value("weft_pump_udp_tx_datagrams_total ") >= 2);
    value("weft_pump_gso_sends_total ");
    assert_eq!(value("weft_routes "), 2);
    assert!(value("process_open_fds ") > 0);
    assert!(
        metrics.contains("\nweft_build_info{version=\""),
        "{metrics}"
    );
    let post = http_in(
        &bed,
        0,
        PORT,
        "POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let unknown = get("/nope");
    assert!(unknown.starts_with("HTTP/1.1 404 "), "{unknown}");
    drop(b);
}

/// Lease mode waiting for its network config: /healthz is 200 and /readyz 503 (nothing is
/// set up yet). Needs no root; the endpoint is on a free port of the host's loopback.
#[test]
fn readyz_is_503_while_lease_mode_waits() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("wfl-smoke-healthz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(WEFTD)
        .args(["--public-ip", "127.0.0.1", "--healthz-ip", "127.0.0.1"])
        .args(["--healthz-port", &port.to_string(), "--lease-dir"])
        .arg(&dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ask = |path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let healthz = loop {
        if let Some(r) = ask("/healthz") {
            break r;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no healthz endpoint on port {port} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let readyz = ask("/readyz").unwrap_or_default();
    let metrics = ask("/metrics").unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(healthz.starts_with("HTTP/1.1 200 "), "{healthz}");
    assert!(readyz.starts_with("HTTP/1.1 503 "), "{readyz}");
    assert!(metrics.contains("\nweft_ready 0\n"), "{metrics}");
}
