//! weftd's command line (WEFTD_CLI.md): flags, their `FLANNELD_*` variables, and the checks
//! that need more than one flag.
//!
//! Contract: [`Cli`] is parsed by clap; a flag value that does not parse or is out of range is
//! a clap error naming the flag (exit code 2). [`Cli::resolve`] turns the flags into
//! [`Settings`], filling the defaults that depend on other flags (port, TUN name, VtepMAC,
//! MTU, threads, control path); a combination that cannot work is again a clap error naming the
//! flags (exit code 2). Flags shared with flanneld keep flanneld's names (`--public-ip`, `-v`);
//! every flag but `-v` can also come from `FLANNELD_<FLAG_IN_UPPER_SNAKE_CASE>`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use encap::backend::Mac;

use crate::route::{parse_mac, Backend, Cidr};
use crate::sys::{ifaddrs, netif};

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
    /// Probe io_uring, fall back to poll.
    Auto,
    /// io_uring, or fail.
    Uring,
    /// poll + recvmmsg / sendmsg.
    Poll,
}

/// weftd: the weft dataplane daemon (flannel's udp and vxlan backends in userspace).
#[derive(Debug, Clone, Parser)]
#[command(name = "weftd", version, about, long_about = None)]
pub struct Cli {
    /// Backend: udp (flannel's udp) or vxlan (kernel flannel.1 compatible).
    #[arg(long, env = "FLANNELD_BACKEND", value_enum)]
    pub backend: BackendArg,

    /// Underlay address to bind and to announce (IPv4 or IPv6).
    #[arg(long, env = "FLANNELD_PUBLIC_IP")]
    pub public_ip: IpAddr,

    /// UDP port [default: 8285 (udp) / 8472 (vxlan)].
    #[arg(long, env = "FLANNELD_PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Our own IPv4 subnet, e.g. 10.244.1.0/24.
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
    #[arg(long, env = "FLANNELD_IO_DRIVER", value_enum, default_value_t = DriverArg::Auto)]
    pub io_driver: DriverArg,

    /// Pump threads (one TUN queue and one UDP socket each) [default: number of cores].
    #[arg(long, env = "FLANNELD_PUMP_THREADS", value_parser = clap::value_parser!(u16).range(1..=i64::from(MAX_PUMP_THREADS)))]
    pub pump_threads: Option<u16>,

    /// Control socket for weftctl [default: /run/weft/<tun-name>.sock].
    #[arg(long, env = "FLANNELD_CONTROL")]
    pub control: Option<PathBuf>,

    /// Log more (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Everything weftd runs with, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Control socket path.
    pub control: PathBuf,
    /// `-v` count.
    pub verbose: u8,
}

impl Cli {
    /// Checks the flags together and fills the defaults; errors exit with code 2.
    pub fn resolve(self) -> Result<Settings, clap::Error> {
        let backend = Backend::from(self.backend);
        let invalid = |msg: String| Cli::command().error(ErrorKind::ValueValidation, msg);
        if self.subnet.is_none() && self.subnet6.is_none() {
            return Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "one of --subnet or --subnet6 is required (our own lease)",
            ));
        }
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
        if self.public_ip.is_unspecified() || self.public_ip.is_multicast() {
            return Err(invalid(format!(
                "invalid value '{}' for '--public-ip': not a unicast host address",
                self.public_ip
            )));
        }
        if let Some(peers) = &self.peers {
            if let Err(e) = std::fs::File::open(peers) {
                return Err(invalid(format!(
                    "invalid value '{}' for '--peers': {e}",
                    peers.display()
                )));
            }
        }
        let port = self.port.unwrap_or_else(|| backend.default_port());
        let tun_name = self.tun_name.unwrap_or_else(|| match backend {
            Backend::Udp => "flannel0".to_owned(),
            Backend::Vxlan => format!("flannel.{}", self.vni),
        });
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
            None => default_mtu(self.public_ip, backend).map_err(invalid)?,
        };
        let pump_threads = match self.pump_threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(usize::from(MAX_PUMP_THREADS)),
        };
        let control = self
            .control
            .unwrap_or_else(|| PathBuf::from(format!("/run/weft/{tun_name}.sock")));
        Ok(Settings {
            backend,
            public_ip: self.public_ip,
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
            verbose: self.verbose,
        })
    }
}

impl Settings {
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
        assert_eq!(s.control, PathBuf::from("/run/weft/flannel0.sock"));
        // lo's MTU minus 28.
        assert_eq!(s.mtu, netif::mtu("lo").unwrap() - 28);
        assert!(s.pump_threads >= 1);
        assert_eq!(s.io_driver, DriverArg::Auto);
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
        let no_subnet = parse(&["--backend", "udp", "--public-ip", "127.0.0.1"])
            .unwrap()
            .resolve()
            .unwrap_err();
        assert_eq!(no_subnet.exit_code(), 2);
        assert!(no_subnet.to_string().contains("--subnet"));
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
    fn flanneld_env_variables() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "verbose" || id == "help" || id == "version" {
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
}
