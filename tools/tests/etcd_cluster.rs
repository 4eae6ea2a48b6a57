//! weftd on a real three-member etcd cluster while the cluster breaks.
//!
//! Three etcd members, each in its own namespace on the testbed's bridge
//! ([`weftctl::testbed::etcd_cluster`]); two weftd nodes in lease mode with all three
//! endpoints (node a `m0,m1,m2`, node b `m2,m0,m1`: b's first endpoint is the member cut off
//! below) and a short test lease TTL (`WEFT_TEST_LEASE_TTL_SECS`), so renewals run during the
//! faults. While a sequence-numbered UDP flow runs each way and verified TCP streams run from
//! a to b back to back:
//!
//! 1. the leader is stopped, then restarted on its data;
//! 2. member m2 is cut off by its link (down, then up);
//! 3. member m2 is cut off from its peers only, so clients still reach a member that has no
//!    leader (a minority of one): node b, which starts at m2, must not follow a stale view;
//! 4. two members are stopped for `WEFT_ETCD_QUORUM_LOSS_SECS` (default 5; the long
//!    version in the README is 30), then started on their data.
//!
//! After each fault a lease written through a member of the majority must reach both nodes'
//! routes (the times are printed); no datagram may be lost, every TCP stream verifies, no
//! weftd exits, each node keeps its subnet (no subnet is ever leased twice), and renewals go
//! on after the faults.
//!
//! This runs target/<profile>/weftd: build it first (`cargo build -p engine --bins`).

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::lease::{EtcdOptions, EtcdStore, LeaseStore};
use weft_testkit::etcd::PREFIX;
use weft_testkit::{require_programs, require_root, wait};
use weftctl::testbed::etcd_cluster::EtcdCluster;
use weftctl::testbed::leased::{
    problem_lines, vxlan_lease, FlowReport, LeasedNode, UdpFlow, CONFIG_VXLAN,
};
use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::Testbed;

/// The flows' rate (datagrams/s) and size.
const RATE: u32 = 200;
const SIZE: usize = 200;
const FLOW_PORT: u16 = 7777;
/// The test lease TTL: a renewal every 8 s, due 8 s before expiry, so a renewal whose first
/// attempt hangs on a member cut off by its link (the 5 s request timeout, then the next
/// endpoint) still lands before the lease expires.
const TTL_SECS: u64 = 16;
/// The TCP streams: this many bytes/s, this long each, back to back.
const TCP_RATE: u64 = 1 << 20;
const TCP_EACH: Duration = Duration::from_secs(5);
/// How long a lease written after a fault may take to reach a node's routes: a watch on a
/// member that vanished without a word (link down) is found dead by HTTP/2 keep-alive
/// (10 s + 5 s), then reconnects with a backoff of up to 5 s.
const CONVERGE: Duration = Duration::from_secs(30);
/// How long the members get to elect a leader after a fault.
const ELECTION: Duration = Duration::from_secs(20);

fn quorum_loss() -> Duration {
    let secs = std::env::var("WEFT_ETCD_QUORUM_LOSS_SECS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("WEFT_ETCD_QUORUM_LOSS_SECS={v:?}: whole seconds"))
        })
        .unwrap_or(5);
    Duration::from_secs(secs)
}

fn assert_no_loss(what: &str, report: &FlowReport) {
    eprintln!("{what}: {report}");
    assert!(report.sent > 0, "{what}: nothing sent");
    assert_eq!(report.lost_count(), 0, "{what}: datagrams lost: {report}");
    assert_eq!(report.duplicates, 0, "{what}: duplicates: {report}");
}

/// Writes a fictitious lease (`10.244.<third>.0/24`) through member `via` and waits until
/// every node routes it; returns the time each node took.
fn lease_reaches_all(
    cluster: &EtcdCluster,
    via: usize,
    nodes: &[LeasedNode],
    third: u8,
) -> Vec<Duration> {
    let subnet = format!("10.244.{third}.0/24");
    cluster
        .member(via)
        .put(
            &format!("subnets/10.244.{third}.0-24"),
            &vxlan_lease(Ipv4Addr::new(192, 168, 251, third), u16::from(third)),
        )
        .unwrap_or_else(|e| panic!("put {subnet} via m{via}: {e:#}"));
    nodes
        .iter()
        .map(|n| {
            n.wait_route(&subnet, true, CONVERGE).unwrap_or_else(|e| {
                panic!("{e:#}\n{}", cluster.logs_tail(20));
            })
        })
        .collect()
}

