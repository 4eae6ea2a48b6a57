//! Resolution: [`Cli::resolve`] turns the flags into [`Settings`], filling the defaults that
//! depend on other flags; [`Settings::with_lease`] completes them with what the network
//! config and our lease decide.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::CommandFactory;
use encap::backend::Mac;
use regex::Regex;

use super::flags::{Cli, DriverArg, MAX_PUMP_THREADS};
use super::host::{
    default_mtu, ipv6_beside, is_global_ipv6, public_ip_beside, random_mac, resolve_public_ip,
};
use crate::control::ControlAddr;
use crate::lease::manager::{renew_margin_from_minutes, TestLeaseTtl, TEST_LEASE_TTL_VAR};
use crate::lease::EtcdOptions;
use crate::model::{Backend, Cidr};

/// Where the leases are kept (lease mode).
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// etcd v3 (`--etcd-*`).
    Etcd(EtcdOptions),
    /// The local directory store (`--lease-dir`).
    Dir(PathBuf),
}

/// The lease-mode settings: neither `--subnet` nor `--peers` given, so weftd runs the flannel
/// way (network config and lease from the store).
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    /// The store.
    pub store: StoreSettings,
    /// `--subnet-file`.
    pub subnet_file: PathBuf,
    /// `--subnet-lease-renew-margin`.
    pub renew_margin: Duration,
    /// `WEFT_TEST_LEASE_TTL_SECS` (tests only): a short lease TTL with its renewal timing.
    pub test_ttl: Option<TestLeaseTtl>,
    /// `--ip-masq`.
    pub ip_masq: bool,
    /// Masquerade with `--random-fully` (not `--ip-masq-fully-random-disable`).
    pub masq_random_fully: bool,
    /// `--iptables-forward-rules`.
    pub forward_rules: bool,
    /// `--ip-blackhole-route`.
    pub blackhole_route: bool,
    /// `--iptables-resync`.
    pub iptables_resync: Duration,
    /// Static-mode flags given that the network config overrides (logged at start-up).
    pub ignored_flags: Vec<&'static str>,
}

/// Everything weftd runs with, defaults filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The backend.
    pub backend: Backend,
    /// Underlay address (in lease mode an IPv6 one makes an IPv6-only node).
    pub public_ip: IpAddr,
    /// Lease mode, an IPv4 `public_ip`: the IPv6 underlay address for a dual-stack underlay
    /// (`--public-ipv6`, else the global IPv6 address of the public IP's interface). Used
    /// (published as PublicIPv6) only when the network config has EnableIPv6; after
    /// [`Settings::with_lease`], `Some` only when it is used.
    pub public_ip6: Option<Ipv6Addr>,
    /// Whether `public_ip6` came from `--public-ipv6` (not found on the interface).
    pub public_ip6_given: bool,
    /// UDP port.
    pub port: u16,
    /// Our IPv4 subnet.
    pub subnet: Option<Cidr>,
    /// Our IPv6 subnet.
    pub subnet6: Option<Cidr>,
    /// The overlay IPv4 network to route through the TUN.
    pub network: Option<Cidr>,
    /// The overlay IPv6 network to route through the TUN.
    pub network6: Option<Cidr>,
    /// The peers file.
    pub peers: Option<PathBuf>,
    /// TUN name.
    pub tun_name: String,
    /// VNI.
    pub vni: u32,
    /// Our VtepMAC (random when not given).
    pub vtep_mac: Mac,
    /// Whether the VtepMAC was generated.
    pub vtep_mac_random: bool,
    /// The TUN MTU.
    pub mtu: u32,
    /// Where the MTU came from, for the log.
    pub mtu_source: String,
    /// The driver asked for.
    pub io_driver: DriverArg,
    /// Pump threads.
    pub pump_threads: usize,
    /// `--busy-poll-us`: how long a pump thread polls after its last packet.
    pub busy_poll: Duration,
    /// `--tun-txqueuelen`: each TUN queue's packet ring.
    pub tun_txqueuelen: u32,
    /// The control socket.
    pub control: ControlAddr,
    /// `--healthz-ip` / `--healthz-port` (`None`: port 0, off).
    pub healthz: Option<std::net::SocketAddr>,
    /// `--allow-foreign-inner-source`: skip the inner source check.
    pub allow_foreign_inner_source: bool,
    /// `--metrics-per-peer`.
    pub metrics_per_peer: bool,
    /// `--upgrade`: take over from a running weftd for the same TUN.
    pub upgrade: bool,
    /// The default log filter (`-v` / `-vv` / `--v=N`; `RUST_LOG` overrides).
    pub log_level: &'static str,
    /// Lease mode (`None`: static mode, `--peers`).
    pub lease: Option<LeaseSettings>,
    /// The flags whose defaults depend on the backend, as given (lease mode recomputes).
    tun_name_flag: Option<String>,
    mtu_flag: Option<u32>,
    control_flag: Option<ControlAddr>,
}

