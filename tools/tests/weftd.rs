//! weftd end to end in static mode. The data path: two weftd nodes, udp and vxlan backends,
//! each with the io_uring and the poll driver, pass the full check (ping both ways at default
//! size and full MTU, UDP datagrams of assorted sizes up to the MTU, a verified 1 GiB TCP
//! stream each way; IPv4 and IPv6 inner traffic), and weftd's counters agree with what was
//! sent. Around it: `routes` lists the peer, SIGHUP reloads the peers file (a peer removed
//! and added back, a bad line named), vxlan over an IPv6 underlay, the health endpoints
//! (`/healthz`, `/readyz`, `/metrics` with the counters real traffic moved, ICMP net
//! unreachable for a subnet nobody owns) and, before a lease-mode weftd is ready, `/readyz`
//! 503 while it waits for its network config, until SIGTERM ends the wait.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`;
//! `tools/test.sh` does).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use engine::config::DriverArg;
use engine::model::{format_mac, Backend};
use rustix::process::Signal;
use weft_testkit::process::Process;
use weft_testkit::{http, require_root, wait};
use weftctl::control;
use weftctl::peers::PeerLine;
use weftctl::testbed::ping::{self, Echo};
use weftctl::testbed::{
    traffic, Overlay, Testbed, NETWORK, NETWORK6, READY_TIMEOUT, UNDERLAY_DEV, WEFTD_READY,
};

/// Starts weftd with `backend` and `driver` on both nodes of `bed` (static mode, the testbed's
/// peers files) and waits until both are ready.
fn start_weftd_pair(bed: &mut Testbed, backend: Backend, driver: DriverArg) {
    let overlay = Overlay::Weftd { backend, driver };
    bed.start(&[overlay, overlay])
        .unwrap_or_else(|e| panic!("weftd on both nodes: {e:#}"));
}

fn two_weftd_nodes(backend: Backend, driver: DriverArg) {
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    start_weftd_pair(&mut bed, backend, driver);
    common::full_check(&mut bed);
    for node in 0..2 {
        let stats = bed
            .control(node, "stats")
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            stats.get("driver").and_then(|d| d.as_str()),
            Some(driver.as_str()),
            "node {node} runs another I/O driver than asked: {stats}"
        );
        let stream = common::stream_bytes();
        for name in [
            "tun_rx_bytes",
            "udp_tx_bytes",
            "udp_rx_bytes",
            "tun_tx_bytes",
        ] {
            let n = control::counter(&stats, name);
            assert!(
                n >= stream,
                "node {node}: {name} = {n}, less than one stream of {stream}: {stats}"
            );
        }
        let peers = stats
            .get("peers")
            .and_then(|p| p.as_array())
            .cloned()
            .unwrap_or_default();
        assert_eq!(peers.len(), 1, "node {node}: one peer expected: {stats}");
        let tx = peers[0]
            .get("tx_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let rx = peers[0]
            .get("rx_bytes")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        assert!(
            tx >= stream && rx >= stream,
            "node {node}: peer counters too small: {stats}"
        );
    }
}

#[test]
fn udp_backend_uring() {
    require_root!();
    two_weftd_nodes(Backend::Udp, DriverArg::Uring);
}

#[test]
fn udp_backend_poll() {
    require_root!();
    two_weftd_nodes(Backend::Udp, DriverArg::Poll);
}

#[test]
fn vxlan_backend_uring() {
    require_root!();
    two_weftd_nodes(Backend::Vxlan, DriverArg::Uring);
}

#[test]
fn vxlan_backend_poll() {
    require_root!();
    two_weftd_nodes(Backend::Vxlan, DriverArg::Poll);
}

#[test]
fn routes_lists_the_peer() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    start_weftd_pair(&mut bed, Backend::Vxlan, DriverArg::Auto);
    let routes = bed.control(0, "routes").unwrap_or_else(|e| panic!("{e:#}"));
    let text = routes.to_string();
    let b = bed.node(1);
    for want in [
        b.subnet().to_string(),
        b.subnet6().to_string(),
        b.underlay().to_string(),
        engine::model::format_mac(&b.vtep_mac()),
    ] {
        assert!(text.contains(&want), "routes lacks {want}: {text}");
    }
}

