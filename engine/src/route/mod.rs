//! The route table: which peer each overlay destination goes to, and who may send us what.
//!
//! Contract: a [`RouteTable`] is an immutable snapshot. [`RouteTable::lookup`] is the
//! longest-prefix match of an IPv4 or IPv6 destination to the [`Peer`] that owns it;
//! [`RouteTable::peer_by_underlay`] finds the peer behind a datagram's sender address (the
//! receive side's "known peer" check). Neither locks nor allocates. [`Routes`] holds the current
//! snapshot behind `arc_swap`: the control plane builds a whole new table (from the peers file
//! on start-up and SIGHUP, later from lease events) and swaps it in; packet threads see either
//! the old or the new table, never a mix, and never wait.
//!
//! A [`Peer`] carries what the data path needs ready-made: the underlay `SocketAddr`, the
//! VtepMAC, its subnets (for source validation), the 22-byte VXLAN + Ethernet
//! headers for IPv4 and IPv6 inner packets (empty for the udp backend), and its counters. The
//! counters ([`PeerCounters`], relaxed atomics) move from one table to the next for the same
//! underlay address, so a reload does not reset them.
//!
//! Building a table ([`RouteTable::build`]) checks every entry against this node ([`Local`]):
//! an entry for our own subnet or public IP is skipped silently (one peers file can list every
//! node); a backend other than ours, a vxlan peer without a VtepMAC (or with ours), an underlay
//! address of a family our underlay lacks (a dual-stack underlay has both), a subnet listed twice, or an underlay address listed with
//! two different backends or VtepMACs is a [`RouteError`] naming the line, and only that
//! entry is left out.

mod lpm;
mod peers_file;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use encap::backend::{Mac, VxlanEncap, VXLAN_HEADER_LEN};

use crate::model::{format_mac, Backend, Cidr};
pub use peers_file::{load_peers_file, parse_peers, PeerEntry, PeersFileError};

use lpm::{FoldBuild, Lpm};

/// The current route table, swapped whole by the control plane and read lock-free by the pumps.
pub type Routes = arc_swap::ArcSwap<RouteTable>;

/// Swaps `table` in and keeps the table it replaces in `retired`, then frees, on the calling
/// (control) thread, every retired table that nobody else holds any more.
///
/// Without this, the last holder of the old table frees it, and that is usually a pump's
/// `arc_swap::Cache` on its next reload: freeing a 10 000-route table takes about a
/// millisecond, a stall on the packet path (`cargo bench -p engine --bench
/// route_swap_stall`). A retired table stays in `retired` while a pump still holds it and is
/// freed at a later swap; at most a few are kept (pumps reload on each batch).
pub fn swap_retiring(routes: &Routes, table: RouteTable, retired: &mut Vec<Arc<RouteTable>>) {
    // `swap` settles arc-swap's outstanding guards into real references before returning,
    // so the strong counts below are exact for tables no longer in `routes`.
    retired.push(routes.swap(Arc::new(table)));
    retired.retain(|t| Arc::strong_count(t) > 1);
}

/// Traffic to and from one peer (inner IP packets and their bytes). Relaxed atomics: each
/// value is exact, the set is not a consistent snapshot.
#[derive(Debug, Default)]
pub struct PeerCounters {
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
}

impl PeerCounters {
    /// Counts `packets` inner packets of `bytes` bytes in all sent to the peer.
    #[inline]
    pub fn add_tx(&self, packets: u64, bytes: u64) {
        self.tx_packets.fetch_add(packets, Ordering::Relaxed);
        self.tx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts `packets` inner packets of `bytes` bytes in all received from the peer.
    #[inline]
    pub fn add_rx(&self, packets: u64, bytes: u64) {
        self.rx_packets.fetch_add(packets, Ordering::Relaxed);
        self.rx_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (tx_packets, tx_bytes, rx_packets, rx_bytes).
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.tx_packets.load(Ordering::Relaxed),
            self.tx_bytes.load(Ordering::Relaxed),
            self.rx_packets.load(Ordering::Relaxed),
            self.rx_bytes.load(Ordering::Relaxed),
        )
    }
}

/// One remote node: where to send, how to encapsulate, what it may send us. Its backend is
/// ours ([`Local::backend`]: a table only holds peers of the backend it was built for), so a
/// peer does not carry it.
#[derive(Debug)]
pub struct Peer {
    underlay: SocketAddr,
    vtep_mac: Option<Mac>,
    subnets: Vec<Cidr>,
    encap_v4: [u8; VXLAN_HEADER_LEN],
    encap_v6: [u8; VXLAN_HEADER_LEN],
    encap_len: usize,
    counters: Arc<PeerCounters>,
}

