//! `weftctl leases`: what a lease store holds (the network config and every lease), as a table.
//!
//! Contract: [`render`] lists the store once and returns text: the config line, then one line
//! per lease (subnet, PublicIP, backend, VtepMAC, expiry), then one line per key that is not a
//! valid lease, with the reason. Store failures are errors naming the store.

use std::fmt::Write as _;
use std::time::SystemTime;

use anyhow::Context;
use engine::lease::{Expiry, LeaseStore, StoreError};

/// The store's config and leases as text (see the module documentation).
pub fn render(store: &dyn LeaseStore) -> anyhow::Result<String> {
    let mut out = String::new();
    let config = match store.config() {
        Ok(text) => text.split_whitespace().collect::<Vec<_>>().join(" "),
        Err(StoreError::ConfigMissing { .. }) => "(none)".to_owned(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", store.describe())),
    };
    let _ = writeln!(out, "store:  {}", store.describe());
    let _ = writeln!(out, "config: {config}");
    let listing = store
        .list()
        .with_context(|| format!("listing {}", store.describe()))?;
    let _ = writeln!(
        out,
        "{:<22} {:<16} {:<8} {:<18} expires",
        "SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC"
    );
    for lease in &listing.leases {
        let mac = lease.attrs.vxlan_data().map_or_else(
            || "-".to_owned(),
            |d| engine::model::format_mac(&d.vtep_mac),
        );
        let _ = writeln!(
            out,
            "{:<22} {:<16} {:<8} {:<18} {}",
            match lease.key.v6 {
                Some(v6) => format!("{} {v6}", lease.key.v4),
                None => lease.key.v4.to_string(),
            },
            public_ips(&lease.attrs),
            lease
                .attrs
                .backend()
                .map_or_else(|foreign| foreign, |b| b.as_str()),
            mac,
            expiry(lease.expiry)
        );
    }
    if listing.leases.is_empty() {
        let _ = writeln!(out, "(no leases)");
    }
    for bad in &listing.invalid {
        let _ = writeln!(out, "invalid: {bad}");
    }
    Ok(out)
}

fn expiry(e: Expiry) -> String {
    match e {
        Expiry::Reservation => "never (reservation)".to_owned(),
        Expiry::Leased => "leased (TTL)".to_owned(),
        Expiry::At(t) => match t.duration_since(SystemTime::now()) {
            Ok(left) => {
                let mins = left.as_secs() / 60;
                format!("in {}h{:02}m", mins / 60, mins % 60)
            }
            Err(_) => "expired".to_owned(),
        },
    }
}

/// A lease's underlay addresses: PublicIP, PublicIP and PublicIPv6 (dual stack, comma
/// separated), or PublicIPv6 alone (an IPv6-only node, PublicIP 0.0.0.0).
fn public_ips(attrs: &engine::lease::LeaseAttrs) -> String {
    match (attrs.public_ip.is_unspecified(), attrs.public_ip6) {
        (false, Some(v6)) => format!("{},{v6}", attrs.public_ip),
        (true, Some(v6)) => v6.to_string(),
        (_, None) => attrs.public_ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::lease::LeaseAttrs;
    use std::net::Ipv4Addr;

    #[test]
    fn public_ips_show_every_underlay_address() {
        let v6 = Some("fd99::1".parse().expect("v6"));
        let v4 = Ipv4Addr::new(192, 168, 250, 1);
        assert_eq!(public_ips(&LeaseAttrs::udp(v4, None)), "192.168.250.1");
        assert_eq!(
            public_ips(&LeaseAttrs::udp(v4, v6)),
            "192.168.250.1,fd99::1"
        );
        assert_eq!(
            public_ips(&LeaseAttrs::udp(Ipv4Addr::UNSPECIFIED, v6)),
            "fd99::1"
        );
    }
}