impl Cli {
    /// Checks the flags together and fills the defaults; errors exit with code 2.
    ///
    /// Without `--subnet`, `--subnet6` and `--peers` the settings are for lease mode: the
    /// backend, port, VNI, networks and subnets are placeholders until
    /// [`Settings::with_lease`] fills them from the network config and our lease.
    pub fn resolve(self) -> Result<Settings, clap::Error> {
        let invalid = |msg: String| Cli::command().error(ErrorKind::ValueValidation, msg);
        self.flanneld_only.check().map_err(invalid)?;
        let lease_mode = self.subnet.is_none() && self.subnet6.is_none() && self.peers.is_none();
        self.check_values(lease_mode).map_err(invalid)?;
        if !lease_mode && self.subnet.is_none() && self.subnet6.is_none() {
            return Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "--peers needs one of --subnet or --subnet6 (our own lease); without all three \
                 weftd leases a subnet from the store",
            ));
        }
        if !lease_mode && self.ip_masq {
            return Err(invalid(
                "--ip-masq works in lease mode only (without --subnet and --peers)".to_owned(),
            ));
        }
        let backend = match (self.backend, lease_mode) {
            (Some(Backend::HostGw), false) => {
                return Err(invalid(
                    "--backend host-gw: host-gw runs in lease mode only (the network config's \
                     Backend.Type; without --subnet and --peers)"
                        .to_owned(),
                ))
            }
            (Some(b), _) => b,
            // A placeholder: the network config decides.
            (None, true) => Backend::Udp,
            (None, false) => {
                return Err(Cli::command().error(
                    ErrorKind::MissingRequiredArgument,
                    "--backend is required with --subnet / --peers (static mode)",
                ))
            }
        };
        for (flag, subnet, nflag, network) in [
            ("--subnet", self.subnet, "--network", self.network),
            ("--subnet6", self.subnet6, "--network6", self.network6),
        ] {
            if let (Some(s), Some(n)) = (subnet, network) {
                if s.prefix_len() < n.prefix_len() || !n.contains(s.addr()) {
                    return Err(invalid(format!(
                        "{flag} {s} does not lie inside {nflag} {n}"
                    )));
                }
            }
        }
        let mut regexes = Vec::with_capacity(self.iface_regex.len());
        for r in &self.iface_regex {
            regexes.push(Regex::new(r).map_err(|e| {
                invalid(format!(
                    "invalid value '{r}' for '--iface-regex': not a regular expression: {e}"
                ))
            })?);
        }
        let can_reach = match self.iface_can_reach.as_deref() {
            None | Some("") => None,
            Some(s) => Some(s.parse::<IpAddr>().map_err(|_| {
                invalid(format!(
                    "invalid value '{s}' for '--iface-can-reach': not an IP address"
                ))
            })?),
        };
        let public_ipv6 = match self.public_ipv6.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => match s.parse::<Ipv6Addr>() {
                Ok(a) if is_global_ipv6(a) => Some(a),
                _ => {
                    return Err(invalid(format!(
                        "invalid value '{s}' for '--public-ipv6': not a global IPv6 unicast \
                         address"
                    )))
                }
            },
        };
        if public_ipv6.is_some() && !lease_mode {
            return Err(invalid(
                "--public-ipv6 works in lease mode only; in static mode an IPv6 --public-ip makes \
                 an IPv6 underlay"
                    .to_owned(),
            ));
        }
        let only_ipv6_given = self.public_ip.is_none()
            && self.iface.is_empty()
            && regexes.is_empty()
            && can_reach.is_none();
        let public_ip = match public_ipv6 {
            Some(v6) if only_ipv6_given => public_ip_beside(v6).map_err(invalid)?,
            _ => resolve_public_ip(self.public_ip, &self.iface, &regexes, can_reach)
                .map_err(invalid)?,
        };
        if public_ip.is_unspecified() || public_ip.is_multicast() {
            return Err(invalid(format!(
                "invalid value '{public_ip}' for '--public-ip': not a unicast host address"
            )));
        }
        let (public_ip6, public_ip6_given) = match (public_ip, public_ipv6) {
            (IpAddr::V6(a), Some(b)) if a != b => {
                return Err(invalid(format!(
                    "--public-ip {a} and --public-ipv6 {b}: one node has one IPv6 underlay \
                     address (an IPv6-only node gives it once)"
                )))
            }
            (IpAddr::V6(_), _) => (None, false),
            (IpAddr::V4(_), Some(b)) => (Some(b), true),
            (IpAddr::V4(_), None) if lease_mode => (ipv6_beside(public_ip), false),
            (IpAddr::V4(_), None) => (None, false),
        };
        let port = self.port.unwrap_or_else(|| backend.default_port());
        let tun_name = default_tun_name(self.tun_name.as_deref(), backend, self.vni);
        let (vtep_mac, vtep_mac_random) = match self.vtep_mac {
            Some(mac) => (mac, false),
            None => (
                random_mac().map_err(|e| {
                    invalid(format!(
                        "no --vtep-mac given and /dev/urandom unreadable: {e}"
                    ))
                })?,
                true,
            ),
        };
        let (mtu, mtu_source) = match self.mtu {
            Some(mtu) => (mtu, "--mtu".to_owned()),
            None => default_mtu(public_ip, false, backend).map_err(invalid)?,
        };
        let pump_threads = match self.pump_threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(usize::from(MAX_PUMP_THREADS)),
        };
        let control = default_control(self.control.as_ref(), &tun_name);
        let log_level = self.log_level();
        let lease = if lease_mode {
            let store = match &self.lease_dir {
                Some(dir) => StoreSettings::Dir(dir.clone()),
                None => {
                    let endpoints: Vec<String> = self
                        .etcd_endpoints
                        .split(',')
                        .map(str::trim)
                        .filter(|e| !e.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if endpoints.is_empty() {
                        return Err(invalid(format!(
                            "invalid value '{}' for '--etcd-endpoints': no endpoint; expected \
                             http(s)://HOST:PORT, comma separated",
                            self.etcd_endpoints
                        )));
                    }
                    StoreSettings::Etcd(EtcdOptions {
                        endpoints,
                        prefix: self.etcd_prefix.trim_end_matches('/').to_owned(),
                        ca_file: self.etcd_cafile.clone(),
                        cert_file: self.etcd_certfile.clone(),
                        key_file: self.etcd_keyfile.clone(),
                        username: self.etcd_username.clone(),
                        password: self.etcd_password.clone(),
                        ..EtcdOptions::default()
                    })
                }
            };
            Some(LeaseSettings {
                store,
                subnet_file: self.subnet_file.clone(),
                renew_margin: renew_margin_from_minutes(self.subnet_lease_renew_margin)
                    .map_err(invalid)?,
                test_ttl: test_lease_ttl_from_env().map_err(invalid)?,
                ip_masq: self.ip_masq,
                masq_random_fully: !self.ip_masq_fully_random_disable,
                forward_rules: self.iptables_forward_rules,
                blackhole_route: self.ip_blackhole_route,
                iptables_resync: Duration::from_secs(self.iptables_resync),
                ignored_flags: [
                    ("--backend", self.backend.is_some()),
                    ("--port", self.port.is_some()),
                    ("--network", self.network.is_some()),
                    ("--network6", self.network6.is_some()),
                ]
                .into_iter()
                .filter_map(|(flag, given)| given.then_some(flag))
                .collect(),
            })
        } else {
            None
        };
        Ok(Settings {
            backend,
            public_ip,
            public_ip6,
            public_ip6_given,
            port,
            subnet: self.subnet,
            subnet6: self.subnet6,
            network: self.network,
            network6: self.network6,
            peers: self.peers,
            tun_name,
            vni: self.vni,
            vtep_mac,
            vtep_mac_random,
            mtu,
            mtu_source,
            io_driver: self.io_driver,
            pump_threads,
            busy_poll: Duration::from_micros(u64::from(self.busy_poll_us)),
            tun_txqueuelen: self.tun_txqueuelen,
            control,
            healthz: (self.healthz_port != 0)
                .then(|| std::net::SocketAddr::new(self.healthz_ip, self.healthz_port)),
            allow_foreign_inner_source: self.allow_foreign_inner_source,
            metrics_per_peer: self.metrics_per_peer,
            upgrade: self.upgrade,
            log_level,
            lease,
            tun_name_flag: self.tun_name,
            mtu_flag: self.mtu,
            control_flag: self.control,
        })
    }
}

