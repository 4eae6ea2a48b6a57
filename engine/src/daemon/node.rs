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

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use encap::ChecksumCaps;
use signal_hook::consts::SIGTERM;

use crate::config::{DriverArg, Settings};
use crate::control::{ControlListener, ControlServer, ControlState};
use crate::http::Health;
use crate::model::format_mac;
use crate::pump::{IoDriver, PumpConfig, Pumps};
use crate::route::{Local, Routes};
use crate::sys::{netif, rtnetlink};
use crate::tun::{Offloads, Tun};
use crate::underlay::{UdpConfig, UdpSocket};

/// Our side of the route table (backend, port, VNI, VtepMAC, PublicIP, subnets) from `s`.
pub(super) fn local(s: &Settings) -> Local {
    Local {
        backend: s.backend,
        port: s.port,
        vni: s.vni,
        vtep_mac: s.vtep_mac,
        public_ip: s.public_ip,
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
    pumps: Option<Pumps>,
    control: ControlServer,
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
            tun.into_queues(),
            sockets,
            Arc::clone(routes),
            || {
                // Wake the daemon's signal loop (static or lease mode) so that it exits
                // instead of running without a pump.
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
        Ok(Node {
            pumps: Some(pumps),
            control,
        })
    }

    /// A node whose packets the kernel routes (host-gw): no TUN, sockets or pumps; `control`
    /// and `health` serve `routes` (`stats` shows no pump threads).
    pub fn routes_only(
        routes: &Arc<Routes>,
        health: &Health,
        control: ControlListener,
    ) -> Result<Node> {
        let state = ControlState {
            routes: Arc::clone(routes),
            counters: Vec::new(),
            driver: IoDriver::Poll,
            offloads: Offloads {
                vnet_hdr: false,
                tso: false,
                uso: false,
            },
        };
        health.set_dataplane(state.clone());
        let control = control.serve(state)?;
        tracing::info!(
            "control socket {} (no pumps: the kernel routes)",
            control.addr()
        );
        Ok(Node {
            pumps: None,
            control,
        })
    }

    /// Stops the pumps and the control socket; returns whether a pump had failed.
    pub fn stop(self) -> bool {
        let failed = self.pumps.as_ref().is_some_and(Pumps::failed);
        if let Some(pumps) = self.pumps {
            pumps.stop();
        }
        drop(self.control);
        failed
    }
}