impl Peer {
    fn new(
        local: &Local,
        underlay: SocketAddr,
        vtep_mac: Option<Mac>,
        counters: Arc<PeerCounters>,
    ) -> Peer {
        let (encap_v4, encap_v6, encap_len) = match vtep_mac {
            Some(peer_mac) => {
                let e = VxlanEncap {
                    vni: local.vni,
                    local_mac: local.vtep_mac,
                    peer_mac,
                };
                (e.header(4), e.header(6), VXLAN_HEADER_LEN)
            }
            None => ([0; VXLAN_HEADER_LEN], [0; VXLAN_HEADER_LEN], 0),
        };
        Peer {
            underlay,
            vtep_mac,
            subnets: Vec::new(),
            encap_v4,
            encap_v6,
            encap_len,
            counters,
        }
    }

    /// The underlay address datagrams go to (public IP and port).
    pub fn underlay(&self) -> SocketAddr {
        self.underlay
    }

    /// The peer's VtepMAC (vxlan).
    pub fn vtep_mac(&self) -> Option<Mac> {
        self.vtep_mac
    }

    /// The overlay subnets the peer owns.
    pub fn subnets(&self) -> &[Cidr] {
        &self.subnets
    }

    /// The peer's counters.
    pub fn counters(&self) -> &PeerCounters {
        &self.counters
    }

    /// The encapsulation header in front of an inner packet of IP version `ip_version`: empty
    /// for udp, the 22-byte VXLAN + Ethernet header for vxlan.
    #[inline]
    pub fn encap_header(&self, ip_version: u8) -> &[u8] {
        let h = if ip_version == 6 {
            &self.encap_v6
        } else {
            &self.encap_v4
        };
        &h[..self.encap_len]
    }

    /// Whether `src` lies in one of the peer's subnets (the anti-spoofing check).
    #[inline]
    pub fn owns(&self, src: IpAddr) -> bool {
        self.subnets.iter().any(|s| s.contains(src))
    }
}

/// What the table is built for: this node's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local {
    /// Our backend; peers must use the same.
    pub backend: Backend,
    /// The port peers listen on when their entry gives none (flannel has one `Backend.Port`
    /// for the whole cluster, so ours).
    pub port: u16,
    /// Our VNI (vxlan).
    pub vni: u32,
    /// Our VtepMAC (vxlan): the inner source MAC of what we send.
    pub vtep_mac: Mac,
    /// Our underlay address: entries with it are our own and skipped.
    pub public_ip: IpAddr,
    /// Our IPv6 underlay address beside an IPv4 `public_ip` (a dual-stack underlay, lease
    /// mode): peers may then be of either family.
    pub public_ip6: Option<Ipv6Addr>,
    /// Our own subnets: entries for them are skipped.
    pub subnets: Vec<Cidr>,
}

impl Local {
    /// Whether `ip` is one of our underlay addresses.
    pub fn is_own(&self, ip: IpAddr) -> bool {
        ip == self.public_ip || self.public_ip6.is_some_and(|a| ip == IpAddr::V6(a))
    }

    /// Whether our underlay has `ip`'s family.
    pub fn reaches(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.public_ip.is_ipv4() || (ip.is_ipv6() && self.public_ip6.is_some())
    }
}

/// Where a peer entry came from, named in its errors: a route source's own words for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A line of the peers file (1-based).
    Line(usize),
    /// A lease in the lease store, by its key in flannel's spelling (`10.244.2.0-24`).
    Lease(String),
}

impl Origin {
    /// The peers-file line, when it is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Origin::Line(n) => Some(*n),
            Origin::Lease(_) => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Line(n) => write!(f, "line {n}"),
            Origin::Lease(key) => write!(f, "lease {key}"),
        }
    }
}

/// An entry left out of a table, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name} {origin}: {message}")]
pub struct RouteError {
    /// Where the entries came from (the peers file path, `leases`).
    pub source_name: String,
    /// Where the entry came from.
    pub origin: Origin,
    /// What is wrong, for a person to fix.
    pub message: String,
}

/// One subnet and the peer it goes to (as listed by the control socket's `routes`).
#[derive(Debug, Clone)]
pub struct Route {
    /// The overlay subnet.
    pub subnet: Cidr,
    /// Its peer.
    pub peer: Arc<Peer>,
    /// Whether the kernel routes the subnet straight to the peer's public IP (DirectRouting,
    /// [`PeerEntry::direct`]); the overlay route stays as the fallback.
    pub direct: bool,
}

/// An immutable longest-prefix-match snapshot; see the module documentation.
#[derive(Debug, Default)]
pub struct RouteTable {
    v4: Lpm<u32, Arc<Peer>>,
    v6: Lpm<u128, Arc<Peer>>,
    by_underlay: HashMap<u128, Arc<Peer>, FoldBuild>,
    routes: Vec<Route>,
    peers: Vec<Arc<Peer>>,
}