/// What the network config and our lease decide in lease mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeasedNetwork {
    /// `Backend.Type`.
    pub backend: Backend,
    /// `Backend.Port` (or the backend's default).
    pub port: u16,
    /// `Backend.VNI`.
    pub vni: u32,
    /// `Network`.
    pub network: Cidr,
    /// `IPv6Network`.
    pub network6: Option<Cidr>,
    /// Our leased subnet.
    pub subnet: Cidr,
    /// Our leased IPv6 subnet.
    pub subnet6: Option<Cidr>,
    /// The VtepMAC we publish (vxlan).
    pub vtep_mac: Mac,
    /// Whether that MAC was generated now (not given, not found in a lease of ours).
    pub vtep_mac_random: bool,
    /// The IPv6 underlay address of a dual-stack underlay, when in use (published).
    pub public_ip6: Option<Ipv6Addr>,
}

impl Settings {
    /// The settings for lease mode once the network config is read and our lease held: the
    /// config's backend, port, VNI and networks (as flanneld, no flag overrides them), our
    /// subnets, and the defaults that depend on them (TUN name, MTU, control socket) unless
    /// their flags were given.
    pub fn with_lease(&self, net: &LeasedNetwork) -> Result<Settings, String> {
        let mut s = self.clone();
        s.backend = net.backend;
        s.port = net.port;
        s.vni = net.vni;
        s.network = Some(net.network);
        s.network6 = net.network6;
        s.subnet = Some(net.subnet);
        s.subnet6 = net.subnet6;
        s.vtep_mac = net.vtep_mac;
        s.vtep_mac_random = net.vtep_mac_random;
        s.public_ip6 = net.public_ip6;
        (s.tun_name, s.control) = self.leased_names(net.backend, net.vni);
        (s.mtu, s.mtu_source) = match self.mtu_flag {
            Some(mtu) => (mtu, "--mtu".to_owned()),
            None => default_mtu(self.public_ip, net.public_ip6.is_some(), net.backend)?,
        };
        Ok(s)
    }

