//! One lease as etcd holds it: the key's last path element and the value, flannel's
//! `LeaseAttrs` JSON. Input layout: `key\nvalue`, as `etcdctl get --prefix` prints them (with no
//! newline, the whole input is tried as both). Anyone who can write under
//! `<prefix>/subnets/` reaches these parsers on every node.
//!
//! Invariants: no panic; a subnet key that `SubnetKey::parse` accepts is exactly the text
//! flannel's `MakeSubnetKey` writes for it (so it names one lease, and `to_string` gives back
//! the key it came from); a value that `LeaseAttrs::from_json` accepts is written by `to_json`
//! as JSON that reads back to an equal value and is written again byte for byte; a vxlan lease
//! has vxlan data with a 24-bit VNI; and `parse_mac` accepts only Go's `net.ParseMAC` form of a
//! 6-byte MAC (two hex digits per byte, all `:` or all `-`), which `format_mac` gives back.
#![no_main]

use engine::lease::attrs::VNI_MAX;
use engine::lease::{BackendData, LeaseAttrs, SubnetKey};
use engine::model::{format_mac, parse_mac, Backend};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (key, value) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) => (&data[..nl], &data[nl + 1..]),
        None => (data, data),
    };
    if let Ok(key) = std::str::from_utf8(key) {
        check_key(key);
        check_mac(key);
    }
    check_value(value);
});

fn check_key(text: &str) {
    let Ok(key) = SubnetKey::parse(text) else {
        return;
    };
    assert_eq!(
        key.to_string(),
        text,
        "a key in another form than flannel's"
    );
    assert_eq!(SubnetKey::parse(&key.to_string()), Ok(key));
}

fn check_mac(text: &str) {
    let Ok(mac) = parse_mac(text) else { return };
    let canonical = text.to_ascii_lowercase().replace('-', ":");
    assert_eq!(format_mac(&mac), canonical, "{text:?} is not Go's MAC form");
}

fn check_value(value: &[u8]) {
    let Ok(attrs) = LeaseAttrs::from_json(value) else {
        return;
    };
    let json = attrs.to_json();
    assert!(json.starts_with("{\"PublicIP\":\""), "{json}");
    serde_json::from_str::<serde_json::Value>(&json).expect("to_json writes JSON");
    let again = LeaseAttrs::from_json(json.as_bytes());
    assert_eq!(again.as_ref(), Ok(&attrs), "{json}");
    assert_eq!(again.map(|a| a.to_json()).as_deref(), Ok(json.as_str()));
    if attrs.backend() == Ok(Backend::Vxlan) {
        let mut vxlan = 0;
        for d in [&attrs.backend_data, &attrs.backend_v6_data]
            .into_iter()
            .flatten()
        {
            let BackendData::Vxlan(d) = d else {
                panic!("a vxlan lease with non-vxlan data: {json}");
            };
            assert!(d.vni.is_none_or(|v| v <= VNI_MAX));
            vxlan += 1;
        }
        assert!(vxlan > 0, "a vxlan lease without data: {json}");
    }
}
