#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, Parser};

use super::flags::*;
use super::settings::*;
use crate::model::Backend;
use crate::sys::netif;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("weftd").chain(args.iter().copied()))
}

const BASE: &[&str] = &[
    "--backend",
    "udp",
    "--public-ip",
    "127.0.0.1",
    "--subnet",
    "10.244.1.0/24",
];

fn with(extra: &[&str]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = BASE.to_vec();
    for e in extra {
        v.push(Box::leak(e.to_string().into_boxed_str()));
    }
    v
}

#[test]
fn defaults() {
    let s = parse(BASE).unwrap().resolve().unwrap();
    assert_eq!(s.port, 8285);
    assert_eq!(s.tun_name, "flannel0");
    assert_eq!(s.control.to_string(), "@weft/flannel0");
    assert_eq!(s.log_level, "info");
    assert!(!s.metrics_per_peer);
    // lo's MTU minus 28.
    assert_eq!(s.mtu, netif::mtu("lo").unwrap() - 28);
    assert!(s.pump_threads >= 1);
    assert_eq!(
        s.busy_poll,
        Duration::ZERO,
        "busy polling is off by default"
    );
    assert_eq!(
        parse(&with(&["--busy-poll-us", "200"]))
            .unwrap()
            .resolve()
            .unwrap()
            .busy_poll,
        Duration::from_micros(200)
    );
    assert_eq!(s.tun_txqueuelen, 500, "the kernel's TUN default");
    assert_eq!(
        parse(&with(&["--tun-txqueuelen", "4096"]))
            .unwrap()
            .resolve()
            .unwrap()
            .tun_txqueuelen,
        4096
    );
    assert_eq!(s.io_driver, DriverArg::Poll);
    assert!(s.vtep_mac_random);
    assert_eq!(s.vtep_mac[0] & 3, 2, "locally administered unicast");
    assert_eq!(s.icmp_source_v4(), Some(Ipv4Addr::new(10, 244, 1, 0)));
    let v = parse(&[
        "--backend",
        "vxlan",
        "--public-ip",
        "127.0.0.1",
        "--subnet",
        "10.244.1.0/24",
        "--vni",
        "7",
        "--network",
        "10.244.0.0/16",
    ])
    .unwrap()
    .resolve()
    .unwrap();
    assert_eq!(v.port, 8472);
    assert_eq!(v.tun_name, "flannel.7");
    assert_eq!(v.mtu, netif::mtu("lo").unwrap() - 50);
    assert_eq!(v.icmp_source_v4(), Some(Ipv4Addr::new(10, 244, 0, 0)));
    assert_eq!(v.icmp_source_v6(), None);
}

#[test]
fn bad_values_name_the_flag_and_exit_2() {
    for (args, flag) in [
        (with(&["--port", "0"]), "--port"),
        (with(&["--port", "70000"]), "--port"),
        (with(&["--mtu", "20"]), "--mtu"),
        (with(&["--vni", "16777216"]), "--vni"),
        (with(&["--pump-threads", "0"]), "--pump-threads"),
        (with(&["--busy-poll-us", "10001"]), "--busy-poll-us"),
        (with(&["--vtep-mac", "01:00:00:00:00:01"]), "--vtep-mac"),
        (with(&["--vtep-mac", "nope"]), "--vtep-mac"),
        (with(&["--subnet6", "10.0.0.0/8"]), "--subnet6"),
        (with(&["--network", "10.244.0.1/16"]), "--network"),
        (with(&["--tun-name", "a/b"]), "--tun-name"),
        (with(&["--io-driver", "epoll"]), "--io-driver"),
        (
            vec!["--backend", "gre", "--public-ip", "127.0.0.1"],
            "--backend",
        ),
        (
            vec!["--backend", "udp", "--public-ip", "1.2.3"],
            "--public-ip",
        ),
    ] {
        let err = parse(&args).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}");
        assert!(err.to_string().contains(flag), "{args:?}: {err}");
    }
}

