//! Lease mode: weftd (no --subnet, no --peers), as flanneld runs.
//!
//! - Three nodes share a real etcd (started inside node a's namespace, listening on its
//!   underlay address; killed by PID on drop): distinct subnets, leases in etcd with flannel's
//!   JSON field names, subnet.env in flannel's format, every pair pings; a lease put by hand
//!   with etcdctl becomes a route within 1 s and its deletion removes it; a restarted node
//!   gets its subnet (and VtepMAC) back.
//! - etcd stopped for 20 s while a ping runs: no echo is lost, and after etcd returns a new
//!   lease becomes a route (the watch resumed).
//! - The same three nodes on the local directory store, one with `--ip-masq`: its rules are in
//!   its namespace's `iptables-save`, and gone after SIGTERM, while its lease stays; another
//!   sends READY=1 to `$NOTIFY_SOCKET`.
//! - Two weftd processes race for the last free subnet: one holds it, the other exits saying
//!   the network is full; the winner's `/metrics` shows the lease manager's figures.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`).

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_testkit::etcd::{Etcd, PREFIX};
use weft_testkit::{require_programs, require_root};
use weftctl::testbed::leased::{cut_from_etcd, problem_lines, LeasedNode, CONFIG_VXLAN, ROLES};
use weftctl::testbed::ping::{self, Echo};
use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::Testbed;

const CONFIG_UDP: &str =
    r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "Backend": {"Type": "udp"}}"#;
const ROUTE_DEADLINE: Duration = Duration::from_secs(1);

fn weftd() -> PathBuf {
    common::binaries_with_weftd().weftd.expect("weftd")
}

/// etcd in node a's namespace, on its underlay address, with `config` at `<prefix>/config`.
fn start_etcd(bed: &Testbed, config: &str) -> Etcd {
    let etcd = Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), bed.dir()).expect("etcd");
    etcd.ctl(&["put", &format!("{PREFIX}/config"), config])
        .expect("etcdctl put config");
    etcd
}

/// A leased weftd on node `i`, ready.
fn start_node(bed: &mut Testbed, i: usize, store: &[String], extra: &[&str]) -> LeasedNode {
    start_node_with_env(bed, i, store, extra, &[])
}

/// Like [`start_node`], with `NAME=value` pairs in weftd's environment.
fn start_node_with_env(
    bed: &mut Testbed,
    i: usize,
    store: &[String],
    extra: &[&str],
    env: &[String],
) -> LeasedNode {
    let node = LeasedNode::spawn_with_env(bed, &weftd(), i, store, extra, env)
        .unwrap_or_else(|e| panic!("weftd on node {}: {e:#}", ROLES[i]));
    node.wait_ready(bed).unwrap_or_else(|e| panic!("{e:#}"));
    node
}

fn routes(node: &LeasedNode) -> String {
    node.routes().expect("routes")
}