/// The key of an underlay address: IPv4 as its IPv4-mapped IPv6 form.
#[inline]
fn underlay_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl RouteTable {
    /// A table with no routes.
    pub fn empty() -> RouteTable {
        RouteTable::default()
    }

    /// The peer owning the longest prefix that holds `dst`.
    #[inline]
    pub fn lookup(&self, dst: IpAddr) -> Option<&Arc<Peer>> {
        match dst {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// The peer whose underlay address is `ip` (any port: a kernel VTEP sends from hashed
    /// source ports).
    #[inline]
    pub fn peer_by_underlay(&self, ip: IpAddr) -> Option<&Arc<Peer>> {
        self.by_underlay.get(&underlay_key(ip))
    }

    /// Every route, in the order of the entries.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every peer, once each, in the order of first appearance.
    pub fn peers(&self) -> &[Arc<Peer>] {
        &self.peers
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there is no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Builds a table from `entries` for the node `local`, reusing the counters of peers that
    /// `previous` already had. Entries that cannot be used are returned as errors (with
    /// `source_name` and their [`Origin`]) and left out; the rest make the table.
    pub fn build(
        local: &Local,
        entries: &[PeerEntry],
        previous: Option<&RouteTable>,
        source_name: &str,
    ) -> (RouteTable, Vec<RouteError>) {
        let mut table = RouteTable::default();
        let mut errors = Vec::new();
        let mut peers: Vec<Peer> = Vec::new();
        // Underlay key -> index in `peers`.
        let mut by_key: HashMap<u128, usize> = HashMap::new();
        // Subnet -> the entry that listed it first.
        let mut seen_subnets: HashMap<Cidr, &Origin> = HashMap::new();
        // (subnet, index in `peers`, direct), in entry order.
        let mut routes: Vec<(Cidr, usize, bool)> = Vec::new();
        for entry in entries {
            let fail = |message: String| RouteError {
                source_name: source_name.to_owned(),
                origin: entry.origin.clone(),
                message,
            };
            if local.subnets.contains(&entry.subnet) || local.is_own(entry.public_ip) {
                continue;
            }
            if entry.backend != local.backend {
                errors.push(fail(format!(
                    "peer {} uses the {} backend but this weftd runs {}",
                    entry.public_ip, entry.backend, local.backend
                )));
                continue;
            }
            if !local.reaches(entry.public_ip) {
                errors.push(fail(format!(
                    "peer public_ip {} is not of the family of our --public-ip {}{}",
                    entry.public_ip,
                    local.public_ip,
                    if local.public_ip.is_ipv6() {
                        " (an IPv6-only underlay)"
                    } else {
                        ""
                    }
                )));
                continue;
            }
            let vtep_mac = match (local.backend, entry.vtep_mac) {
                (Backend::Vxlan, None) => {
                    errors.push(fail("a vxlan peer needs a vtep_mac".to_owned()));
                    continue;
                }
                (Backend::Vxlan, Some(mac)) if mac == local.vtep_mac => {
                    errors.push(fail(format!(
                        "vtep_mac {} is our own VtepMAC",
                        format_mac(&mac)
                    )));
                    continue;
                }
                (Backend::Vxlan, mac) => mac,
                (Backend::Udp | Backend::HostGw, _) => None,
            };
            if let Some(first) = seen_subnets.get(&entry.subnet) {
                errors.push(fail(format!(
                    "subnet {} is already listed on {first}",
                    entry.subnet
                )));
                continue;
            }
            let underlay = SocketAddr::new(entry.public_ip, entry.port.unwrap_or(local.port));
            let key = underlay_key(entry.public_ip);
            let idx = match by_key.get(&key) {
                Some(&idx) => {
                    let peer = &peers[idx];
                    if peer.vtep_mac != vtep_mac || peer.underlay != underlay {
                        errors.push(fail(format!(
                            "peer {} is listed before with another vtep_mac or port",
                            entry.public_ip
                        )));
                        continue;
                    }
                    idx
                }
                None => {
                    let counters = previous
                        .and_then(|p| p.by_underlay.get(&key))
                        .map_or_else(Arc::default, |p| Arc::clone(&p.counters));
                    peers.push(Peer::new(local, underlay, vtep_mac, counters));
                    by_key.insert(key, peers.len() - 1);
                    peers.len() - 1
                }
            };
            seen_subnets.insert(entry.subnet, &entry.origin);
            peers[idx].subnets.push(entry.subnet);
            routes.push((entry.subnet, idx, entry.direct));
        }
        table.peers = peers.into_iter().map(Arc::new).collect();
        for peer in &table.peers {
            table
                .by_underlay
                .insert(underlay_key(peer.underlay.ip()), Arc::clone(peer));
        }
        for (subnet, idx, direct) in routes {
            let peer = &table.peers[idx];
            match subnet.addr() {
                IpAddr::V4(a) => {
                    table
                        .v4
                        .insert(u32::from(a), subnet.prefix_len(), Arc::clone(peer));
                }
                IpAddr::V6(a) => {
                    table
                        .v6
                        .insert(u128::from(a), subnet.prefix_len(), Arc::clone(peer));
                }
            }
            table.routes.push(Route {
                subnet,
                peer: Arc::clone(peer),
                direct,
            });
        }
        (table, errors)
    }
}
