//! weftd: the weft dataplane daemon.
//!
//! Two modes. Static mode (`--subnet` / `--subnet6` and `--peers`): the routes come from the
//! peers file. Lease mode (neither given), flanneld's way: the lease store (etcd, or the
//! directory of `--lease-dir`) -> the network config (waited for while missing or invalid)
//! -> the backend, port, VNI and Network from it -> our lease (`SubnetManager::acquire`; the
//! VtepMAC of our previous vxlan lease is kept) -> the data path below -> `--subnet-file` ->
//! `--ip-masq` rules (re-checked every `--iptables-resync` s, removed on SIGTERM) -> a thread
//! turning the manager's peer sets into route-table swaps and a new own lease into a new TUN
//! address. On SIGTERM the lease stays in the store (as flanneld's) and the TUN goes.
//! systemd is sent READY=1 (`$NOTIFY_SOCKET`) once ready.
//!
//! Data path start-up, in order: flags ([`engine::config`], flanneld's syntax; bad values exit
//! 2), logging on stderr, the control socket (taken first: a second weftd for the same TUN in
//! this network namespace exits before it leases or makes anything), the TUN (queues, MTU, address `<subnet>.0/32` and `<subnet6>::/128`, up, routes for `--network`
//! / `--network6`), one UDP socket per pump thread, the route table from `--peers`, the pump
//! threads, serving the control socket; then `weftd: ready` on stderr. With `--healthz-port` the
//! `engine::http` endpoint runs from the start (`/readyz` 200 from `weftd: ready` on).
//! SIGHUP reloads the peers file; SIGTERM / SIGINT send systemd `STOPPING=1`, stop the pumps
//! and exit 0 (1 when a pump thread failed). Every resource is
//! owned (the TUN is not persistent, so it and its routes go when its queues close; the control
//! socket file is removed on drop), so a failed start leaves nothing behind.
#![deny(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use encap::ChecksumCaps;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use engine::config::{Cli, DriverArg, Settings};

mod leased;
use engine::control::{ControlListener, ControlServer, ControlState};
use engine::http::Health;
use engine::pump::{IoDriver, PumpConfig, Pumps};
use engine::route::{format_mac, load_peers_file, swap_retiring, Local, RouteTable, Routes};
use engine::sys::{netif, rtnetlink};
use engine::tun::Tun;
use engine::udp::{UdpConfig, UdpSocket};

