//! weftd's lease mode: flanneld's start-up and its life on the lease store.
//!
//! Contract ([`run`]): store -> `wait_for_config` (retried every second until valid; SIGTERM
//! while waiting exits 0) -> our lease (transient store failures retried every second; a full
//! network or a lost race loop is fatal) -> the manager and the thread applying its events
//! (below) -> the data path with the route table as far as it got -> the subnet file -> the
//! iptables rules (`--ip-masq`'s masquerade rules, a failure of which is fatal;
//! `--iptables-forward-rules`' FORWARD accept rules, on by default as in flanneld, a failure
//! of which is reported and retried) -> `--ip-blackhole-route` -> the first peer set
//! in the route table (waited for at most 10 s) -> `weftd: ready` and READY=1. The control
//! socket is bound once the network config names the TUN, before the lease is taken, so a
//! second weftd for the same TUN in this namespace changes nothing. From then on one thread
//! applies the manager's events: every [`ManagerEvent::Peers`] becomes a new route table
//! (swapped in whole; leases of another backend are left out with a log line), and an
//! [`ManagerEvent::OwnLease`] re-addresses the TUN, rewrites the subnet file and the
//! masquerade rules. A peer lease outside the Network or overlapping our subnet is left out
//! of the routes; such leases and route-table errors are logged once per key and reason.
//! Beside it: the config is re-read every 2 s (an invalid or changed config is reported once
//! per text; weftd keeps the one it started with, as flanneld), and the underlay interface
//! and the TUN are checked every second (the underlay down / up is logged; a deleted TUN is
//! logged by name and weftd exits 1). SIGTERM / SIGINT: systemd is told STOPPING=1, the
//! manager stops (the lease stays in the store), the iptables rules and the blackhole route
//! are removed, the pumps stop and the TUN goes with them.
//!
//! The underlay ([`underlay_addresses`]): an IPv4 public IP, and with EnableIPv6 its IPv6
//! partner ([`Settings::public_ip6`]) published as PublicIPv6 (flannel's dual stack: the
//! pumps' sockets then bind `[::]` for both families); or an IPv6 public IP alone, an
//! IPv6-only node (PublicIP 0.0.0.0). [`peer_entries`] sends each subnet to the peer's address
//! of its family.
//!
//! An upgrade (`--upgrade`, `handover.rs`): the new weftd takes its lease (the one carrying
//! our PublicIP: the old weftd's), waits for the first peer set in its route table, and only
//! then takes the data path over, so no packet it takes over meets an empty table; the subnet
//! file, the rules (applied idempotently) and the blackhole route (already there) follow as on
//! any start. The old weftd, once it handed over, stops its threads and exits leaving the
//! lease, the subnet file, the rules and the blackhole route to its successor.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use signal_hook::consts::SIGHUP;

use super::handover::{Start, UPGRADE_SIGNAL};
use super::node::HANDOVER_SIGNAL;
use crate::config::{LeaseSettings, LeasedNetwork, Settings, StoreSettings};
use crate::http::Health;
use crate::lease::manager::{
    random_vtep_mac, stored_vtep_mac, wait_for_config, AcquireError, CONFIG_RETRY,
    TEST_LEASE_TTL_VAR,
};
use crate::lease::{
    DirStore, EtcdStore, LeaseAttrs, LeaseStore, ManagerEvent, ManagerOptions, NetworkConfig,
    OwnLease, PeerSet, SubnetManager,
};
use crate::model::{Backend, Cidr, Ipv4Net};
use crate::netconf::masq::MasqRules;
use crate::netconf::subnet_env::{read_previous, SubnetEnv};
use crate::route::{swap_retiring, Local, Origin, PeerEntry, RouteTable, Routes};
use crate::sys::netif;
use crate::sys::rtnetlink::{self, RouteKind};
use crate::Stop;

use super::direct::{self, DirectRoutes};
use super::node::{local, Node};
use super::systemd::{notify_ready, notify_systemd};

fn open_store(settings: &StoreSettings) -> Result<Arc<dyn LeaseStore>> {
    Ok(match settings {
        StoreSettings::Etcd(options) => Arc::new(EtcdStore::connect(options.clone())?),
        StoreSettings::Dir(dir) => Arc::new(DirStore::open(dir)?),
    })
}

