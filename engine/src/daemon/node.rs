//! The running data path of a weftd node: the TUN, the UDP sockets, the pump threads and the
//! control socket, started in one go by [`Node::start`] and stopped by [`Node::stop`].
//!
//! Start-up, in order: the I/O driver (`--io-driver`; `uring` exits if io_uring is not
//! usable, `auto` falls back to poll), the TUN (queues, MTU, address `<subnet>.0/32` and
//! `<subnet6>::/128`, up, routes for `--network` / `--network6`), one UDP socket per pump
//! thread (SO_REUSEPORT, spread by inner flow with a reuseport BPF program when there are
//! several), the pump threads, then serving the control socket. Every resource is owned (the
//! TUN is not persistent, so it and its routes go when its queues close; the control socket
//! file is removed on drop), so a failed start leaves nothing behind.
//!
//! An upgrade ([`super::handover`]): [`Node::adopt`] starts the pumps on the TUN queues, UDP
//! sockets and control listener a predecessor passed (the device keeps its MTU, addresses and
//! routes; the sockets their buffers, GRO and reuseport group), and [`Node::pause`] /
//! [`Node::resume`] / [`Node::leave`] are the predecessor's side: stop the pumps at a batch
//! boundary keeping the descriptors, start again on them if the handover fails, or go without
//! touching what the successor now runs.

use std::os::fd::BorrowedFd;
use std::sync::{mpsc, Arc};

use anyhow::{bail, Context, Result};
use encap::ChecksumCaps;
use signal_hook::consts::SIGTERM;

use crate::config::{DriverArg, Settings};
use crate::control::{ControlListener, ControlServer, ControlState, Handover, HandoverSink};
use crate::http::Health;
use crate::model::format_mac;
use crate::pump::{IoDriver, PumpConfig, PumpCounters, Pumps};
use crate::route::{Local, Routes};
use crate::sys::{netif, rtnetlink};
use crate::tun::{Offloads, Tun, TunQueue};
use crate::underlay::{UdpConfig, UdpSocket};

use super::handover::Handed;

/// The signal the control thread raises when a handover request waits
/// ([`Node::next_handover`]): it wakes the daemon's signal loop.
pub(super) const HANDOVER_SIGNAL: libc::c_int = signal_hook::consts::SIGUSR1;

/// Our side of the route table (backend, port, VNI, VtepMAC, PublicIP, subnets) from `s`.
pub(super) fn local(s: &Settings) -> Local {
    Local {
        backend: s.backend,
        port: s.port,
        vni: s.vni,
        vtep_mac: s.vtep_mac,
        public_ip: s.public_ip,
        public_ip6: s.public_ip6,
        subnets: s.subnets(),
    }
}

fn choose_driver(asked: DriverArg) -> Result<IoDriver> {
    match asked {
        DriverArg::Poll => Ok(IoDriver::Poll),
        DriverArg::Uring => match crate::pump::uring_driver::probe() {
            Ok(()) => Ok(IoDriver::Uring),
            Err(e) => bail!("--io-driver uring: io_uring is not usable here: {e}"),
        },
        DriverArg::Auto => match crate::pump::uring_driver::probe() {
            Ok(()) => Ok(IoDriver::Uring),
            Err(e) => {
                tracing::info!("io_uring not usable ({e}); using the poll driver");
                Ok(IoDriver::Poll)
            }
        },
    }
}

/// The running data path: the pumps (which own the TUN queues) and the control socket. A
/// host-gw node has no pumps: the kernel routes ([`Node::routes_only`]).
#[derive(Debug)]
pub struct Node {
    /// `None` while paused for a handover, and always for host-gw.
    pumps: Option<Pumps>,
    /// host-gw: the kernel routes; no TUN, sockets or pumps, ever.
    kernel_routes_only: bool,
    control: ControlServer,
    config: PumpConfig,
    driver: IoDriver,
    routes: Arc<Routes>,
    counters: Vec<Arc<PumpCounters>>,
    tun_name: String,
    handovers: mpsc::Receiver<Handover>,
}

/// The pumps' configuration from `s` and what the TUN negotiated.
fn pump_config(s: &Settings, offloads: Offloads) -> PumpConfig {
    PumpConfig {
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
        busy_poll: s.busy_poll,
    }
}