/// `what` took `times` (node a, node b): printed as a figure.
fn figure(figures: &mut Vec<String>, what: &str, times: &[Duration]) {
    let line = format!(
        "{what}: a lease written through the majority routed on a in {} ms, on b in {} ms",
        times[0].as_millis(),
        times[1].as_millis()
    );
    eprintln!("{line}");
    figures.push(line);
}

/// How many times `log` says a renewal worked.
fn renewals(log: &str) -> usize {
    log.matches("renewed the lease").count()
}

#[test]
fn three_member_etcd_faults_keep_routes_and_leases() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let outage = quorum_loss();
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let mut bed = Testbed::new(3, common::binaries_with_weftd()).expect("testbed");
    let mut cluster = EtcdCluster::start(&bed, 3).expect("etcd cluster");
    cluster
        .member(0)
        .put("config", CONFIG_VXLAN)
        .expect("config");
    let env = [format!(
        "{}={TTL_SECS}",
        engine::lease::manager::TEST_LEASE_TTL_VAR
    )];
    let orders: [&[usize]; 2] = [&[0, 1, 2], &[2, 0, 1]];
    let nodes: Vec<LeasedNode> = orders
        .iter()
        .enumerate()
        .map(|(i, order)| {
            let node = LeasedNode::spawn_with_env(
                &mut bed,
                &weftd,
                i,
                &cluster.store_args(order),
                &[],
                &env,
            )
            .expect("weftd");
            node.wait_ready(&mut bed).expect("ready");
            node
        })
        .collect();
    let subnets: Vec<String> = nodes.iter().map(|n| n.subnet().expect("subnet")).collect();
    assert_ne!(subnets[0], subnets[1], "two nodes leased one subnet");
    for (n, other) in [(0, 1), (1, 0)] {
        nodes[n]
            .wait_route(&subnets[other], true, CONVERGE)
            .expect("mesh");
    }
    let ips: Vec<Ipv4Addr> = nodes.iter().map(|n| n.tun_ip().expect("tun ip")).collect();
    let flow = |from: usize, to: usize, port: u16| {
        UdpFlow::start(
            bed.node(from).ns(),
            ips[from],
            bed.node(to).ns(),
            ips[to],
            port,
            RATE,
            SIZE,
        )
        .expect("flow")
    };
    let ab = flow(0, 1, FLOW_PORT);
    let ba = flow(1, 0, FLOW_PORT + 1);
    let started = Instant::now();
    let mut figures = Vec::new();
    let log_paths: Vec<std::path::PathBuf> = nodes
        .iter()
        .map(|n| bed.process(n.handle).log_path().to_owned())
        .collect();
    let log = |i: usize| std::fs::read_to_string(&log_paths[i]).unwrap_or_default();
    let cluster_size = cluster.size();
    let endpoints = cluster.endpoints(&(0..cluster_size).collect::<Vec<_>>());

    let stop = Arc::new(AtomicBool::new(false));
    let tcp_results = std::thread::scope(|scope| {
        let tcp = {
            let (bed, stop, ips) = (&bed, Arc::clone(&stop), &ips);
            scope.spawn(move || {
                let mut results = Vec::new();
                let mut seed = common::seed();
                while !stop.load(Ordering::Relaxed) {
                    seed += 1;
                    let from = End {
                        ns: bed.node(0).ns(),
                        ip: ips[0].into(),
                    };
                    let to = End {
                        ns: bed.node(1).ns(),
                        ip: ips[1].into(),
                    };
                    results.push(traffic::tcp_stream_paced(
                        from,
                        to,
                        TCP_EACH,
                        TCP_RATE,
                        seed,
                        common::STALL,
                    ));
                }
                results
            })
        };
        // Ends the TCP loop when the faults are done, also when a check below panics (the
        // scope would wait for the thread forever otherwise).
        let _stop_tcp = StopOnDrop(Arc::clone(&stop));
        let mut third = 200u8;
        let mut next = || {
            third += 1;
            third
        };

        // Node b's current member: its first endpoint until a failure moved it on.
        let current_of_b = || -> usize {
            let text = log(1);
            let endpoint = text
                .lines()
                .filter_map(|l| l.split("the next requests go to ").nth(1))
                .next_back()
                .map(str::trim)
                .map(str::to_owned);
            match endpoint {
                Some(e) => (0..cluster_size)
                    .find(|&k| endpoints[k] == e)
                    .unwrap_or_else(|| panic!("node b moved to an unknown endpoint {e}")),
                None => orders[1][0],
            }
        };
        let renewals_now = |i: usize| renewals(&log(i));

        // 1. The member node b talks to cut off by its link (down, then up).
        let p = current_of_b();
        let renewed = renewals_now(1);
        cluster.set_link(p, false).expect("link down");
        let leader = cluster
            .wait_leader(ELECTION)
            .expect("a leader without the cut member");
        let times = lease_reaches_all(&cluster, leader, &nodes, next());
        figure(
            &mut figures,
            &format!("m{p} (node b's current endpoint) cut off, link down"),
            &times,
        );
        renewal_after(&log, 1, renewed, &format!("m{p}'s link down"));
        cluster.set_link(p, true).expect("link up");
        wait_member_has_leader(&cluster, p);
        let times = lease_reaches_all(&cluster, p, &nodes, next());
        figure(&mut figures, &format!("m{p}'s link up again"), &times);

        // 2. The member node b talks to cut off from its peers only: it still answers
        //    clients, without a leader (a minority of one). b must not follow its stale view.
        let p = current_of_b();
        let renewed = renewals_now(1);
        cluster.isolate_peers(p, true).expect("isolate");
        wait_member_without_leader(&cluster, p);
        let leader = cluster
            .wait_leader(ELECTION)
            .expect("a leader in the majority");
        let times = lease_reaches_all(&cluster, leader, &nodes, next());
        figure(
            &mut figures,
            &format!("m{p} (node b's current endpoint) partitioned from its peers, clients still reach it"),
            &times,
        );
        renewal_after(
            &log,
            1,
            renewed,
            &format!("m{p} partitioned from its peers"),
        );
        // The store itself, from node a's namespace: a read through the minority member
        // alone fails (it is linearizable: never the member's stale copy), and with the
        // minority member first it is answered by the next endpoint.
        let alone = read_leases(&bed, vec![endpoints[p].clone()]);
        assert!(
            alone.is_err(),
            "m{p}, cut off from its peers, served a read: {alone:?}"
        );
        let first = vec![
            endpoints[p].clone(),
            endpoints[(p + 1) % cluster_size].clone(),
        ];
        let (took, count) =
            read_leases(&bed, first).expect("a read with the minority member first");
        eprintln!(
            "a read with the minority member m{p} first: {count} leases in {} ms",
            took.as_millis()
        );
        assert!(count >= 2, "the read missed leases: {count}");
        cluster.isolate_peers(p, false).expect("rejoin");
        wait_member_has_leader(&cluster, p);
        let times = lease_reaches_all(&cluster, p, &nodes, next());
        figure(&mut figures, &format!("m{p} rejoined its peers"), &times);

        // 3. The leader stopped, then restarted on its data.
        let leader = cluster.wait_leader(ELECTION).expect("a leader");
        cluster.stop(leader);
        let new_leader = cluster.wait_leader(ELECTION).expect("a new leader");
        let times = lease_reaches_all(&cluster, new_leader, &nodes, next());
        figure(
            &mut figures,
            &format!("leader m{leader} stopped (m{new_leader} elected)"),
            &times,
        );
        cluster.launch(&[leader]).expect("the old leader back");
        let times = lease_reaches_all(&cluster, leader, &nodes, next());
        figure(
            &mut figures,
            &format!("m{leader} restarted on its data"),
            &times,
        );

        // 4. The quorum lost: two members stopped, then started on their data.
        let renewed_before: Vec<usize> = (0..nodes.len()).map(renewals_now).collect();
        cluster.stop(1);
        cluster.stop(2);
        std::thread::sleep(outage);
        cluster.launch(&[1, 2]).expect("quorum back");
        let k = cluster
            .wait_leader(ELECTION)
            .expect("a leader after the quorum loss");
        let times = lease_reaches_all(&cluster, k, &nodes, next());
        figure(
            &mut figures,
            &format!("quorum lost for {} s, then restored", outage.as_secs()),
            &times,
        );
        // Renewals go on: at least one more on each node after the quorum came back.
        for (i, before) in renewed_before.iter().enumerate() {
            renewal_after(&log, i, *before, "the quorum came back");
        }
        drop(_stop_tcp);
        tcp.join().expect("the TCP thread")
    });

    let elapsed = started.elapsed();
    bed.check_alive().expect("no weftd exited");
    let (ab, ba) = (ab.finish().expect("flow"), ba.finish().expect("flow"));
    let mut tcp_bytes = 0;
    for (i, r) in tcp_results.iter().enumerate() {
        match r {
            Ok(report) => tcp_bytes += report.bytes,
            Err(e) => panic!("TCP stream {i} a -> b: {e:#}"),
        }
    }
    eprintln!(
        "{} verified TCP streams a -> b, {} MiB, over {elapsed:?}",
        tcp_results.len(),
        tcp_bytes >> 20
    );
    assert!(!tcp_results.is_empty());

    // Each node kept its subnet, and the store holds exactly one lease per node.
    let leases = cluster.leases(0).expect("leases");
    for (n, subnet) in nodes.iter().zip(&subnets) {
        assert_eq!(
            &n.subnet().expect("subnet"),
            subnet,
            "node {} changed subnet",
            n.index
        );
        let ip = bed.node(n.index).underlay().to_string();
        let held: Vec<&String> = leases
            .iter()
            .filter(|(_, v)| v.contains(&format!("\"PublicIP\":\"{ip}\"")))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            held,
            [&format!("{PREFIX}/subnets/{}", subnet.replace('/', "-"))],
            "node {}'s leases",
            n.index
        );
        let log = n.log(&mut bed);
        assert!(
            !log.contains("acquiring a lease again") && !log.contains("our subnet changed"),
            "node {} lost its lease:\n{}",
            n.index,
            bed.process(n.handle).tail()
        );
        assert!(!log.contains("panicked"), "node {} panicked", n.index);
        eprintln!(
            "node {}: {} renewals, {} warnings (etcd failovers and retries)",
            n.index,
            renewals(&log),
            problem_lines(&log).len()
        );
    }
    assert_no_loss("flow a -> b", &ab);
    assert_no_loss("flow b -> a", &ba);
    eprintln!("figures:\n  {}", figures.join("\n  "));
}