#[test]
fn cross_flag_checks() {
    // --peers without a subnet.
    let no_subnet = parse(&[
        "--backend",
        "udp",
        "--public-ip",
        "127.0.0.1",
        "--peers",
        "/dev/null",
    ])
    .unwrap()
    .resolve()
    .unwrap_err();
    assert_eq!(no_subnet.exit_code(), 2);
    assert!(no_subnet.to_string().contains("--subnet"));
    let masq = parse(&with(&["--ip-masq"])).unwrap().resolve().unwrap_err();
    assert!(masq.to_string().contains("--ip-masq"), "{masq}");
    // Static mode needs --backend.
    let no_backend = parse(&["--public-ip", "127.0.0.1", "--subnet", "10.244.1.0/24"])
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(no_backend.to_string().contains("--backend"), "{no_backend}");
    let outside = parse(&with(&["--network", "10.245.0.0/16"]))
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(outside.to_string().contains("--network"), "{outside}");
    assert_eq!(outside.exit_code(), 2);
    let not_here = parse(&[
        "--backend",
        "udp",
        "--public-ip",
        "192.0.2.77",
        "--subnet",
        "10.244.1.0/24",
    ])
    .unwrap()
    .resolve()
    .unwrap_err();
    assert!(not_here.to_string().contains("--public-ip"), "{not_here}");
    assert_eq!(not_here.exit_code(), 2);
    let no_peers = parse(&with(&["--peers", "/nonexistent/wfp-peers"]))
        .unwrap()
        .resolve()
        .unwrap_err();
    assert!(no_peers.to_string().contains("--peers"), "{no_peers}");
    assert_eq!(no_peers.exit_code(), 2);
    // With --mtu the interface is not needed.
    let ok = parse(&[
        "--backend",
        "udp",
        "--public-ip",
        "192.0.2.77",
        "--subnet",
        "10.244.1.0/24",
        "--mtu",
        "1400",
    ])
    .unwrap()
    .resolve()
    .unwrap();
    assert_eq!(ok.mtu, 1400);
}

