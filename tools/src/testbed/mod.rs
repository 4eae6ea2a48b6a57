//! Two- or three-node overlay testbeds in network namespaces, for tests and benchmarks.
//!
//! Contract: [`Testbed::new`] builds `n` nodes, each a namespace `wft-<pid>-<k>-<a|b|c>` with
//! `lo` up, an underlay `veth0` (MTU 1500, `192.168.250.<i+1>/24`) and a "pod": `pod0` (a veth
//! pair inside the node: this kernel may lack the dummy driver) holding `10.244.<i+1>.1/24` and
//! `fd00:10:244:<i+1>::1/64`. With [`Options::underlay`] the underlay is dual stack (`veth0`
//! also holds `fd99::<i+1>/64`) or IPv6 only (just that address). Two nodes share one veth
//! pair; three or more hang off a bridge in a fourth namespace (`...-sw`); with [`Options::router`] the nodes hang off a router
//! namespace (`...-wan`) instead, where [`impair`] degrades the underlay. By default the underlay veths keep their default transmit
//! offloads (checksum, TSO, UDP GSO on, as in kind / k3d / DinD clusters: a kernel VXLAN peer
//! hands weftd inner packets with partial checksums) and have GRO on, as a real NIC
//! ([`Options`]); the features are set through the kernel's ethtool interface from a thread
//! inside the namespace ([`engine::sys::ethtool`]), not with the `ethtool` program.
//! [`Testbed::start`] then runs one [`Overlay`] per node: the kernel's VXLAN device set up as
//! flanneld's vxlan backend sets up `flannel.1`, `weftctl forward-udp`, or `weftd`, each
//! pointed at the other nodes through a peers file, and waits until all are ready.
//!
//! Everything is undone on drop, also when a test panics: processes get SIGTERM then SIGKILL,
//! namespaces are deleted by name (both the test kit's: [`weft_testkit::process`],
//! [`weft_testkit::netns`]), and on a panic the tail of every process log is printed.
//! Testbeds of all processes on the machine run one at a time (an exclusive `flock` on
//! `$TMPDIR/weft-testbed.lock`), so timings in tests and benches are not skewed by each other,
//! and a testbed first deletes namespaces left behind by processes that no longer exist.
//! Traffic only ever flows between the namespaces a testbed created.

pub mod etcd_cluster;
pub mod impair;
pub mod leased;
pub mod nfqueue;
pub mod ping;
pub mod traffic;

use engine::config::DriverArg;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use engine::sys::ethtool;

use crate::control;
use crate::peers::PeerLine;
use engine::model::{format_mac, Backend, Cidr, Mac};
pub use traffic::End;
use weft_testkit::netns;
pub use weft_testkit::netns::Netns;
pub use weft_testkit::process::Process;

/// The overlay Network (flannel's `Network`).
pub const NETWORK: &str = "10.244.0.0/16";
/// The IPv6 overlay Network.
pub const NETWORK6: &str = "fd00:10:244::/48";
/// The underlay MTU.
pub const UNDERLAY_MTU: u32 = 1500;
/// The VXLAN network identifier (flannel's default).
pub const VNI: u32 = 1;
/// The kernel VXLAN device name for [`VNI`] (`flannel.<VNI>`).
pub const KERNEL_VXLAN_DEV: &str = "flannel.1";
/// The underlay device inside each node.
pub const UNDERLAY_DEV: &str = "veth0";
/// The pod device inside each node (one end of a veth pair).
pub const POD_DEV: &str = "pod0";
/// The other end of the pod's veth pair.
pub const POD_PEER_DEV: &str = "pod0p";
/// What weftd prints once its pump threads run (its start-up contract, engine/src/daemon/mod.rs).
pub const WEFTD_READY: &str = "weftd: ready";
/// How long an overlay process gets to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The third octet of node c's underlay when it is behind a router ([`Options`]).
const ROUTED_SEGMENT: u8 = 251;
/// The IPv6 underlay's segment (`fd99::/64`, node i at `fd99::<i+1>`); node c behind a router
/// is on the next /64, `fd99:0:0:1::/64`, and the router is `::fe` on both.
const UNDERLAY6_PREFIX: u128 = 0xfd99 << 112;
/// The length of the IPv6 underlay's segments.
const UNDERLAY6_LEN: u8 = 64;
/// The router's host part on each IPv6 underlay segment.
const UNDERLAY6_ROUTER: u128 = 0xfe;
/// Where `wireguard-go` makes its configuration sockets (`<device>.sock`).
const WIREGUARD_RUN_DIR: &str = "/var/run/wireguard";
/// WireGuard's encapsulation over IPv4 (IP, UDP, its header and tag): its devices' MTU is
/// 1420 on a 1500-byte underlay.
const WIREGUARD_OVERHEAD: u32 = 80;
/// WireGuard's listening port on every node.
const WIREGUARD_PORT: u16 = 51820;
/// The lock file that makes testbeds run one at a time.
const LOCK_FILE: &str = "weft-testbed.lock";
/// Letters naming the nodes.
const ROLES: [&str; 3] = ["a", "b", "c"];

/// What moves a node's overlay traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overlay {
    /// The kernel's VXLAN device, set up as flanneld's vxlan backend does.
    KernelVxlan,
    /// `weftctl forward-udp`, flannel's one-packet-per-syscall udp data path.
    Forwarder,
    /// weftd with a backend and an I/O driver.
    Weftd {
        /// `--backend`.
        backend: Backend,
        /// `--io-driver`.
        driver: DriverArg,
    },
    /// weftd in lease mode on a lease directory with `"DirectRouting": true` in the network
    /// config: its neighbours' subnets are reached through the kernel routes it installs
    /// (`<subnet> via <PublicIP> dev veth0`), so its TUN and pumps carry none of it.
    WeftdDirect {
        /// The network config's `Backend.Type`.
        backend: Backend,
    },
    /// No overlay: each node routes the others' pod subnets via their underlay addresses, as
    /// DirectRouting does, but written by hand; the underlay's own speed.
    RawVeth,
    /// `wireguard-go` (Debian's package): a userspace peer for comparison. It encrypts, so
    /// its CPU per byte is not comparable with the others'.
    WireguardGo,
}