/// Acquires our lease, retrying transient store failures every second until `stop`.
fn acquire(manager: &mut SubnetManager, stop: &Stop) -> Result<Option<OwnLease>> {
    let mut last = String::new();
    loop {
        if stop.requested() {
            return Ok(None);
        }
        match manager.acquire() {
            Ok(own) => return Ok(Some(own)),
            Err(AcquireError::Store(e)) if e.is_transient() => {
                let text = e.to_string();
                if text != last {
                    tracing::error!(
                        "acquiring a subnet lease: {text}; retrying every {CONFIG_RETRY:?}"
                    );
                    last = text;
                }
                stop.sleep(CONFIG_RETRY);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The iptables rules for our lease: `--ip-masq`'s and `--iptables-forward-rules`' parts;
/// `None` when neither is on.
fn iptables_rules(
    config: &NetworkConfig,
    own: &OwnLease,
    lease: &LeaseSettings,
) -> Option<MasqRules> {
    let mut rules = MasqRules::new(config.ipv4.network, own.subnet());
    if let (Some(pool), Some(subnet6)) = (&config.ipv6, own.subnet6()) {
        rules = rules.with_ipv6(pool.network, subnet6);
    }
    if !lease.masq_random_fully {
        rules = rules.without_random_fully();
    }
    rules.with_parts(lease.ip_masq, lease.forward_rules)
}

/// Installs `rules`: a failure is fatal when they include `--ip-masq` (asked for), else (the
/// default FORWARD rules) it is reported and the resync retries.
fn install_rules(rules: &MasqRules) -> Result<()> {
    match rules.apply() {
        Ok(()) => {
            tracing::info!(
                "iptables rules installed ({})",
                if rules.masquerade() {
                    "masquerade and forward"
                } else {
                    "FORWARD accept"
                }
            );
            Ok(())
        }
        Err(e) if rules.masquerade() => Err(e).context("installing the --ip-masq rules"),
        Err(e) => {
            tracing::error!(
                "installing the FORWARD accept rules failed: {e}; retried every \
                 --iptables-resync seconds (--iptables-forward-rules=false turns them off)"
            );
            Ok(())
        }
    }
}

/// `blackhole <subnet>` (`--ip-blackhole-route`).
fn blackhole(subnet: Ipv4Net, add: bool) -> std::io::Result<()> {
    let dst = IpAddr::V4(subnet.addr());
    if add {
        rtnetlink::add_route(dst, subnet.prefix_len(), RouteKind::Blackhole)
    } else {
        rtnetlink::delete_route(dst, subnet.prefix_len(), RouteKind::Blackhole)
    }
}

/// The subnet file for our lease.
fn subnet_env(config: &NetworkConfig, own: &OwnLease, mtu: u32, ip_masq: bool) -> SubnetEnv {
    SubnetEnv {
        network: config.ipv4.network,
        subnet: own.subnet(),
        ipv6: config
            .ipv6
            .as_ref()
            .zip(own.subnet6())
            .map(|(pool, s6)| (pool.network, s6)),
        mtu,
        ip_masq,
    }
}

/// Why a peer lease cannot be routed even though it parsed: it lies outside the Network or
/// overlaps one of our own subnets (a route to it would take our own traffic away).
fn unroutable(
    lease: &crate::lease::PeerLease,
    config: &NetworkConfig,
    own: &OwnLease,
) -> Option<String> {
    let net = config.ipv4.network;
    let v4 = lease.key.v4;
    if !(net.overlaps(&v4) && v4.prefix_len() >= net.prefix_len()) {
        return Some(format!("its subnet {v4} lies outside the Network {net}"));
    }
    if v4.overlaps(&own.subnet()) {
        return Some(format!(
            "its subnet {v4} overlaps our subnet {}",
            own.subnet()
        ));
    }
    if let Some(v6) = lease.key.v6 {
        match &config.ipv6 {
            Some(pool)
                if pool.network.overlaps(&v6) && v6.prefix_len() >= pool.network.prefix_len() => {}
            Some(pool) => {
                return Some(format!(
                    "its subnet {v6} lies outside the IPv6Network {}",
                    pool.network
                ))
            }
            None => {}
        }
        if own.subnet6().is_some_and(|s| s.overlaps(&v6)) {
            return Some(format!("its subnet {v6} overlaps our IPv6 subnet"));
        }
    }
    None
}

/// Problems already logged, so each (key, reason) is reported once while it lasts.
#[derive(Debug, Default)]
struct Reported {
    seen: HashSet<(String, String)>,
}

impl Reported {
    /// Logs `reason` for `key` unless it was already logged; keeps it.
    fn warn(&mut self, key: &str, reason: &str, now: &mut HashSet<(String, String)>) {
        let item = (key.to_owned(), reason.to_owned());
        if !self.seen.contains(&item) {
            tracing::warn!("lease {key}: {reason} (left out of the routes)");
        }
        now.insert(item);
    }

    /// Forgets the problems that are gone (so a later return is reported again).
    fn settle(&mut self, now: HashSet<(String, String)>) {
        self.seen = now;
    }
}

/// The route-table entries of a peer set: one per subnet of each lease of our backend, each
/// naming its lease ([`Origin::Lease`]). Leases that cannot be routed ([`unroutable`]) are
/// left out and reported once. Each subnet goes to the peer's underlay address of its own
/// family when our underlay has that family (flannel's dual stack: IPv4 pods over PublicIP,
/// IPv6 pods over PublicIPv6 with `BackendV6Data`'s VtepMAC), else to its other address (an
/// IPv6-only node, PublicIP 0.0.0.0, is reached over IPv6 for both; a peer without a
/// PublicIPv6 carries its IPv6 pods over IPv4, weft's own dual stack). With
/// `Backend.DirectRouting` (and always with host-gw), a subnet whose address `on_link` says is
/// on our segment is marked [`PeerEntry::direct`] when both are of one family.
fn peer_entries(
    set: &PeerSet,
    local: &Local,
    config: &NetworkConfig,
    own: &OwnLease,
    reported: &mut Reported,
    now: &mut HashSet<(String, String)>,
    on_link: &mut dyn FnMut(IpAddr) -> bool,
) -> Vec<PeerEntry> {
    let backend = local.backend;
    let host_gw = backend == Backend::HostGw;
    let mut entries = Vec::new();
    for lease in &set.peers {
        // The manager already left out other backends' leases with a log line.
        let Ok(lease_backend) = lease.attrs.backend() else {
            continue;
        };
        if lease_backend != backend || lease.attrs.node_ip().is_none() {
            continue;
        }
        if let Some(reason) = unroutable(lease, config, own) {
            reported.warn(&lease.key.to_string(), &reason, now);
            continue;
        }
        let v4 =
            (!lease.attrs.public_ip.is_unspecified()).then_some(IpAddr::V4(lease.attrs.public_ip));
        let v6 = lease.attrs.public_ip6.map(IpAddr::V6);
        // The address for a subnet of the family `ipv4`: its own family's when we have it.
        let address_for = |ipv4: bool| {
            let (same, other) = if ipv4 { (v4, v6) } else { (v6, v4) };
            same.filter(|ip| local.reaches(*ip)).or(other).or(same)
        };
        let subnets = std::iter::once(Cidr::from(lease.key.v4)).chain(lease.key.v6.map(Cidr::from));
        for subnet in subnets {
            let Some(public_ip) = address_for(subnet.is_ipv4()) else {
                continue;
            };
            let direct = (host_gw || config.backend.direct_routing)
                && public_ip.is_ipv4() == subnet.is_ipv4()
                && on_link(public_ip);
            if host_gw && !direct {
                // flannel's host-gw: a peer off our segment cannot be reached by a route.
                let reason =
                    if public_ip.is_ipv4() == subnet.is_ipv4() {
                        format!(
                        "its {} {public_ip} is not on our network segment (the kernel reaches it \
                         through a gateway): host-gw routes only to neighbours",
                        if public_ip.is_ipv4() { "PublicIP" } else { "PublicIPv6" }
                    )
                    } else {
                        format!(
                            "its subnet {subnet} has no underlay address of its family \
                         (host-gw routes {} subnets via a PublicIP{})",
                            if subnet.is_ipv4() { "IPv4" } else { "IPv6" },
                            if subnet.is_ipv4() { "" } else { "v6" }
                        )
                    };
                reported.warn(&lease.key.to_string(), &reason, now);
                continue;
            }
            let vtep_mac = if public_ip.is_ipv4() {
                lease.attrs.vxlan_data()
            } else {
                lease.attrs.vxlan_v6_data()
            }
            .map(|d| d.vtep_mac);
            entries.push(PeerEntry {
                origin: Origin::Lease(lease.key.to_string()),
                subnet,
                public_ip,
                backend: lease_backend,
                vtep_mac,
                port: None,
                direct,
            });
        }
    }
    entries
}

/// Builds and swaps in the route table for `set`.
// The applier's state, passed apart so that the in-process tests can drive it.
#[allow(clippy::too_many_arguments)]
fn apply_peers(
    routes: &Routes,
    local: &Local,
    set: &PeerSet,
    config: &NetworkConfig,
    own: &OwnLease,
    reported: &mut Reported,
    retired: &mut Vec<Arc<RouteTable>>,
    on_link: &mut dyn FnMut(IpAddr) -> bool,
) {
    let mut now = HashSet::new();
    let entries = peer_entries(set, local, config, own, reported, &mut now, on_link);
    let current = routes.load_full();
    let (table, errors) = RouteTable::build(local, &entries, Some(&current), "leases");
    for e in &errors {
        // Every entry names its lease; the table's message says what is wrong with it.
        let key = match &e.origin {
            Origin::Lease(key) => key.clone(),
            other => other.to_string(),
        };
        reported.warn(&key, &e.message, &mut now);
    }
    reported.settle(now);
    let direct = table.routes().iter().filter(|r| r.direct).count();
    tracing::info!(
        "leases: {} route(s) to {} peer(s), {direct} direct (+{} -{})",
        table.len(),
        table.peers().len(),
        set.added.len(),
        set.removed.len()
    );
    swap_retiring(routes, table, retired);
}

/// What the event thread keeps up to date.
struct Applier {
    routes: Arc<Routes>,
    local: Local,
    config: NetworkConfig,
    own: OwnLease,
    tun_name: String,
    mtu: u32,
    lease: LeaseSettings,
    masq: Arc<Mutex<Option<MasqRules>>>,
    reported: Reported,
    /// Replaced tables a pump may still hold (see [`swap_retiring`]).
    retired: Vec<Arc<RouteTable>>,
    /// Told once the first peer set is in the route table (readiness waits for it).
    first_routes: Option<std::sync::mpsc::SyncSender<()>>,
    /// The DirectRouting routes in the kernel.
    direct: DirectRoutes,
}

impl Applier {
    fn handle(&mut self, event: ManagerEvent) {
        match event {
            ManagerEvent::Peers(set) => {
                // Looked up each time: the lease threads start before the TUN exists. (A peer
                // reached through our TUN is not on our segment.)
                let tun_index = netif::index(&self.tun_name).ok();
                apply_peers(
                    &self.routes,
                    &self.local,
                    &set,
                    &self.config,
                    &self.own,
                    &mut self.reported,
                    &mut self.retired,
                    &mut |ip| direct::on_link(ip, tun_index),
                );
                if self.config.backend.direct_routing || self.config.backend.kind == Backend::HostGw
                {
                    self.direct.sync(DirectRoutes::wanted(&self.routes.load()));
                }
                if let Some(tell) = self.first_routes.take() {
                    let _ = tell.try_send(());
                }
            }
            ManagerEvent::OwnLease(own) => self.readdress(own),
        }
    }

    fn readdress(&mut self, own: OwnLease) {
        tracing::warn!(
            "our lease is now {} (was {}): re-addressing {}",
            own.key,
            self.own.key,
            self.tun_name
        );
        if own.subnet() != self.own.subnet() {
            if let Err(e) = netif::set_ipv4_addr(&self.tun_name, own.subnet().addr(), 32) {
                tracing::error!(
                    "setting {}/32 on {}: {e}",
                    own.subnet().addr(),
                    self.tun_name
                );
            }
        }
        if let Some(s6) = own.subnet6() {
            if Some(s6) != self.own.subnet6() {
                if let Err(e) = netif::add_ipv6_addr(&self.tun_name, s6.addr(), 128) {
                    tracing::error!("adding {}/128 on {}: {e}", s6.addr(), self.tun_name);
                }
            }
        }
        let mut subnets = Vec::new();
        subnets.push(Cidr::from(own.subnet()));
        subnets.extend(own.subnet6().map(Cidr::from));
        self.local.subnets = subnets;
        let env = subnet_env(&self.config, &own, self.mtu, self.lease.ip_masq);
        if let Err(e) = env.write(&self.lease.subnet_file) {
            tracing::error!("{e}");
        }
        if let Some(rules) = iptables_rules(&self.config, &own, &self.lease) {
            let mut guard = match self.masq.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(old) = guard.take() {
                if let Err(e) = old.remove() {
                    tracing::error!("removing the old iptables rules: {e}");
                }
            }
            if let Err(e) = install_rules(&rules) {
                tracing::error!("{e:#}");
            }
            *guard = Some(rules);
        }
        if self.lease.blackhole_route && own.subnet() != self.own.subnet() {
            for (subnet, add) in [(self.own.subnet(), false), (own.subnet(), true)] {
                if let Err(e) = blackhole(subnet, add) {
                    tracing::error!("blackhole route {subnet}: {e}");
                }
            }
        }
        self.own = own;
    }
}

/// How long readiness waits for the first peer list to become routes.
const FIRST_ROUTES_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the network config is re-read while running.
const CONFIG_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Re-reads the network config every [`CONFIG_CHECK`] until `stop`. weftd keeps the config it
/// started with (as flanneld does); a config that becomes invalid or different is reported
/// once per distinct text, with its location and what is wrong or what changed. Store
/// failures are left to the manager, which reports outages.
fn watch_config(store: &dyn LeaseStore, running: &NetworkConfig, location: &str, stop: &Stop) {
    let mut last: Option<String> = None;
    loop {
        if stop.sleep(CONFIG_CHECK) {
            return;
        }
        let Ok(text) = store.config() else { continue };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        match NetworkConfig::parse(&text) {
            Err(e) => tracing::error!(
                "the network config at {location} is now invalid: {e}; weftd keeps running with \
                 the config it started with (Network {}); fix the config",
                running.ipv4.network
            ),
            Ok(config) if config == *running => {
                if last.is_some() {
                    tracing::info!("the network config at {location} is the running one again");
                }
            }
            Ok(config) => tracing::warn!(
                "the network config at {location} changed (Network {} -> {}, backend {:?} -> \
                 {:?}); weftd keeps running with the config it started with: restart it to \
                 apply the new one",
                running.ipv4.network,
                config.ipv4.network,
                running.backend.kind,
                config.backend.kind
            ),
        }
        last = Some(text);
    }
}

/// How often the underlay interface and the TUN are looked at.
const LINK_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches the underlay interface `underlay` (when known) and the TUN `tun` every
/// [`LINK_CHECK`] until `stop`: the underlay going down (or losing its carrier) and coming
/// back is logged once each way (packets to peers meanwhile fail and are counted as
/// `udp_send_error`); the TUN deleted from under weftd is logged naming it, `tun_lost` is set
/// and SIGTERM raised so that weftd exits with status 1 (a TUN cannot be re-opened with its
/// routes and addresses behind the pumps' backs: let the supervisor restart weftd).
fn watch_links(underlay: Option<&str>, tun: Option<&str>, stop: &Stop, tun_lost: &AtomicBool) {
    let mut was_up = true;
    loop {
        if stop.sleep(LINK_CHECK) {
            return;
        }
        if let Some(name) = underlay {
            let up = netif::flags(name)
                .is_ok_and(|f| f & libc::IFF_UP != 0 && f & libc::IFF_RUNNING != 0);
            if up != was_up {
                if up {
                    tracing::warn!("the underlay interface {name} is up again");
                } else {
                    tracing::error!(
                        "the underlay interface {name} is down, gone or without carrier: \
                         packets to peers fail (counted as udp_send_error) until it is up again"
                    );
                }
                was_up = up;
            }
        }
        if tun.is_some_and(|tun| tun_gone(tun, tun_lost)) {
            if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
                tracing::error!("raising SIGTERM after losing the TUN failed: {e}");
            }
            return;
        }
    }
}

/// Whether the TUN `tun` is gone; the first time, logs it (naming it) and sets `tun_lost`.
fn tun_gone(tun: &str, tun_lost: &AtomicBool) -> bool {
    match netif::index(tun) {
        Ok(_) => false,
        Err(e) => {
            if !tun_lost.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    "the TUN {tun} is gone ({e}): it was deleted from under weftd; exiting \
                     (start weftd again to recreate it)"
                );
            }
            true
        }
    }
}

/// The lease's PublicIP and PublicIPv6 for `base`'s addresses: an IPv6 public IP is an
/// IPv6-only node (PublicIP 0.0.0.0); an IPv4 one publishes its IPv6 partner
/// ([`Settings::public_ip6`]) only when the network config has EnableIPv6, as flanneld.
fn underlay_addresses(base: &Settings, config: &NetworkConfig) -> (Ipv4Addr, Option<Ipv6Addr>) {
    match base.public_ip {
        IpAddr::V6(v6) => (Ipv4Addr::UNSPECIFIED, Some(v6)),
        IpAddr::V4(v4) if config.ipv6.is_some() => {
            if base.public_ip6.is_none() {
                tracing::info!(
                    "EnableIPv6 without an IPv6 underlay address ({v4}'s interface has no \
                     global IPv6 address and no --public-ipv6 was given): IPv6 pods travel over \
                     IPv4, which weft peers understand and flanneld peers do not"
                );
            }
            (v4, base.public_ip6)
        }
        IpAddr::V4(v4) => {
            if let (Some(v6), true) = (base.public_ip6, base.public_ip6_given) {
                tracing::warn!(
                    "--public-ipv6 {v6} is ignored: the network config does not enable IPv6 \
                     (EnableIPv6), as with flanneld"
                );
            }
            (v4, None)
        }
    }
}

/// Lease mode (see the module documentation).
pub(super) fn run(
    base: &Settings,
    lease: &LeaseSettings,
    signals: &Receiver<libc::c_int>,
    stop: &Stop,
    health: &Health,
) -> Result<ExitCode> {
    for flag in &lease.ignored_flags {
        tracing::warn!(
            "{flag} is ignored in lease mode: the network config decides (as with flanneld)"
        );
    }
    let store = open_store(&lease.store)?;
    tracing::info!("lease store: {}", store.describe());
    let Some(config) = wait_for_config(&*store, stop, CONFIG_RETRY) else {
        tracing::info!("stopped while waiting for the network config");
        return Ok(ExitCode::SUCCESS);
    };
    let backend = config.backend.kind;
    let vni = config.backend.vni;
    let (public_ip, public_ip6) = underlay_addresses(base, &config);
    let node_ip = base.public_ip;
    let (vtep_mac, vtep_mac_random) = if backend == Backend::Vxlan && base.vtep_mac_random {
        match stored_vtep_mac(&*store, node_ip) {
            Ok(Some(mac)) => (mac, false),
            Ok(None) => (random_vtep_mac(), true),
            Err(e) => {
                tracing::warn!("reading our previous VtepMAC: {e}; using a new one");
                (random_vtep_mac(), true)
            }
        }
    } else {
        (base.vtep_mac, base.vtep_mac_random)
    };
    // Taken before the lease, so a second weftd for this TUN in this namespace changes nothing.
    let (_, control_addr) = base.leased_names(backend, vni);
    // With --upgrade and a weftd running here: its offer, taken once our lease is known.
    let start = super::handover::bind_or_ask(&control_addr, base.upgrade)?;
    let attrs = match backend {
        Backend::Udp => LeaseAttrs::udp(public_ip, public_ip6),
        Backend::HostGw => LeaseAttrs::host_gw(public_ip, public_ip6),
        Backend::Vxlan => LeaseAttrs::vxlan(
            public_ip,
            public_ip6,
            vni,
            vtep_mac,
            config.ipv6.is_some() || public_ip6.is_some(),
        ),
    };
    let mut options = ManagerOptions::new(attrs);
    options.previous = read_previous(&lease.subnet_file);
    options.renew_margin = lease.renew_margin;
    if let Some(test_ttl) = lease.test_ttl {
        test_ttl.apply(&mut options);
        tracing::warn!(
            "{TEST_LEASE_TTL_VAR}: etcd lease TTL {:?}, renewed {:?} before expiry, a failed \
             renewal retried after {:?} (a setting for tests only: unset it in production)",
            test_ttl.ttl,
            test_ttl.renew_margin,
            test_ttl.renew_retry
        );
    }
    let mut manager = SubnetManager::new(Arc::clone(&store), config.clone(), options);
    let Some(own) = acquire(&mut manager, stop)? else {
        tracing::info!("stopped while acquiring a lease");
        return Ok(ExitCode::SUCCESS);
    };
    match public_ip6 {
        Some(v6) if public_ip.is_unspecified() => {
            tracing::info!(
                "lease {} for {v6} ({backend}, an IPv6-only underlay)",
                own.key
            );
        }
        Some(v6) => tracing::info!(
            "lease {} for {public_ip} and {v6} ({backend}, a dual-stack underlay: IPv6 pods \
             over IPv6)",
            own.key
        ),
        None => tracing::info!("lease {} for {public_ip} ({backend})", own.key),
    }

    let net = LeasedNetwork {
        backend,
        port: config.backend.port(),
        vni,
        network: config.ipv4.network.into(),
        network6: config.ipv6.as_ref().map(|p| p.network.into()),
        subnet: own.subnet().into(),
        subnet6: own.subnet6().map(Cidr::from),
        vtep_mac,
        vtep_mac_random,
        public_ip6: public_ip6.filter(|_| !public_ip.is_unspecified()),
    };
    let s = base
        .with_lease(&net)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("setting up for the leased network")?;
    let routes = Arc::new(Routes::from_pointee(RouteTable::empty()));
    // The rules, once installed (after the data path), for the route and iptables threads.
    let masq: Arc<Mutex<Option<MasqRules>>> = Arc::new(Mutex::new(None));

    // The lease threads first, so the route table holds the peers before any pump runs: a
    // weftd taking over from a running one must not answer the traffic it takes over with
    // "net unreachable" while its first peer list is on the way.
    // Their own stop, not start-up's: SIGTERM stops them once the signal loop below decides
    // (after STOPPING=1), and a handover stops them without any signal.
    let shutdown = Stop::new().context("creating the lease threads' stop eventfd")?;
    let (handle, events) = manager.spawn(own.clone(), shutdown.clone());
    health.set_manager(handle.stats_handle());
    let (first_routes_tx, first_routes) = std::sync::mpsc::sync_channel(1);
    let mut applier = Applier {
        routes: Arc::clone(&routes),
        local: local(&s),
        config: config.clone(),
        own: own.clone(),
        tun_name: s.tun_name.clone(),
        mtu: s.mtu,
        lease: lease.clone(),
        masq: Arc::clone(&masq),
        reported: Reported::default(),
        retired: Vec::new(),
        first_routes: Some(first_routes_tx),
        direct: DirectRoutes::default(),
    };
    let events_thread = std::thread::Builder::new()
        .name("weft-routes".to_owned())
        .spawn(move || {
            // Ends when the manager stops and drops its sender.
            for event in events {
                applier.handle(event);
            }
            // The kernel routes stay until the caller decides: removed on a stop, left to
            // the successor after a handover.
            (applier.own, applier.direct)
        })
        .context("starting the route thread")?;
    // Ready once the peers known at start are routed, so traffic sent right after READY=1
    // (or taken over from the previous weftd) finds its routes (the manager lists them first
    // thing after spawning).
    let wait_first_routes = || {
        if first_routes.recv_timeout(FIRST_ROUTES_WAIT).is_err() {
            tracing::warn!(
                "no peer list from the lease store within {FIRST_ROUTES_WAIT:?}: ready without \
                 peer routes; they follow when the store answers"
            );
        }
    };

    let upgraded = matches!(start, Start::Upgrade(_));
    let mut node = match start {
        Start::Fresh(control) if !backend.has_data_path() => {
            tracing::info!(
                "backend {backend}: no TUN and no pumps, kernel routes to the peers only"
            );
            Node::routes_only(&s, &routes, health, control)?
        }
        Start::Fresh(control) => Node::start(&s, &routes, health, control)?,
        Start::Upgrade(offered) => {
            wait_first_routes();
            super::take_over(&s, &control_addr, &routes, health, offered)?
        }
    };

    let env = subnet_env(&config, &own, s.mtu, lease.ip_masq);
    env.write(&lease.subnet_file)?;
    tracing::info!("subnet file {}", lease.subnet_file.display());
    let rules = iptables_rules(&config, &own, lease);
    if let Some(rules) = &rules {
        install_rules(rules)?;
    }
    let resync = rules.is_some();
    {
        let mut guard = match masq.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // A new lease met meanwhile installed its own rules already: keep those.
        if guard.is_none() {
            *guard = rules;
        }
    }
    if lease.blackhole_route {
        match blackhole(own.subnet(), true) {
            // The predecessor added it and left it for us.
            Err(e) if upgraded && e.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r.with_context(|| format!("adding the blackhole route {}", own.subnet()))?,
        }
        tracing::info!("blackhole route {}", own.subnet());
    }

    let resync_thread = if resync {
        let masq = Arc::clone(&masq);
        let every = lease.iptables_resync;
        let stop = shutdown.clone();
        Some(
            std::thread::Builder::new()
                .name("weft-iptables".to_owned())
                .spawn(move || {
                    // Each distinct failure is reported once, not every few seconds.
                    let mut last_error = String::new();
                    loop {
                        if stop.sleep(every) {
                            return;
                        }
                        let guard = match masq.lock() {
                            Ok(g) => g,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                        match guard.as_ref().map(MasqRules::ensure) {
                            Some(Err(e)) if e.to_string() != last_error => {
                                last_error = e.to_string();
                                tracing::error!("re-checking the iptables rules: {e}");
                            }
                            Some(Ok(_)) if !last_error.is_empty() => {
                                last_error.clear();
                                tracing::info!("iptables rules in place again");
                            }
                            _ => {}
                        }
                    }
                })
                .context("starting the iptables thread")?,
        )
    } else {
        None
    };

    let config_thread = {
        let store = Arc::clone(&store);
        let running = config.clone();
        let location = store.config_location();
        let stop = shutdown.clone();
        std::thread::Builder::new()
            .name("weft-config".to_owned())
            .spawn(move || watch_config(&*store, &running, &location, &stop))
            .context("starting the config thread")?
    };

    let tun_lost = Arc::new(AtomicBool::new(false));
    let links_thread = {
        let underlay = match crate::sys::ifaddrs::interface_with_address(base.public_ip) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("finding the interface of {}: {e}", base.public_ip);
                None
            }
        };
        let tun = backend.has_data_path().then(|| s.tun_name.clone());
        let stop = shutdown.clone();
        let lost = Arc::clone(&tun_lost);
        std::thread::Builder::new()
            .name("weft-links".to_owned())
            .spawn(move || watch_links(underlay.as_deref(), tun.as_deref(), &stop, &lost))
            .context("starting the link thread")?
    };

    if !upgraded {
        wait_first_routes();
    }
    health.set_ready();
    eprintln!("weftd: ready");
    notify_ready();
    let mut successor = None;
    for signal in signals {
        if signal == SIGHUP {
            tracing::info!("SIGHUP: nothing to reload in lease mode (the store is watched)");
            continue;
        }
        if signal == UPGRADE_SIGNAL {
            super::handover::spawn_successor();
            continue;
        }
        if signal == HANDOVER_SIGNAL {
            successor = super::serve_handovers(&mut node, &s);
            if successor.is_none() {
                continue;
            }
            break;
        }
        tracing::info!("signal {signal}: stopping (the lease stays in the store)");
        break;
    }
    if let Some(pid) = successor {
        // The successor renews the lease and owns the TUN, the subnet file, the rules and the
        // blackhole route now: stop our threads and leave all of it as it is.
        handle.stop();
        // (Its DirectRouting / host-gw kernel routes stay in place for the successor.)
        let _ = events_thread.join();
        if let Some(t) = resync_thread {
            let _ = t.join();
        }
        let _ = config_thread.join();
        let _ = links_thread.join();
        node.leave();
        tracing::info!("stopped: pid {pid} runs the data path and renews the lease");
        return Ok(ExitCode::SUCCESS);
    }
    notify_systemd("STOPPING=1");
    // A pump that failed raised the SIGTERM: say why when it is the TUN.
    if backend.has_data_path() {
        tun_gone(&s.tun_name, &tun_lost);
    }
    handle.stop();
    let (final_own, mut direct) = events_thread.join().ok().unzip();
    if let Some(direct) = &mut direct {
        direct.clear();
    }
    if let Some(t) = resync_thread {
        let _ = t.join();
    }
    let _ = config_thread.join();
    let _ = links_thread.join();
    let rules = match masq.lock() {
        Ok(mut g) => g.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    if let Some(rules) = rules {
        match rules.remove() {
            Ok(()) => tracing::info!("iptables rules removed"),
            Err(e) => tracing::error!("removing the iptables rules: {e}"),
        }
    }
    // The route thread held the current lease; it returned it when it stopped.
    if let (true, Some(own)) = (lease.blackhole_route, final_own) {
        if let Err(e) = blackhole(own.subnet(), false) {
            tracing::error!("removing the blackhole route: {e}");
        }
    }
    let failed = node.stop() || tun_lost.load(Ordering::Relaxed);
    tracing::info!("stopped");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Expiry, Lease, SubnetKey};

    fn config() -> NetworkConfig {
        NetworkConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}"#)
            .expect("config")
    }

    fn lease(key: &str) -> Lease {
        Lease {
            key: SubnetKey::parse(key).expect("key"),
            attrs: LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, 9), None),
            expiry: Expiry::Leased,
        }
    }

    /// This node for [`peer_entries`]: `backend`, 192.168.0.1, and `v6` beside it.
    fn local_with(backend: Backend, v6: Option<Ipv6Addr>) -> Local {
        Local {
            backend,
            port: backend.default_port(),
            vni: 1,
            vtep_mac: [0x0e, 0, 0, 0, 0, 1],
            public_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
            public_ip6: v6,
            subnets: vec![],
        }
    }

    fn own() -> OwnLease {
        OwnLease {
            key: SubnetKey::parse("10.244.5.0-24").expect("key"),
            attrs: LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, 1), None),
            expiry: Expiry::Leased,
        }
    }

    #[test]
    fn unroutable_leases() {
        let (c, o) = (config(), own());
        assert_eq!(unroutable(&lease("10.244.6.0-24"), &c, &o), None);
        let outside = unroutable(&lease("10.99.0.0-24"), &c, &o).expect("outside");
        assert!(
            outside.contains("outside the Network 10.244.0.0/16"),
            "{outside}"
        );
        let wider = unroutable(&lease("10.0.0.0-8"), &c, &o).expect("wider");
        assert!(wider.contains("outside"), "{wider}");
        let overlap = unroutable(&lease("10.244.5.128-25"), &c, &o).expect("overlap");
        assert!(
            overlap.contains("overlaps our subnet 10.244.5.0/24"),
            "{overlap}"
        );
        let covering = unroutable(&lease("10.244.4.0-23"), &c, &o).expect("covering");
        assert!(covering.contains("overlaps"), "{covering}");
    }

    /// Leases become routes in-process, and a lease the route table refuses is reported by
    /// its key (not by a position in the build).
    #[test]
    fn peer_sets_become_routes_and_refusals_name_the_lease() {
        let config =
            NetworkConfig::parse(r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#)
                .expect("config");
        let own_mac = [0x0e, 0, 0, 0, 0, 1];
        let own = OwnLease {
            key: SubnetKey::parse("10.244.5.0-24").expect("key"),
            attrs: LeaseAttrs::vxlan(Ipv4Addr::new(192, 168, 0, 1), None, 1, own_mac, false),
            expiry: Expiry::Leased,
        };
        let vxlan = |key: &str, last: u8, mac: [u8; 6]| Lease {
            key: SubnetKey::parse(key).expect("key"),
            attrs: LeaseAttrs::vxlan(Ipv4Addr::new(192, 168, 0, last), None, 1, mac, false),
            expiry: Expiry::Leased,
        };
        let good = vxlan("10.244.6.0-24", 6, [0x0e, 0, 0, 0, 0, 6]);
        // Another node claiming our VtepMAC: the table refuses it.
        let clash = vxlan("10.244.7.0-24", 7, own_mac);
        let set = PeerSet {
            peers: vec![good.clone(), clash.clone()],
            added: vec![good.key, clash.key],
            removed: vec![],
        };
        let local = Local {
            backend: Backend::Vxlan,
            port: 8472,
            vni: 1,
            vtep_mac: own_mac,
            public_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1)),
            public_ip6: None,
            subnets: vec![Cidr::new(IpAddr::V4(Ipv4Addr::new(10, 244, 5, 0)), 24).expect("own")],
        };
        let routes = Routes::from_pointee(RouteTable::empty());
        let (mut reported, mut retired) = (Reported::default(), Vec::new());
        apply_peers(
            &routes,
            &local,
            &set,
            &config,
            &own,
            &mut reported,
            &mut retired,
            &mut |ip| panic!("{ip} probed without DirectRouting"),
        );

        let table = routes.load_full();
        let subnets: Vec<String> = table
            .routes()
            .iter()
            .map(|r| r.subnet.to_string())
            .collect();
        assert_eq!(subnets, ["10.244.6.0/24"]);
        let seen: Vec<&(String, String)> = reported.seen.iter().collect();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, "10.244.7.0-24");
        assert!(seen[0].1.contains("our own VtepMAC"), "{seen:?}");
    }

    /// With DirectRouting, the IPv4 subnet of a peer on our segment is marked direct (its IPv6
    /// subnet and the other peers stay on the overlay); each peer is probed once.
    #[test]
    fn direct_routing_marks_peers_on_our_segment() {
        let config = NetworkConfig::parse(
            r#"{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/48",
                "Backend": {"Type": "udp", "DirectRouting": true}}"#,
        )
        .expect("config");
        let peer = |key: &str, last: u8| Lease {
            key: SubnetKey::parse(key).expect("key"),
            attrs: LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, last), None),
            expiry: Expiry::Leased,
        };
        let near = peer("10.244.6.0-24&fd00:10:244:6::-64", 6);
        let far = peer("10.244.8.0-24", 8);
        let set = PeerSet {
            peers: vec![near, far],
            added: vec![],
            removed: vec![],
        };
        let mut probed = Vec::new();
        let entries = peer_entries(
            &set,
            &local_with(Backend::Udp, None),
            &config,
            &own(),
            &mut Reported::default(),
            &mut HashSet::new(),
            &mut |ip| {
                probed.push(ip);
                ip == IpAddr::V4(Ipv4Addr::new(192, 168, 0, 6))
            },
        );
        let marked: Vec<(String, bool)> = entries
            .iter()
            .map(|e| (e.subnet.to_string(), e.direct))
            .collect();
        assert_eq!(
            marked,
            [
                ("10.244.6.0/24".to_owned(), true),
                ("fd00:10:244:6::/64".to_owned(), false),
                ("10.244.8.0/24".to_owned(), false),
            ]
        );
        assert_eq!(probed.len(), 2, "{probed:?}");
    }

    /// A dual-stack lease's IPv4 subnet goes to its PublicIP and its IPv6 subnet to its
    /// PublicIPv6 with `BackendV6Data`'s VtepMAC, when we have an IPv6 underlay too; without
    /// one, both go over IPv4. An IPv6-only lease (PublicIP 0.0.0.0) is reached over IPv6 for
    /// both, or reported by the table when we have no IPv6 underlay. DirectRouting marks an
    /// IPv6 subnet direct via an on-link PublicIPv6.
    #[test]
    fn subnets_go_to_the_underlay_address_of_their_family() {
        let config = NetworkConfig::parse(
            r#"{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:10:244::/48",
                "Backend": {"Type": "vxlan", "DirectRouting": true}}"#,
        )
        .expect("config");
        let (mac4, mac6) = ([0x0e, 0, 0, 0, 0, 6], [0x0e, 0, 0, 0, 6, 6]);
        let mut dual = LeaseAttrs::vxlan(
            Ipv4Addr::new(192, 168, 0, 6),
            Some("fd99::6".parse().expect("v6")),
            1,
            mac4,
            true,
        );
        dual.backend_v6_data = Some(crate::lease::BackendData::Vxlan(crate::lease::VxlanData {
            vni: Some(1),
            vtep_mac: mac6,
        }));
        let only6 = LeaseAttrs::vxlan(
            Ipv4Addr::UNSPECIFIED,
            Some("fd99::7".parse().expect("v6")),
            1,
            [0x0e, 0, 0, 0, 7, 7],
            true,
        );
        let set = PeerSet {
            peers: vec![
                Lease {
                    key: SubnetKey::parse("10.244.6.0-24&fd00:10:244:6::-64").expect("key"),
                    attrs: dual,
                    expiry: Expiry::Leased,
                },
                Lease {
                    key: SubnetKey::parse("10.244.7.0-24&fd00:10:244:7::-64").expect("key"),
                    attrs: only6,
                    expiry: Expiry::Leased,
                },
            ],
            added: vec![],
            removed: vec![],
        };
        let entries = |v6: Option<Ipv6Addr>| {
            peer_entries(
                &set,
                &local_with(Backend::Vxlan, v6),
                &config,
                &own(),
                &mut Reported::default(),
                &mut HashSet::new(),
                &mut |ip| ip.to_string() == "fd99::6",
            )
            .into_iter()
            .map(|e| {
                (
                    e.subnet.to_string(),
                    e.public_ip.to_string(),
                    e.vtep_mac.map(|m| m[4]),
                    e.direct,
                )
            })
            .collect::<Vec<_>>()
        };
        let row = |s: &str, ip: &str, mac: u8, direct: bool| {
            (s.to_owned(), ip.to_owned(), Some(mac), direct)
        };
        assert_eq!(
            entries(Some("fd99::1".parse().expect("v6"))),
            [
                row("10.244.6.0/24", "192.168.0.6", 0, false),
                row("fd00:10:244:6::/64", "fd99::6", 6, true),
                row("10.244.7.0/24", "fd99::7", 7, false),
                row("fd00:10:244:7::/64", "fd99::7", 7, false),
            ]
        );
        // No IPv6 underlay here: IPv6 pods over IPv4; the IPv6-only peer's entries stay (the
        // route table reports their family).
        assert_eq!(
            entries(None),
            [
                row("10.244.6.0/24", "192.168.0.6", 0, false),
                row("fd00:10:244:6::/64", "192.168.0.6", 0, false),
                row("10.244.7.0/24", "fd99::7", 7, false),
                row("fd00:10:244:7::/64", "fd99::7", 7, false),
            ]
        );
        // The table the entries make for this node with (or without) an IPv6 underlay.
        let table = |v6: Option<Ipv6Addr>| {
            let local = local_with(Backend::Vxlan, v6);
            let entries = peer_entries(
                &set,
                &local,
                &config,
                &own(),
                &mut Reported::default(),
                &mut HashSet::new(),
                &mut |_| false,
            );
            RouteTable::build(&local, &entries, None, "leases")
        };
        let (table_v4, errors) = table(None);
        assert_eq!((table_v4.len(), errors.len()), (2, 2), "{errors:?}");
        assert!(
            errors[0].message.contains("not of the family"),
            "{errors:?}"
        );
        // With both families, one table holds both peers' four routes.
        let (table, errors) = table(Some("fd99::1".parse().expect("v6")));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((table.len(), table.peers().len()), (4, 3));
    }

    /// DirectRoutes puts exactly the wanted `subnet via PublicIP` routes into the kernel, follows
    /// changes and removes them all on clear.
    #[test]
    fn direct_routes_follow_the_table() {
        require_root!();
        crate::test_support::in_netns(|| {
            netif::set_up("lo").expect("lo up");
            let lo = netif::index("lo").expect("lo");
            rtnetlink::add_device_route(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 0)), 24, lo)
                .expect("segment");
            let local = Local {
                backend: Backend::Udp,
                port: 8285,
                vni: 1,
                vtep_mac: [0x0e, 0, 0, 0, 0, 1],
                public_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1)),
                public_ip6: None,
                subnets: vec![],
            };
            let table = |peers: &[(&str, u8, bool)]| {
                let entries: Vec<PeerEntry> = peers
                    .iter()
                    .map(|&(subnet, last, direct)| PeerEntry {
                        origin: Origin::Lease(subnet.to_owned()),
                        subnet: subnet.parse().expect("subnet"),
                        public_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 77, last)),
                        backend: Backend::Udp,
                        vtep_mac: None,
                        port: None,
                        direct,
                    })
                    .collect();
                let (t, errors) = RouteTable::build(&local, &entries, None, "test");
                assert!(errors.is_empty(), "{errors:?}");
                t
            };
            let via = |subnet: &str| {
                let dst: IpAddr = subnet.parse().expect("addr");
                rtnetlink::route_get(dst).ok().and_then(|r| r.gateway)
            };
            let gw = |last: u8| Some(IpAddr::V4(Ipv4Addr::new(192, 168, 77, last)));
            let mut direct = DirectRoutes::default();
            let t = table(&[("10.244.6.0/24", 6, true), ("10.244.8.0/24", 8, false)]);
            assert_eq!(direct.sync(DirectRoutes::wanted(&t)), 1);
            assert_eq!(via("10.244.6.9"), gw(6));
            assert_eq!(via("10.244.8.9"), None, "not direct: no kernel route");
            // Unchanged: nothing to do.
            assert_eq!(direct.sync(DirectRoutes::wanted(&t)), 0);
            // The peer moved to another address, a second one became direct.
            let t = table(&[("10.244.6.0/24", 16, true), ("10.244.8.0/24", 8, true)]);
            assert_eq!(direct.sync(DirectRoutes::wanted(&t)), 2);
            assert_eq!(via("10.244.6.9"), gw(16));
            assert_eq!(via("10.244.8.9"), gw(8));
            // A lease gone: its route goes.
            let t = table(&[("10.244.8.0/24", 8, true)]);
            assert_eq!(direct.sync(DirectRoutes::wanted(&t)), 1);
            assert_eq!(via("10.244.6.9"), None);
            direct.clear();
            assert_eq!(via("10.244.8.9"), None);
            assert!(direct.installed().is_empty());
            // on_link: an address of the segment is, one behind a gateway is not.
            assert!(direct::on_link(
                IpAddr::V4(Ipv4Addr::new(192, 168, 77, 6)),
                None
            ));
            assert!(!direct::on_link(
                IpAddr::V4(Ipv4Addr::new(192, 168, 77, 6)),
                Some(lo)
            ));
            rtnetlink::add_route(
                IpAddr::V4(Ipv4Addr::new(172, 16, 0, 0)),
                16,
                RouteKind::Via(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 254))),
            )
            .expect("route via a gateway");
            assert!(!direct::on_link(
                IpAddr::V4(Ipv4Addr::new(172, 16, 0, 5)),
                None
            ));
        });
    }

    #[test]
    fn reported_once_while_it_lasts() {
        let mut r = Reported::default();
        for _ in 0..3 {
            let mut now = HashSet::new();
            r.warn("k", "why", &mut now);
            r.settle(now);
            assert_eq!(r.seen.len(), 1);
        }
        // Gone, then back: reported again (seen is cleared in between).
        r.settle(HashSet::new());
        assert!(r.seen.is_empty());
    }
}