fn main() -> ExitCode {
    let cli = Cli::parse_flanneld();
    let ignored = cli.flanneld_only.ignored();
    let settings = match cli.resolve() {
        Ok(s) => s,
        Err(e) => e.exit(),
    };
    init_logging(settings.log_level);
    for flag in ignored {
        tracing::warn!("{flag} (a klog flag of flanneld's) is ignored: use -v=N or RUST_LOG");
    }
    match run(&settings) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weftd: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause only when the message so far does not already say it
/// (engine's errors put their source in their own message).
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

pub(crate) fn local(s: &Settings) -> Local {
    Local {
        backend: s.backend,
        port: s.port,
        vni: s.vni,
        vtep_mac: s.vtep_mac,
        public_ip: s.public_ip,
        subnets: s.subnets(),
    }
}

/// Loads the peers file (an empty table without one), logging each line left out.
fn load_routes(s: &Settings, previous: Option<&RouteTable>) -> Result<RouteTable> {
    let Some(path) = &s.peers else {
        return Ok(RouteTable::empty());
    };
    let (table, errors) = load_peers_file(path, &local(s), previous)?;
    for e in &errors {
        tracing::warn!("peers file: {e} (line skipped)");
    }
    tracing::info!(
        "peers file {}: {} route(s) to {} peer(s), {} line(s) skipped",
        path.display(),
        table.len(),
        table.peers().len(),
        errors.len()
    );
    Ok(table)
}

fn choose_driver(asked: DriverArg) -> Result<IoDriver> {
    match asked {
        DriverArg::Poll => Ok(IoDriver::Poll),
        DriverArg::Uring => match engine::pump::uring_driver::probe() {
            Ok(()) => Ok(IoDriver::Uring),
            Err(e) => bail!("--io-driver uring: io_uring is not usable here: {e}"),
        },
        DriverArg::Auto => match engine::pump::uring_driver::probe() {
            Ok(()) => Ok(IoDriver::Uring),
            Err(e) => {
                tracing::info!("io_uring not usable ({e}); using the poll driver");
                Ok(IoDriver::Poll)
            }
        },
    }
}

/// The running data path: the pumps (which own the TUN queues) and the control socket.
pub(crate) struct Dataplane {
    pumps: Pumps,
    control: ControlServer,
}

impl Dataplane {
    /// Stops the pumps; returns whether one had failed.
    pub(crate) fn stop(self) -> bool {
        let failed = self.pumps.failed();
        self.pumps.stop();
        drop(self.control);
        failed
    }
}

fn run(s: &Settings) -> Result<ExitCode> {
    // Signals first, so that a SIGTERM during start-up ends in a clean exit below.
    let signals = Signals::new([SIGHUP, SIGTERM, SIGINT]).context("installing signal handlers")?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let health = Arc::new(Health::new());
    health.set_per_peer_metrics(s.metrics_per_peer);
    if let Some(addr) = s.healthz {
        let bound = engine::http::serve(addr, Arc::clone(&health))?;
        tracing::info!("healthz http://{bound}/healthz, /readyz, /metrics");
    }
    match &s.lease {
        None => run_static(s, signals, &health),
        Some(lease) => leased::run(s, lease, signals, &stop, &health),
    }
}

fn run_static(s: &Settings, mut signals: Signals, health: &Health) -> Result<ExitCode> {
    let control = ControlListener::bind(&s.control)?;
    let routes = Arc::new(Routes::from_pointee(load_routes(s, None)?));
    let dataplane = start_dataplane(s, &routes, health, control)?;
    health.set_ready();
    eprintln!("weftd: ready");
    notify_ready();
    let mut retired = Vec::new();
    for signal in signals.forever() {
        match signal {
            SIGHUP => reload(s, &routes, &mut retired),
            _ => {
                tracing::info!("signal {signal}: stopping");
                break;
            }
        }
    }
    notify_systemd("STOPPING=1");
    let failed = dataplane.stop();
    tracing::info!("stopped");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The TUN (name, MTU, addresses, routes), the UDP sockets, the pumps, and `control` served;
/// `health` reports on the same counters and routes as the control socket from then on.
pub(crate) fn start_dataplane(
    s: &Settings,
    routes: &Arc<Routes>,
    health: &Health,
    control: ControlListener,
) -> Result<Dataplane> {
    let driver = choose_driver(s.io_driver)?;

    let tun = Tun::open(&s.tun_name, s.pump_threads)?;
    let offloads = tun.offloads();
    tun.set_mtu(s.mtu)?;
    tracing::info!("TUN {} MTU {} ({})", tun.name(), s.mtu, s.mtu_source);
    if let Some(subnet) = s.subnet {
        if let std::net::IpAddr::V4(a) = subnet.addr() {
            tun.set_ipv4_addr(a, 32)?;
        }
    }
    if let Some(subnet6) = s.subnet6 {
        if let std::net::IpAddr::V6(a) = subnet6.addr() {
            tun.add_ipv6_addr(a, 128)?;
        }
    }
    tun.set_up()?;
    let ifindex = netif::index(tun.name())
        .with_context(|| format!("reading the interface index of {}", tun.name()))?;
    for network in [s.network, s.network6].into_iter().flatten() {
        rtnetlink::add_device_route(network.addr(), network.prefix_len(), ifindex)
            .with_context(|| format!("adding the route {network} dev {}", tun.name()))?;
        tracing::info!("route {network} dev {}", tun.name());
    }
    if s.network.is_none() && s.subnet.is_some() {
        tracing::warn!("no --network: nothing routed through {}, and ICMP errors use the TUN address (the kernel drops them as martians)", tun.name());
    }
    tun.set_nonblocking(true)?;

    let bind = SocketAddr::new(s.public_ip, s.port);
    let udp_config = UdpConfig {
        nonblocking: true,
        ..UdpConfig::default()
    };
    let sockets = (0..s.pump_threads)
        .map(|_| UdpSocket::bind(bind, &udp_config))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(first) = sockets.first() {
        let b = first.buffers();
        tracing::info!(
            "UDP {bind}: {} socket(s), SO_REUSEPORT, buffers rcv {} snd {}{}, GRO {}, GSO {}",
            sockets.len(),
            b.recv,
            b.send,
            if b.forced {
                ""
            } else {
                " (not forced: capped by net.core.*mem_max)"
            },
            if first.gro_enabled() { "on" } else { "off" },
            if first.gso_enabled() { "on" } else { "off" },
        );
    }

    if sockets.len() > 1 {
        match engine::pump::spread::attach(&sockets, s.backend) {
            Ok(()) => tracing::info!(
                "received flows spread over {} sockets by the inner flow (reuseport BPF)",
                sockets.len()
            ),
            Err(e) => tracing::warn!(
                "reuseport BPF refused ({e}): received flows spread by the outer 4-tuple only"
            ),
        }
    }
    let config = PumpConfig {
        backend: s.backend,
        vni: s.vni,
        vtep_mac: s.vtep_mac,
        mtu: s.mtu as usize,
        offloads,
        icmp_source_v4: s.icmp_source_v4(),
        icmp_source_v6: s.icmp_source_v6(),
        checksum: if s.public_ip.is_ipv6() {
            ChecksumCaps::Offloaded
        } else {
            ChecksumCaps::Complete
        },
        allow_foreign_inner_source: s.allow_foreign_inner_source,
    };
    if s.allow_foreign_inner_source {
        tracing::warn!(
            "--allow-foreign-inner-source: inner packets from a peer are delivered whatever \
             their source (no anti-spoofing check)"
        );
    }
    if s.backend == engine::route::Backend::Vxlan {
        tracing::info!(
            "vxlan VNI {} VtepMAC {}{}",
            s.vni,
            format_mac(&s.vtep_mac),
            if s.vtep_mac_random { " (random)" } else { "" }
        );
    }
    let pumps = Pumps::start(
        config,
        driver,
        tun.into_queues(),
        sockets,
        Arc::clone(routes),
        || {
            // Wake the signal loop below so the daemon exits instead of running without a pump.
            if let Err(e) = signal_hook::low_level::raise(SIGTERM) {
                tracing::error!("raising SIGTERM after a pump failure failed: {e}");
            }
        },
    )?;
    tracing::info!(
        "{} pump thread(s), {} driver, backend {}",
        pumps.threads(),
        pumps.driver(),
        s.backend
    );
    let state = ControlState {
        routes: Arc::clone(routes),
        counters: pumps.counters().to_vec(),
        driver,
        offloads,
    };
    health.set_dataplane(state.clone());
    let control = control.serve(state)?;
    tracing::info!("control socket {}", control.addr());
    Ok(Dataplane { pumps, control })
}

/// Tells systemd we are ready (`READY=1`).
pub(crate) fn notify_ready() {
    notify_systemd("READY=1");
}

/// Sends `state` (`READY=1`, `STOPPING=1`) to `$NOTIFY_SOCKET`, a path or `@abstract` name;
/// nothing without the variable.
pub(crate) fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    match sent {
        Ok(_) => tracing::debug!("told systemd {state}"),
        Err(e) => tracing::warn!("telling systemd {state} via {target:?} failed: {e}"),
    }
}

fn reload(s: &Settings, routes: &Routes, retired: &mut Vec<Arc<RouteTable>>) {
    let Some(path) = &s.peers else {
        tracing::info!("SIGHUP: no --peers file to reload");
        return;
    };
    let current = routes.load_full();
    match load_routes(s, Some(&current)) {
        Ok(table) => {
            swap_retiring(routes, table, retired);
            tracing::info!("SIGHUP: reloaded {}", path.display());
        }
        Err(e) => tracing::error!("SIGHUP: keeping the current routes: {e:#}"),
    }
}
