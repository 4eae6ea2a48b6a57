//! weftd's command line: flags, their `FLANNELD_*` variables, and the checks that need more
//! than one flag.
//!
//! Contract: [`Cli::parse_flanneld`] takes flanneld's syntax ([`goflags`]: `-flag=value`,
//! `-flag value`, Go booleans, klog's `-v=N`) and parses it with clap; a flag value that does not parse or is out of range is
//! a clap error naming the flag (exit code 2). [`Cli::resolve`] turns the flags into
//! [`Settings`], filling the defaults that depend on other flags (port, TUN name, VtepMAC,
//! MTU, threads, control path); a combination that cannot work is again a clap error naming the
//! flags (exit code 2). Before anything is set up, `resolve` also checks the values that need
//! the system: paths (`--peers`, `--etcd-*file` readable; `--control`, `--subnet-file`,
//! `--lease-dir` creatable), etcd endpoints (`http(s)://HOST:PORT`), flags that go in pairs
//! (cert + key, user + password), `--tun-name` (free or a TUN), `--healthz-ip` (an address of
//! this host), so that a bad value never fails late with a half-configured node. Flags shared
//! with flanneld keep flanneld's names and defaults (`--public-ip`, `--iptables-forward-rules`
//! on, `-v`); every flag but `-v` can also come from `FLANNELD_<FLAG_IN_UPPER_SNAKE_CASE>`.
//! flanneld's flags that weftd does not implement yet ([`FlanneldOnly`]) are parsed so that
//! giving one exits 2 naming it, not with a generic usage error.

pub mod goflags;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{ArgAction, Args, CommandFactory, Parser, ValueEnum};
use encap::backend::Mac;
use regex::Regex;

use crate::control::ControlAddr;
use crate::lease::manager::renew_margin_from_minutes;
use crate::lease::EtcdOptions;
use crate::route::{parse_mac, Backend, Cidr};
use crate::sys::{ifaddrs, netif};
use goflags::parse_go_bool;

/// The most pump threads (one TUN queue each; the TUN driver allows 256 queues).
pub const MAX_PUMP_THREADS: u16 = 256;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The smallest TUN MTU the kernel takes (IPv4's 68).
pub const MIN_MTU: u32 = 68;

/// The IPv6 header minus the IPv4 header: the extra overhead of an IPv6 underlay.
pub const IPV6_UNDERLAY_EXTRA: usize = 40 - 20;

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// flannel's udp backend: the UDP payload is the inner IP packet.
    Udp,
    /// flannel's vxlan backend, byte-compatible with the kernel's flannel.1.
    Vxlan,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Udp => Backend::Udp,
            BackendArg::Vxlan => Backend::Vxlan,
        }
    }
}

/// `--io-driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverArg {
    /// io_uring if usable, else poll.
    Auto,
    /// io_uring, or fail.
    Uring,
    /// poll + recvmmsg / sendmsg (GSO): the default, the faster here (BENCHMARKS.md).
    Poll,
}

/// weftd: the weft dataplane daemon (flannel's udp and vxlan backends in userspace).
#[derive(Debug, Clone, Parser)]
#[command(name = "weftd", version, about, long_about = None)]
pub struct Cli {
    /// Backend: udp (flannel's udp) or vxlan (kernel flannel.1 compatible). Static mode only:
    /// with a lease store the network config's Backend.Type decides.
    #[arg(long, env = "FLANNELD_BACKEND", value_enum)]
    pub backend: Option<BackendArg>,

    /// Underlay address to bind and to announce (IPv4 or IPv6) [default: the address of
    /// --iface / --iface-regex, else of the interface of the default route].
    #[arg(long, env = "FLANNELD_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,

    /// Interface (name or address) whose address is the --public-ip when that is not given.
    /// Repeat it (or comma-separate) to try each in order: the first that exists wins.
    #[arg(long, env = "FLANNELD_IFACE", value_delimiter = ',')]
    pub iface: Vec<String>,

    /// Regular expression matched against every address, then every interface name; the first
    /// match gives the --public-ip. Repeatable, tried in order, after every --iface.
    #[arg(long, env = "FLANNELD_IFACE_REGEX")]
    pub iface_regex: Vec<String>,