/// Raises SIGTERM after a pump failed, so the daemon's signal loop (static or lease mode)
/// exits instead of running without a pump.
fn on_pump_failure() {
    if let Err(e) = signal_hook::low_level::raise(SIGTERM) {
        tracing::error!("raising SIGTERM after a pump failure failed: {e}");
    }
}

impl Node {
    /// The TUN (name, MTU, addresses, routes), the UDP sockets, the pumps, and `control`
    /// served; `health` reports on the same counters and routes as the control socket from
    /// then on. A pump thread that fails raises SIGTERM, so the daemon's signal loop stops.
    pub fn start(
        s: &Settings,
        routes: &Arc<Routes>,
        health: &Health,
        control: ControlListener,
    ) -> Result<Node> {
        let driver = choose_driver(s.io_driver)?;

        let tun = Tun::open(&s.tun_name, s.pump_threads)?;
        let offloads = tun.offloads();
        tun.set_mtu(s.mtu)?;
        tun.set_txqueuelen(s.tun_txqueuelen)?;
        tracing::info!(
            "TUN {} MTU {} ({}), txqueuelen {}",
            tun.name(),
            s.mtu,
            s.mtu_source,
            s.tun_txqueuelen
        );
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

        let bind = s.underlay_bind();
        let udp_config = UdpConfig {
            nonblocking: true,
            dual_stack: s.dual_stack(),
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
            match crate::pump::spread::attach(&sockets, s.backend) {
                Ok(()) => tracing::info!(
                    "received flows spread over {} sockets by the inner flow (reuseport BPF)",
                    sockets.len()
                ),
                Err(e) => tracing::warn!(
                    "reuseport BPF refused ({e}): received flows spread by the outer 4-tuple only"
                ),
            }
        }
        let name = tun.name().to_owned();
        Node::run(
            s,
            routes,
            health,
            control,
            (tun.into_queues(), sockets),
            (name, offloads, driver),
        )
    }

    /// Takes over the data path a predecessor handed over (see the module documentation):
    /// the pumps start on its queues and sockets with `s`'s driver, and the control socket
    /// is served on its listener.
    pub(super) fn adopt(
        s: &Settings,
        routes: &Arc<Routes>,
        health: &Health,
        handed: Handed,
    ) -> Result<Node> {
        let driver = choose_driver(s.io_driver)?;
        let Handed {
            listener,
            queues,
            sockets,
            offloads,
            tun_name,
        } = handed;
        for q in &queues {
            q.set_nonblocking(true)?;
        }
        for u in &sockets {
            u.set_nonblocking(true)?;
        }
        tracing::info!(
            "took over TUN {tun_name} ({} queue(s), {offloads}) and {} UDP socket(s) on {}",
            queues.len(),
            sockets.len(),
            sockets
                .first()
                .map_or_else(String::new, |u| u.local_addr().to_string()),
        );
        Node::run(
            s,
            routes,
            health,
            listener,
            (queues, sockets),
            (tun_name, offloads, driver),
        )
    }

    /// The pumps on `pairs` and the control socket served (the part of a start shared by
    /// [`Node::start`] and [`Node::adopt`]).
    fn run(
        s: &Settings,
        routes: &Arc<Routes>,
        health: &Health,
        control: ControlListener,
        (queues, sockets): (Vec<TunQueue>, Vec<UdpSocket>),
        (tun_name, offloads, driver): (String, Offloads, IoDriver),
    ) -> Result<Node> {
        let config = pump_config(s, offloads);
        if s.allow_foreign_inner_source {
            tracing::warn!(
                "--allow-foreign-inner-source: inner packets from a peer are delivered whatever \
                 their source (no anti-spoofing check)"
            );
        }
        if s.backend == crate::model::Backend::Vxlan {
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
            queues,
            sockets,
            Arc::clone(routes),
            on_pump_failure,
        )?;
        tracing::info!(
            "{} pump thread(s), {} driver, backend {}",
            pumps.threads(),
            pumps.driver(),
            s.backend
        );
        let (tx, handovers) = mpsc::channel();
        let sink = HandoverSink::new(tx, || {
            if let Err(e) = signal_hook::low_level::raise(HANDOVER_SIGNAL) {
                tracing::error!("waking the daemon for a handover failed: {e}");
            }
        });
        let state = ControlState {
            backend: s.backend,
            routes: Arc::clone(routes),
            counters: pumps.counters().to_vec(),
            driver,
            offloads,
            handover: Some(sink),
        };
        health.set_dataplane(state.clone());
        let control = control.serve(state)?;
        tracing::info!("control socket {}", control.addr());
        Ok(Node {
            counters: pumps.counters().to_vec(),
            pumps: Some(pumps),
            kernel_routes_only: false,
            control,
            config,
            driver,
            routes: Arc::clone(routes),
            tun_name,
            handovers,
        })
    }

