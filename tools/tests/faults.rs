//! Faults: weftd in lease mode on a real etcd while things break, with a steady
//! sequence-numbered UDP flow measured across every fault.
//!
//! - etcd stopped for 60 s (`WEFT_FAULT_ETCD_STOP_SECS` shortens it), then back; etcd
//!   compacted past a node's watch revision; etcd restored from an empty data dir (the test
//!   writes the config again as an operator would): the routes converge each time, the
//!   nodes get their own subnets back, and not one datagram of the flows is lost.
//! - weftd SIGKILLed mid-flow and restarted (with `--ip-masq`): same subnet, the flow resumes
//!   within 2 s of ready, no TUN left while it is dead, masquerade rules not duplicated;
//!   SIGTERM: exit 0 within 1 s, TUN and rules gone.
//! - 1000 leases added and removed in bursts of 100 while a flow runs between two stable
//!   nodes: not one datagram lost.
//! - The underlay down and up, then the TUN deleted from under weftd: weftd never spins (CPU
//!   time over 3 s), recovers from the underlay flap, and exits clearly (naming the TUN) when
//!   its TUN is gone.
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine --bins`).

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rustix::process::Signal;
use weft_testkit::etcd::{Etcd, PREFIX};
use weft_testkit::{require_programs, require_root, wait};
use weftctl::testbed::leased::{
    cut_from_etcd, proc_stats, vxlan_lease, FlowReport, LeasedNode, UdpFlow, CONFIG_VXLAN,
};
use weftctl::testbed::Testbed;

/// The flows' rate (datagrams/s) and size.
const RATE: u32 = 200;
const SIZE: usize = 200;
const FLOW_PORT: u16 = 7777;
/// How long a route may take to converge after etcd is back (watch backoff up to 5 s).
const CONVERGE: Duration = Duration::from_secs(15);
/// A weftd that does nothing may use at most this much CPU over [`IDLE_WINDOW`].
const IDLE_CPU: Duration = Duration::from_millis(500);
const IDLE_WINDOW: Duration = Duration::from_secs(3);

fn weftd() -> std::path::PathBuf {
    common::binaries_with_weftd().weftd.expect("weftd")
}

/// Starts one leased weftd per `extra` and waits until every node routes every other.
fn start_nodes(bed: &mut Testbed, store: &[String], extra: &[&[&str]]) -> Vec<LeasedNode> {
    let weftd = weftd();
    let nodes: Vec<LeasedNode> = (0..extra.len())
        .map(|i| LeasedNode::start(bed, &weftd, i, store, extra[i]).expect("weftd"))
        .collect();
    for n in &nodes {
        for m in &nodes {
            if n.index != m.index {
                let subnet = m.subnet().expect("subnet");
                n.wait_route(&subnet, true, CONVERGE).expect("mesh");
            }
        }
    }
    nodes
}

fn flow(bed: &Testbed, nodes: &[LeasedNode], from: usize, to: usize, port: u16) -> UdpFlow {
    flow_at(bed, nodes, from, to, port, RATE)
}

fn flow_at(
    bed: &Testbed,
    nodes: &[LeasedNode],
    from: usize,
    to: usize,
    port: u16,
    rate: u32,
) -> UdpFlow {
    UdpFlow::start(
        bed.node(from).ns(),
        nodes[from].tun_ip().expect("tun ip"),
        bed.node(to).ns(),
        nodes[to].tun_ip().expect("tun ip"),
        port,
        rate,
        SIZE,
    )
    .expect("flow")
}

fn assert_no_loss(what: &str, report: &FlowReport) {
    eprintln!("{what}: {report}");
    assert!(report.sent > 0, "{what}: nothing sent");
    assert_eq!(report.lost_count(), 0, "{what}: datagrams lost: {report}");
}

/// The keys under `<prefix>/subnets/` in etcd.
fn lease_keys(etcd: &Etcd) -> Vec<String> {
    etcd.ctl(&[
        "get",
        "--prefix",
        "--keys-only",
        &format!("{PREFIX}/subnets/"),
    ])
    .unwrap_or_default()
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}

fn wait_until(what: &str, limit: Duration, f: impl FnMut() -> bool) -> Duration {
    wait::until_every(limit, Duration::from_millis(50), f)
        .unwrap_or_else(|| panic!("{what}: not within {limit:?}"))
}

#[test]
fn etcd_stop_compaction_and_empty_restore_keep_forwarding() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let stop_secs: u64 = std::env::var("WEFT_FAULT_ETCD_STOP_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let mut etcd = Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), bed.dir()).expect("etcd");
    etcd.put("config", CONFIG_VXLAN).expect("config");
    let nodes = start_nodes(&mut bed, &etcd.store_args(), &[&[], &[]]);
    let subnets: Vec<String> = nodes.iter().map(|n| n.subnet().expect("subnet")).collect();
    let ab = flow(&bed, &nodes, 0, 1, FLOW_PORT);
    let ba = flow(&bed, &nodes, 1, 0, FLOW_PORT + 1);

    // 1. etcd down for 60 s.
    etcd.stop();
    std::thread::sleep(Duration::from_secs(stop_secs));
    bed.check_alive().ok();
    etcd.restart().expect("etcd back");
    etcd.put(
        "subnets/10.244.250.0-24",
        &vxlan_lease(Ipv4Addr::new(192, 168, 250, 9), 9),
    )
    .expect("put");
    for n in &nodes {
        let took = n
            .wait_route("10.244.250.0/24", true, CONVERGE)
            .expect("a lease written after the outage");
        eprintln!("after the {stop_secs} s outage: a new lease routed in {took:?}");
    }

    // 2. Node b cut from etcd while the history moves on and is compacted.
    let b = bed.node(1).ns();
    cut_from_etcd(b, true).expect("cut node b");
    etcd.restart().expect("etcd restart (drops b's connection)");
    etcd.del("subnets/10.244.250.0-24").expect("del");
    etcd.put(
        "subnets/10.244.252.0-24",
        &vxlan_lease(Ipv4Addr::new(192, 168, 250, 12), 12),
    )
    .expect("put");
    for i in 0..20 {
        etcd.put(
            "subnets/10.244.253.0-24",
            &vxlan_lease(Ipv4Addr::new(192, 168, 250, 13), i),
        )
        .expect("put");
    }
    etcd.del("subnets/10.244.253.0-24").expect("del");
    let rev = etcd.compact().expect("compact");
    cut_from_etcd(b, false).expect("uncut node b");
    let took = nodes[1]
        .wait_route("10.244.252.0/24", true, CONVERGE)
        .expect("node b: a lease put while it was cut");
    eprintln!("compacted at {rev}: node b routed the new lease in {took:?}");
    // A lease deleted while b was cut goes after the re-list grace.
    let took = nodes[1]
        .wait_route(
            "10.244.250.0/24",
            false,
            engine::lease::manager::RELIST_GRACE + CONVERGE,
        )
        .expect("node b: a lease deleted while it was cut");
    eprintln!("node b dropped the lease deleted while it was cut in {took:?}");
    assert!(
        nodes[1].log(&mut bed).contains("compaction"),
        "node b's log does not mention the compaction"
    );

    // 3. etcd restored from an empty data dir; the operator writes the config again.
    etcd.restart_empty().expect("empty etcd");
    etcd.put("config", CONFIG_VXLAN).expect("config");
    let want: Vec<String> = subnets
        .iter()
        .map(|s| format!("{PREFIX}/subnets/{}", s.replace('/', "-")))
        .collect();
    let took = wait_until("both nodes lease again", CONVERGE, || {
        let keys = lease_keys(&etcd);
        want.iter().all(|w| keys.contains(w))
    });
    eprintln!("after the empty restore both nodes had their subnets again in {took:?}");
    for n in &nodes {
        let log = n.log(&mut bed);
        assert!(
            log.contains("is behind the watch's revision"),
            "node {}: the restored store was not noticed as such:\n{}",
            n.index,
            bed.process(n.handle).tail()
        );
    }
    etcd.put(
        "subnets/10.244.254.0-24",
        &vxlan_lease(Ipv4Addr::new(192, 168, 250, 14), 14),
    )
    .expect("put");
    for (n, subnet) in nodes.iter().zip(&subnets) {
        n.wait_route("10.244.254.0/24", true, CONVERGE)
            .expect("a lease written after the restore");
        assert_eq!(&n.subnet().expect("subnet"), subnet, "the subnet changed");
    }
    let routes_a = nodes[0].routes().expect("routes");
    assert!(
        routes_a.contains(&subnets[1]),
        "node a lost its route to b: {routes_a}"
    );
    bed.check_alive().expect("weftd survived");
    assert_no_loss("flow a -> b", &ab.finish().expect("flow"));
    assert_no_loss("flow b -> a", &ba.finish().expect("flow"));
    for n in &nodes {
        assert!(!n.log(&mut bed).contains("panicked"));
    }
}

/// The nat rules with flannel's comment in node `i`'s namespace.
fn masq_rules(bed: &Testbed, i: usize) -> Vec<String> {
    bed.node(i)
        .ns()
        .exec_checked("iptables-save", &["-t", "nat"])
        .expect("iptables-save")
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains("flanneld masq"))
        .map(str::to_owned)
        .collect()
}

fn has_tun(bed: &Testbed, i: usize) -> bool {
    bed.node(i).ip(&["link", "show", "flannel.1"]).is_ok()
}

#[test]
fn weftd_sigkill_restart_and_sigterm() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let etcd = Etcd::start(bed.node(1).ns(), bed.node(1).underlay(), bed.dir()).expect("etcd");
    etcd.put("config", CONFIG_VXLAN).expect("config");
    let mut nodes = start_nodes(&mut bed, &etcd.store_args(), &[&["--ip-masq"], &[]]);
    let subnet = nodes[0].subnet().expect("subnet");
    let rules = masq_rules(&bed, 0);
    assert!(!rules.is_empty(), "no masquerade rules with --ip-masq");
    let to_a = flow(&bed, &nodes, 1, 0, FLOW_PORT);
    std::thread::sleep(Duration::from_secs(1));

    // SIGKILL mid-flow.
    let pid = nodes[0].pid(&mut bed).expect("pid");
    nodes[0].signal(&mut bed, Signal::KILL).expect("SIGKILL");
    let killed_at = to_a.elapsed();
    bed.process(nodes[0].handle)
        .wait(Duration::from_secs(2))
        .expect("dead");
    assert!(
        !has_tun(&bed, 0),
        "the TUN outlived the killed weftd (pid {pid})"
    );
    std::thread::sleep(Duration::from_millis(500));
    let restart_at = to_a.elapsed();
    nodes[0].respawn(&mut bed).expect("restart");
    let ready_at = to_a.elapsed();
    assert_eq!(
        nodes[0].subnet().expect("subnet"),
        subnet,
        "another subnet after SIGKILL"
    );
    assert_eq!(
        masq_rules(&bed, 0),
        rules,
        "the masquerade rules differ after the restart"
    );
    std::thread::sleep(Duration::from_secs(3));
    let report = to_a.finish().expect("flow");
    eprintln!(
        "flow b -> a: {report}; killed at {killed_at:?}, restarted at {restart_at:?}, ready at \
         {ready_at:?}"
    );
    let (gap, gap_start) = report.longest_gap;
    let resumed = gap_start + gap;
    assert!(
        gap_start <= killed_at + Duration::from_millis(100)
            && resumed <= ready_at + Duration::from_secs(2),
        "the flow resumed at {resumed:?}, weftd was ready at {ready_at:?}: {report}"
    );
    let resumed_after_spawn = resumed.saturating_sub(restart_at);
    eprintln!("traffic resumed {resumed_after_spawn:?} after the restart began");
    // Every datagram lost was sent while weftd was down.
    for (seq, sent_at) in &report.lost {
        assert!(
            *sent_at + Duration::from_millis(200) >= killed_at && *sent_at <= resumed,
            "datagram {seq} sent at {sent_at:?} lost outside the outage {killed_at:?}..{resumed:?}"
        );
    }

    // SIGTERM: clean and quick.
    let sent = Instant::now();
    nodes[0].signal(&mut bed, Signal::TERM).expect("SIGTERM");
    let status = bed
        .process(nodes[0].handle)
        .wait(Duration::from_secs(5))
        .expect("exit after SIGTERM");
    let took = sent.elapsed();
    eprintln!("SIGTERM -> exit {status} in {took:?}");
    assert!(status.success(), "weftd exited {status} on SIGTERM");
    assert!(took <= Duration::from_secs(1), "SIGTERM took {took:?}");
    assert!(!has_tun(&bed, 0), "TUN left after SIGTERM");
    assert!(
        masq_rules(&bed, 0).is_empty(),
        "masquerade rules left after SIGTERM"
    );
}

#[test]
fn thousand_leases_churn_without_loss() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    const LEASES: usize = 1000;
    const BURST: usize = 100;
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let etcd = Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), bed.dir()).expect("etcd");
    etcd.put(
        "config",
        r#"{"Network": "10.0.0.0/8", "SubnetLen": 24, "SubnetMin": "10.244.100.0", "SubnetMax": "10.244.200.0", "Backend": {"Type": "vxlan"}}"#,
    )
    .expect("config");
    let nodes = start_nodes(&mut bed, &etcd.store_args(), &[&[], &[]]);
    let ab = flow_at(&bed, &nodes, 0, 1, FLOW_PORT, 1000);
    let ba = flow_at(&bed, &nodes, 1, 0, FLOW_PORT + 1, 1000);
    let key = |i: usize| format!("{PREFIX}/subnets/10.{}.{}.0-24", 1 + i / 250, i % 250);
    let value = |i: usize| {
        vxlan_lease(
            Ipv4Addr::new(172, 16, (i / 250) as u8, (1 + i % 250) as u8),
            i as u16 + 1,
        )
    };
    let started = Instant::now();
    for round in 0..2 {
        for burst in (0..LEASES).step_by(BURST) {
            let ops: Vec<String> = (burst..burst + BURST)
                .map(|i| format!("put {} {}", key(i), value(i)))
                .collect();
            etcd.txn(&ops).expect("put burst");
            std::thread::sleep(Duration::from_millis(100));
        }
        let took = wait_until("1000 routes", CONVERGE, || {
            nodes.iter().all(|n| {
                n.routes()
                    .is_ok_and(|r| r.matches("172.16.").count() >= LEASES)
            })
        });
        eprintln!("round {round}: {LEASES} leases routed {took:?} after the last burst");
        for burst in (0..LEASES).step_by(BURST) {
            let ops: Vec<String> = (burst..burst + BURST)
                .map(|i| format!("del {}", key(i)))
                .collect();
            etcd.txn(&ops).expect("del burst");
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_until("routes gone", CONVERGE, || {
            nodes
                .iter()
                .all(|n| n.routes().is_ok_and(|r| !r.contains("172.16.")))
        });
    }
    eprintln!("two rounds of churn took {:?}", started.elapsed());
    assert_no_loss("flow a -> b", &ab.finish().expect("flow"));
    assert_no_loss("flow b -> a", &ba.finish().expect("flow"));
}

fn cpu_over(bed: &mut Testbed, node: &LeasedNode, window: Duration) -> Duration {
    let pid = node.pid(bed).expect("pid");
    let before = proc_stats(pid).expect("stats").cpu;
    std::thread::sleep(window);
    let after = proc_stats(pid).expect("stats").cpu;
    after.saturating_sub(before)
}

#[test]
fn underlay_flap_and_tun_deleted() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    let etcd = Etcd::start(bed.node(1).ns(), bed.node(1).underlay(), bed.dir()).expect("etcd");
    etcd.put("config", CONFIG_VXLAN).expect("config");
    let nodes = start_nodes(&mut bed, &etcd.store_args(), &[&[], &[]]);
    let ab = flow(&bed, &nodes, 0, 1, FLOW_PORT);

    // The underlay goes down and up again.
    bed.node(0)
        .ip(&["link", "set", "veth0", "down"])
        .expect("down");
    let cpu = cpu_over(&mut bed, &nodes[0], IDLE_WINDOW);
    eprintln!("weftd CPU over {IDLE_WINDOW:?} with the underlay down: {cpu:?}");
    assert!(
        cpu <= IDLE_CPU,
        "weftd spins with the underlay down: {cpu:?}"
    );
    bed.check_alive()
        .expect("weftd survives the underlay going down");
    bed.node(0).ip(&["link", "set", "veth0", "up"]).expect("up");
    let report = ab.finish().expect("flow");
    eprintln!("flow a -> b across the underlay flap: {report}");
    let log = nodes[0].log(&mut bed);
    assert_eq!(
        log.lines().filter(|l| l.contains("veth0 is down")).count(),
        1,
        "weftd should report the underlay down once:\n{log}"
    );
    wait_until(
        "weftd reports the underlay up",
        Duration::from_secs(3),
        || nodes[0].log(&mut bed).contains("veth0 is up again"),
    );
    let stats = nodes[0].stats().expect("stats");
    eprintln!("node a stats after the flap: {stats}");
    // Traffic flows again, without loss.
    std::thread::sleep(Duration::from_secs(1));
    let ab = flow(&bed, &nodes, 0, 1, FLOW_PORT + 1);
    std::thread::sleep(Duration::from_secs(2));
    assert_no_loss(
        "flow a -> b after the underlay came back",
        &ab.finish().expect("flow"),
    );

    // The TUN deleted from under weftd: it must not spin, and it must exit naming the TUN
    // (or keep going): either way, clearly.
    bed.node(0)
        .ip(&["link", "del", "flannel.1"])
        .expect("delete the TUN");
    let pid = nodes[0].pid(&mut bed).expect("pid");
    let before = proc_stats(pid).map(|s| s.cpu).unwrap_or_default();
    let status = bed.process(nodes[0].handle).wait(Duration::from_secs(5));
    match status {
        Ok(status) => {
            let log = nodes[0].log(&mut bed);
            eprintln!("weftd exited {status} after its TUN was deleted");
            assert!(!status.success(), "weftd exited 0 without its TUN");
            assert!(
                log.lines()
                    .any(|l| l.contains("ERROR") && l.contains("flannel.1")),
                "weftd's exit does not name its TUN:\n{}",
                bed.process(nodes[0].handle).tail()
            );
            assert!(!log.contains("panicked"), "weftd panicked:\n{log}");
        }
        Err(e) => {
            let cpu = proc_stats(pid).map(|s| s.cpu).unwrap_or_default() - before;
            panic!(
                "weftd neither exited nor recovered after its TUN was deleted (CPU {cpu:?}): {e:#}"
            );
        }
    }
}