    /// etcd endpoints, comma separated.
    #[arg(
        long,
        env = "FLANNELD_ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:4001,http://127.0.0.1:2379"
    )]
    pub etcd_endpoints: String,

    /// etcd prefix of the network config and the leases.
    #[arg(long, env = "FLANNELD_ETCD_PREFIX", default_value = crate::lease::DEFAULT_PREFIX)]
    pub etcd_prefix: String,

    /// etcd: CA certificate file (TLS).
    #[arg(long, env = "FLANNELD_ETCD_CAFILE")]
    pub etcd_cafile: Option<PathBuf>,

    /// etcd: client certificate file (TLS).
    #[arg(long, env = "FLANNELD_ETCD_CERTFILE")]
    pub etcd_certfile: Option<PathBuf>,

    /// etcd: client key file (TLS).
    #[arg(long, env = "FLANNELD_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<PathBuf>,

    /// etcd user name.
    #[arg(long, env = "FLANNELD_ETCD_USERNAME")]
    pub etcd_username: Option<String>,

    /// etcd password.
    #[arg(long, env = "FLANNELD_ETCD_PASSWORD")]
    pub etcd_password: Option<String>,

    /// Keep the leases in this local directory instead of etcd (one machine: tests, the demo).
    #[arg(long, env = "FLANNELD_LEASE_DIR")]
    pub lease_dir: Option<PathBuf>,

    /// flannel's subnet file, written once the lease is held.
    #[arg(long, env = "FLANNELD_SUBNET_FILE", default_value = crate::netconf::subnet_env::DEFAULT_SUBNET_FILE)]
    pub subnet_file: PathBuf,

    /// Renew the lease this many minutes before it expires.
    #[arg(long, env = "FLANNELD_SUBNET_LEASE_RENEW_MARGIN", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=1439))]
    pub subnet_lease_renew_margin: u64,

    /// Install flannel's masquerade rules for traffic leaving the overlay network.
    #[arg(long, env = "FLANNELD_IP_MASQ", value_parser = parse_go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          default_value = "false")]
    pub ip_masq: bool,

    /// Masquerade without --random-fully.
    #[arg(long, env = "FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE", value_parser = parse_go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub ip_masq_fully_random_disable: bool,

    /// Accept the overlay network's traffic in the FORWARD chain (flannel's FLANNEL-FWD), so
    /// pods work on hosts whose FORWARD policy is DROP (Docker sets that). Lease mode.
    #[arg(long, env = "FLANNELD_IPTABLES_FORWARD_RULES", value_parser = parse_go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "true")]
    pub iptables_forward_rules: bool,

    /// Add a blackhole route for our own subnet, so traffic to its unused addresses is dropped
    /// here instead of leaving by the default route. Lease mode; removed on exit.
    #[arg(long, env = "FLANNELD_IP_BLACKHOLE_ROUTE", value_parser = parse_go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub ip_blackhole_route: bool,

    /// Re-check the masquerade rules every this many seconds.
    #[arg(long, env = "FLANNELD_IPTABLES_RESYNC", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub iptables_resync: u64,

    /// UDP port [default: 8285 (udp) / 8472 (vxlan)].
    #[arg(long, env = "FLANNELD_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Our own IPv4 subnet, e.g. 10.244.1.0/24 (static mode; without --subnet and --peers
    /// weftd leases one from the store).
    #[arg(long, env = "FLANNELD_SUBNET", value_parser = parse_v4_cidr)]
    pub subnet: Option<Cidr>,

    /// Our own IPv6 subnet, e.g. fd00:10:244:1::/64.
    #[arg(long, env = "FLANNELD_SUBNET6", value_parser = parse_v6_cidr)]
    pub subnet6: Option<Cidr>,

    /// The whole overlay IPv4 network, routed through the TUN (e.g. 10.244.0.0/16).
    #[arg(long, env = "FLANNELD_NETWORK", value_parser = parse_v4_cidr)]
    pub network: Option<Cidr>,

    /// The whole overlay IPv6 network, routed through the TUN.
    #[arg(long, env = "FLANNELD_NETWORK6", value_parser = parse_v6_cidr)]
    pub network6: Option<Cidr>,

    /// Peers file: JSON lines {"subnet", "public_ip", "backend", "vtep_mac", "port"}; reloaded on SIGHUP.
    #[arg(long, env = "FLANNELD_PEERS")]
    pub peers: Option<PathBuf>,

    /// TUN device name [default: flannel0 (udp) / flannel.<VNI> (vxlan)].
    #[arg(long, env = "FLANNELD_TUN_NAME", value_parser = parse_tun_name)]
    pub tun_name: Option<String>,

    /// VXLAN network identifier.
    #[arg(long, env = "FLANNELD_VNI", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_VNI)))]
    pub vni: u32,

    /// Our VtepMAC (vxlan) [default: a random locally administered MAC].
    #[arg(long, env = "FLANNELD_VTEP_MAC", value_parser = parse_vtep_mac)]
    pub vtep_mac: Option<Mac>,

    /// TUN MTU [default: the MTU of the interface holding --public-ip minus 28 (udp) / 50 (vxlan), 20 more over IPv6].
    #[arg(long, env = "FLANNELD_MTU", value_parser = clap::value_parser!(u32).range(i64::from(MIN_MTU)..=65535))]
    pub mtu: Option<u32>,

    /// I/O driver of the pump threads.
    #[arg(long, env = "FLANNELD_IO_DRIVER", value_enum, default_value_t = DriverArg::Poll)]
    pub io_driver: DriverArg,

    /// Pump threads (one TUN queue and one UDP socket each) [default: number of cores].
    #[arg(long, env = "FLANNELD_PUMP_THREADS", value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_PUMP_THREADS)))]
    pub pump_threads: Option<u16>,

    /// Control socket for weftctl: `@NAME` for an abstract socket (one per network namespace),
    /// else a file path [default: @weft/<tun-name>].
    #[arg(long, env = "FLANNELD_CONTROL", value_parser = parse_control)]
    pub control: Option<ControlAddr>,

    /// Address of the /healthz, /readyz and /metrics endpoint.
    #[arg(long, env = "FLANNELD_HEALTHZ_IP", default_value = "0.0.0.0")]
    pub healthz_ip: IpAddr,

    /// Port of the /healthz, /readyz and /metrics endpoint (0: off).
    #[arg(long, env = "FLANNELD_HEALTHZ_PORT", default_value_t = 0)]
    pub healthz_port: u16,

    /// Serve per-peer series on /metrics (`weft_peer_*{peer}`: 4 per peer, so millions in a
    /// large cluster; off by default).
    #[arg(long, env = "FLANNELD_METRICS_PER_PEER", value_parser = parse_go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub metrics_per_peer: bool,

    /// Deliver inner packets whose source lies outside the sending peer's subnets (default:
    /// dropped and counted as "spoofed"). Only for setups that route other networks through a
    /// node's overlay; it lets any peer forge sources of the whole overlay.
    #[arg(long, env = "FLANNELD_ALLOW_FOREIGN_INNER_SOURCE", value_parser = parse_go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub allow_foreign_inner_source: bool,

    /// Upgrade without loss: when a weftd already runs for this TUN here, take its data path
    /// over (TUN queues, UDP sockets, control socket; it exits without tearing anything down)
    /// instead of exiting; when none runs, start normally. Give it the same flags otherwise.
    #[arg(long, env = "FLANNELD_UPGRADE", value_parser = parse_go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false")]
    pub upgrade: bool,

    /// Log more (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// klog verbosity, as flanneld's `-v=N`: 0 info, 1 to 3 debug, 4 and up trace.
    #[arg(long = "v", value_name = "N")]
    pub klog_v: Option<u32>,

    /// flanneld's flags that weftd does not implement yet.
    #[command(flatten)]
    pub flanneld_only: FlanneldOnly,
}

