//! The harness proven without weftd: both nodes on the kernel's VXLAN (flanneld's flannel.1
//! set-up), and both nodes on `weftctl forward-udp`, must pass the full check (ping, UDP
//! datagrams and verified TCP streams, IPv4 and IPv6). These are also the baselines the
//! weftd tests are compared with. Plus: the testbed cleans up after itself, also on a panic,
//! and the checks do fail when the overlay is broken.

mod common;

use std::process::Command;
use std::time::Duration;

use weft_testkit::require_root;
use weftctl::testbed::ping::{self, Echo, SocketKind};
use weftctl::testbed::{traffic, Overlay, Testbed};

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kernel_vxlan_pair_passes_the_full_check() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries()).expect("testbed");
    bed.start(&[Overlay::KernelVxlan, Overlay::KernelVxlan])
        .expect("kernel vxlan on both nodes");
    common::full_check(&mut bed);
}

#[test]
fn forwarder_pair_passes_the_full_check() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries()).expect("testbed");
    bed.start(&[Overlay::Forwarder, Overlay::Forwarder])
        .expect("forward-udp on both nodes");
    common::full_check(&mut bed);
}

#[test]
fn three_nodes_on_a_bridge_reach_each_other() {
    require_root!();
    let mut bed = Testbed::new(3, common::binaries()).expect("testbed");
    bed.start(&[Overlay::Forwarder; 3])
        .expect("forward-udp on three nodes");
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                traffic::ping(bed.node(i).pod(), bed.node(j).pod_ip(), 2, None)
                    .unwrap_or_else(|e| panic!("{e:#}"));
            }
        }
    }
    common::stream(bed.node(2).pod(), bed.node(0).pod(), 64 << 20);
}

#[test]
fn the_forwarder_answers_net_unreachable_for_unknown_subnets() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries()).expect("testbed");
    bed.start(&[Overlay::Forwarder, Overlay::Forwarder])
        .expect("forward-udp on both nodes");
    // 10.244.77.1 is inside the Network (routed into the TUN) but no peer owns it.
    let a = bed.node(0);
    let to = "10.244.77.1".parse().expect("address");
    let echo = Echo {
        count: 1,
        ..Echo::default()
    };
    let report = ping::echo(a.pod(), to, &echo).expect("ping");
    assert_eq!(
        report.received(),
        0,
        "ping to a subnet nobody owns got a reply: {report}"
    );
    assert_eq!(
        report.socket,
        SocketKind::Raw,
        "a testbed namespace's ping_group_range admits no ping socket (which would not see \
         ICMP errors)"
    );
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.ends_with(": Destination Net Unreachable")),
        "no ICMP net unreachable came back: {report}"
    );
}

#[test]
fn checks_fail_when_the_overlay_is_down() {
    require_root!();
    let mut bed = Testbed::new(2, common::binaries()).expect("testbed");
    bed.start(&[Overlay::Forwarder, Overlay::Forwarder])
        .expect("forward-udp on both nodes");
    traffic::ping(bed.node(0).pod(), bed.node(1).pod_ip(), 1, None).expect("ping while up");
    // Stop node b's forwarder: nothing must get through any more, and every check must say so.
    bed.overlay_process(1).expect("forwarder b").stop();
    let (a, b) = (bed.node(0), bed.node(1));
    assert!(traffic::ping(a.pod(), b.pod_ip(), 1, None).is_err());
    assert!(traffic::udp_echo(a.pod(), b.pod(), &[100]).is_err());
    let stream = traffic::tcp_stream(
        a.pod(),
        b.pod(),
        1 << 20,
        1,
        Duration::from_secs(2),
        Duration::from_secs(5),
    );
    assert!(stream.is_err(), "a stream through a dead overlay passed");
    assert!(
        bed.check_alive().is_err(),
        "check_alive missed the dead forwarder"
    );
}

#[test]
fn namespaces_are_deleted_on_drop_and_on_panic() {
    require_root!();
    let name = {
        let bed = Testbed::new(2, common::binaries()).expect("testbed");
        let name = bed.node(0).ns().name().to_owned();
        assert!(namespaces().contains(&name));
        name
    };
    assert!(!namespaces().contains(&name), "{name} survived the drop");

    let (tx, rx) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let mut bed = Testbed::new(2, common::binaries()).expect("testbed");
        bed.start(&[Overlay::Forwarder, Overlay::Forwarder])
            .expect("forwarders");
        let pid = bed.overlay_process(0).and_then(|p| p.pid()).expect("pid");
        tx.send((bed.node(1).ns().name().to_owned(), pid))
            .expect("send");
        panic!("deliberate panic inside a testbed");
    })
    .join();
    assert!(panicked.is_err());
    let (name, pid) = rx.recv().expect("the names");
    assert!(!namespaces().contains(&name), "{name} survived a panic");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the forwarder (pid {pid}) survived a panic"
    );
}

#[test]
fn stale_namespaces_of_dead_processes_are_reaped() {
    require_root!();
    // A pid above the kernel's limit (PID_MAX_LIMIT = 4194304) never belongs to a live process.
    let stale = "wft-4194399-0-a";
    let _ = Command::new("ip").args(["netns", "add", stale]).output();
    assert!(namespaces().contains(stale), "could not make {stale}");
    let bed = Testbed::new(2, common::binaries()).expect("testbed");
    assert!(!namespaces().contains(stale), "{stale} was not reaped");
    // Our own live testbed's namespaces are left alone by another testbed's reaping.
    let live = bed.node(0).ns().name().to_owned();
    assert!(weft_testkit::netns::reap_stale().is_empty());
    assert!(namespaces().contains(&live));
}