impl Overlay {
    /// The flannel wire format the overlay speaks (None for the raw veth and wireguard-go).
    pub fn backend(&self) -> Option<Backend> {
        match self {
            Overlay::KernelVxlan => Some(Backend::Vxlan),
            Overlay::Forwarder => Some(Backend::Udp),
            Overlay::Weftd { backend, .. } | Overlay::WeftdDirect { backend } => Some(*backend),
            Overlay::RawVeth | Overlay::WireguardGo => None,
        }
    }

    /// A short name for tables and logs (`kernel-vxlan`, `forwarder`, `weft-udp-uring`).
    pub fn label(&self) -> String {
        match self {
            Overlay::KernelVxlan => "kernel-vxlan".to_owned(),
            Overlay::Forwarder => "forwarder".to_owned(),
            Overlay::Weftd { backend, driver } => {
                format!("weft-{}-{}", backend.as_str(), driver.as_str())
            }
            Overlay::WeftdDirect { backend } => format!("weft-{}-direct", backend.as_str()),
            Overlay::RawVeth => "raw-veth".to_owned(),
            Overlay::WireguardGo => "wireguard-go-encrypts".to_owned(),
        }
    }
}

/// The programs a testbed runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `weftctl` (for `forward-udp`).
    pub weftctl: PathBuf,
    /// `weftd`, when there is one.
    pub weftd: Option<PathBuf>,
}

impl Binaries {
    /// `weftd` next to `exe`'s target directory: `target/<profile>/weftd` for a binary in
    /// `target/<profile>/` or a test in `target/<profile>/deps/`.
    pub fn weftd_near(exe: &Path) -> Option<PathBuf> {
        let dir = exe.parent()?;
        let profile_dir = if dir.file_name().is_some_and(|n| n == "deps") {
            dir.parent()?
        } else {
            dir
        };
        let weftd = profile_dir.join("weftd");
        weftd.is_file().then_some(weftd)
    }
}

/// One node of a testbed.
#[derive(Debug)]
pub struct Node {
    index: usize,
    ns: Netns,
    underlay: Ipv4Addr,
    underlay6: Ipv6Addr,
    families: Underlay,
    subnet: Cidr,
    subnet6: Cidr,
    vtep_mac: Mac,
    overlay: Option<Overlay>,
    /// Whether the node runs weftd (its control socket is the default, `@weft/<tun>` in the
    /// node's namespace).
    runs_weftd: bool,
    process: Option<usize>,
    weftd_args: Vec<String>,
    /// The full argument list weftd was started with.
    spawned_args: Vec<String>,
}

impl Node {
    /// The node's namespace.
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// The node's position in the testbed (0 = a).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The IPv4 underlay address on `veth0` (not there on an IPv6-only underlay:
    /// [`Underlay::Ipv6`]).
    pub fn underlay(&self) -> Ipv4Addr {
        self.underlay
    }

    /// The IPv6 underlay address on `veth0` (`fd99::<i+1>`; `fd99:0:0:1::3` for node c behind
    /// a router), None when the underlay is IPv4 only (the default, [`Underlay::Ipv4`]).
    pub fn underlay6(&self) -> Option<Ipv6Addr> {
        (self.families != Underlay::Ipv4).then_some(self.underlay6)
    }

    /// The address families the underlay carries.
    pub fn families(&self) -> Underlay {
        self.families
    }

    /// The node's IPv4 subnet (`10.244.<i+1>.0/24`).
    pub fn subnet(&self) -> Cidr {
        self.subnet
    }

    /// The node's IPv6 subnet (`fd00:10:244:<i+1>::/64`).
    pub fn subnet6(&self) -> Cidr {
        self.subnet6
    }

    /// The VtepMAC the node uses when its overlay is VXLAN.
    pub fn vtep_mac(&self) -> Mac {
        self.vtep_mac
    }

    /// The pod's IPv4 address (`<subnet>.1`).
    pub fn pod_ip(&self) -> IpAddr {
        self.subnet.host(1)
    }

    /// The pod's IPv6 address (`<subnet6>::1`).
    pub fn pod_ip6(&self) -> IpAddr {
        self.subnet6.host(1)
    }

    /// The pod's IPv4 address as a check endpoint.
    pub fn pod(&self) -> End<'_> {
        End {
            ns: &self.ns,
            ip: self.pod_ip(),
        }
    }

    /// The pod's IPv6 address as a check endpoint.
    pub fn pod6(&self) -> End<'_> {
        End {
            ns: &self.ns,
            ip: self.pod_ip6(),
        }
    }

    /// The overlay started on this node.
    pub fn overlay(&self) -> Option<Overlay> {
        self.overlay
    }

    /// Runs `ip <args>` inside the node.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ns.exec_checked("ip", args)
    }

    /// The peers-file lines that describe this node to the others.
    fn peer_lines(&self) -> anyhow::Result<Vec<PeerLine>> {
        let overlay = self
            .overlay
            .context("the node has no overlay yet: call Testbed::start")?;
        let Some(backend) = overlay.backend() else {
            return Ok(Vec::new());
        };
        Ok([self.subnet, self.subnet6]
            .into_iter()
            .map(|subnet| PeerLine {
                subnet: subnet.to_string(),
                public_ip: self.underlay.to_string(),
                backend,
                vtep_mac: (backend == Backend::Vxlan).then(|| format_mac(&self.vtep_mac)),
                port: None,
            })
            .collect())
    }
}