/// flanneld's flags that weftd parses but does not implement yet: given with any value but
/// flanneld's default, weftd exits 2 naming the flag. klog's `--vmodule` and
/// `--log_backtrace_at` are accepted and ignored (with a warning).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "flanneld flags weftd does not support yet (exit 2 when set)")]
pub struct FlanneldOnly {
    /// flanneld: take the subnet from the Kubernetes API.
    #[arg(long, env = "FLANNELD_KUBE_SUBNET_MGR", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub kube_subnet_mgr: Option<String>,
    /// flanneld: the Kubernetes API server URL.
    #[arg(long, env = "FLANNELD_KUBE_API_URL", value_name = "URL")]
    pub kube_api_url: Option<String>,
    /// flanneld: the kubeconfig file.
    #[arg(long, env = "FLANNELD_KUBECONFIG_FILE", value_name = "FILE")]
    pub kubeconfig_file: Option<String>,
    /// flanneld: the Kubernetes annotation prefix.
    #[arg(long, env = "FLANNELD_KUBE_ANNOTATION_PREFIX", value_name = "PREFIX")]
    pub kube_annotation_prefix: Option<String>,
    /// flanneld: the network config file of --kube-subnet-mgr.
    #[arg(long, env = "FLANNELD_NET_CONFIG_PATH", value_name = "FILE")]
    pub net_config_path: Option<String>,
    /// flanneld: set the node's NetworkUnavailable condition (Kubernetes).
    #[arg(long, env = "FLANNELD_SET_NODE_NETWORK_UNAVAILABLE", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub set_node_network_unavailable: Option<String>,
    /// flanneld: the interface whose route reaches this address.
    #[arg(long, env = "FLANNELD_IFACE_CAN_REACH", value_name = "IP")]
    pub iface_can_reach: Option<String>,
    /// flanneld: the IPv6 address to publish (an IPv6 underlay in lease mode).
    #[arg(long, env = "FLANNELD_PUBLIC_IPV6", value_name = "IP")]
    pub public_ipv6: Option<String>,
    /// klog: per-file verbosity (ignored).
    #[arg(long, value_name = "PATTERN")]
    pub vmodule: Option<String>,
    /// klog: a stack trace at a log line (ignored).
    #[arg(long = "log_backtrace_at", value_name = "FILE:LINE")]
    pub log_backtrace_at: Option<String>,
}

