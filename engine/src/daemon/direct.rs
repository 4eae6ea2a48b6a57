//! flannel's DirectRouting: a peer on our own network segment gets a kernel route via its
//! PublicIP, and its pods are reached without encapsulation.
//!
//! Contract: [`on_link`] is flannel's test (pkg/ip `DirectRouting`): the kernel's route to the
//! peer's PublicIP has no gateway (and, here, does not leave through our own TUN).
//! [`DirectRoutes::sync`] makes the main table hold exactly the wanted `<subnet> via
//! <PublicIP>` routes: new and changed ones are added (replacing), vanished ones deleted; a
//! failure is logged and the subnet stays on the overlay, whose route to the whole Network
//! still covers it. [`DirectRoutes::clear`] removes every route it added (on SIGTERM). A
//! subnet is routed directly only via an address of its own family (IPv4 subnets via the
//! PublicIP, IPv6 subnets via the PublicIPv6 of a dual-stack underlay).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::Cidr;
use crate::route::RouteTable;
use crate::sys::rtnetlink::{self, RouteKind, RouteLookup};

/// Whether `public_ip` is reachable without a gateway, and not through the TUN `tun_index`.
pub(super) fn on_link(public_ip: IpAddr, tun_index: Option<u32>) -> bool {
    match rtnetlink::route_get(public_ip) {
        Ok(RouteLookup {
            gateway: None, oif, ..
        }) => oif.is_some() && oif != tun_index,
        Ok(_) => false,
        Err(e) => {
            tracing::debug!("route to {public_ip}: {e}");
            false
        }
    }
}

/// The direct routes this node added to the kernel.
#[derive(Debug, Default)]
pub(super) struct DirectRoutes {
    installed: BTreeMap<Cidr, IpAddr>,
}

impl DirectRoutes {
    /// The direct routes `table` asks for: each route marked direct, subnet -> PublicIP.
    pub(super) fn wanted(table: &RouteTable) -> BTreeMap<Cidr, IpAddr> {
        table
            .routes()
            .iter()
            .filter(|r| r.direct)
            .map(|r| (r.subnet, r.peer.underlay().ip()))
            .collect()
    }

    /// Adds, replaces and deletes kernel routes until exactly `wanted` is installed (see the
    /// module documentation); returns how many routes it changed.
    pub(super) fn sync(&mut self, wanted: BTreeMap<Cidr, IpAddr>) -> usize {
        let mut changed = 0;
        let gone: Vec<(Cidr, IpAddr)> = self
            .installed
            .iter()
            .filter(|(subnet, _)| !wanted.contains_key(subnet))
            .map(|(s, gw)| (*s, *gw))
            .collect();
        for (subnet, gw) in gone {
            match rtnetlink::delete_route(subnet.addr(), subnet.prefix_len(), RouteKind::Via(gw)) {
                Ok(()) => tracing::info!("direct route {subnet} via {gw} removed"),
                Err(e) => tracing::error!("removing the direct route {subnet} via {gw}: {e}"),
            }
            self.installed.remove(&subnet);
            changed += 1;
        }
        for (subnet, gw) in wanted {
            if self.installed.get(&subnet) == Some(&gw) {
                continue;
            }
            changed += 1;
            match rtnetlink::add_route(subnet.addr(), subnet.prefix_len(), RouteKind::Via(gw)) {
                Ok(()) => {
                    tracing::info!("direct route {subnet} via {gw}");
                    self.installed.insert(subnet, gw);
                }
                // A route it replaced stays listed, so that the next sync retries and SIGTERM
                // still removes it.
                Err(e) => tracing::warn!(
                    "adding the direct route {subnet} via {gw}: {e}; it stays on the overlay"
                ),
            }
        }
        changed
    }

    /// Removes every direct route this node added.
    pub(super) fn clear(&mut self) {
        self.sync(BTreeMap::new());
    }

    /// The routes in place, subnet -> PublicIP.
    #[cfg(test)]
    pub(super) fn installed(&self) -> &BTreeMap<Cidr, IpAddr> {
        &self.installed
    }
}