/// A set of nodes in namespaces, the processes running in them, and the files they use.
#[derive(Debug)]
pub struct Testbed {
    id: String,
    binaries: Binaries,
    pump_threads: Option<u16>,
    // Drop order: processes (in Drop::drop), nodes, the switch, the files, the lock.
    processes: Vec<Process>,
    nodes: Vec<Node>,
    switch: Option<Netns>,
    /// Whether `switch` is a router ([`Options::router`]) rather than a bridge.
    router: bool,
    dir: tempfile::TempDir,
    _lock: File,
}

/// The address families of the underlay (`veth0`'s addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Underlay {
    /// `192.168.250.<i+1>/24` only (the default).
    #[default]
    Ipv4,
    /// That and `fd99::<i+1>/64` ([`Node::underlay6`]).
    DualStack,
    /// `fd99::<i+1>/64` only: [`Testbed::start`] refuses it (its overlays are told the IPv4
    /// address); weftd in lease mode runs on it ([`leased::LeasedNode`]).
    Ipv6,
}

impl Underlay {
    /// Whether `veth0` holds an IPv4 address.
    pub fn has_ipv4(self) -> bool {
        self != Underlay::Ipv6
    }

    /// Whether `veth0` holds an IPv6 address (beside its link-local one).
    pub fn has_ipv6(self) -> bool {
        self != Underlay::Ipv4
    }
}

/// How the underlay veths are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Keep the veths' transmit checksum offload (and with it TSO / UDP GSO across the veth),
    /// the veth's default and what kind / k3d / DinD clusters run (default: on). A kernel
    /// VXLAN peer then hands weftd inner packets whose checksum is only partial, and GSO
    /// packets cross the veth unsplit. Off: the kernel computes checksums and segments before
    /// the veth, as with a real NIC (`ethtool -K veth0 tx off`).
    pub veth_tx_offload: bool,
    /// Turn GRO on on the veths (default), as a real NIC has it: UDP datagrams of one flow
    /// reach a UDP_GRO socket coalesced, and VXLAN is coalesced by the kernel's UDP tunnel GRO.
    pub veth_gro: bool,
    /// With three nodes, put node c behind a router (default off): a and b share the
    /// `192.168.250.0/24` segment, c is `192.168.251.3` on its own segment, and the switch
    /// namespace routes between them (`.254` on each side). Peers a and b are then on-link to
    /// each other and c is reached through a gateway (DirectRouting's two cases).
    pub third_behind_router: bool,
    /// Join the nodes through a router namespace (`...-wan`) instead of one veth pair or a
    /// bridge (default: off). The router proxy-ARPs, so the nodes keep their addresses in one
    /// /24 and every overlay is configured exactly as without it; its forwarding path is where
    /// [`impair`] loses, duplicates, delays and reorders the underlay's datagrams. Not with
    /// `third_behind_router`.
    pub router: bool,
    /// The underlay's address families (default: IPv4 only). With `third_behind_router` the
    /// IPv6 underlay is routed as the IPv4 one: c on `fd99:0:0:1::/64`, the switch namespace
    /// forwarding IPv6 (`::fe` on both segments); with `router` the router proxies NDP as it
    /// proxies ARP.
    pub underlay: Underlay,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            veth_tx_offload: true,
            veth_gro: true,
            third_behind_router: false,
            router: false,
            underlay: Underlay::Ipv4,
        }
    }
}

impl Options {
    /// The veth features these options ask for.
    fn features(&self) -> [(ethtool::Feature, bool); 2] {
        [
            (ethtool::Feature::TxChecksum, self.veth_tx_offload),
            (ethtool::Feature::Gro, self.veth_gro),
        ]
    }