/// Waits (up to `limit`) until node's routes do / do not contain `needle`; returns the time.
fn wait_route(node: &LeasedNode, needle: &str, present: bool, limit: Duration) -> Duration {
    node.wait_route(needle, present, limit)
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// FLANNEL_SUBNET's network (`10.244.105.1/24` -> `10.244.105.0/24`) and the whole file.
fn read_subnet(node: &LeasedNode) -> (String, String) {
    let text = std::fs::read_to_string(&node.subnet_file).expect("subnet.env");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .unwrap_or_else(|| panic!("no FLANNEL_SUBNET in {text}"));
    let (ip, len) = line.split_once('/').expect("a prefix");
    let mut octets: Vec<&str> = ip.split('.').collect();
    assert_eq!(octets.len(), 4, "{line}");
    assert_eq!(
        octets[3], "1",
        "FLANNEL_SUBNET is the subnet's first host: {line}"
    );
    octets[3] = "0";
    (format!("{}/{len}", octets.join(".")), text)
}

/// flannel's subnet.env for a udp / vxlan node without IPv6.
fn check_subnet_env(text: &str, subnet: &str, mtu: u32, masq: bool) {
    let first_host = subnet.replacen(".0/", ".1/", 1);
    let want = format!(
        "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={first_host}\nFLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={masq}\n"
    );
    assert_eq!(text, want, "subnet.env is not flannel's");
}

/// Every node pings every other node's TUN address (`<subnet>.0`).
fn ping_all(bed: &Testbed, subnets: &[String]) {
    for (i, _) in subnets.iter().enumerate() {
        for (j, dst) in subnets.iter().enumerate() {
            if i == j {
                continue;
            }
            let to: IpAddr = dst.split('/').next().expect("address").parse().expect("IP");
            traffic::ping(unbound(bed, i), to, 2, None)
                .unwrap_or_else(|e| panic!("ping {} -> {to}: {e:#}", ROLES[i]));
        }
    }
}

/// Node `i` as a ping's source, with the address the kernel picks.
fn unbound(bed: &Testbed, i: usize) -> End<'_> {
    End {
        ns: bed.node(i).ns(),
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

fn distinct(subnets: &[String]) {
    let set: BTreeSet<&String> = subnets.iter().collect();
    assert_eq!(
        set.len(),
        subnets.len(),
        "subnets not distinct: {subnets:?}"
    );
}

#[test]
fn three_nodes_on_etcd() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = Testbed::new(3, common::binaries_with_weftd()).expect("testbed");
    let etcd = start_etcd(&bed, CONFIG_VXLAN);
    let store = etcd.store_args();
    let mut nodes: Vec<LeasedNode> = (0..3)
        .map(|i| start_node(&mut bed, i, &store, &[]))
        .collect();
    let subnets: Vec<String> = nodes
        .iter()
        .map(|n| {
            let (subnet, text) = read_subnet(n);
            check_subnet_env(&text, &subnet, 1450, false);
            subnet
        })
        .collect();
    distinct(&subnets);
    // Readiness waits for the first route table: the last node to start routes the two
    // earlier ones the moment it says ready.
    let last = routes(&nodes[2]);
    for subnet in &subnets[..2] {
        assert!(last.contains(subnet.as_str()), "{subnet} at ready: {last}");
    }

    // The leases in etcd: flannel's keys and JSON field names.
    let listing = etcd
        .ctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])
        .expect("etcdctl");
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 6, "three leases expected: {listing}");
    let mut macs = Vec::new();
    for pair in lines.chunks(2) {
        let (key, value) = (pair[0], pair[1]);
        let name = key.strip_prefix(&format!("{PREFIX}/subnets/")).expect(key);
        assert!(
            subnets.iter().any(|s| s.replace('/', "-") == name),
            "{key} is none of {subnets:?}"
        );
        let v: serde_json::Value = serde_json::from_str(value).expect(value);
        let obj = v.as_object().expect("an object");
        let fields: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = ["PublicIP", "PublicIPv6", "BackendType", "BackendData"]
            .into_iter()
            .collect();
        assert_eq!(fields, want, "lease {key}: {value}");
        assert_eq!(obj["BackendType"], "vxlan", "{value}");
        let data = obj["BackendData"].as_object().expect("BackendData");
        assert_eq!(data["VNI"], 1, "{value}");
        macs.push((obj["PublicIP"].clone(), data["VtepMAC"].clone()));
    }
    // Each lease is attached to an etcd lease (a TTL), as flanneld's.
    let with_lease = etcd
        .ctl(&[
            "get",
            "--prefix",
            &format!("{PREFIX}/subnets/"),
            "-w",
            "json",
        ])
        .expect("etcdctl");
    assert_eq!(with_lease.matches("\"lease\":").count(), 3, "{with_lease}");

    ping_all(&bed, &subnets);

    // A lease written by hand, as a flanneld node writes it, becomes a route within 1 s.
    let granted = etcd.ctl(&["lease", "grant", "600"]).expect("etcdctl");
    let id = granted
        .split_whitespace()
        .nth(1)
        .expect("lease id")
        .to_owned();
    let key = format!("{PREFIX}/subnets/10.244.250.0-24");
    etcd.ctl(&[
        "put",
        &format!("--lease={id}"),
        &key,
        r#"{"PublicIP":"192.168.250.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}}"#,
    ]).expect("etcdctl");
    let took = wait_route(&nodes[0], "10.244.250.0/24", true, ROUTE_DEADLINE);
    eprintln!("hand-written lease became a route in {took:?}");
    assert!(routes(&nodes[0]).contains("0e:00:00:00:00:09"));
    etcd.ctl(&["del", &key]).expect("etcdctl");
    let took = wait_route(&nodes[0], "10.244.250.0/24", false, ROUTE_DEADLINE);
    eprintln!("deleted lease left the routes in {took:?}");

    // Restart node b: same subnet, same VtepMAC.
    bed.process(nodes[1].handle).stop();
    std::fs::remove_file(&nodes[1].subnet_file).expect("remove subnet.env");
    nodes[1].respawn(&mut bed).expect("restart node b");
    let (again, _) = read_subnet(&nodes[1]);
    assert_eq!(
        again, subnets[1],
        "node b got another subnet after a restart"
    );
    let listing = etcd
        .ctl(&["get", "--prefix", &format!("{PREFIX}/subnets/")])
        .expect("etcdctl");
    let b_value = listing
        .lines()
        .skip_while(|l| !l.ends_with(&subnets[1].replace('/', "-")))
        .nth(1)
        .expect("node b's lease");
    let v: serde_json::Value = serde_json::from_str(b_value).expect(b_value);
    assert!(
        macs.contains(&(v["PublicIP"].clone(), v["BackendData"]["VtepMAC"].clone())),
        "node b's VtepMAC changed across the restart: {b_value} vs {macs:?}"
    );
    ping_all(&bed, &subnets);
    drop(bed);
    drop(etcd);
}

