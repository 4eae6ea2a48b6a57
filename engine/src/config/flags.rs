//! The flags: [`Cli`] as clap reads it (flanneld's names, `FLANNELD_*` variables), the
//! value parsers of single flags, and [`FlanneldOnly`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{ArgAction, Args, CommandFactory, Parser, ValueEnum};
use encap::backend::Mac;

use super::goflags::{self, parse_go_bool};
use super::settings::parse_control;
use crate::control::ControlAddr;
use crate::model::{parse_mac, AddrParseError, Backend, Cidr};

/// The most pump threads (one TUN queue each; the TUN driver allows 256 queues).
pub const MAX_PUMP_THREADS: u16 = 256;
/// The longest `--busy-poll-us` window: 10 ms (a longer one is a spinning thread, not a
/// latency lever).
pub(super) const MAX_BUSY_POLL_US: u32 = 10_000;
/// `--busy-poll-us`'s default (BENCHMARKS.md, "Adaptive busy polling").
pub(super) const DEFAULT_BUSY_POLL_US: u32 = 0;
/// `--tun-txqueuelen` when not given: the kernel's own for a TUN (500 packets per queue).
pub(super) const DEFAULT_TUN_TXQUEUELEN: u32 = 500;
/// The largest `--tun-txqueuelen` (each queue's ring holds pointers; the packets' memory is
/// what the senders had queued).
pub(super) const MAX_TUN_TXQUEUELEN: u32 = 65_536;

/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The smallest TUN MTU the kernel takes (IPv4's 68).
pub const MIN_MTU: u32 = 68;

/// The IPv6 header minus the IPv4 header: the extra overhead of an IPv6 underlay.
pub const IPV6_UNDERLAY_EXTRA: usize = 40 - 20;

/// `--backend` takes the [`Backend`] names (`udp`, `vxlan`).
impl ValueEnum for Backend {
    fn value_variants<'a>() -> &'a [Backend] {
        &Backend::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let help = match self {
            Backend::Udp => "flannel's udp backend: the UDP payload is the inner IP packet",
            Backend::HostGw => "flannel's host-gw: kernel routes only (lease mode)",
            Backend::Vxlan => {
                "flannel's vxlan backend, byte-compatible with the kernel's flannel.1"
            }
        };
        Some(clap::builder::PossibleValue::new(self.as_str()).help(help))
    }
}

/// `--io-driver`: the I/O driver asked for (the pumps run [`crate::pump::IoDriver`], the one
/// chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum DriverArg {
    /// io_uring if usable, else poll.
    Auto,
    /// io_uring, or fail.
    Uring,
    /// poll + recvmmsg / sendmsg (GSO): the default, the faster here (BENCHMARKS.md).
    Poll,
}

impl DriverArg {
    /// The flag value: `auto`, `uring` or `poll`.
    pub fn as_str(&self) -> &'static str {
        match self {
            DriverArg::Auto => "auto",
            DriverArg::Uring => "uring",
            DriverArg::Poll => "poll",
        }
    }
}

/// weftd: the weft dataplane daemon (flannel's udp and vxlan backends in userspace).
#[derive(Debug, Clone, Parser)]
#[command(name = "weftd", version, about, long_about = None)]
pub struct Cli {
    /// Backend: udp (flannel's udp) or vxlan (kernel flannel.1 compatible). Static mode only:
    /// with a lease store the network config's Backend.Type decides.
    #[arg(long, env = "FLANNELD_BACKEND", value_enum)]
    pub backend: Option<Backend>,

    /// Underlay address to bind and to announce (IPv4 or IPv6) [default: the address of
    /// --iface / --iface-regex, else of the interface of the default route].
    #[arg(long, env = "FLANNELD_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,

