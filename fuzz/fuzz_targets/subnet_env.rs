//! The subnet file (`--subnet-file`, default /run/flannel/subnet.env): weftd reads the previous
//! run's subnets from it at start (`netconf::subnet_env::parse_previous`, behind
//! `read_previous`) and writes it once it holds a lease (`SubnetEnv::render`). Whoever can
//! write the file (or left it from another tool) reaches the reader.
//!
//! Invariants, on the input as text: no panic; a key read from it holds network addresses (host
//! bits zero); and it survives a render: written into a subnet file again it reads back the
//! same (for subnets that have a host address besides the network address, IPv4 /31 and IPv6
//! /127 or shorter, as every flannel subnet has). On the input as values (a Network, a subnet
//! inside it of at most /31, optionally the same for IPv6, an MTU and the masquerade switch):
//! `render` writes flanneld's lines in flanneld's order, and `parse_previous` reads back the
//! subnets that were rendered.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use engine::lease::SubnetKey;
use engine::model::{Ipv4Net, Ipv6Net};
use engine::netconf::subnet_env::{parse_previous, SubnetEnv};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_text(text);
    }
    if let Ok(env) = env(&mut Unstructured::new(data)) {
        check_env(&env);
    }
});

fn check_text(text: &str) {
    let Some(key) = parse_previous(text) else {
        return;
    };
    assert_eq!(Ipv4Net::new(key.v4.addr(), key.v4.prefix_len()), Ok(key.v4));
    if let Some(v6) = key.v6 {
        assert_eq!(Ipv6Net::new(v6.addr(), v6.prefix_len()), Ok(v6));
    }
    if key.v4.prefix_len() > 31 || key.v6.is_some_and(|v6| v6.prefix_len() > 127) {
        return;
    }
    let env = SubnetEnv {
        network: key.v4,
        subnet: key.v4,
        ipv6: key.v6.map(|v6| (v6, v6)),
        mtu: 1450,
        ip_masq: false,
    };
    assert_eq!(parse_previous(&env.render()), Some(key), "{text:?}");
}

/// A subnet file's values: subnets inside their networks, with a host address.
fn env(u: &mut Unstructured<'_>) -> Result<SubnetEnv> {
    let net_len = u.int_in_range(0..=31)?;
    let network = Ipv4Net::new_masked(Ipv4Addr::from(u.arbitrary::<u32>()?), net_len).expect("/31");
    let sub_len = u.int_in_range(net_len..=31)?;
    let host = u.arbitrary::<u32>()? & (u32::MAX >> net_len);
    let subnet = Ipv4Net::new_masked(Ipv4Addr::from(u32::from(network.addr()) | host), sub_len)
        .expect("/31");
    let ipv6 = if u.arbitrary::<bool>()? {
        let net_len = u.int_in_range(0..=127)?;
        let network =
            Ipv6Net::new_masked(Ipv6Addr::from(u.arbitrary::<u128>()?), net_len).expect("/127");
        let sub_len = u.int_in_range(net_len..=127)?;
        let host = u.arbitrary::<u128>()? & (u128::MAX >> net_len);
        let subnet =
            Ipv6Net::new_masked(Ipv6Addr::from(u128::from(network.addr()) | host), sub_len)
                .expect("/127");
        Some((network, subnet))
    } else {
        None
    };
    Ok(SubnetEnv {
        network,
        subnet,
        ipv6,
        mtu: u.arbitrary()?,
        ip_masq: u.arbitrary()?,
    })
}

fn check_env(env: &SubnetEnv) {
    let text = env.render();
    let names: Vec<&str> = text
        .lines()
        .map(|l| l.split_once('=').expect("NAME=VALUE").0)
        .collect();
    let expected: &[&str] = if env.ipv6.is_some() {
        &[
            "FLANNEL_NETWORK",
            "FLANNEL_SUBNET",
            "FLANNEL_IPV6_NETWORK",
            "FLANNEL_IPV6_SUBNET",
            "FLANNEL_MTU",
            "FLANNEL_IPMASQ",
        ]
    } else {
        &[
            "FLANNEL_NETWORK",
            "FLANNEL_SUBNET",
            "FLANNEL_MTU",
            "FLANNEL_IPMASQ",
        ]
    };
    assert_eq!(names, expected);
    assert!(text.ends_with('\n'));
    assert!(text.contains(&format!("\nFLANNEL_MTU={}\n", env.mtu)));
    assert!(text.ends_with(&format!("FLANNEL_IPMASQ={}\n", env.ip_masq)));
    let key = parse_previous(&text).expect("a rendered file reads back");
    assert_eq!(
        key,
        SubnetKey {
            v4: env.subnet,
            v6: env.ipv6.map(|(_, s)| s)
        },
        "{text}"
    );
}
