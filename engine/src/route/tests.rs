#![allow(clippy::unwrap_used)]

use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;

const LOCAL_MAC: Mac = [0x0e, 0, 0, 0, 0, 1];

fn local(backend: Backend) -> Local {
    Local {
        backend,
        port: 8472,
        vni: 1,
        vtep_mac: LOCAL_MAC,
        public_ip: "192.168.250.1".parse().unwrap(),
        public_ip6: None,
        subnets: vec!["10.244.1.0/24".parse().unwrap()],
    }
}

fn build(backend: Backend, text: &str) -> (RouteTable, Vec<RouteError>) {
    let (entries, mut errors) = parse_peers(text, "peers");
    let (table, more) = RouteTable::build(&local(backend), &entries, None, "peers");
    errors.extend(more);
    (table, errors)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer_ip(table: &RouteTable, dst: &str) -> Option<IpAddr> {
    table.lookup(ip(dst)).map(|p| p.underlay().ip())
}

const OVERLAPPING: &str = r#"
{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}
{"subnet": "10.244.0.0/16", "public_ip": "192.168.250.3", "backend": "udp"}
{"subnet": "10.244.2.128/25", "public_ip": "192.168.250.4", "backend": "udp"}
{"subnet": "0.0.0.0/0", "public_ip": "192.168.250.5", "backend": "udp"}
{"subnet": "fd00:10:244:2::/64", "public_ip": "192.168.250.2", "backend": "udp"}
{"subnet": "fd00::/8", "public_ip": "192.168.250.3", "backend": "udp"}
{"subnet": "fd00:10:244:2::1/128", "public_ip": "192.168.250.4", "backend": "udp"}
"#;

#[test]
fn lpm_v4_overlapping_and_default() {
    let (t, errors) = build(Backend::Udp, OVERLAPPING);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(peer_ip(&t, "10.244.2.1"), Some(ip("192.168.250.2")));
    assert_eq!(peer_ip(&t, "10.244.2.200"), Some(ip("192.168.250.4")));
    assert_eq!(peer_ip(&t, "10.244.3.1"), Some(ip("192.168.250.3")));
    assert_eq!(peer_ip(&t, "8.8.8.8"), Some(ip("192.168.250.5")));
    assert_eq!(t.len(), 7);
    assert_eq!(t.peers().len(), 4);
}

#[test]
fn lpm_v6_and_no_match() {
    let (t, _) = build(Backend::Udp, OVERLAPPING);
    assert_eq!(peer_ip(&t, "fd00:10:244:2::5"), Some(ip("192.168.250.2")));
    assert_eq!(peer_ip(&t, "fd00:10:244:2::1"), Some(ip("192.168.250.4")));
    assert_eq!(peer_ip(&t, "fd00:10:244:3::1"), Some(ip("192.168.250.3")));
    // No v6 default route: no match.
    assert_eq!(peer_ip(&t, "2001:db8::1"), None);
    let (no_default, _) = build(
        Backend::Udp,
        r#"{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}"#,
    );
    assert_eq!(peer_ip(&no_default, "10.244.3.1"), None);
    assert_eq!(peer_ip(&no_default, "::1"), None);
    assert!(RouteTable::empty()
        .lookup(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .is_none());
}

#[test]
fn dual_stack_peer_owns_both_subnets() {
    let (t, _) = build(Backend::Udp, OVERLAPPING);
    let p = t.peer_by_underlay(ip("192.168.250.2")).unwrap();
    assert_eq!(p.subnets().len(), 2);
    assert!(p.owns(ip("10.244.2.7")));
    assert!(p.owns(ip("fd00:10:244:2::7")));
    assert!(!p.owns(ip("10.244.3.7")));
    assert!(t.peer_by_underlay(ip("192.168.250.9")).is_none());
    assert!(t.peer_by_underlay(ip("::ffff:192.168.250.9")).is_none());
    assert_eq!(p.underlay().port(), 8472, "our port by default");
    assert!(p.encap_header(4).is_empty(), "udp: no header");
}

#[test]
fn vxlan_peer_has_prebuilt_headers() {
    let (t, errors) = build(
        Backend::Vxlan,
        r#"{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02", "port": 4789}"#,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let p = t.lookup(ip("10.244.2.1")).unwrap();
    assert_eq!(p.underlay(), "192.168.250.2:4789".parse().unwrap());
    let e = VxlanEncap {
        vni: 1,
        local_mac: LOCAL_MAC,
        peer_mac: [0x0e, 0, 0, 0, 0, 2],
    };
    assert_eq!(p.encap_header(4), &e.header(4)[..]);
    assert_eq!(p.encap_header(6), &e.header(6)[..]);
    assert_eq!(p.vtep_mac(), Some([0x0e, 0, 0, 0, 0, 2]));
}

#[test]
fn peers_file_errors_name_the_line_and_skip_it() {
    let text = "\
{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"udp\"}
not json
# a comment

{\"subnet\": \"10.244.3.1/24\", \"public_ip\": \"192.168.250.3\", \"backend\": \"udp\"}
{\"subnet\": \"10.244.4.0/24\", \"public_ip\": \"192.168.250\", \"backend\": \"udp\"}
{\"subnet\": \"10.244.5.0/24\", \"public_ip\": \"192.168.250.5\", \"backend\": \"gre\"}
{\"subnet\": \"10.244.6.0/24\", \"public_ip\": \"192.168.250.6\", \"backend\": \"udp\", \"extra\": 1}
{\"subnet\": \"10.244.7.0/24\", \"public_ip\": \"192.168.250.7\"}
{\"subnet\": \"10.244.8.0/24\", \"public_ip\": \"192.168.250.8\", \"backend\": \"udp\", \"port\": 0}
{\"subnet\": \"10.244.9.0/24\", \"public_ip\": \"192.168.250.9\", \"backend\": \"udp\", \"vtep_mac\": \"zz\"}
{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.10\", \"backend\": \"udp\"}
{\"subnet\": \"10.244.11.0/24\", \"public_ip\": \"192.168.250.11\", \"backend\": \"vxlan\", \"vtep_mac\": \"0e:00:00:00:00:0b\"}
{\"subnet\": \"10.244.12.0/24\", \"public_ip\": \"fd00::12\", \"backend\": \"udp\"}
{\"subnet\": \"10.244.1.0/24\", \"public_ip\": \"192.168.250.1\", \"backend\": \"udp\"}
{\"subnet\": \"10.244.13.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"udp\", \"port\": 9999}
{\"subnet\": \"10.244.14.0/24\", \"public_ip\": \"192.168.250.14\", \"backend\": \"udp\"}
";
    let (t, errors) = build(Backend::Udp, text);
    let lines: Vec<usize> = errors.iter().filter_map(|e| e.origin.line()).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16],
        "{errors:#?}"
    );
    let text_of = |line: usize| {
        errors
            .iter()
            .find(|e| e.origin.line() == Some(line))
            .map(ToString::to_string)
            .unwrap()
    };
    assert!(text_of(2).starts_with("peers line 2: not a peer entry"));
    assert!(
        text_of(5).contains("did you mean 10.244.3.0/24"),
        "{}",
        text_of(5)
    );
    assert!(text_of(6).contains("public_ip"));
    assert!(text_of(7).contains("gre"));
    assert!(text_of(8).contains("extra"));
    assert!(text_of(9).contains("backend"));
    assert!(text_of(12).contains("already listed on line 1"));
    assert!(text_of(13).contains("vxlan backend"));
    assert!(text_of(14).contains("family"));
    assert!(text_of(16).contains("another vtep_mac or port"));
    // Line 15 is our own lease: skipped without an error. Lines 1 and 17 make the table.
    assert_eq!(t.len(), 2);
    assert_eq!(peer_ip(&t, "10.244.14.1"), Some(ip("192.168.250.14")));
    assert_eq!(peer_ip(&t, "10.244.1.1"), None);
}

#[test]
fn vxlan_entries_need_a_foreign_mac() {
    let text = "\
{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"vxlan\"}
{\"subnet\": \"10.244.3.0/24\", \"public_ip\": \"192.168.250.3\", \"backend\": \"vxlan\", \"vtep_mac\": \"0e:00:00:00:00:01\"}
";
    let (t, errors) = build(Backend::Vxlan, text);
    assert!(t.is_empty());
    assert!(errors[0].message.contains("needs a vtep_mac"));
    assert!(errors[1].message.contains("our own VtepMAC"));
}

#[test]
fn counters_survive_a_rebuild() {
    let text = r#"{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}"#;
    let (entries, _) = parse_peers(text, "peers");
    let (first, _) = RouteTable::build(&local(Backend::Udp), &entries, None, "peers");
    first.peers()[0].counters().add_tx(3, 300);
    let (second, _) = RouteTable::build(&local(Backend::Udp), &entries, Some(&first), "peers");
    assert_eq!(second.peers()[0].counters().get(), (3, 300, 0, 0));
    let (fresh, _) = RouteTable::build(&local(Backend::Udp), &entries, None, "peers");
    assert_eq!(fresh.peers()[0].counters().get(), (0, 0, 0, 0));
}

#[test]
fn load_reports_a_missing_file() {
    let err = load_peers_file(
        std::path::Path::new("/nonexistent/wfp-peers"),
        &local(Backend::Udp),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/wfp-peers"));
}

#[test]
fn swap_while_another_thread_looks_up() {
    // Table A sends 10.244.2.0/24 to .2, table B to .3; a reader must only ever see one of them.
    let make = |owner: &str| {
        let text = format!(
            "{{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"{owner}\", \"backend\": \"udp\"}}\n\
             {{\"subnet\": \"10.244.3.0/24\", \"public_ip\": \"{owner}\", \"backend\": \"udp\"}}"
        );
        Arc::new(build(Backend::Udp, &text).0)
    };
    let a = make("192.168.250.2");
    let b = make("192.168.250.3");
    let routes = Arc::new(Routes::new(Arc::clone(&a)));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let routes = Arc::clone(&routes);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut seen_a, mut seen_b) = (0u64, 0u64);
            let dst2 = IpAddr::V4(Ipv4Addr::new(10, 244, 2, 9));
            let dst3 = IpAddr::V4(Ipv4Addr::new(10, 244, 3, 9));
            while !stop.load(Ordering::Relaxed) || seen_a + seen_b < 1000 {
                let table = routes.load();
                let p2 = table.lookup(dst2).unwrap().underlay();
                let p3 = table.lookup(dst3).unwrap().underlay();
                // One snapshot: both routes agree.
                assert_eq!(p2, p3);
                if p2.ip() == ip("192.168.250.2") {
                    seen_a += 1;
                } else {
                    seen_b += 1;
                }
            }
            (seen_a, seen_b)
        })
    };
    for i in 0..2000 {
        routes.store(Arc::clone(if i % 2 == 0 { &b } else { &a }));
        if i % 64 == 0 {
            std::thread::yield_now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (seen_a, seen_b) = reader.join().unwrap();
    assert!(seen_a + seen_b >= 1000);
}

#[test]
fn ten_thousand_routes() {
    let mut text = String::new();
    for i in 0..10_000u32 {
        let net = Ipv4Addr::from(0x0a00_0000 | (i << 8));
        let host = Ipv4Addr::from(0xc0a8_0000 | (i + 2));
        text.push_str(&format!(
            "{{\"subnet\": \"{net}/24\", \"public_ip\": \"{host}\", \"backend\": \"udp\"}}\n"
        ));
    }
    let (t, errors) = build(Backend::Udp, &text);
    assert!(errors.is_empty());
    assert_eq!(t.len(), 10_000);
    for i in (0..10_000u32).step_by(97) {
        let dst = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i << 8) | 7));
        assert_eq!(
            t.lookup(dst).unwrap().underlay().ip(),
            IpAddr::V4(Ipv4Addr::from(0xc0a8_0000 | (i + 2)))
        );
    }
    let v6: Ipv6Addr = "fd00::1".parse().unwrap();
    assert!(t.lookup(IpAddr::V6(v6)).is_none());
}

#[test]
fn swap_retiring_frees_old_tables_on_the_swapping_thread() {
    let (a, _) = build(
        Backend::Udp,
        r#"{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}"#,
    );
    let (b, _) = build(
        Backend::Udp,
        r#"{"subnet": "10.244.3.0/24", "public_ip": "192.168.250.3", "backend": "udp"}"#,
    );
    let (c, _) = build(Backend::Udp, "");
    let routes = Routes::from_pointee(a);
    let mut retired = Vec::new();
    // A reader (a pump's cache) still holds table a: it is kept, not freed.
    let mut cache = arc_swap::Cache::new(&routes);
    assert_eq!(cache.load().len(), 1);
    swap_retiring(&routes, b, &mut retired);
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].routes()[0].subnet.to_string(), "10.244.2.0/24");
    // The reader moves on to b; a is now held only by `retired`, and freed at the next swap,
    // here; b is kept while the reader holds it.
    assert_eq!(cache.load().routes()[0].subnet.to_string(), "10.244.3.0/24");
    swap_retiring(&routes, c, &mut retired);
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0].routes()[0].subnet.to_string(), "10.244.3.0/24");
    assert!(routes.load().is_empty());
}