    /// Sets the features of the veth `dev` in namespace `ns`, from a thread inside it.
    fn apply(&self, ns: &Netns, dev: &str) -> anyhow::Result<()> {
        let features = self.features();
        let name = dev.to_owned();
        ns.spawn_inside(move || {
            for (feature, on) in features {
                ethtool::set_feature(&name, feature, on).with_context(|| {
                    format!(
                        "turning {feature} {} on {name}",
                        if on { "on" } else { "off" }
                    )
                })?;
            }
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread setting {dev}'s features panicked"))?
        .with_context(|| format!("in namespace {}", ns.name()))
    }
}

impl Testbed {
    /// Builds `nodes` (2 or 3) nodes joined by the underlay, with pods but no overlay yet,
    /// with the default [`Options`].
    pub fn new(nodes: usize, binaries: Binaries) -> anyhow::Result<Testbed> {
        Testbed::with_options(nodes, binaries, Options::default())
    }

    /// Like [`Testbed::new`] with the underlay set up as `options` say.
    pub fn with_options(
        nodes: usize,
        binaries: Binaries,
        options: Options,
    ) -> anyhow::Result<Testbed> {
        if !(2..=ROLES.len()).contains(&nodes) {
            bail!("a testbed has 2 or 3 nodes, not {nodes}");
        }
        let lock = lock()?;
        for name in netns::reap_stale() {
            eprintln!("testbed: deleted stale namespace {name}");
        }
        let id = netns::unique_id();
        let dir = tempfile::Builder::new()
            .prefix("weft-testbed-")
            .tempdir()
            .context("creating the testbed's directory")?;
        netns::register_dir(dir.path());
        let mut built = Vec::with_capacity(nodes);
        for (i, role) in ROLES.iter().enumerate().take(nodes) {
            let ns = Netns::create(&format!("{id}-{role}"))?;
            let k = u8::try_from(i + 1).context("node count")?;
            let routed = i == 2 && options.third_behind_router;
            let segment = if routed { ROUTED_SEGMENT } else { 250 };
            built.push(Node {
                index: i,
                ns,
                underlay: Ipv4Addr::new(192, 168, segment, k),
                underlay6: underlay6_addr(routed.into(), k.into()),
                families: options.underlay,
                subnet: Cidr::parse_masked(&format!("10.244.{k}.0/24"))?,
                subnet6: Cidr::parse_masked(&format!("fd00:10:244:{k}::/64"))?,
                vtep_mac: [0x0e, 0x77, 0x65, 0x66, 0x74, k],
                overlay: None,
                runs_weftd: false,
                process: None,
                weftd_args: Vec::new(),
                spawned_args: Vec::new(),
            });
        }
        if options.router && options.third_behind_router {
            bail!("Options::router and Options::third_behind_router exclude each other");
        }
        let switch = if options.router {
            Some(router(&id, &built, options)?)
        } else if nodes == 2 {
            built[0]
                .ns
                .add_veth(UNDERLAY_DEV, built[1].ns.name(), UNDERLAY_DEV)?;
            None
        } else {
            let sw = Netns::create(&format!("{id}-sw"))?;
            sw.exec_checked("ip", &["link", "add", "br0", "type", "bridge"])?;
            sw.exec_checked("ip", &["link", "set", "br0", "up"])?;
            let routed = options.third_behind_router;
            if routed {
                sw.exec_checked("ip", &["addr", "add", "192.168.250.254/24", "dev", "br0"])?;
                sw.spawn_inside(|| {
                    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                        .context("turning on forwarding in the router")
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the router set-up thread panicked"))??;
                if options.underlay.has_ipv6() {
                    let gw6 = format!("{}/{UNDERLAY6_LEN}", underlay6_addr(0, UNDERLAY6_ROUTER));
                    sw.exec_checked("ip", &["-6", "addr", "add", &gw6, "dev", "br0", "nodad"])?;
                    sw.exec_checked("sysctl", &["-q", "-w", "net.ipv6.conf.all.forwarding=1"])?;
                }
            }
            for node in &built {
                let port = format!("p{}", node.index);
                sw.add_veth(&port, node.ns.name(), UNDERLAY_DEV)?;
                if routed && node.index == 2 {
                    let gw = format!("192.168.{ROUTED_SEGMENT}.254/24");
                    sw.exec_checked("ip", &["addr", "add", &gw, "dev", &port])?;
                    if options.underlay.has_ipv6() {
                        let gw6 =
                            format!("{}/{UNDERLAY6_LEN}", underlay6_addr(1, UNDERLAY6_ROUTER));
                        sw.exec_checked("ip", &["-6", "addr", "add", &gw6, "dev", &port, "nodad"])?;
                    }
                    sw.exec_checked("ip", &["link", "set", &port, "up"])?;
                } else {
                    sw.exec_checked("ip", &["link", "set", &port, "master", "br0", "up"])?;
                }
                options.apply(&sw, &port)?;
            }
            Some(sw)
        };
        for node in &built {
            setup_node(node, options)?;
            if options.third_behind_router && nodes == 3 {
                // Routes to the other segment via the router's address on this node's own.
                let (other, own): (u8, u8) = if node.index == 2 { (0, 1) } else { (1, 0) };
                if options.underlay.has_ipv4() {
                    let other = format!("192.168.{}.0/24", 250 + other);
                    let gw = format!("192.168.{}.254", 250 + own);
                    node.ip(&["route", "add", &other, "via", &gw])?;
                }
                if options.underlay.has_ipv6() {
                    let other = format!("{}/{UNDERLAY6_LEN}", underlay6_addr(other.into(), 0));
                    let gw = underlay6_addr(own.into(), UNDERLAY6_ROUTER).to_string();
                    node.ip(&["-6", "route", "add", &other, "via", &gw])?;
                }
            }
        }
        Ok(Testbed {
            id,
            binaries,
            pump_threads: None,
            processes: Vec::new(),
            nodes: built,
            switch,
            router: options.router,
            dir,
            _lock: lock,
        })
    }

    /// The testbed's name prefix (`wft-<pid>-<k>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The namespace of the bridge joining three nodes (`...-sw`, with the bridge `br0`);
    /// None for two nodes, which share one veth pair.
    pub fn switch(&self) -> Option<&Netns> {
        self.switch.as_ref()
    }

    /// The router namespace between the nodes, when [`Options::router`] asked for one.
    pub fn router(&self) -> Option<&Netns> {
        self.router.then_some(self.switch.as_ref()).flatten()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `i` (panics on a bad index: a bug in the caller).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// The testbed's scratch directory (logs, peers files, control sockets).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Extra flags for the weftd of node `node`, appended by the next [`Testbed::start`].
    pub fn add_weftd_args(&mut self, node: usize, args: &[&str]) {
        self.nodes[node]
            .weftd_args
            .extend(args.iter().map(|a| (*a).to_owned()));
    }

    /// Runs every weftd this testbed starts from now on with `--pump-threads n` (None:
    /// weftd's default, one per core).
    pub fn set_pump_threads(&mut self, n: Option<u16>) {
        self.pump_threads = n;
    }

    /// Starts one overlay per node and waits until every node is ready. All overlays must
    /// speak the same wire format.
    pub fn start(&mut self, overlays: &[Overlay]) -> anyhow::Result<()> {
        if overlays.len() != self.nodes.len() {
            bail!(
                "{} overlays given for {} nodes",
                overlays.len(),
                self.nodes.len()
            );
        }
        if overlays
            .iter()
            .any(|o| o.backend() != overlays[0].backend())
        {
            bail!("the overlays speak different wire formats: {overlays:?}");
        }
        if self.nodes.iter().any(|n| n.overlay.is_some()) {
            bail!("the testbed's overlays were already started");
        }
        if self.nodes.iter().any(|n| !n.families.has_ipv4()) {
            bail!("the underlay is IPv6 only: start weftd in lease mode (testbed::leased)");
        }
        for (node, overlay) in self.nodes.iter_mut().zip(overlays) {
            node.overlay = Some(*overlay);
        }
        for (i, overlay) in overlays.iter().enumerate() {
            let peers = self.write_peers(i)?;
            match *overlay {
                Overlay::KernelVxlan => self.setup_kernel_vxlan(i)?,
                Overlay::Forwarder => self.spawn_forwarder(i, &peers)?,
                Overlay::Weftd { backend, driver } => {
                    self.spawn_weftd(i, backend, driver, &peers)?
                }
                Overlay::WeftdDirect { backend } => self.spawn_weftd_direct(i, backend)?,
                Overlay::RawVeth => self.route_raw_veth(i)?,
                Overlay::WireguardGo => self.spawn_wireguard_go(i)?,
            }
        }
        for (i, overlay) in overlays.iter().enumerate() {
            let Some(p) = self.nodes[i].process else {
                continue;
            };
            if *overlay == Overlay::WireguardGo {
                // Ready once configured (its socket waited for).
                continue;
            }
            let needle = match overlay {
                Overlay::Forwarder => crate::forward::READY_LINE,
                _ => WEFTD_READY,
            };
            self.processes[p]
                .wait_for_line(needle, READY_TIMEOUT)
                .with_context(|| format!("starting {} on node {}", overlay.label(), ROLES[i]))?;
        }
        for (i, overlay) in overlays.iter().enumerate() {
            if let Overlay::WeftdDirect { .. } = overlay {
                self.wait_direct_routes(i)?;
            }
        }
        Ok(())
    }

    /// Waits until node `i` routes every other node's subnet via its underlay address (the
    /// routes DirectRouting installs once the leases are read).
    fn wait_direct_routes(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let start = std::time::Instant::now();
        for peer in self.nodes.iter().filter(|n| n.index != i) {
            let subnet = peer.subnet.to_string();
            let want = format!("{subnet} via {} ", peer.underlay);
            loop {
                let shown = node.ip(&["route", "show", &subnet])?;
                if shown.contains(&want) {
                    break;
                }
                if start.elapsed() > READY_TIMEOUT {
                    bail!(
                        "node {}: no direct route {want:?} after {READY_TIMEOUT:?}: {shown:?}",
                        ROLES[i]
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The overlay MTU every node can carry (the TUN / vxlan MTU).
    pub fn overlay_mtu(&self) -> u32 {
        match self.nodes.first().and_then(|n| n.overlay) {
            None => UNDERLAY_MTU - Backend::Vxlan.overhead() as u32,
            Some(Overlay::WireguardGo) => UNDERLAY_MTU - WIREGUARD_OVERHEAD,
            Some(overlay) => UNDERLAY_MTU - overlay.backend().map_or(0, |b| b.overhead() as u32),
        }
    }

    /// Starts `program args` inside node `node`; its output goes to `<dir>/<label>.log`.
    /// Returns a handle for [`Testbed::process`].
    pub fn spawn(
        &mut self,
        node: usize,
        label: &str,
        program: &Path,
        args: &[String],
    ) -> anyhow::Result<usize> {
        let ns = &self.nodes[node].ns;
        let program = program.to_str().context("the program path is not UTF-8")?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let log = self.dir.path().join(format!("{label}.log"));
        let process = Process::spawn(label, ns.command(program, &args), &log)?;
        self.processes.push(process);
        Ok(self.processes.len() - 1)
    }

    /// A process started by [`Testbed::spawn`] or [`Testbed::start`].
    pub fn process(&mut self, handle: usize) -> &mut Process {
        &mut self.processes[handle]
    }

    /// The arguments node `node`'s weftd was started with by [`Testbed::start`] (empty when
    /// it runs none), to start a successor with the same flags.
    pub fn weftd_args(&self, node: usize) -> Vec<String> {
        self.nodes[node].spawned_args.clone()
    }

    /// The peers file [`Testbed::start`] wrote for node `node` (`<dir>/peers-<role>.json`): the
    /// other nodes, as weftd's `--peers` reads them.
    pub fn peers_file(&self, node: usize) -> PathBuf {
        self.dir.path().join(format!("peers-{}.json", ROLES[node]))
    }

    /// The overlay process of node `node` (forwarder or weftd), if any.
    pub fn overlay_process(&mut self, node: usize) -> Option<&mut Process> {
        let p = self.nodes[node].process?;
        self.processes.get_mut(p)
    }

    /// One request to weftd's control socket on node `node` (`stats`, `routes`), made from
    /// inside the node's namespace as an operator would (`weftctl stats` finds the socket).
    pub fn control(&self, node: usize, request: &str) -> anyhow::Result<serde_json::Value> {
        let n = &self.nodes[node];
        if !n.runs_weftd {
            bail!("node {} runs no weftd", ROLES[node]);
        }
        control::request_in(n.ns.name(), None, request)
    }

    /// Fails if an overlay process has exited (it should run for the testbed's life).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for node in &self.nodes {
            if let Some(p) = node.process {
                let process = &mut self.processes[p];
                if let Some(status) = process.try_status() {
                    bail!(
                        "{} on node {} exited ({status}); its log:\n{}",
                        process.label(),
                        ROLES[node.index],
                        process.tail()
                    );
                }
            }
        }
        Ok(())
    }

    fn write_peers(&self, i: usize) -> anyhow::Result<PathBuf> {
        let mut text = String::new();
        for other in self.nodes.iter().filter(|n| n.index != i) {
            for line in other.peer_lines()? {
                text.push_str(&line.to_line());
                text.push('\n');
            }
        }
        let path = self.peers_file(i);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// flanneld's vxlan backend, as `ip` commands (pkg/backend/vxlan: device.go, vxlan_network.go).
    fn setup_kernel_vxlan(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let dev = KERNEL_VXLAN_DEV;
        let mtu = (UNDERLAY_MTU - Backend::Vxlan.overhead() as u32).to_string();
        let underlay = node.underlay.to_string();
        let vni = VNI.to_string();
        let port = Backend::Vxlan.default_port().to_string();
        node.ip(&[
            "link",
            "add",
            dev,
            "type",
            "vxlan",
            "id",
            &vni,
            "local",
            &underlay,
            "dev",
            UNDERLAY_DEV,
            "dstport",
            &port,
            "nolearning",
            "udpcsum",
        ])?;
        node.ip(&[
            "link",
            "set",
            dev,
            "address",
            &format_mac(&node.vtep_mac),
            "mtu",
            &mtu,
        ])?;
        node.ip(&[
            "addr",
            "add",
            &format!("{}/32", node.subnet.addr()),
            "dev",
            dev,
        ])?;
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/128", node.subnet6.addr()),
            "dev",
            dev,
            "nodad",
        ])?;
        node.ip(&["link", "set", dev, "up"])?;
        for peer in self.nodes.iter().filter(|n| n.index != i) {
            let mac = format_mac(&peer.vtep_mac);
            let gw = peer.subnet.addr().to_string();
            let gw6 = peer.subnet6.addr().to_string();
            node.ip(&[
                "neigh",
                "replace",
                &gw,
                "lladdr",
                &mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
            node.ns.exec_checked(
                "bridge",
                &[
                    "fdb",
                    "append",
                    &mac,
                    "dev",
                    dev,
                    "dst",
                    &peer.underlay.to_string(),
                ],
            )?;
            node.ip(&[
                "route",
                "replace",
                &peer.subnet.to_string(),
                "via",
                &gw,
                "dev",
                dev,
                "onlink",
            ])?;
            node.ip(&[
                "-6",
                "neigh",
                "replace",
                &gw6,
                "lladdr",
                &mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
            node.ip(&[
                "-6",
                "route",
                "replace",
                &peer.subnet6.to_string(),
                "via",
                &gw6,
                "dev",
                dev,
                "onlink",
            ])?;
        }
        Ok(())
    }

    fn spawn_forwarder(&mut self, i: usize, peers: &Path) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let args: Vec<String> = [
            "forward-udp",
            "--tun",
            "flannel0",
            "--subnet",
            &node.subnet.to_string(),
            "--subnet6",
            &node.subnet6.to_string(),
            "--network",
            NETWORK,
            "--network6",
            NETWORK6,
            "--public-ip",
            &node.underlay.to_string(),
            "--peers",
            path_str(peers)?,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let program = self.binaries.weftctl.clone();
        let p = self.spawn(i, &format!("forwarder-{}", ROLES[i]), &program, &args)?;
        self.nodes[i].process = Some(p);
        Ok(())
    }

    fn spawn_weftd(
        &mut self,
        i: usize,
        backend: Backend,
        driver: DriverArg,
        peers: &Path,
    ) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        let mut args: Vec<String> = [
            "--backend",
            backend.as_str(),
            "--public-ip",
            &node.underlay.to_string(),
            "--subnet",
            &node.subnet.to_string(),
            "--subnet6",
            &node.subnet6.to_string(),
            "--network",
            NETWORK,
            "--network6",
            NETWORK6,
            "--peers",
            path_str(peers)?,
            "--io-driver",
            driver.as_str(),
            "-v",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if backend == Backend::Vxlan {
            args.extend(["--vtep-mac".to_owned(), format_mac(&node.vtep_mac)]);
        }
        self.launch_weftd(i, args)
    }

    /// Starts weftd on node `i` with `args`, then `--pump-threads` (when set) and the node's
    /// own extra arguments, and records it as the node's overlay process.
    fn launch_weftd(&mut self, i: usize, mut args: Vec<String>) -> anyhow::Result<()> {
        let program = self.binaries.weftd.clone().context(
            "no weftd binary next to this program (run `cargo build -p engine`, with --release \
             for a release build)",
        )?;
        if let Some(n) = self.pump_threads {
            args.extend(["--pump-threads".to_owned(), n.to_string()]);
        }
        args.extend(self.nodes[i].weftd_args.iter().cloned());
        let p = self.spawn(i, &format!("weftd-{}", ROLES[i]), &program, &args)?;
        self.nodes[i].spawned_args = args;
        self.nodes[i].process = Some(p);
        self.nodes[i].runs_weftd = true;
        Ok(())
    }

    /// weftd on node `i` in lease mode on the testbed's lease directory (`<dir>/leases`, made
    /// by the first node) with DirectRouting. The node's planned subnet is its previous
    /// subnet.env's, so weftd leases exactly that one (flannel's reuse of the previous
    /// subnet), and the pods and every workload keep their addresses.
    fn spawn_weftd_direct(&mut self, i: usize, backend: Backend) -> anyhow::Result<()> {
        let leases = self.dir.path().join("leases");
        let config = leases.join("config");
        if !config.exists() {
            std::fs::create_dir_all(&leases)
                .with_context(|| format!("creating {}", leases.display()))?;
            let text = format!(
                r#"{{"Network": "{NETWORK}", "Backend": {{"Type": "{}", "DirectRouting": true}}}}"#,
                backend.as_str()
            );
            std::fs::write(&config, text)
                .with_context(|| format!("writing {}", config.display()))?;
        }
        let node = &self.nodes[i];
        let subnet_file = self.dir.path().join(format!("subnet-{}.env", ROLES[i]));
        let previous = format!(
            "FLANNEL_NETWORK={NETWORK}\nFLANNEL_SUBNET={}/{}\n",
            node.subnet.host(1),
            node.subnet.prefix_len()
        );
        std::fs::write(&subnet_file, previous)
            .with_context(|| format!("writing {}", subnet_file.display()))?;
        let args: Vec<String> = vec![
            "--lease-dir".to_owned(),
            path_str(&leases)?.to_owned(),
            "--public-ip".to_owned(),
            node.underlay.to_string(),
            "--subnet-file".to_owned(),
            path_str(&subnet_file)?.to_owned(),
            "-v".to_owned(),
        ];
        self.launch_weftd(i, args)
    }

    /// `wireguard-go -f` on node `i` with a device `wg<pid><role>` (unique: its configuration
    /// socket in /var/run/wireguard is shared by every namespace), configured with `wg` as a
    /// full mesh: each peer's pod subnet allowed and routed through it, the device holding the
    /// node's subnet address as the other overlays' devices do. The nodes' keys are made when
    /// the first node is set up.
    fn spawn_wireguard_go(&mut self, i: usize) -> anyhow::Result<()> {
        for program in ["wireguard-go", "wg"] {
            if !weft_testkit::privileges::on_path(program) {
                bail!(
                    "{program} is not installed (apt-get install --no-install-recommends \
                     wireguard-go wireguard-tools)"
                );
            }
        }
        let keys = self.wireguard_keys()?;
        let dev = wireguard_dev(i);
        // It declines to run on a kernel with WireGuard in it unless told to (this one has
        // none built); errors only in its log, none per packet.
        let args = [
            "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
            "LOG_LEVEL=error",
            "wireguard-go",
            "-f",
            &dev,
        ]
        .map(str::to_owned);
        let p = self.spawn(
            i,
            &format!("wireguard-go-{}", ROLES[i]),
            Path::new("/usr/bin/env"),
            &args,
        )?;
        let socket = Path::new(WIREGUARD_RUN_DIR).join(format!("{dev}.sock"));
        let start = std::time::Instant::now();
        while !socket.exists() {
            let process = &mut self.processes[p];
            if let Some(status) = process.try_status() {
                bail!(
                    "wireguard-go exited ({status}); its log:\n{}",
                    process.tail()
                );
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "wireguard-go made no {} in {READY_TIMEOUT:?}",
                    socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let node = &self.nodes[i];
        let port = WIREGUARD_PORT.to_string();
        let (private, _) = &keys[i];
        let mut args: Vec<String> = [
            "set",
            &dev,
            "private-key",
            path_str(private)?,
            "listen-port",
            &port,
        ]
        .map(str::to_owned)
        .to_vec();
        for peer in self.nodes.iter().filter(|n| n.index != i) {
            args.extend(
                [
                    "peer",
                    &keys[peer.index].1,
                    "allowed-ips",
                    &peer.subnet.to_string(),
                    "endpoint",
                    &format!("{}:{port}", peer.underlay),
                ]
                .map(str::to_owned),
            );
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        node.ns.exec_checked("wg", &args)?;
        let mtu = (UNDERLAY_MTU - WIREGUARD_OVERHEAD).to_string();
        node.ip(&[
            "addr",
            "add",
            &format!("{}/32", node.subnet.addr()),
            "dev",
            &dev,
        ])?;
        node.ip(&["link", "set", &dev, "mtu", &mtu, "up"])?;
        for peer in self.nodes.iter().filter(|n| n.index != i) {
            node.ip(&["route", "replace", &peer.subnet.to_string(), "dev", &dev])?;
        }
        self.nodes[i].process = Some(p);
        Ok(())
    }

    /// Every node's WireGuard private key file and public key, made once (`wg genkey`).
    fn wireguard_keys(&self) -> anyhow::Result<Vec<(PathBuf, String)>> {
        let mut keys = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let private = self.dir.path().join(format!("wg-{}.key", ROLES[i]));
            if !private.exists() {
                let key = node.ns.exec_checked("wg", &["genkey"])?;
                std::fs::write(&private, key)
                    .with_context(|| format!("writing {}", private.display()))?;
            }
            let mut pubkey = node
                .ns
                .command("wg", &["pubkey"])
                .stdin(File::open(&private)?)
                .output()
                .context("running wg pubkey")?;
            if !pubkey.status.success() {
                bail!(
                    "wg pubkey: {}",
                    String::from_utf8_lossy(&pubkey.stderr).trim()
                );
            }
            let public = String::from_utf8(std::mem::take(&mut pubkey.stdout))
                .context("wg pubkey's output")?;
            keys.push((private, public.trim().to_owned()));
        }
        Ok(keys)
    }

    /// Node `i` routes every other node's pod subnet via its underlay address: the kernel
    /// route DirectRouting installs, written by hand.
    fn route_raw_veth(&self, i: usize) -> anyhow::Result<()> {
        let node = &self.nodes[i];
        for peer in self.nodes.iter().filter(|n| n.index != i) {
            node.ip(&[
                "route",
                "replace",
                &peer.subnet.to_string(),
                "via",
                &peer.underlay.to_string(),
                "dev",
                UNDERLAY_DEV,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in &self.processes {
                eprintln!(
                    "---- testbed {}: log of {} ({}) ----\n{}",
                    self.id,
                    p.label(),
                    p.log_path().display(),
                    p.tail()
                );
            }
        }
        for p in &mut self.processes {
            p.stop();
        }
        self.processes.clear();
        netns::unregister_dir(self.dir.path());
    }
}

/// The address the router holds on each of its ports (inside the nodes' /24, used by none).
pub const ROUTER_ADDR: &str = "192.168.250.254";

/// The router namespace `<id>-wan` of [`Options::router`]: one veth port `p<i>` per node, a
/// /32 route to each node's underlay address through its port, forwarding and proxy ARP on,
/// reverse-path filtering and redirects off (the nodes share a /24 across the router). On an
/// IPv6 underlay likewise: a /128 route to each node's IPv6 address, forwarding on, and proxy
/// NDP entries on each port for the other nodes' addresses (they share `fd99::/64`).
fn router(id: &str, nodes: &[Node], options: Options) -> anyhow::Result<Netns> {
    let wan = Netns::create(&format!("{id}-wan"))?;
    for key in [
        "net.ipv4.ip_forward=1",
        "net.ipv4.conf.all.proxy_arp=1",
        "net.ipv4.conf.default.proxy_arp=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
    ] {
        wan.exec_checked("sysctl", &["-q", "-w", key])?;
    }
    if options.underlay.has_ipv6() {
        // No duplicate address detection: the ports' link-local addresses, the source of
        // every neighbour message the router sends, are usable at once.
        for key in [
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.all.proxy_ndp=1",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            wan.exec_checked("sysctl", &["-q", "-w", key])?;
        }
    }
    for node in nodes {
        let port = format!("p{}", node.index);
        wan.add_veth(&port, node.ns.name(), UNDERLAY_DEV)?;
        let mtu = UNDERLAY_MTU.to_string();
        // Proxy ARP answers at once, not after a random delay of up to 0.8 s (while the
        // nodes' first datagrams wait in an unresolved neighbour queue and overflow it).
        wan.exec_checked(
            "sysctl",
            &["-q", "-w", &format!("net.ipv4.neigh.{port}.proxy_delay=0")],
        )?;
        wan.exec_checked("ip", &["link", "set", &port, "mtu", &mtu, "up"])?;
        wan.exec_checked(
            "ip",
            &["addr", "add", &format!("{ROUTER_ADDR}/32"), "dev", &port],
        )?;
        wan.exec_checked(
            "ip",
            &[
                "route",
                "add",
                &format!("{}/32", node.underlay),
                "dev",
                &port,
            ],
        )?;
        if let Some(addr) = node.underlay6() {
            // As proxy ARP: answered at once.
            let delay = format!("net.ipv6.neigh.{port}.proxy_delay=0");
            wan.exec_checked("sysctl", &["-q", "-w", &delay])?;
            let host = format!("{addr}/128");
            wan.exec_checked("ip", &["-6", "route", "add", &host, "dev", &port])?;
            for other in nodes.iter().filter(|n| n.index != node.index) {
                let other = other.underlay6.to_string();
                wan.exec_checked("ip", &["-6", "neigh", "add", "proxy", &other, "dev", &port])?;
            }
        }
        options.apply(&wan, &port)?;
    }
    Ok(wan)
}

/// The IPv6 underlay address `host` on segment `segment` (0: `fd99::/64`, 1: `fd99:0:0:1::/64`).
fn underlay6_addr(segment: u128, host: u128) -> Ipv6Addr {
    Ipv6Addr::from(UNDERLAY6_PREFIX | segment << 64 | host)
}

/// Underlay, its offload features and pod set-up of one node.
fn setup_node(node: &Node, options: Options) -> anyhow::Result<()> {
    let mtu = UNDERLAY_MTU.to_string();
    if options.underlay.has_ipv4() {
        node.ip(&[
            "addr",
            "add",
            &format!("{}/24", node.underlay),
            "dev",
            UNDERLAY_DEV,
        ])?;
    }
    if options.underlay.has_ipv6() {
        // No duplicate address detection: the address is usable at once.
        node.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{}/{UNDERLAY6_LEN}", node.underlay6),
            "dev",
            UNDERLAY_DEV,
            "nodad",
        ])?;
    }
    node.ip(&["link", "set", UNDERLAY_DEV, "mtu", &mtu, "up"])?;
    options.apply(&node.ns, UNDERLAY_DEV)?;
    // This kernel may lack the dummy driver: a veth pair inside the node stands in (as a
    // pod's veth would), with the addresses on one end.
    node.ip(&[
        "link",
        "add",
        POD_DEV,
        "type",
        "veth",
        "peer",
        "name",
        POD_PEER_DEV,
    ])?;
    node.ip(&["link", "set", POD_PEER_DEV, "up"])?;
    node.ip(&[
        "addr",
        "add",
        &format!("{}/24", node.pod_ip()),
        "dev",
        POD_DEV,
    ])?;
    node.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{}/64", node.pod_ip6()),
        "dev",
        POD_DEV,
        "nodad",
    ])?;
    node.ip(&["link", "set", POD_DEV, "up"])?;
    Ok(())
}

/// Takes the machine-wide testbed lock (blocks while another testbed runs).
fn lock() -> anyhow::Result<File> {
    let path = std::env::temp_dir().join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the testbed lock {}", path.display()))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Node `i`'s WireGuard device: `wg<pid><role>`, unique on the machine while this process
/// lives (the testbed lock runs one testbed at a time).
fn wireguard_dev(i: usize) -> String {
    format!("wg{}{}", std::process::id() % 1_000_000, ROLES[i])
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("path {} is not UTF-8", p.display()))
}