#[test]
fn three_nodes_on_a_lease_directory_with_ip_masq() {
    require_root!();
    let mut bed = Testbed::new(3, common::binaries_with_weftd()).expect("testbed");
    let dir = bed.dir().join("leases");
    std::fs::create_dir_all(&dir).expect("lease dir");
    std::fs::write(dir.join("config"), CONFIG_UDP).expect("config");
    let store = vec!["--lease-dir".to_owned(), dir.display().to_string()];
    // Node c tells "systemd" it is ready.
    let notify_path = bed.dir().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let notify_env = [format!("NOTIFY_SOCKET={}", notify_path.display())];
    let nodes: Vec<LeasedNode> = (0..3)
        .map(|i| {
            let extra: &[&str] = if i == 0 { &["--ip-masq"] } else { &[] };
            let env: &[String] = if i == 2 { &notify_env } else { &[] };
            start_node_with_env(&mut bed, i, &store, extra, env)
        })
        .collect();
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1 from node c");
    assert_eq!(&buf[..n], b"READY=1");
    let subnets: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (subnet, text) = read_subnet(n);
            check_subnet_env(&text, &subnet, 1472, i == 0);
            subnet
        })
        .collect();
    distinct(&subnets);
    for s in &subnets {
        let file = dir.join("subnets").join(s.replace('/', "-"));
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
        for field in ["PublicIP", "PublicIPv6", "Expiration"] {
            assert!(v.get(field).is_some(), "{file:?} lacks {field}: {text}");
        }
    }
    ping_all(&bed, &subnets);

    // A lease file written by hand becomes a route; removing it removes the route.
    let hand = dir.join("subnets").join("10.244.250.0-24");
    std::fs::write(&hand, r#"{"PublicIP":"192.168.250.9","PublicIPv6":null}"#).expect("write");
    wait_route(&nodes[1], "10.244.250.0/24", true, ROUTE_DEADLINE);
    std::fs::remove_file(&hand).expect("remove");
    wait_route(&nodes[1], "10.244.250.0/24", false, ROUTE_DEADLINE);

    // --ip-masq on node a: flannel's rules in its namespace.
    let saved = bed
        .node(0)
        .ns()
        .exec_checked("iptables-save", &["-t", "nat"])
        .expect("iptables-save");
    for want in [
        "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG".to_owned(),
        "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully".to_owned(),
        format!(
            "-A FLANNEL-POSTRTG -s {} -d 10.244.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN",
            subnets[0]
        ),
    ] {
        assert!(saved.lines().any(|l| l == want), "missing {want:?} in:\n{saved}");
    }
    // The other nodes have none.
    let other = bed
        .node(1)
        .ns()
        .exec_checked("iptables-save", &["-t", "nat"])
        .expect("iptables-save");
    assert!(!other.contains("FLANNEL-POSTRTG"), "{other}");

    // SIGTERM: the rules go, the lease stays.
    let (status, _) = bed.process(nodes[0].handle).stop().expect("stopped");
    assert!(status.success(), "weftd exited {status}");
    let saved = bed
        .node(0)
        .ns()
        .exec_checked("iptables-save", &["-t", "nat"])
        .expect("iptables-save");
    assert!(
        !saved.contains("FLANNEL-POSTRTG"),
        "rules left after SIGTERM:\n{saved}"
    );
    assert!(
        dir.join("subnets")
            .join(subnets[0].replace('/', "-"))
            .exists(),
        "the lease was removed on SIGTERM"
    );
}

