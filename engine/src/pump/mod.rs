//! The packet pump: N threads moving packets between TUN queues and UDP sockets.
//!
//! Contract: [`Pumps::start`] takes one TUN queue and one UDP socket (bound with SO_REUSEPORT
//! to the same address) per thread and runs each pair on its own thread with the chosen
//! [`IoDriver`]. Per thread, nothing is shared on the hot path but the route table snapshot
//! (read lock-free through `arc_swap`) and the per-peer counters; buffers are allocated once
//! when the thread starts, and nothing is allocated, logged or panicked on per packet.
//!
//! - TX: TUN read -> virtio header -> destination -> [`RouteTable::lookup`] -> no route: ICMP
//!   net unreachable back into the TUN (source: [`PumpConfig::icmp_source_v4`] / `_v6`, the
//!   base address of the overlay network, which no host owns) -> [`encap::gso::split`] with the
//!   peer's encapsulation header -> one `sendmsg` with UDP_SEGMENT per chunk (single datagrams
//!   of successive reads to one peer gather into one, by the rules of `pending`); a packet
//!   over the MTU gets ICMP fragmentation needed / packet too big.
//! - RX: UDP receive with UDP_GRO -> segments -> the sender must be a known peer -> decap ->
//!   the inner source must lie in that peer's subnets (unless
//!   [`PumpConfig::allow_foreign_inner_source`]) -> the inner destination must not lie in a
//!   peer's subnet (no relaying between peers) -> [`encap::gro::Coalescer`] -> one TUN
//!   write per super-packet, flushed once per drain of the socket (poll) or per turn of the
//!   ring (io_uring), and whenever it is full.
//!
//! Every drop is counted by [`DropReason`] in the thread's [`PumpCounters`]; the control
//! plane sums them with [`counters::sum`]. The threads share one [`Stop`]: each checks it
//! once per turn and waits on its eventfd beside its fds, so [`Pumps::stop`] wakes sleeping
//! threads at once. A thread that fails records it ([`Pumps::failed`], an outcome kept apart
//! from the stop request), requests the stop of its siblings and calls the `on_failure` given
//! to [`Pumps::start`] (the daemon raises SIGTERM so it exits).
//!
//! [`RouteTable::lookup`]: crate::route::RouteTable::lookup

pub mod busy_poll;
pub mod counters;
pub mod dataplane;
mod pending;
pub mod poll_driver;
pub mod ring;
pub mod spread;
pub mod uring_driver;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use encap::backend::Mac;
use encap::ChecksumCaps;

pub use counters::{DropReason, PumpCounters, Totals};
pub use dataplane::Dataplane;

use crate::model::Backend;
use crate::route::Routes;
use crate::tun::{Offloads, TunQueue};
use crate::underlay::UdpSocket;
use crate::Stop;

/// What every pump thread needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PumpConfig {
    /// Our backend.
    pub backend: Backend,
    /// Our VNI (vxlan).
    pub vni: u32,
    /// Our VtepMAC (vxlan).
    pub vtep_mac: Mac,
    /// The TUN MTU: the largest inner packet sent in one datagram.
    pub mtu: usize,
    /// What the TUN negotiated.
    pub offloads: Offloads,
    /// The source of ICMPv4 errors written into the TUN (`None`: none are sent).
    pub icmp_source_v4: Option<Ipv4Addr>,
    /// The source of ICMPv6 errors written into the TUN (`None`: none are sent).
    pub icmp_source_v6: Option<Ipv6Addr>,
    /// Whether the coalescer verifies inner checksums before merging: `Offloaded` only when
    /// the outer UDP checksum is known to have been verified (an IPv6 underlay, where it is
    /// mandatory); over IPv4 it may be zero, so `Complete`.
    pub checksum: ChecksumCaps,
    /// Deliver inner packets whose source is outside the sending peer's subnets instead of
    /// dropping them as [`DropReason::Spoofed`] (`--allow-foreign-inner-source`).
    pub allow_foreign_inner_source: bool,
    /// How long a pump thread keeps polling without blocking after it last moved a packet
    /// (`--busy-poll-us`; zero: it blocks as soon as a turn finds nothing). See [`busy_poll`].
    pub busy_poll: Duration,
}

/// How pump threads do their I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoDriver {
    /// Non-blocking fds, `poll`, `recvmmsg`, `sendmsg`.
    Poll,
    /// One io_uring per thread with batched submissions.
    Uring,
}

impl IoDriver {
    /// `poll` or `uring`.
    pub fn as_str(&self) -> &'static str {
        match self {
            IoDriver::Poll => "poll",
            IoDriver::Uring => "uring",
        }
    }
}

