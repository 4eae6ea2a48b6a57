//! weftctl's ICMP echo client (`testbed::ping`), which replaces iputils-ping in the demo and
//! the testbed, in a namespace of its own (`wft-<pid>-ping-<n>`, loopback and a veth pair
//! that leads nowhere): IPv4 and IPv6 over raw sockets (a new namespace's
//! `ping_group_range` admits no ping socket) and over ping sockets once the range admits
//! root; two clients at once each count only their own replies; DF refuses a request too big
//! for the link; an unanswered echo ends within its bound.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use weft_testkit::netns::{Netns, PREFIX};
use weft_testkit::require_root;
use weftctl::testbed::ping::{self, Echo, SocketKind};
use weftctl::testbed::traffic::End;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn namespace() -> Netns {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Netns::create(&format!("{PREFIX}{}-ping-{n}", std::process::id())).expect("namespace")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("IP address")
}

/// Ten requests 10 ms apart.
fn quick() -> Echo {
    Echo {
        count: 10,
        interval: Duration::from_millis(10),
        ..Echo::default()
    }
}

fn all_answered(ns: &Netns, addr: &str, kind: SocketKind) {
    let to = ip(addr);
    let report = ping::echo(End { ns, ip: to }, to, &quick()).expect("echo");
    assert_eq!(report.socket, kind, "{report}");
    assert_eq!((report.sent(), report.received()), (10, 10), "{report}");
    assert!(report.errors.is_empty(), "{report}");
    let (min, _, max) = report.min_median_max().expect("round trips");
    assert!(min <= max && max < Duration::from_secs(1), "{report}");
    assert!(
        report.to_string().contains("10 received, 0% packet loss"),
        "{report}"
    );
}

#[test]
fn echoes_loopback_over_raw_then_ping_sockets() {
    require_root!();
    let ns = namespace();
    all_answered(&ns, "127.0.0.1", SocketKind::Raw);
    all_answered(&ns, "::1", SocketKind::Raw);
    // The range is per namespace: admit group 0 in this one only.
    ns.spawn_inside(|| {
        std::fs::write("/proc/sys/net/ipv4/ping_group_range", "0 0")?;
        Ok(())
    })
    .join()
    .expect("thread")
    .expect("setting ping_group_range inside the namespace");
    all_answered(&ns, "127.0.0.1", SocketKind::Ping);
    all_answered(&ns, "::1", SocketKind::Ping);
}

#[test]
fn concurrent_raw_clients_count_only_their_own_replies() {
    require_root!();
    let ns = namespace();
    let to = ip("127.0.0.1");
    let echo = Echo {
        count: 50,
        interval: Duration::from_millis(2),
        ..Echo::default()
    };
    let reports: Vec<_> = std::thread::scope(|s| {
        let ns = &ns;
        let runs: Vec<_> = (0..2)
            .map(|_| s.spawn(move || ping::echo(End { ns, ip: to }, to, &echo)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("thread").expect("echo"))
            .collect()
    });
    for r in reports {
        assert_eq!(r.socket, SocketKind::Raw);
        assert_eq!((r.sent(), r.received()), (50, 50), "{r}");
    }
}

#[test]
fn dont_fragment_refuses_a_request_too_big_for_the_link() {
    require_root!();
    let ns = namespace();
    ns.exec_checked("ip", &["link", "set", "lo", "mtu", "1500"])
        .expect("lo mtu");
    for (addr, header) in [("127.0.0.1", 20 + 8), ("::1", 40 + 8)] {
        let to = ip(addr);
        let fits = Echo {
            size: 1500 - header,
            dont_fragment: true,
            ..quick()
        };
        let report = ping::echo(End { ns: &ns, ip: to }, to, &fits).expect("echo");
        assert_eq!(report.received(), 10, "{report}");
        let too_big = Echo {
            size: 1500 - header + 1,
            ..fits
        };
        let report = ping::echo(End { ns: &ns, ip: to }, to, &too_big).expect("echo");
        assert_eq!(report.received(), 0, "{report}");
        assert!(
            report.errors.iter().all(|e| e.contains("send:")) && report.errors.len() == 10,
            "{report}"
        );
    }
}

#[test]
fn an_unanswered_echo_ends_within_its_bound() {
    require_root!();
    let ns = namespace();
    // A veth whose peer has no address: neighbour resolution for 10.99.0.2 never succeeds.
    ns.exec_checked(
        "ip",
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
    )
    .expect("veth");
    ns.exec_checked("ip", &["addr", "add", "10.99.0.1/24", "dev", "v0"])
        .expect("address");
    ns.exec_checked("ip", &["link", "set", "v0", "up"])
        .expect("v0 up");
    ns.exec_checked("ip", &["link", "set", "v1", "up"])
        .expect("v1 up");
    let echo = Echo {
        count: 3,
        interval: Duration::from_millis(50),
        wait: Duration::from_millis(300),
        ..Echo::default()
    };
    let started = Instant::now();
    let report = ping::echo(
        End {
            ns: &ns,
            ip: ip("10.99.0.1"),
        },
        ip("10.99.0.2"),
        &echo,
    )
    .expect("echo");
    let took = started.elapsed();
    assert_eq!((report.sent(), report.received()), (3, 0), "{report}");
    assert!(report.to_string().contains("100% packet loss"), "{report}");
    // interval * (count - 1) + wait = 400 ms, and some slack for a busy machine.
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // With a deadline it keeps asking until the deadline, then gives up.
    let until = Echo {
        deadline: Some(Duration::from_millis(500)),
        ..echo
    };
    let started = Instant::now();
    let report = ping::echo(
        End {
            ns: &ns,
            ip: ip("10.99.0.1"),
        },
        ip("10.99.0.2"),
        &until,
    )
    .expect("echo");
    let took = started.elapsed();
    assert_eq!(report.received(), 0, "{report}");
    assert!(report.sent() >= 3, "{report}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}