impl FlanneldOnly {
    /// The first flag given with a value flanneld would act on, as an error message.
    fn check(&self) -> Result<(), String> {
        // (flag, value, flanneld's default: giving the default changes nothing).
        let flags: [(&str, &Option<String>, Option<&str>); 8] = [
            ("--kube-subnet-mgr", &self.kube_subnet_mgr, Some("false")),
            ("--kube-api-url", &self.kube_api_url, Some("")),
            ("--kubeconfig-file", &self.kubeconfig_file, Some("")),
            (
                "--kube-annotation-prefix",
                &self.kube_annotation_prefix,
                Some("flannel.alpha.coreos.com"),
            ),
            (
                "--net-config-path",
                &self.net_config_path,
                Some("/etc/kube-flannel/net-conf.json"),
            ),
            (
                "--set-node-network-unavailable",
                &self.set_node_network_unavailable,
                Some("true"),
            ),
            ("--iface-can-reach", &self.iface_can_reach, Some("")),
            ("--public-ipv6", &self.public_ipv6, Some("")),
        ];
        for (flag, value, default) in flags {
            let Some(value) = value else { continue };
            let is_default = match (default, parse_go_bool(value), default.map(parse_go_bool)) {
                // Booleans compare as booleans (`0` is `false`).
                (_, Ok(given), Some(Ok(d))) => given == d,
                (Some(d), _, _) => value == d,
                (None, _, _) => false,
            };
            if !is_default {
                return Err(format!(
                    "{flag} is a flanneld flag that weftd does not support yet (given:                      {value:?}); remove it, or run flanneld for this node"
                ));
            }
        }
        Ok(())
    }

    /// The klog flags given, which weftd ignores.
    pub fn ignored(&self) -> Vec<&'static str> {
        [
            ("--vmodule", self.vmodule.is_some()),
            ("--log_backtrace_at", self.log_backtrace_at.is_some()),
        ]
        .into_iter()
        .filter_map(|(f, given)| given.then_some(f))
        .collect()
    }
}

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
    /// Underlay address.
    pub public_ip: IpAddr,
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
    /// Parses the process's arguments in flanneld's syntax ([`goflags::normalize`]); exits
    /// with clap's message and code 2 on an error (0 for `--help` / `--version`).
    pub fn parse_flanneld() -> Cli {
        match Cli::try_parse_flanneld_from(std::env::args_os()) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    }

    /// [`Cli::parse_flanneld`] on the given arguments (the program name first).
    pub fn try_parse_flanneld_from<I>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator,
        I::Item: Into<std::ffi::OsString>,
    {
        let mut command = Cli::command();
        command.build();
        let flags: Vec<(String, bool)> = command
            .get_arguments()
            .filter_map(|a| {
                let takes_value = a.get_action().takes_values()
                    && a.get_num_args().is_some_and(|n| n.min_values() > 0);
                a.get_long().map(|l| (l.to_owned(), takes_value))
            })
            .chain([("help".to_owned(), false), ("version".to_owned(), false)])
            .collect();
        Cli::try_parse_from(goflags::normalize(args, &flags))
    }

    /// The default log filter: the louder of `-v` / `-vv` and klog's `--v=N`.
    fn log_level(&self) -> &'static str {
        let from_count = match self.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        };
        let from_klog = self.klog_v.map_or("info", goflags::klog_level);
        let rank = |l: &str| ["info", "debug", "trace"].iter().position(|x| *x == l);
        if rank(from_klog) > rank(from_count) {
            from_klog
        } else {
            from_count
        }
    }

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
            (Some(b), _) => Backend::from(b),
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
        let public_ip =
            resolve_public_ip(self.public_ip, &self.iface, &regexes).map_err(invalid)?;
        if public_ip.is_unspecified() || public_ip.is_multicast() {
            return Err(invalid(format!(
                "invalid value '{public_ip}' for '--public-ip': not a unicast host address"
            )));
        }
        if lease_mode && !public_ip.is_ipv4() {
            return Err(invalid(format!(
                "invalid value '{public_ip}' for '--public-ip': a lease needs an IPv4 PublicIP \
                 (flannel's leases are keyed by it)"
            )));
        }
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
            None => default_mtu(public_ip, backend).map_err(invalid)?,
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