/// A subnet inside the Network that no node owns.
const NOBODY: Ipv4Addr = Ipv4Addr::new(10, 244, 77, 1);

/// Whether `ping` from node `from`'s pod to `to` gets an answer (one echo, the time bound of
/// [`Echo::default`]), and the ICMP errors that came back instead.
fn ping_once(bed: &Testbed, from: usize, to: IpAddr) -> (bool, Vec<String>) {
    let echo = Echo {
        count: 1,
        ..Echo::default()
    };
    let report = ping::echo(bed.node(from).pod(), to, &echo).unwrap_or_else(|e| panic!("{e:#}"));
    (report.received() > 0, report.errors)
}

/// Sends SIGHUP to node a's weftd and waits until it has logged its `n`th reload.
fn sighup_node_a(bed: &mut Testbed, n: usize) {
    let weftd = bed.overlay_process(0).expect("node a runs weftd");
    weftd
        .signal(Signal::HUP)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let reloaded = wait::until(Duration::from_secs(5), || {
        weftd.log().matches("SIGHUP: reloaded").count() >= n
    });
    assert!(
        reloaded.is_some(),
        "no reload {n} logged after SIGHUP:\n{}",
        weftd.tail()
    );
}

#[test]
fn sighup_reloads_the_peers_file() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    start_weftd_pair(&mut bed, Backend::Udp, DriverArg::Poll);
    let peers = bed.peers_file(0);
    let with_b = std::fs::read_to_string(&peers).expect("node a's peers file");
    let b_subnet = bed.node(1).subnet().to_string();
    let b_pod = bed.node(1).pod_ip();
    assert!(ping_once(&bed, 0, b_pod).0, "a -> b before any reload");

    // b leaves node a's peers file; a stranger and a line that is no JSON come in.
    std::fs::write(
        &peers,
        "{\"subnet\": \"10.244.7.0/24\", \"public_ip\": \"192.168.250.7\", \"backend\": \"udp\"}\n\
         not json\n",
    )
    .expect("rewrite the peers file");
    sighup_node_a(&mut bed, 1);
    let routes = bed.control(0, "routes").expect("routes").to_string();
    assert!(
        routes.contains("10.244.7.0/24") && !routes.contains(&b_subnet),
        "the reloaded routes: {routes}"
    );
    let log = bed.overlay_process(0).expect("weftd").log();
    assert!(log.contains("line 2"), "the bad line is not named:\n{log}");
    let (answered, errors) = ping_once(&bed, 0, b_pod);
    assert!(!answered, "a still reaches b, which left its peers file");
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with(": Destination Net Unreachable")),
        "no net unreachable for b's subnet after the reload: {errors:?}"
    );

    // b back: traffic flows again.
    std::fs::write(&peers, with_b).expect("restore the peers file");
    sighup_node_a(&mut bed, 2);
    let routes = bed.control(0, "routes").expect("routes");
    assert_eq!(
        routes.as_array().map(Vec::len),
        Some(2),
        "b's two subnets: {routes}"
    );
    assert!(ping_once(&bed, 0, b_pod).0, "a -> b after b came back");
    traffic::ping(bed.node(1).pod(), bed.node(0).pod_ip(), 2, None)
        .unwrap_or_else(|e| panic!("{e:#}"));
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn vxlan_over_an_ipv6_underlay() {
    require_root!();
    let binaries = common::binaries_with_weftd();
    let weftd = binaries.weftd.clone().expect("weftd");
    let mut bed = Testbed::new(2, binaries).expect("testbed");
    let underlay6 = |i: usize| format!("fd99::{}", i + 1);
    for i in 0..2 {
        let addr = format!("{}/64", underlay6(i));
        bed.node(i)
            .ip(&["-6", "addr", "add", &addr, "dev", UNDERLAY_DEV, "nodad"])
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let mut weftds = Vec::new();
    for i in 0..2 {
        let (node, other) = (bed.node(i), bed.node(1 - i));
        let peers: String = [other.subnet(), other.subnet6()]
            .iter()
            .map(|subnet| {
                let line = PeerLine {
                    subnet: subnet.to_string(),
                    public_ip: underlay6(1 - i),
                    backend: Backend::Vxlan,
                    vtep_mac: Some(format_mac(&other.vtep_mac())),
                    port: None,
                };
                line.to_line() + "\n"
            })
            .collect();
        let path = bed.dir().join(format!("peers6-{i}.json"));
        std::fs::write(&path, peers).expect("peers file");
        let args: Vec<String> = [
            "--backend",
            "vxlan",
            "--public-ip",
            &underlay6(i),
            "--subnet",
            &node.subnet().to_string(),
            "--subnet6",
            &node.subnet6().to_string(),
            "--network",
            NETWORK,
            "--network6",
            NETWORK6,
            "--vtep-mac",
            &format_mac(&node.vtep_mac()),
            "--peers",
            path.to_str().expect("UTF-8 path"),
            "-v",
        ]
        .map(str::to_owned)
        .to_vec();
        weftds.push(
            bed.spawn(i, &format!("weftd6-{i}"), &weftd, &args)
                .expect("weftd"),
        );
    }
    for &w in &weftds {
        bed.process(w)
            .wait_for_line(WEFTD_READY, READY_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    // The TUN MTU: 1500 - 50 (vxlan) - 20 (an IPv6 outer header is 20 bytes longer).
    let mtu = 1430;
    let log = bed.process(weftds[0]).log();
    assert!(log.contains(&format!("MTU {mtu}")), "{log}");
    let (a, b) = (bed.node(0), bed.node(1));
    common::ping_both_sizes(a.pod(), b.pod_ip(), mtu);
    common::ping_both_sizes(b.pod(), a.pod_ip(), mtu);
    common::ping_both_sizes(a.pod6(), b.pod_ip6(), mtu);
    common::ping_both_sizes(b.pod6(), a.pod_ip6(), mtu);
    common::stream(a.pod(), b.pod(), 16 << 20);
    let stats = control::request_in(a.ns().name(), None, "stats").expect("stats");
    assert_eq!(stats["peers"][0]["public_ip"], "fd99::2", "{stats}");
    assert!(
        control::counter(&stats, "udp_tx_bytes") >= 16 << 20,
        "the stream did not leave through weftd: {stats}"
    );
    for &w in &weftds {
        let p = bed.process(w);
        assert!(
            p.try_status().is_none(),
            "{} exited:\n{}",
            p.label(),
            p.tail()
        );
    }
}

/// The value of the Prometheus sample `name` (with its labels) in `metrics`.
fn sample(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[test]
fn healthz_readyz_and_metrics() {
    require_root!();
    const PORT: u16 = 9102;
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let port = PORT.to_string();
    // Per-peer series are opt-in (off by default: engine's http tests check that).
    bed.add_weftd_args(
        0,
        &[
            "--healthz-ip",
            "127.0.0.1",
            "--healthz-port",
            &port,
            "--metrics-per-peer",
        ],
    );
    start_weftd_pair(&mut bed, Backend::Udp, DriverArg::Poll);
    let b_underlay = bed.node(1).underlay();
    traffic::ping(bed.node(0).pod(), bed.node(1).pod_ip(), 3, None)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let (answered, errors) = ping_once(&bed, 0, NOBODY.into());
    assert!(!answered, "a subnet nobody owns answered");
    assert!(
        errors
            .iter()
            .any(|e| e.ends_with(": Destination Net Unreachable")),
        "weftd sent no net unreachable for a subnet nobody owns: {errors:?}"
    );

    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    let ns = bed.node(0).ns();
    let ask = |request: &str| -> String {
        ns.run_inside(|| http::exchange(addr, request))
            .expect("entering node a")
            .unwrap_or_else(|e| panic!("{request:?}: {e}"))
    };
    let get = |path: &str| ask(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
    let healthz = get("/healthz");
    assert!(healthz.starts_with("HTTP/1.1 200 "), "{healthz}");
    assert!(healthz.ends_with("\r\n\r\nok\n"), "{healthz}");
    let readyz = get("/readyz");
    assert!(readyz.starts_with("HTTP/1.1 200 "), "{readyz}");
    let metrics = get("/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    assert!(sample(&metrics, "weft_drops_total{reason=\"no_route\"}") >= 1);
    assert_eq!(sample(&metrics, "weft_drops_total{reason=\"spoofed\"}"), 0);
    assert!(sample(&metrics, "weft_pump_icmp_sent_total") >= 1);
    let peer = format!("{{peer=\"{b_underlay}\"}}");
    assert!(sample(&metrics, &format!("weft_peer_tx_packets_total{peer}")) >= 3);
    assert!(sample(&metrics, &format!("weft_peer_rx_bytes_total{peer}")) > 0);
    assert!(sample(&metrics, "weft_pump_udp_tx_datagrams_total") >= 3);
    sample(&metrics, "weft_pump_gso_sends_total");
    assert_eq!(sample(&metrics, "weft_routes"), 2);
    assert_eq!(sample(&metrics, "weft_ready"), 1);
    assert!(sample(&metrics, "process_open_fds") > 0);
    assert!(
        metrics.contains("\nweft_build_info{version=\""),
        "{metrics}"
    );
    let post = ask("POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let unknown = get("/nope");
    assert!(unknown.starts_with("HTTP/1.1 404 "), "{unknown}");
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}

/// Lease mode with no network config in the store: weftd waits for one (as flanneld), saying
/// what is missing; meanwhile `/healthz` is 200, `/readyz` 503 and `weft_ready` 0; SIGTERM ends
/// the wait with exit 0. Needs no root (nothing is set up yet): the endpoint and the control
/// socket (abstract, named for this test) are on the host's loopback.
#[test]
fn readyz_is_503_while_lease_mode_waits_for_its_config() {
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let port = weft_testkit::etcd::free_port().expect("a free port");
    let mut cmd = Command::new(&weftd);
    cmd.args(["--public-ip", "127.0.0.1", "--healthz-ip", "127.0.0.1"])
        .args(["--healthz-port", &port.to_string()])
        .args([
            "--control",
            &format!("@weft-test-{}-readyz", std::process::id()),
        ])
        .arg("--lease-dir")
        .arg(scratch.path().join("leases"))
        .arg("--subnet-file")
        .arg(scratch.path().join("subnet.env"));
    let mut weftd = Process::spawn("weftd", cmd, &scratch.path().join("weftd.log")).expect("weftd");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut healthz = String::new();
    let up = wait::until(Duration::from_secs(10), || {
        healthz = http::get(addr, "/healthz").unwrap_or_default();
        !healthz.is_empty()
    });
    assert!(
        up.is_some(),
        "no health endpoint on {addr}:\n{}",
        weftd.tail()
    );
    assert!(healthz.starts_with("HTTP/1.1 200 "), "{healthz}");
    let readyz = http::get(addr, "/readyz").expect("GET /readyz");
    assert!(readyz.starts_with("HTTP/1.1 503 "), "{readyz}");
    let metrics = http::get(addr, "/metrics").expect("GET /metrics");
    assert!(metrics.contains("\nweft_ready 0\n"), "{metrics}");
    assert!(
        weftd.try_status().is_none(),
        "weftd exited instead of waiting:\n{}",
        weftd.tail()
    );
    let (status, killed) = weftd.stop().expect("weftd was running");
    assert!(
        !killed,
        "weftd ignored SIGTERM while waiting:\n{}",
        weftd.tail()
    );
    assert!(status.success(), "{status}:\n{}", weftd.tail());
    let log = weftd.log();
    assert!(log.contains("no network config"), "{log}");
}