    /// Lease mode: the IPv6 underlay address to publish as the lease's PublicIPv6 when the
    /// network config has EnableIPv6 (IPv6 pod traffic then travels over IPv6, as with
    /// flanneld) [default: the global IPv6 address of the --public-ip's interface]. Empty
    /// (flanneld's default) means unset. An IPv6 --public-ip alone is an IPv6-only underlay.
    #[arg(long, env = "FLANNELD_PUBLIC_IPV6", value_name = "IP")]
    pub public_ipv6: Option<String>,

    /// Interface (name or address) whose address is the --public-ip when that is not given.
    /// Repeat it (or comma-separate) to try each in order: the first that exists wins.
    #[arg(long, env = "FLANNELD_IFACE", value_delimiter = ',')]
    pub iface: Vec<String>,

    /// Regular expression matched against every address, then every interface name; the first
    /// match gives the --public-ip. Repeatable, tried in order, after every --iface.
    #[arg(long, env = "FLANNELD_IFACE_REGEX")]
    pub iface_regex: Vec<String>,

    /// An address the underlay reaches: the --public-ip is the source address of the kernel's
    /// route to it (flanneld's; used when neither --iface nor --iface-regex is given). Empty
    /// (flanneld's default) means unset.
    #[arg(long, env = "FLANNELD_IFACE_CAN_REACH", value_name = "IP")]
    pub iface_can_reach: Option<String>,

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

    /// Microseconds a pump thread keeps polling without sleeping after it last moved a packet
    /// (0: it sleeps as soon as it finds nothing). Lower latency for request/response
    /// traffic at the price of CPU while traffic flows; an idle thread still sleeps.
    #[arg(long, env = "FLANNELD_BUSY_POLL_US", default_value_t = DEFAULT_BUSY_POLL_US, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_BUSY_POLL_US)))]
    pub busy_poll_us: u32,

    /// Packets each TUN queue holds for its pump thread while it is busy (the device's
    /// txqueuelen; what does not fit is dropped and counted as the TUN's tx_dropped).
    #[arg(long, env = "FLANNELD_TUN_TXQUEUELEN", default_value_t = DEFAULT_TUN_TXQUEUELEN, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_TUN_TXQUEUELEN)))]
    pub tun_txqueuelen: u32,

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
    /// klog: per-file verbosity (ignored).
    #[arg(long, value_name = "PATTERN")]
    pub vmodule: Option<String>,
    /// klog: a stack trace at a log line (ignored).
    #[arg(long = "log_backtrace_at", value_name = "FILE:LINE")]
    pub log_backtrace_at: Option<String>,
}

impl FlanneldOnly {
    /// The first flag given with a value flanneld would act on, as an error message.
    pub(super) fn check(&self) -> Result<(), String> {
        // (flag, value, flanneld's default: giving the default changes nothing).
        let flags: [(&str, &Option<String>, Option<&str>); 6] = [
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
    pub(super) fn log_level(&self) -> &'static str {
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
}

pub(super) fn parse_v4_cidr(s: &str) -> Result<Cidr, String> {
    let c: Cidr = s.parse().map_err(|e: AddrParseError| e.to_string())?;
    if !c.is_ipv4() {
        return Err(format!("{s} is not an IPv4 prefix"));
    }
    Ok(c)
}

pub(super) fn parse_v6_cidr(s: &str) -> Result<Cidr, String> {
    let c: Cidr = s.parse().map_err(|e: AddrParseError| e.to_string())?;
    if c.is_ipv4() {
        return Err(format!("{s} is not an IPv6 prefix"));
    }
    Ok(c)
}

pub(super) fn parse_vtep_mac(s: &str) -> Result<Mac, String> {
    let mac = parse_mac(s).map_err(|e| e.to_string())?;
    if mac[0] & 1 != 0 {
        return Err(format!("{s} is a multicast MAC; a VtepMAC must be unicast"));
    }
    if mac == [0; 6] {
        return Err("00:00:00:00:00:00 is not a usable VtepMAC".to_owned());
    }
    Ok(mac)
}

pub(super) fn parse_tun_name(s: &str) -> Result<String, String> {
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