#[test]
fn lease_mode() {
    // Neither --subnet nor --peers: lease mode, etcd by default.
    let s = parse(&["--iface", "lo"]).unwrap().resolve().unwrap();
    assert_eq!(s.public_ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let lease = s.lease.clone().unwrap();
    match &lease.store {
        StoreSettings::Etcd(o) => {
            assert_eq!(
                o.endpoints,
                vec!["http://127.0.0.1:4001", "http://127.0.0.1:2379"]
            );
            assert_eq!(o.prefix, "/coreos.com/network");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(lease.subnet_file, PathBuf::from("/run/flannel/subnet.env"));
    assert_eq!(lease.renew_margin, Duration::from_secs(3600));
    assert_eq!(lease.iptables_resync, Duration::from_secs(5));
    assert!(!lease.ip_masq);
    let d = parse(&[
        "--public-ip",
        "127.0.0.1",
        "--lease-dir",
        "/tmp/x",
        "--ip-masq",
        "--subnet-lease-renew-margin",
        "30",
    ])
    .unwrap()
    .resolve()
    .unwrap();
    let lease = d.lease.clone().unwrap();
    assert!(matches!(lease.store, StoreSettings::Dir(ref p) if p == Path::new("/tmp/x")));
    assert!(lease.ip_masq);
    assert_eq!(lease.renew_margin, Duration::from_secs(1800));
    // The config decides the backend and the defaults that follow from it.
    let v = d
        .with_lease(&LeasedNetwork {
            backend: Backend::Vxlan,
            port: 8472,
            vni: 4,
            network: "10.244.0.0/16".parse().unwrap(),
            network6: None,
            subnet: "10.244.7.0/24".parse().unwrap(),
            subnet6: None,
            vtep_mac: [2, 0, 0, 0, 0, 1],
            vtep_mac_random: false,
            public_ip6: None,
        })
        .unwrap();
    assert_eq!(v.tun_name, "flannel.4");
    assert_eq!(v.control.to_string(), "@weft/flannel.4");
    assert_eq!(v.mtu, netif::mtu("lo").unwrap() - 50);
    assert_eq!(v.icmp_source_v4(), Some(Ipv4Addr::new(10, 244, 0, 0)));
    for bad in [
        vec![
            "--public-ip",
            "127.0.0.1",
            "--subnet-lease-renew-margin",
            "0",
        ],
        vec!["--public-ip", "127.0.0.1", "--iptables-resync", "0"],
        vec!["--iface", "wfl-no-such-if"],
    ] {
        let err = match parse(&bad) {
            Err(e) => e,
            Ok(cli) => cli.resolve().unwrap_err(),
        };
        assert_eq!(err.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn iface_and_iface_regex_are_tried_in_order() {
    let ip = |args: &[&str]| parse(args).unwrap().resolve().map(|s| s.public_ip);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The first --iface that exists wins; names and addresses both count.
    assert_eq!(
        ip(&["--iface", "wfl-no-such-if", "--iface", "lo"]).unwrap(),
        lo
    );
    assert_eq!(ip(&["--iface", "wfl-no-such-if,127.0.0.1"]).unwrap(), lo);
    // An address no interface holds is not a match.
    assert!(ip(&["--iface", "192.0.2.77"]).is_err());
    // Regexes come after every --iface: an address match, then an interface name match.
    assert_eq!(ip(&["--iface-regex", "^127\\.0\\.0\\.1$"]).unwrap(), lo);
    assert_eq!(
        ip(&["--iface", "wfl-no-such-if", "--iface-regex", "^l.$"]).unwrap(),
        lo
    );
    let none = ip(&["--iface", "wfl-a", "--iface-regex", "^wfl-zz"]).unwrap_err();
    let msg = none.to_string();
    assert!(
        msg.contains("--iface wfl-a") && msg.contains("--iface-regex ^wfl-zz"),
        "{msg}"
    );
    assert_eq!(none.exit_code(), 2);
    let bad = ip(&["--iface-regex", "(unclosed"]).unwrap_err();
    assert!(bad.to_string().contains("'--iface-regex'"), "{bad}");
    assert_eq!(bad.exit_code(), 2);
}

#[test]
fn iface_can_reach_takes_the_source_address_of_the_route() {
    let ip = |args: &[&str]| parse(args).unwrap().resolve().map(|s| s.public_ip);
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // The kernel reaches 127.0.0.1 from 127.0.0.1 (the local table).
    assert_eq!(ip(&["--iface-can-reach", "127.0.0.1"]).unwrap(), lo);
    let flanneld = Cli::try_parse_flanneld_from(["weftd", "-iface-can-reach=127.0.0.1"]).unwrap();
    assert_eq!(flanneld.resolve().unwrap().public_ip, lo);
    // --iface comes first (flanneld's order): no route is asked for.
    assert_eq!(
        ip(&["--iface", "lo", "--iface-can-reach", "192.0.2.1"]).unwrap(),
        lo
    );
    let bad = ip(&["--iface-can-reach", "not-an-ip"]).unwrap_err();
    assert!(bad.to_string().contains("'--iface-can-reach'"), "{bad}");
    assert_eq!(bad.exit_code(), 2);
}

#[test]
fn inner_source_check_is_strict_by_default() {
    assert!(
        !parse(BASE)
            .unwrap()
            .resolve()
            .unwrap()
            .allow_foreign_inner_source
    );
    let relaxed = parse(&with(&["--allow-foreign-inner-source"]))
        .unwrap()
        .resolve()
        .unwrap();
    assert!(relaxed.allow_foreign_inner_source);
}

#[test]
fn flanneld_env_variables() {
    let cmd = Cli::command();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        // klog's flags have no variable in flanneld either.
        if [
            "verbose",
            "help",
            "version",
            "klog_v",
            "vmodule",
            "log_backtrace_at",
        ]
        .contains(&id)
        {
            continue;
        }
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(
            env.as_deref(),
            Some(format!("FLANNELD_{}", id.to_uppercase()).as_str()),
            "{id}"
        );
    }
}

fn flanneld(line: &[&str]) -> Result<Settings, clap::Error> {
    Cli::try_parse_flanneld_from(std::iter::once("flanneld").chain(line.iter().copied()))
        .and_then(Cli::resolve)
}

#[test]
fn flanneld_command_lines_parse() {
    // From flannel's documentation and distribution units (endpoints and interfaces
    // adapted to this host: 127.0.0.1 and lo).
    for line in [
        &[
            "-etcd-endpoints=http://127.0.0.1:2379",
            "-etcd-prefix=/coreos.com/network",
        ][..],
        &[
            "-etcd-endpoints",
            "http://127.0.0.1:2379",
            "-iface=lo",
            "-ip-masq",
        ],
        &[
            "--etcd-endpoints=http://127.0.0.1:2379",
            "--iface=lo",
            "--ip-masq=true",
            "-v=2",
        ],
        &[
            "-iface",
            "lo",
            "-ip-masq=false",
            "-subnet-lease-renew-margin=30",
            "-v",
            "4",
        ],
        &[
            "--public-ip=127.0.0.1",
            "--iptables-forward-rules=false",
            "--healthz-port=8471",
        ],
        &[
            "-public-ip=127.0.0.1",
            "-kube-subnet-mgr=false",
            "-vmodule=main=4",
        ],
    ] {
        let s = flanneld(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(s.lease.is_some(), "{line:?}");
    }
    let s = flanneld(&[
        "-iface=lo",
        "-ip-masq",
        "-v=2",
        "-ip-masq-fully-random-disable",
    ])
    .unwrap();
    let lease = s.lease.unwrap();
    assert!(lease.ip_masq && !lease.masq_random_fully && lease.forward_rules);
    assert!(!lease.blackhole_route);
    assert_eq!(s.log_level, "debug");
    let s = flanneld(&["-iface=lo", "-v=5", "-ip-blackhole-route=T"]).unwrap();
    assert_eq!(s.log_level, "trace");
    assert!(s.lease.unwrap().blackhole_route);
    assert_eq!(flanneld(&["-iface=lo", "-v"]).unwrap().log_level, "debug");
}

#[test]
fn flanneld_only_flags_exit_2_naming_them() {
    for (line, flag) in [
        (&["-iface=lo", "--kube-subnet-mgr"][..], "--kube-subnet-mgr"),
        (&["-iface=lo", "-kube-subnet-mgr=1"], "--kube-subnet-mgr"),
        (
            &["-iface=lo", "-kube-api-url", "https://10.96.0.1"],
            "--kube-api-url",
        ),
        (
            &["-iface=lo", "-set-node-network-unavailable=false"],
            "--set-node-network-unavailable",
        ),
    ] {
        let err = flanneld(line).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{line:?}");
        let text = err.to_string();
        assert!(
            text.contains(flag) && text.contains("not support"),
            "{text}"
        );
    }
    // An unknown flag is still clap's error, naming it.
    let err = flanneld(&["-iface=lo", "-no-such-flag"]).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("-no-such-flag"), "{err}");
    // A Go boolean takes no separate value: `-ip-masq false` is an error here, not true.
    assert!(flanneld(&["-iface=lo", "-ip-masq", "false"]).is_err());
    assert!(flanneld(&["-iface=lo", "-ip-masq=yes"]).is_err());
}

#[test]
fn version_and_help_exit_0() {
    for flag in ["-version", "--version", "-help", "-h"] {
        let err = Cli::try_parse_flanneld_from(["weftd", flag]).unwrap_err();
        assert_eq!(err.exit_code(), 0, "{flag}");
    }
}

#[test]
fn the_systemd_unit_is_as_documented() {
    let unit = include_str!("../../dist/weftd.service");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "Restart=on-failure",
        "After=network-online.target",
        "Wants=network-online.target",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_ADMIN",
        "RuntimeDirectoryPreserve=yes",
        "ExecStart=/usr/local/bin/weftd $WEFTD_OPTS",
    ] {
        assert!(lines.contains(&want), "{want} missing from the unit");
    }
    // The example WEFTD_OPTS of its header parses (systemd splits $VAR on whitespace).
    let opts = lines
        .iter()
        .find_map(|l| l.split_once("'WEFTD_OPTS=").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_once('\''))
        .map(|(opts, _)| opts.replace("10.0.0.1", "127.0.0.1").replace("eth0", "lo"))
        .expect("an example WEFTD_OPTS");
    let args: Vec<&str> = opts.split_whitespace().collect();
    let s = flanneld(&args).unwrap_or_else(|e| panic!("{opts}: {e}"));
    assert!(s.lease.is_some_and(|l| l.ip_masq));
}

/// `--public-ipv6` (flanneld's): lease mode only, a global IPv6 address; with an IPv4 public IP
/// it is the IPv6 half of a dual-stack underlay (used with EnableIPv6, which lease mode reads
/// later). An IPv6 `--public-ip` in lease mode is an IPv6-only node; two different IPv6
/// addresses are refused. (On `lo`, which has no global IPv6 address, nothing is found by
/// itself.)
#[test]
fn public_ipv6_makes_a_dual_stack_or_an_ipv6_only_underlay() {
    let lease = |extra: &[&str]| {
        let mut line = vec!["--lease-dir", "/tmp/x"];
        line.extend_from_slice(extra);
        parse(&line).unwrap().resolve()
    };
    let s = lease(&["--public-ip", "127.0.0.1", "--public-ipv6", "fd00::1"]).unwrap();
    assert_eq!(s.public_ip6, Some("fd00::1".parse().unwrap()));
    assert!(s.public_ip6_given && s.dual_stack());
    assert_eq!(s.underlay_bind().to_string(), "[::]:8285");
    // flanneld's default, an empty value, is unset.
    let s = lease(&["--public-ip", "127.0.0.1", "--public-ipv6", ""]).unwrap();
    assert_eq!((s.public_ip6, s.public_ip6_given), (None, false));
    assert_eq!(s.underlay_bind().to_string(), "127.0.0.1:8285");
    // IPv6 only.
    let s = lease(&["--public-ip", "::1"]).unwrap();
    assert_eq!(
        (s.public_ip.to_string(), s.public_ip6),
        ("::1".to_owned(), None)
    );
    assert!(!s.dual_stack());
    assert_eq!(s.underlay_bind().to_string(), "[::1]:8285");
    for (line, want) in [
        (
            &[
                "--lease-dir",
                "/tmp/x",
                "--public-ip",
                "::1",
                "--public-ipv6",
                "fd00::1",
            ][..],
            "one IPv6 underlay address",
        ),
        (
            &[
                "--lease-dir",
                "/tmp/x",
                "--public-ip",
                "127.0.0.1",
                "--public-ipv6",
                "fe80::1",
            ],
            "not a global IPv6 unicast address",
        ),
        (
            &["--lease-dir", "/tmp/x", "--public-ipv6", "10.0.0.1"],
            "not a global IPv6 unicast address",
        ),
        (
            &[
                "--public-ip",
                "127.0.0.1",
                "--backend",
                "udp",
                "--subnet",
                "10.244.1.0/24",
                "--peers",
                "/dev/null",
                "--public-ipv6",
                "fd00::1",
            ],
            "lease mode only",
        ),
    ] {
        let err = parse(line).unwrap().resolve().unwrap_err();
        assert_eq!(err.exit_code(), 2, "{line:?}");
        assert!(err.to_string().contains(want), "{line:?}: {err}");
    }
    // flanneld spells it with one dash too.
    let s = flanneld(&["-public-ip=127.0.0.1", "-public-ipv6=fd00::1"]).unwrap();
    assert_eq!(s.public_ip6, Some("fd00::1".parse().unwrap()));
}

/// An interface's preferred address: IPv4 first, then a global IPv6 address (never the
/// link-local one an IPv6-only interface lists first).
#[test]
fn preferred_address_skips_link_local() {
    use super::host::preferred_address;
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let all = vec![
        ("eth0".to_owned(), ip("fe80::1")),
        ("eth0".to_owned(), ip("fd99::1")),
        ("eth0".to_owned(), ip("192.168.1.1")),
        ("eth1".to_owned(), ip("fe80::2")),
        ("eth1".to_owned(), ip("2001:db8::2")),
        ("eth2".to_owned(), ip("fe80::3")),
    ];
    assert_eq!(preferred_address(&all, "eth0"), Some(ip("192.168.1.1")));
    assert_eq!(preferred_address(&all, "eth1"), Some(ip("2001:db8::2")));
    assert_eq!(preferred_address(&all, "eth2"), Some(ip("fe80::3")));
    assert_eq!(preferred_address(&all, "eth9"), None);
}