/// etcd goes away for 20 s while traffic flows: the last known routes keep carrying it, and
/// weftd resumes watching when etcd returns (a lease written then becomes a route).
#[test]
fn etcd_outage_keeps_traffic_and_watching_resumes() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let mut etcd = start_etcd(&bed, CONFIG_VXLAN);
    let store = etcd.store_args();
    let nodes: Vec<LeasedNode> = (0..2)
        .map(|i| start_node(&mut bed, i, &store, &[]))
        .collect();
    let subnets: Vec<String> = nodes.iter().map(|n| read_subnet(n).0).collect();
    ping_all(&bed, &subnets);

    etcd.stop();
    let to: IpAddr = subnets[1]
        .split('/')
        .next()
        .expect("address")
        .parse()
        .expect("IP");
    let echo = Echo {
        count: 20,
        interval: Duration::from_secs(1),
        ..Echo::default()
    };
    let report = ping::echo(unbound(&bed, 0), to, &echo).expect("ping");
    assert_eq!(
        report.received(),
        20,
        "traffic did not keep flowing while etcd was down: {report}"
    );
    bed.check_alive().expect("weftd survives the outage");

    etcd.restart().expect("etcd restart");
    let key = format!("{PREFIX}/subnets/10.244.250.0-24");
    etcd.ctl(&[
        "put",
        &key,
        r#"{"PublicIP":"192.168.250.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}}"#,
    ]).expect("etcdctl");
    // The watch reconnects with a backoff of at most 5 s.
    let took = wait_route(&nodes[0], "10.244.250.0/24", true, Duration::from_secs(10));
    eprintln!("after etcd returned, a new lease became a route in {took:?}");
    ping_all(&bed, &subnets);
}

