//! flannel's network config (`<prefix>/config` in etcd, or `--lease-dir`'s `config`): anyone who
//! can write that key reaches `NetworkConfig::parse`.
//!
//! Invariants: no panic; a rejection names a field; an accepted config keeps what
//! engine/src/lease/network.rs promises: the Network has no host bits and holds at least four
//! subnets (prefix + 2 <= SubnetLen <= 30, so the Network is a /28 or larger), SubnetLen is 24
//! or prefix + 2 when not given, SubnetMin and SubnetMax lie in the Network on a SubnetLen
//! boundary with Min <= Max (the second and the last subnet when not given), and the pool
//! accepts both ends; the same for IPv6 (/124 or larger, SubnetLen <= 126, default 64 or
//! prefix + 2); the VNI fits 24 bits and the port is never 0. And writing the accepted config
//! back with every value explicit parses to the same config.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use engine::lease::network::{Ipv4Pool, Ipv6Pool, VXLAN_DEFAULT_VNI};
use engine::lease::NetworkConfig;
use engine::model::{Backend, Ipv4Net, Ipv6Net};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// The fields a person sets in the config (as flannel names them).
const FIELDS: [&str; 15] = [
    "(config)",
    "EnableIPv4",
    "EnableIPv6",
    "Network",
    "SubnetLen",
    "SubnetMin",
    "SubnetMax",
    "IPv6Network",
    "IPv6SubnetLen",
    "IPv6SubnetMin",
    "IPv6SubnetMax",
    "Backend",
    "Backend.Type",
    "Backend.Port",
    "Backend.VNI",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match NetworkConfig::parse(text) {
        Ok(c) => c,
        Err(e) => {
            assert!(FIELDS.contains(&e.field), "names no field: {e}");
            assert!(!e.reason.is_empty());
            return;
        }
    };
    // The object as parsed, to tell given values from defaults (names match case-insensitively).
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        panic!("an accepted config is a JSON object");
    };
    check_v4(&config.ipv4, &map);
    if let Some(v6) = &config.ipv6 {
        check_v6(v6, &map);
    }
    assert!(config.backend.vni <= 0x00ff_ffff);
    assert_ne!(config.backend.port(), 0);
    if config.backend.configured_port == 0 {
        // flannel's defaults, written out here as the oracle.
        let default = match config.backend.kind {
            Backend::Udp => 8285,
            Backend::Vxlan => 8472,
            Backend::HostGw => 0,
        };
        assert_eq!(config.backend.port(), default);
    }
    if !given(&map, "Backend") {
        assert_eq!(config.backend.kind, Backend::Udp);
        assert_eq!(config.backend.vni, VXLAN_DEFAULT_VNI);
    }

    let again = render(&config);
    assert_eq!(
        NetworkConfig::parse(&again).as_ref(),
        Ok(&config),
        "{text:?} -> {again}"
    );
});

/// Whether the object has the key `name`, matched as the parser matches (any case).
fn given(map: &Map<String, Value>, name: &str) -> bool {
    map.iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(name) && !v.is_null())
}

fn check_v4(pool: &Ipv4Pool, map: &Map<String, Value>) {
    let net = pool.network;
    let plen = net.prefix_len();
    assert!(plen <= 28, "{net}");
    assert_eq!(Ipv4Net::new(net.addr(), plen), Ok(net));
    assert!(
        pool.subnet_len >= plen + 2 && pool.subnet_len <= 30,
        "{pool:?}"
    );
    if !given(map, "SubnetLen") {
        assert_eq!(pool.subnet_len, if plen <= 22 { 24 } else { plen + 2 });
    }
    let size = 1u32 << (32 - pool.subnet_len);
    let start = u32::from(net.addr());
    let last = start | (u32::MAX >> plen);
    for a in [pool.subnet_min, pool.subnet_max] {
        assert!(net.contains(a), "{a} outside {net}");
        let sn = Ipv4Net::new(a, pool.subnet_len).expect("on a SubnetLen boundary");
        assert!(pool.accepts(&sn));
    }
    assert!(pool.subnet_min <= pool.subnet_max);
    // Defaults: the second subnet and the last (0.0.0.0 means not given).
    let unset = |name| {
        !map.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(name) && v.as_str().is_some_and(|s| s != "0.0.0.0")
        })
    };
    if unset("SubnetMin") {
        assert_eq!(pool.subnet_min, Ipv4Addr::from(start + size));
    }
    if unset("SubnetMax") {
        assert_eq!(pool.subnet_max, Ipv4Addr::from(last - (size - 1)));
    }
}

fn check_v6(pool: &Ipv6Pool, map: &Map<String, Value>) {
    let net = pool.network;
    let plen = net.prefix_len();
    assert!(plen <= 124, "{net}");
    assert_eq!(Ipv6Net::new(net.addr(), plen), Ok(net));
    assert!(
        pool.subnet_len >= plen + 2 && pool.subnet_len <= 126,
        "{pool:?}"
    );
    if !given(map, "IPv6SubnetLen") {
        assert_eq!(pool.subnet_len, if plen <= 62 { 64 } else { plen + 2 });
    }
    let size = 1u128 << (128 - pool.subnet_len);
    let start = u128::from(net.addr());
    let last = start | (u128::MAX >> plen);
    for a in [pool.subnet_min, pool.subnet_max] {
        assert!(net.contains(a), "{a} outside {net}");
        let sn = Ipv6Net::new(a, pool.subnet_len).expect("on a SubnetLen boundary");
        assert!(pool.accepts(&sn));
    }
    assert!(pool.subnet_min <= pool.subnet_max);
    let unset = |name| {
        !map.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case(name)
                && v.as_str()
                    .is_some_and(|s| s.parse::<Ipv6Addr>().map_or(true, |a| !a.is_unspecified()))
        })
    };
    if unset("IPv6SubnetMin") {
        assert_eq!(pool.subnet_min, Ipv6Addr::from(start + size));
    }
    if unset("IPv6SubnetMax") {
        assert_eq!(pool.subnet_max, Ipv6Addr::from(last - (size - 1)));
    }
}

/// The config with every value explicit, as an administrator could write it.
fn render(c: &NetworkConfig) -> String {
    let mut v = serde_json::json!({
        "Network": c.ipv4.network.to_string(),
        "SubnetLen": c.ipv4.subnet_len,
        "SubnetMin": c.ipv4.subnet_min.to_string(),
        "SubnetMax": c.ipv4.subnet_max.to_string(),
        "EnableIPv4": true,
        "EnableIPv6": c.ipv6.is_some(),
        "Backend": {
            "Type": c.backend.kind.as_str(),
            "Port": c.backend.configured_port,
            "VNI": c.backend.vni,
        },
    });
    if let (Some(p), Value::Object(m)) = (&c.ipv6, &mut v) {
        m.insert("IPv6Network".into(), p.network.to_string().into());
        m.insert("IPv6SubnetLen".into(), p.subnet_len.into());
        m.insert("IPv6SubnetMin".into(), p.subnet_min.to_string().into());
        m.insert("IPv6SubnetMax".into(), p.subnet_max.to_string().into());
    }
    v.to_string()
}