impl fmt::Display for IoDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pump thread could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PumpError {
    /// The stop eventfd could not be made.
    #[error("creating the pump stop eventfd failed: {0}")]
    EventFd(#[source] io::Error),
    /// A thread could not be spawned.
    #[error("spawning pump thread {index} failed: {source}")]
    Spawn {
        /// The thread number.
        index: usize,
        /// The error from the spawn.
        #[source]
        source: io::Error,
    },
    /// The backend has no data path of ours (host-gw: the kernel routes).
    #[error("the {0} backend runs no pumps: the kernel routes its traffic")]
    NoDataPath(Backend),
    /// Queues and sockets do not pair up.
    #[error("{queues} TUN queues but {sockets} UDP sockets: one of each per pump thread")]
    Mismatch {
        /// TUN queues given.
        queues: usize,
        /// Sockets given.
        sockets: usize,
    },
}

/// The running pump threads.
#[derive(Debug)]
pub struct Pumps {
    threads: Vec<JoinHandle<(TunQueue, UdpSocket)>>,
    stop: Stop,
    /// Set by a thread that ended with an error.
    failed: Arc<AtomicBool>,
    counters: Vec<Arc<PumpCounters>>,
    driver: IoDriver,
}

impl Pumps {
    /// Starts one thread per (TUN queue, UDP socket) pair.
    pub fn start(
        config: PumpConfig,
        driver: IoDriver,
        queues: Vec<TunQueue>,
        sockets: Vec<UdpSocket>,
        routes: Arc<Routes>,
        on_failure: impl Fn() + Send + Sync + 'static,
    ) -> Result<Pumps, PumpError> {
        Pumps::start_counted(config, driver, queues, sockets, routes, on_failure, None)
    }

    /// [`Pumps::start`], counting into `counters` (one per pair, e.g. those of pumps stopped
    /// by [`Pumps::stop_and_take`], so the totals go on) instead of fresh ones.
    pub fn start_counted(
        config: PumpConfig,
        driver: IoDriver,
        queues: Vec<TunQueue>,
        sockets: Vec<UdpSocket>,
        routes: Arc<Routes>,
        on_failure: impl Fn() + Send + Sync + 'static,
        counters: Option<Vec<Arc<PumpCounters>>>,
    ) -> Result<Pumps, PumpError> {
        let mut given = counters.map(Vec::into_iter);
        if !config.backend.has_data_path() {
            return Err(PumpError::NoDataPath(config.backend));
        }
        if queues.len() != sockets.len() || queues.is_empty() {
            return Err(PumpError::Mismatch {
                queues: queues.len(),
                sockets: sockets.len(),
            });
        }
        let stop = Stop::new().map_err(PumpError::EventFd)?;
        let failed = Arc::new(AtomicBool::new(false));
        let config = Arc::new(config);
        let on_failure: Arc<dyn Fn() + Send + Sync> = Arc::new(on_failure);
        let mut pumps = Pumps {
            threads: Vec::with_capacity(queues.len()),
            stop: stop.clone(),
            failed: Arc::clone(&failed),
            counters: Vec::with_capacity(queues.len()),
            driver,
        };
        for (index, (tun, udp)) in queues.into_iter().zip(sockets).enumerate() {
            let counters = given.as_mut().and_then(Iterator::next).unwrap_or_default();
            pumps.counters.push(Arc::clone(&counters));
            let dp = Dataplane::new(Arc::clone(&config), counters);
            let routes = Arc::clone(&routes);
            let stop = stop.clone();
            let failed = Arc::clone(&failed);
            let on_failure = Arc::clone(&on_failure);
            let spawned = std::thread::Builder::new()
                .name(format!("weft-pump-{index}"))
                .spawn(move || {
                    if !run_thread(index, driver, dp, &tun, &udp, &routes, &stop) {
                        failed.store(true, Ordering::Relaxed);
                        stop.request();
                        on_failure();
                    }
                    (tun, udp)
                });
            match spawned {
                Ok(handle) => pumps.threads.push(handle),
                Err(source) => {
                    pumps.stop_and_join();
                    return Err(PumpError::Spawn { index, source });
                }
            }
        }
        Ok(pumps)
    }

    /// Each thread's counters.
    pub fn counters(&self) -> &[Arc<PumpCounters>] {
        &self.counters
    }

    /// The driver the threads run.
    pub fn driver(&self) -> IoDriver {
        self.driver
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.counters.len()
    }

    /// Whether a thread ended with an error.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops every thread and waits for them (each notices within one loop turn).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    /// Stops every thread at a batch boundary and gives back each thread's TUN queue and UDP
    /// socket, in thread order, with nothing read from them left unhandled: the poll driver
    /// stops between turns (everything read was sent or written), the io_uring driver cancels
    /// its armed reads and finishes what had completed. Packets not read yet stay queued in
    /// the kernel for the next reader (the same process after [`Pumps::start`] again, or a
    /// successor weftd). `None` when a thread panicked (its pair is lost with it).
    pub fn stop_and_take(mut self) -> Option<Vec<(TunQueue, UdpSocket)>> {
        self.stop.request();
        let mut pairs = Vec::with_capacity(self.threads.len());
        let mut lost = false;
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(pair) => pairs.push(pair),
                Err(_) => {
                    tracing::error!("a pump thread panicked");
                    lost = true;
                }
            }
        }
        (!lost).then_some(pairs)
    }

    fn stop_and_join(&mut self) {
        self.stop.request();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a pump thread panicked");
            }
        }
    }
}

impl Drop for Pumps {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run_thread(
    index: usize,
    driver: IoDriver,
    dp: Dataplane,
    tun: &TunQueue,
    udp: &UdpSocket,
    routes: &Arc<Routes>,
    stop: &Stop,
) -> bool {
    let result = match driver {
        IoDriver::Poll => poll_driver::run(dp, tun, udp, routes, stop),
        IoDriver::Uring => uring_driver::run(dp, tun, udp, routes, stop),
    };
    if let Err(e) = result {
        tracing::error!("pump thread {index} ({driver} driver) stopped: {e}");
        return false;
    }
    true
}