    /// A node whose packets the kernel routes (host-gw): no TUN, sockets or pumps; `control`
    /// and `health` serve `routes` (`stats` shows no pump threads), and handovers are refused.
    pub fn routes_only(
        s: &Settings,
        routes: &Arc<Routes>,
        health: &Health,
        control: ControlListener,
    ) -> Result<Node> {
        let offloads = Offloads {
            vnet_hdr: false,
            tso: false,
            uso: false,
        };
        let state = ControlState {
            backend: s.backend,
            routes: Arc::clone(routes),
            counters: Vec::new(),
            driver: IoDriver::Poll,
            offloads,
            handover: None,
        };
        health.set_dataplane(state.clone());
        let control = control.serve(state)?;
        tracing::info!(
            "control socket {} (no pumps: the kernel routes)",
            control.addr()
        );
        let (_, handovers) = mpsc::channel();
        Ok(Node {
            pumps: None,
            kernel_routes_only: true,
            control,
            config: pump_config(s, offloads),
            driver: IoDriver::Poll,
            routes: Arc::clone(routes),
            counters: Vec::new(),
            tun_name: s.tun_name.clone(),
            handovers,
        })
    }

    /// A handover request the control socket passed on, if one waits.
    pub(super) fn next_handover(&self) -> Option<Handover> {
        self.handovers.try_recv().ok()
    }

    /// The pump threads (TUN queues, UDP sockets).
    pub(super) fn threads(&self) -> usize {
        self.counters.len()
    }

    /// The TUN device name.
    pub(super) fn tun_name(&self) -> &str {
        &self.tun_name
    }

    /// What the TUN negotiated.
    pub(super) fn offloads(&self) -> Offloads {
        self.config.offloads
    }

    /// The listening control socket, to pass to a successor.
    pub(super) fn control_listener(&self) -> BorrowedFd<'_> {
        self.control.listener()
    }

    /// Stops the pumps at a batch boundary and gives back their TUN queues and UDP sockets
    /// (see [`Pumps::stop_and_take`]); `None` when a pump thread panicked or the pumps were
    /// already paused.
    pub(super) fn pause(&mut self) -> Option<Vec<(TunQueue, UdpSocket)>> {
        self.pumps.take()?.stop_and_take()
    }

    /// Starts the pumps again on `pairs` (from [`Node::pause`]), counting on where they were.
    pub(super) fn resume(&mut self, pairs: Vec<(TunQueue, UdpSocket)>) -> Result<()> {
        let (queues, sockets): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
        let pumps = Pumps::start_counted(
            self.config,
            self.driver,
            queues,
            sockets,
            Arc::clone(&self.routes),
            on_pump_failure,
            Some(self.counters.clone()),
        )?;
        self.pumps = Some(pumps);
        Ok(())
    }

    /// Goes after a handover: the pumps are stopped (paused) and the successor runs the TUN,
    /// the sockets and the control socket, so nothing is torn down (the socket file stays).
    pub(super) fn leave(mut self) {
        self.control.set_handed_over();
        if let Some(pumps) = self.pumps.take() {
            pumps.stop();
        }
    }

    /// Whether the pumps run (not paused for a handover).
    pub(super) fn running(&self) -> bool {
        self.pumps.is_some()
    }

    /// Stops the pumps and the control socket; returns whether a pump had failed (or none ran:
    /// paused for a handover that failed and could not start them again).
    pub fn stop(self) -> bool {
        let failed = !self.kernel_routes_only && self.pumps.as_ref().is_none_or(Pumps::failed);
        if let Some(pumps) = self.pumps {
            pumps.stop();
        }
        drop(self.control);
        failed
    }
}