impl Cli {
    /// The checks of single values that need the file system or the interfaces: done before
    /// anything is set up, so that a bad value exits 2 and leaves nothing behind (a path that
    /// only fails once the TUN exists would leave a half-configured node until exit).
    fn check_values(&self, lease_mode: bool) -> Result<(), String> {
        if self.iface.iter().any(|i| i.trim().is_empty()) {
            return Err(
                "invalid value '' for '--iface': expected an interface name or address".to_owned(),
            );
        }
        if let Some(peers) = &self.peers {
            check_readable_file("--peers", peers)?;
        }
        if let Some(ControlAddr::Path(control)) = &self.control {
            check_creatable_file("--control", control)?;
        }
        if let Some(name) = &self.tun_name {
            check_tun_name_free(name)?;
        }
        if self.healthz_port != 0 && !self.healthz_ip.is_unspecified() {
            match ifaddrs::interface_with_address(self.healthz_ip) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(format!(
                        "invalid value '{}' for '--healthz-ip': no interface of this host has \
                         that address; expected one of its addresses, or 0.0.0.0 / :: for all",
                        self.healthz_ip
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "listing interface addresses for --healthz-ip failed: {e}"
                    ))
                }
            }
        }
        if !lease_mode {
            return Ok(());
        }
        check_creatable_file("--subnet-file", &self.subnet_file)?;
        if let Some(dir) = &self.lease_dir {
            check_creatable_dir("--lease-dir", dir)?;
            return Ok(());
        }
        for endpoint in self.etcd_endpoints.split(',').map(str::trim) {
            if endpoint.is_empty() {
                continue;
            }
            check_endpoint(endpoint)?;
        }
        for (flag, file) in [
            ("--etcd-cafile", &self.etcd_cafile),
            ("--etcd-certfile", &self.etcd_certfile),
            ("--etcd-keyfile", &self.etcd_keyfile),
        ] {
            if let Some(f) = file {
                check_readable_file(flag, f)?;
            }
        }
        for (a, a_set, b, b_set) in [
            (
                "--etcd-certfile",
                self.etcd_certfile.is_some(),
                "--etcd-keyfile",
                self.etcd_keyfile.is_some(),
            ),
            (
                "--etcd-username",
                self.etcd_username.is_some(),
                "--etcd-password",
                self.etcd_password.is_some(),
            ),
        ] {
            if a_set != b_set {
                let (given, missing) = if a_set { (a, b) } else { (b, a) };
                return Err(format!(
                    "{given} needs {missing}: {a} and {b} go together, give both or neither"
                ));
            }
        }
        Ok(())
    }
}

/// An etcd endpoint: `http://` or `https://`, then a host (and port) without spaces.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    let authority = rest.map(|r| r.trim_end_matches('/'));
    match authority {
        Some(a)
            if !a.is_empty()
                && !a.starts_with(':')
                && !a.contains('/')
                && !a.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "invalid value '{endpoint}' for '--etcd-endpoints': expected http://HOST:PORT or \
             https://HOST:PORT (comma separated)"
        )),
    }
}