/// Two weftd processes start at the same moment on a network with one free subnet: one holds
/// it, the other exits with a clear "network is full" error and a non-zero code. The winner's
/// `/metrics` carries the lease manager's figures.
#[test]
fn two_weftd_race_for_the_last_free_subnet() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    // A /22 of /24s: SubnetMin is 10.246.1.0, SubnetMax 10.246.3.0; two are reserved (keys
    // without a TTL, flannel's reservations) for nodes that are not here.
    let etcd = start_etcd(
        &bed,
        r#"{"Network": "10.246.0.0/22", "Backend": {"Type": "udp"}}"#,
    );
    for (subnet, owner) in [
        ("10.246.1.0-24", "192.168.250.11"),
        ("10.246.2.0-24", "192.168.250.12"),
    ] {
        etcd.ctl(&[
            "put",
            &format!("{PREFIX}/subnets/{subnet}"),
            &format!(r#"{{"PublicIP":"{owner}","PublicIPv6":null}}"#),
        ])
        .expect("etcdctl");
    }
    let weftd = weftd();
    let handles: Vec<usize> = (0..2)
        .map(|i| {
            let args: Vec<String> = [
                "--public-ip",
                &bed.node(i).underlay().to_string(),
                "--etcd-endpoints",
                etcd.endpoint(),
                "--subnet-file",
                &bed.dir()
                    .join(format!("race-{i}.env"))
                    .display()
                    .to_string(),
                "--control",
                &bed.dir()
                    .join(format!("race-{i}.sock"))
                    .display()
                    .to_string(),
                "--healthz-ip",
                "127.0.0.1",
                "--healthz-port",
                "9411",
                "--pump-threads",
                "1",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            bed.spawn(i, &format!("race-{i}"), &weftd, &args)
                .expect("spawn weftd")
        })
        .collect();

    // Wait until one is ready and the other has exited.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (winner, loser) = loop {
        let ready: Vec<bool> = handles
            .iter()
            .map(|&h| bed.process(h).log().contains("weftd: ready"))
            .collect();
        let exited: Vec<bool> = handles
            .iter()
            .map(|&h| bed.process(h).try_status().is_some())
            .collect();
        match (ready.as_slice(), exited.as_slice()) {
            ([true, _], [_, true]) => break (0, 1),
            ([_, true], [true, _]) => break (1, 0),
            _ if Instant::now() > deadline => panic!(
                "expected one ready weftd and one that exited; ready {ready:?}, exited \
                 {exited:?}\n--- a:\n{}\n--- b:\n{}",
                bed.process(handles[0]).tail(),
                bed.process(handles[1]).tail()
            ),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let status = bed.process(handles[loser]).try_status().expect("exited");
    let log = bed.process(handles[loser]).log();
    assert!(!status.success(), "the loser exited with success:\n{log}");
    assert!(
        log.contains("the network is full") && log.contains("10.246.0.0/22"),
        "the loser does not say clearly that the network is full:\n{log}"
    );
    let value = etcd
        .ctl(&[
            "get",
            "--print-value-only",
            &format!("{PREFIX}/subnets/10.246.3.0-24"),
        ])
        .expect("etcdctl");
    assert!(
        value.contains(&format!("\"PublicIP\":\"{}\"", bed.node(winner).underlay())),
        "the last subnet is not the winner's: {value}"
    );

    // The winner's /metrics, from inside its namespace: the lease manager's figures.
    let metrics = bed
        .node(winner)
        .ns()
        .run_inside(|| weft_testkit::http::get(([127, 0, 0, 1], 9411).into(), "/metrics"))
        .expect("entering the winner's namespace")
        .expect("GET /metrics");
    for line in [
        "weft_lease_peers 2",
        "weft_lease_renewals_total 0",
        "weft_lease_reacquisitions_total 0",
        "weft_routes 2",
        "weft_ready 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in /metrics:\n{metrics}"
        );
    }
}

/// The test lease TTL of [`short_ttl_renews_on_time_and_survives_expiry`]: a renewal every 2 s.
const SHORT_TTL_SECS: u64 = 4;

/// How many times `log` says a renewal worked.
fn renewals(log: &str) -> usize {
    log.matches("renewed the lease").count()
}

/// Lease lifetime. With the lease TTL shortened (`WEFT_TEST_LEASE_TTL_SECS`; a nonsense
/// value is refused, exit 2 naming the variable): many renewal cycles on time with no route
/// flap on either node and no datagram lost; then node b cut from etcd past its TTL, so its
/// lease expires (node a drops the route, as flanneld's peers do): b keeps forwarding on its
/// own routes, and once etcd is reachable again b writes the same subnet back, as flanneld
/// re-creates its lease from the subnet it holds, saying in its log why.
#[test]
fn short_ttl_renews_on_time_and_survives_expiry() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let cycles: u64 = std::env::var("WEFT_LEASE_RENEWAL_CYCLES")
        .ok()
        .map(|v| {
            v.parse()
                .expect("WEFT_LEASE_RENEWAL_CYCLES: a whole number")
        })
        .unwrap_or(10);
    let var = engine::lease::manager::TEST_LEASE_TTL_VAR;
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let etcd = start_etcd(&bed, CONFIG_VXLAN);
    let store = etcd.store_args();

    // Nonsense is refused before anything is set up.
    for bad in ["1", "0", "4s", "90000"] {
        let env = [format!("{var}={bad}")];
        let node =
            LeasedNode::spawn_with_env(&mut bed, &weftd(), 1, &store, &[], &env).expect("spawn");
        let status = bed
            .process(node.handle)
            .wait(Duration::from_secs(10))
            .expect("weftd exits");
        let log = node.log(&mut bed);
        assert_eq!(status.code(), Some(2), "{var}={bad}: {log}");
        assert!(
            log.contains(var) && log.contains("test-only"),
            "{var}={bad}: {log}"
        );
    }

    let env = [format!("{var}={SHORT_TTL_SECS}")];
    let nodes: Vec<LeasedNode> = (0..2)
        .map(|i| start_node_with_env(&mut bed, i, &store, &[], &env))
        .collect();
    let (sa, sb) = (
        nodes[0].subnet().expect("subnet"),
        nodes[1].subnet().expect("subnet"),
    );
    wait_route(&nodes[0], &sb, true, Duration::from_secs(5));
    wait_route(&nodes[1], &sa, true, Duration::from_secs(5));
    let granted = etcd
        .ctl(&["lease", "list"])
        .expect("lease list")
        .lines()
        .filter(|l| !l.starts_with("found"))
        .filter_map(|id| etcd.ctl(&["lease", "timetolive", id]).ok())
        .filter_map(|t| {
            t.split("granted with TTL(")
                .nth(1)?
                .split('s')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max();
    assert_eq!(granted, Some(SHORT_TTL_SECS), "the leases' granted TTL");
    let ips: Vec<Ipv4Addr> = nodes.iter().map(|n| n.tun_ip().expect("tun ip")).collect();
    let flow = |bed: &Testbed, from: usize, to: usize, port: u16| {
        weftctl::testbed::leased::UdpFlow::start(
            bed.node(from).ns(),
            ips[from],
            bed.node(to).ns(),
            ips[to],
            port,
            200,
            200,
        )
        .expect("flow")
    };

    // 1. Renewal cycles: every route present at every look, every renewal on time.
    let window = Duration::from_secs(SHORT_TTL_SECS / 2 * cycles);
    let before: Vec<usize> = nodes.iter().map(|n| renewals(&n.log(&mut bed))).collect();
    let (ab, ba) = (flow(&bed, 0, 1, 7781), flow(&bed, 1, 0, 7782));
    let start = Instant::now();
    let mut looks = 0u64;
    let mut flaps = Vec::new();
    while start.elapsed() < window {
        for (n, peer) in [(&nodes[0], &sb), (&nodes[1], &sa)] {
            let routes = n.routes().expect("routes");
            looks += 1;
            if !routes.contains(peer.as_str()) {
                flaps.push(format!(
                    "node {} at {:?}: no route to {peer}",
                    ROLES[n.index],
                    start.elapsed()
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ab, ba) = (ab.finish().expect("flow"), ba.finish().expect("flow"));
    eprintln!("renewal window {window:?}: a -> b {ab}; b -> a {ba}; {looks} route looks");
    assert!(flaps.is_empty(), "routes flapped:\n{}", flaps.join("\n"));
    assert_eq!(ab.lost_count() + ba.lost_count(), 0, "datagrams lost");
    for (n, before) in nodes.iter().zip(&before) {
        let log = n.log(&mut bed);
        let done = renewals(&log) - before;
        eprintln!("node {}: {done} renewals in {window:?}", ROLES[n.index]);
        // One every TTL/2; the first may fall just outside the window.
        assert!(
            done as u64 + 1 >= cycles,
            "node {}: {done} renewals in {window:?}, want {cycles}:\n{}",
            ROLES[n.index],
            bed.process(n.handle).tail()
        );
        assert!(
            !log.contains("renewing the lease") && !log.contains("acquiring a lease again"),
            "node {}: a renewal failed:\n{}",
            ROLES[n.index],
            bed.process(n.handle).tail()
        );
    }

    // 2. Node b cut from etcd past its TTL.
    cut_from_etcd(bed.node(1).ns(), true).expect("cut node b");
    let cut_at = Instant::now();
    let expired = wait_route(
        &nodes[0],
        &sb,
        false,
        Duration::from_secs(SHORT_TTL_SECS * 3),
    );
    eprintln!("node b's lease expired in etcd {expired:?} after the cut");
    // Past the TTL, b still forwards on its routes: its route to a stays.
    std::thread::sleep(Duration::from_secs(SHORT_TTL_SECS));
    bed.check_alive().expect("weftd alive while cut off");
    assert!(
        routes(&nodes[1]).contains(&sa),
        "node b dropped its route to a while cut from etcd"
    );
    cut_from_etcd(bed.node(1).ns(), false).expect("uncut node b");
    let outage = cut_at.elapsed();
    let back = wait_route(
        &nodes[0],
        &sb,
        true,
        Duration::from_secs(SHORT_TTL_SECS * 3),
    );
    eprintln!("cut {outage:?}: node b's subnet routed on a again {back:?} after etcd came back");
    assert_eq!(
        nodes[1].subnet().expect("subnet"),
        sb,
        "node b changed subnet"
    );
    let key = format!("{PREFIX}/subnets/{}", sb.replace('/', "-"));
    let value = etcd.ctl(&["get", &key, "--print-value-only"]).expect("get");
    assert!(
        value.contains(&format!("\"PublicIP\":\"{}\"", bed.node(1).underlay())),
        "{key} is not node b's: {value}"
    );
    let log_b = nodes[1].log(&mut bed);
    assert!(
        log_b.contains("renewing the lease"),
        "node b's log does not say its renewals failed:\n{}",
        bed.process(nodes[1].handle).tail()
    );
    // It says why it wrote its lease again: the renewal found it gone, or the watch saw it
    // deleted (whichever came first after the cut).
    let said: Vec<String> = problem_lines(&log_b)
        .into_iter()
        .filter(|l| l.contains("is gone (it expired") || l.contains("was deleted from the store"))
        .collect();
    assert!(
        !said.is_empty(),
        "node b does not say its lease expired:\n{}",
        bed.process(nodes[1].handle).tail()
    );
    eprintln!("node b said:\n{}", said.join("\n"));
    // Traffic both ways again.
    let (ab, ba) = (flow(&bed, 0, 1, 7783), flow(&bed, 1, 0, 7784));
    std::thread::sleep(Duration::from_secs(2));
    let (ab, ba) = (ab.finish().expect("flow"), ba.finish().expect("flow"));
    eprintln!("after the expiry: a -> b {ab}; b -> a {ba}");
    assert_eq!(
        ab.lost_count() + ba.lost_count(),
        0,
        "datagrams lost after the expiry"
    );
    bed.check_alive().expect("no weftd exited");
}