/// Lists the leases through a new [`EtcdStore`] on `endpoints`, from node a's namespace;
/// returns how long it took and how many leases it saw.
fn read_leases(bed: &Testbed, endpoints: Vec<String>) -> anyhow::Result<(Duration, usize)> {
    bed.node(0)
        .ns()
        .spawn_inside(move || {
            // The store's runtime threads start from this thread, inside the namespace.
            let store = EtcdStore::connect(EtcdOptions {
                endpoints,
                prefix: PREFIX.to_owned(),
                ..EtcdOptions::default()
            })?;
            let start = Instant::now();
            let listing = store.list()?;
            Ok((start.elapsed(), listing.leases.len()))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the reading thread panicked"))?
}

/// Waits until node `i` has renewed its lease more than `before` times in all (a renewal
/// is due every TTL / 2; failed ones are retried every TTL / 4).
fn renewal_after(log: &dyn Fn(usize) -> String, i: usize, before: usize, what: &str) {
    let limit = Duration::from_secs(TTL_SECS * 2);
    let took = wait_until(limit, || renewals(&log(i)) > before);
    assert!(
        took.is_some(),
        "node {i}: no renewal within {limit:?} after {what}:\n{}",
        log(i)
    );
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits until `f` holds (every 100 ms, up to `limit`); returns the time it took.
fn wait_until(limit: Duration, f: impl FnMut() -> bool) -> Option<Duration> {
    wait::until_every(limit, Duration::from_millis(100), f)
}

/// The leader member `k` reports (0: none), or None when it does not answer.
fn leader_seen_by(cluster: &EtcdCluster, k: usize) -> Option<u64> {
    let out = cluster
        .member(k)
        .ctl(&["endpoint", "status", "-w", "json"])
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.pointer("/0/Status/leader")
        .and_then(serde_json::Value::as_u64)
}

fn wait_member_has_leader(cluster: &EtcdCluster, k: usize) {
    let took = wait_until(ELECTION, || {
        leader_seen_by(cluster, k).is_some_and(|l| l != 0)
            && cluster.member(k).ctl_ok(&["endpoint", "health"])
    });
    assert!(
        took.is_some(),
        "m{k} did not rejoin within {ELECTION:?}\n{}",
        cluster.logs_tail(20)
    );
}

/// Waits until member `k`, cut off from its peers, knows it has no leader (it then refuses
/// what needs one); its health check fails from then on.
fn wait_member_without_leader(cluster: &EtcdCluster, k: usize) {
    let took = wait_until(ELECTION, || {
        !cluster.member(k).ctl_ok(&["endpoint", "health"])
    });
    assert!(
        took.is_some(),
        "m{k} still healthy {ELECTION:?} after it was cut off from its peers\n{}",
        cluster.logs_tail(20)
    );
}