/// `path` is a file (not a directory) this process can open.
fn check_readable_file(flag: &str, path: &Path) -> Result<(), String> {
    let bad = |why: String| {
        format!(
            "invalid value '{}' for '{flag}': {why}; expected a readable file",
            path.display()
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.is_dir() {
        return Err(bad("a directory".to_owned()));
    }
    std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// `path` is a file weftd can create later: not a directory, and the nearest existing
/// ancestor is a directory (weftd creates the missing ones).
fn check_creatable_file(flag: &str, path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Err(format!(
            "invalid value '{}' for '{flag}': a directory; expected a file path",
            path.display()
        ));
    }
    check_ancestors(flag, path)
}

/// `path` is a directory or can become one.
fn check_creatable_dir(flag: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "invalid value '{}' for '{flag}': not a directory; expected a directory (created \
             when missing)",
            path.display()
        )),
        Err(_) => check_ancestors(flag, path),
    }
}

/// The nearest existing ancestor of `path` is a directory.
fn check_ancestors(flag: &str, path: &Path) -> Result<(), String> {
    for ancestor in path.ancestors().skip(1) {
        let ancestor = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        match std::fs::metadata(ancestor) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "invalid value '{}' for '{flag}': {} is not a directory",
                    path.display(),
                    ancestor.display()
                ))
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

/// No interface named `name` exists, or it is a TUN device (a stale one of ours is replaced).
fn check_tun_name_free(name: &str) -> Result<(), String> {
    if netif::index(name).is_err() {
        return Ok(());
    }
    let sys = Path::new("/sys/class/net").join(name);
    // Without a sysfs view of this namespace, leave the decision to TUNSETIFF.
    if !sys.exists() || sys.join("tun_flags").exists() {
        return Ok(());
    }
    Err(format!(
        "invalid value '{name}' for '--tun-name': an interface of that name exists and is not \
         a TUN device; expected a free name (1 to 15 bytes)"
    ))
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
        (s.tun_name, s.control) = self.leased_names(net.backend, net.vni);
        (s.mtu, s.mtu_source) = match self.mtu_flag {
            Some(mtu) => (mtu, "--mtu".to_owned()),
            None => default_mtu(self.public_ip, net.backend)?,
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

/// `--tun-name`, else flannel's name: `flannel0` (udp) or `flannel.<VNI>` (vxlan).
fn default_tun_name(flag: Option<&str>, backend: Backend, vni: u32) -> String {
    match (flag, backend) {
        (Some(name), _) => name.to_owned(),
        (None, Backend::Udp) => "flannel0".to_owned(),
        (None, Backend::Vxlan) => format!("flannel.{vni}"),
    }
}

/// `--control`, else the abstract socket `@weft/<tun-name>`: one per network namespace, so
/// weftd nodes in separate namespaces of one host never collide.
fn default_control(flag: Option<&ControlAddr>, tun_name: &str) -> ControlAddr {
    flag.cloned()
        .unwrap_or_else(|| ControlAddr::default_for(tun_name))
}

fn parse_control(s: &str) -> Result<ControlAddr, String> {
    ControlAddr::parse(s)
}

/// `--public-ip`; else the first `--iface` that exists (an address some interface holds, or
/// the first IPv4 address of the named interface); else the first `--iface-regex` that matches
/// an address, then an interface name; else the first IPv4 address of the interface of the
/// default route. flanneld's order.
fn resolve_public_ip(
    public_ip: Option<IpAddr>,
    ifaces: &[String],
    regexes: &[Regex],
) -> Result<IpAddr, String> {
    if let Some(ip) = public_ip {
        return Ok(ip);
    }
    let listing =
        || ifaddrs::all().map_err(|e| format!("listing the interface addresses failed: {e}"));
    if ifaces.is_empty() && regexes.is_empty() {
        let name = default_route_interface().ok_or_else(|| {
            "no --public-ip, --iface or --iface-regex given and no default route to take the \
             interface from: pass one of them"
                .to_owned()
        })?;
        return preferred_address(&listing()?, &name).ok_or_else(|| {
            format!(
                "the default route's interface {name} has no address: pass --public-ip or --iface"
            )
        });
    }
    let all = listing()?;
    for iface in ifaces {
        let found = match iface.parse::<IpAddr>() {
            Ok(ip) => all.iter().any(|(_, a)| *a == ip).then_some(ip),
            Err(_) => preferred_address(&all, iface),
        };
        if let Some(ip) = found {
            return Ok(ip);
        }
    }
    for re in regexes {
        if let Some((_, ip)) = all.iter().find(|(_, a)| re.is_match(&a.to_string())) {
            return Ok(*ip);
        }
        if let Some(name) = all.iter().map(|(n, _)| n).find(|n| re.is_match(n)) {
            if let Some(ip) = preferred_address(&all, name) {
                return Ok(ip);
            }
        }
    }
    let mut tried: Vec<String> = ifaces.iter().map(|i| format!("--iface {i}")).collect();
    tried.extend(regexes.iter().map(|r| format!("--iface-regex {r}")));
    Err(format!(
        "no interface with an address matches {}: check the names with `ip addr`",
        tried.join(", ")
    ))
}

/// The first IPv4 address of interface `name` in `all`, else its first address.
fn preferred_address(all: &[(String, IpAddr)], name: &str) -> Option<IpAddr> {
    let mut of_name = all.iter().filter(|(n, _)| n == name).map(|(_, a)| *a);
    let first = of_name.clone().next();
    of_name.find(IpAddr::is_ipv4).or(first)
}

/// The interface of the IPv4 default route, from `/proc/net/route`.
fn default_route_interface() -> Option<String> {
    let text = std::fs::read_to_string(PROC_NET_ROUTE).ok()?;
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [iface, "00000000", _, _, _, _, _, "00000000", ..] => Some((*iface).to_owned()),
            _ => None,
        }
    })
}