    /// The TUN name and the control socket of lease mode for the network config's backend
    /// and VNI (known before the lease is taken, so the control socket can be bound first).
    pub fn leased_names(&self, backend: Backend, vni: u32) -> (String, ControlAddr) {
        let tun = default_tun_name(self.tun_name_flag.as_deref(), backend, vni);
        let control = default_control(self.control_flag.as_ref(), &tun);
        (tun, control)
    }

    /// Where the pumps' UDP sockets bind: the public IP and port, or `[::]` and the port for
    /// a dual-stack underlay (one IPv6 socket carrying both families, [`Settings::dual_stack`]).
    pub fn underlay_bind(&self) -> std::net::SocketAddr {
        let ip = if self.dual_stack() {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        } else {
            self.public_ip
        };
        std::net::SocketAddr::new(ip, self.port)
    }

    /// Whether the underlay has both families (an IPv4 public IP and an IPv6 one in use).
    pub fn dual_stack(&self) -> bool {
        self.public_ip.is_ipv4() && self.public_ip6.is_some()
    }

    /// Our own subnets.
    pub fn subnets(&self) -> Vec<Cidr> {
        self.subnet
            .iter()
            .chain(self.subnet6.iter())
            .copied()
            .collect()
    }

    /// The source of ICMPv4 errors written into the TUN: the base address of `--network`
    /// (flannel never leases the first subnet, so no host owns it), else the TUN's own address
    /// (flannel's choice, which the kernel drops as a martian).
    pub fn icmp_source_v4(&self) -> Option<Ipv4Addr> {
        match (self.network, self.subnet) {
            (Some(n), _) | (None, Some(n)) => match n.addr() {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            },
            (None, None) => None,
        }
    }

    /// The same for IPv6, from `--network6` / `--subnet6`.
    pub fn icmp_source_v6(&self) -> Option<Ipv6Addr> {
        match (self.network6, self.subnet6) {
            (Some(n), _) | (None, Some(n)) => match n.addr() {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            },
            (None, None) => None,
        }
    }
}

/// `--tun-name`, else flannel's name: `flannel0` (udp) or `flannel.<VNI>` (vxlan). host-gw
/// has no TUN: the name only names the control socket (`@weft/host-gw`).
pub(super) fn default_tun_name(flag: Option<&str>, backend: Backend, vni: u32) -> String {
    match (flag, backend) {
        (Some(name), _) => name.to_owned(),
        (None, Backend::Udp) => "flannel0".to_owned(),
        (None, Backend::Vxlan) => format!("flannel.{vni}"),
        (None, Backend::HostGw) => "host-gw".to_owned(),
    }
}

/// `--control`, else the abstract socket `@weft/<tun-name>`: one per network namespace, so
/// weftd nodes in separate namespaces of one host never collide.
pub(super) fn default_control(flag: Option<&ControlAddr>, tun_name: &str) -> ControlAddr {
    flag.cloned()
        .unwrap_or_else(|| ControlAddr::default_for(tun_name))
}

pub(super) fn parse_control(s: &str) -> Result<ControlAddr, String> {
    ControlAddr::parse(s)
}

/// [`TEST_LEASE_TTL_VAR`] from the environment: unset is flannel's timing, a bad value an
/// error naming the variable.
fn test_lease_ttl_from_env() -> Result<Option<TestLeaseTtl>, String> {
    match std::env::var(TEST_LEASE_TTL_VAR) {
        Ok(value) => TestLeaseTtl::parse(&value).map(Some),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!(
            "{TEST_LEASE_TTL_VAR}={v:?}: not a whole number of seconds"
        )),
    }
}