/// The kernel's IPv4 routing table, as text.
const PROC_NET_ROUTE: &str = "/proc/net/route";

/// The default MTU: the underlay interface's minus the backend overhead.
fn default_mtu(public_ip: IpAddr, backend: Backend) -> Result<(u32, String), String> {
    let iface = ifaddrs::interface_with_address(public_ip)
        .map_err(|e| format!("listing interface addresses for --public-ip failed: {e}"))?
        .ok_or_else(|| {
            format!(
                "invalid value '{public_ip}' for '--public-ip': no interface of this host has \
                 that address (needed to bind and for the default --mtu)"
            )
        })?;
    let underlay = netif::mtu(&iface)
        .map_err(|e| format!("reading the MTU of {iface} (for the default --mtu) failed: {e}"))?;
    let overhead = backend.overhead()
        + if public_ip.is_ipv6() {
            IPV6_UNDERLAY_EXTRA
        } else {
            0
        };
    let mtu = (underlay as usize)
        .checked_sub(overhead)
        .and_then(|m| u32::try_from(m).ok())
        .filter(|&m| m >= MIN_MTU)
        .ok_or_else(|| {
            format!("the MTU of {iface} ({underlay}) is too small for the {backend} overhead ({overhead}); pass --mtu")
        })?;
    Ok((mtu, format!("{iface} MTU {underlay} - {overhead}")))
}

fn parse_v4_cidr(s: &str) -> Result<Cidr, String> {
    let c: Cidr = s
        .parse()
        .map_err(|e: crate::route::AddrParseError| e.to_string())?;
    if !c.is_ipv4() {
        return Err(format!("{s} is not an IPv4 prefix"));
    }
    Ok(c)
}

fn parse_v6_cidr(s: &str) -> Result<Cidr, String> {
    let c: Cidr = s
        .parse()
        .map_err(|e: crate::route::AddrParseError| e.to_string())?;
    if c.is_ipv4() {
        return Err(format!("{s} is not an IPv6 prefix"));
    }
    Ok(c)
}

fn parse_vtep_mac(s: &str) -> Result<Mac, String> {
    let mac = parse_mac(s).map_err(|e| e.to_string())?;
    if mac[0] & 1 != 0 {
        return Err(format!("{s} is a multicast MAC; a VtepMAC must be unicast"));
    }
    if mac == [0; 6] {
        return Err("00:00:00:00:00:00 is not a usable VtepMAC".to_owned());
    }
    Ok(mac)
}

fn parse_tun_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() >= libc::IFNAMSIZ {
        return Err(format!("{s:?}: an interface name has 1 to 15 bytes"));
    }
    if s == "."
        || s == ".."
        || s.bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return Err(format!(
            "{s:?}: an interface name has no '/', ':' or whitespace"
        ));
    }
    Ok(s.to_owned())
}

/// A random locally administered unicast MAC, as flannel makes its VtepMAC.
fn random_mac() -> std::io::Result<Mac> {
    use std::io::Read;
    let mut mac = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut mac)?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
                &["-iface=lo", "-iface-can-reach=10.0.0.1"],
                "--iface-can-reach",
            ),
            (&["-iface=lo", "-public-ipv6=fd00::1"], "--public-ipv6"),
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
}
