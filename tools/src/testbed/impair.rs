//! A lossy underlay: random loss, duplication, reordering and delay with jitter of the overlay's
//! datagrams, applied in the router namespace of a testbed built with [`super::Options::router`].
//!
//! This kernel has no `netem` (and no modules), so the impairment is built from what it has,
//! all of it inside the router namespace (`<id>-wan`), on the FORWARD path of the datagrams to
//! the overlay's port, one chain per direction (`WEFT-IMPAIR-AB`, `WEFT-IMPAIR-BA` in the mangle
//! table), in this order:
//!
//! 1. loss: `-m statistic --mode random --probability P -j DROP`;
//! 2. duplication: `-m statistic --mode random --probability P -j TEE --gateway <destination>`
//!    (the clone leaves at once through the router's output path, so it is neither lost nor
//!    delayed again, and it may overtake its original);
//! 3. delay, jitter and reordering: `-j NFQUEUE`, and a relay thread ([`super::nfqueue`])
//!    that holds each queued packet for a delay drawn uniformly from the jitter range, plus a
//!    fixed hold for the reordered fraction, and then lets the kernel forward it. Packets are
//!    released by due time, not arrival order, so delays that differ reorder them as a real
//!    path does.
//!
//! Why this design: the nodes and their overlays are configured exactly as users run them
//! (the same addresses in one /24, the same peers, no relay address anywhere in weftd's
//! configuration: the router proxy-ARPs), the packets that arrive are the very packets that
//! were sent (NFQUEUE copies only their metadata to userspace, nothing is re-sent or
//! re-addressed), and every packet the impairment touched is counted by the kernel: the
//! iptables counters say how many datagrams of each direction reached the router, how many
//! were dropped and duplicated, and `/proc/net/netfilter/nfnetlink_queue` how many the queue
//! itself lost (none, or the figures are void). A test can therefore predict exactly what the
//! receiver should see. The alternatives were worse: giving the nodes a relay's address as
//! their peers' underlay path changes weftd's configuration (and weftd rightly drops datagrams
//! whose source is not a peer's PublicIP), and a relay that receives the datagrams (DNAT,
//! TPROXY) must re-send them with each original source address and port forged, so what
//! arrives is the relay's copy, not what the node sent.
//!
//! Contract: [`Impaired::install`] sets up the rules (and the relay when the impairment delays
//! or reorders) and returns once they are in place; dropping the [`Impaired`] removes the
//! rules first and then stops the relay, which releases every packet it still holds, so no
//! packet is lost by the removal. The testbed's underlay should have transmit offloads off
//! ([`super::Options::veth_tx_offload`]), as on a real wire: otherwise a whole GSO batch
//! crosses the router as one packet and is lost or duplicated as one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::nfqueue::Queue;
use weft_testkit::netns::{self, run_checked, Netns};

/// The NFQUEUE number the relay binds (one queue per router namespace).
const QUEUE_NUM: u16 = 0;
/// The chains, by direction (node a -> node b, node b -> node a).
const CHAINS: [&str; 2] = ["WEFT-IMPAIR-AB", "WEFT-IMPAIR-BA"];
/// The longest the relay sleeps between looks at its stop flag.
const RELAY_TICK: Duration = Duration::from_millis(20);

/// What happens to the underlay's datagrams on their way through the router.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram (that was not dropped) is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by [`Impairment::reorder_hold`] while the
    /// others pass.
    pub reorder: f64,
    /// How long a reordered datagram is held (on top of any jitter).
    pub reorder_hold: Duration,
    /// Every datagram delayed by a time drawn uniformly from this range.
    pub jitter: Option<(Duration, Duration)>,
}

impl Impairment {
    /// Nothing.
    pub const NONE: Impairment = Impairment {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_hold: Duration::ZERO,
        jitter: None,
    };

    /// A lossy path's impairments, alone and together: 1 % loss, 1 % duplication, 25 %
    /// reordering (held 5 ms), 10 ms +- 5 ms of delay.
    pub fn lossy_path() -> [(&'static str, Impairment); 5] {
        let loss = Impairment {
            loss: 0.01,
            ..Impairment::NONE
        };
        let duplicate = Impairment {
            duplicate: 0.01,
            ..Impairment::NONE
        };
        let reorder = Impairment {
            reorder: 0.25,
            reorder_hold: Duration::from_millis(5),
            ..Impairment::NONE
        };
        let jitter = Impairment {
            jitter: Some((Duration::from_millis(5), Duration::from_millis(15))),
            ..Impairment::NONE
        };
        let all = Impairment {
            loss: loss.loss,
            duplicate: duplicate.duplicate,
            reorder: reorder.reorder,
            reorder_hold: reorder.reorder_hold,
            jitter: jitter.jitter,
        };
        [
            ("loss 1%", loss),
            ("duplicate 1%", duplicate),
            ("reorder 25%", reorder),
            ("delay 10ms+-5ms", jitter),
            ("all together", all),
        ]
    }

    /// Whether datagrams go through the relay (delay or reordering).
    pub fn delays(&self) -> bool {
        self.reorder > 0.0 || self.jitter.is_some()
    }
}

/// The iptables counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams to the overlay's port that reached the router.
    pub seen: u64,
    /// Dropped by the loss rule.
    pub dropped: u64,
    /// Duplicated by the TEE rule (each one sent twice).
    pub duplicated: u64,
    /// Handed to the relay's queue.
    pub queued: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, before: Counts) -> Counts {
        Counts {
            seen: self.seen - before.seen,
            dropped: self.dropped - before.dropped,
            duplicated: self.duplicated - before.duplicated,
            queued: self.queued - before.queued,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seen {} dropped {} duplicated {} queued {}",
            self.seen, self.dropped, self.duplicated, self.queued
        )
    }
}

/// The relay's own counters, and the kernel's for its queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounts {
    /// Packets the kernel queued to the relay.
    pub queued: u64,
    /// Packets released (verdict accept).
    pub released: u64,
    /// Packets given the reorder hold.
    pub held: u64,
    /// Socket overruns the relay saw (`ENOBUFS`).
    pub overruns: u64,
    /// The kernel's `queue_dropped` (queue full) for the relay's queue.
    pub kernel_queue_dropped: u64,
    /// The kernel's `user_dropped` (could not tell the relay) for the relay's queue.
    pub kernel_user_dropped: u64,
}

impl std::fmt::Display for RelayCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "queued {} released {} held {} overruns {} kernel queue_dropped {} user_dropped {}",
            self.queued,
            self.released,
            self.held,
            self.overruns,
            self.kernel_queue_dropped,
            self.kernel_user_dropped
        )
    }
}

#[derive(Debug, Default)]
struct Shared {
    queued: AtomicU64,
    released: AtomicU64,
    held: AtomicU64,
    overruns: AtomicU64,
}

/// An impairment in place in a router namespace.
#[derive(Debug)]
pub struct Impaired {
    router: String,
    impairment: Impairment,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    relay: Option<JoinHandle<anyhow::Result<()>>>,
    /// The chains created, and the FORWARD rules jumping to them (as `-A FORWARD` got them).
    chains: Vec<&'static str>,
    jumps: Vec<Vec<String>>,
}

impl Impaired {
    /// Impairs the datagrams to UDP port `port` between `a` and `b` (both directions) that
    /// cross `router`. `seed` seeds the relay's delays.
    pub fn install(
        router: &Netns,
        a: Ipv4Addr,
        b: Ipv4Addr,
        port: u16,
        impairment: Impairment,
        seed: u64,
    ) -> anyhow::Result<Impaired> {
        for p in [impairment.loss, impairment.duplicate, impairment.reorder] {
            if !(0.0..=1.0).contains(&p) {
                bail!("a probability of {p} in {impairment:?}");
            }
        }
        let mut this = Impaired {
            router: router.name().to_owned(),
            impairment,
            stop: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(Shared::default()),
            relay: None,
            chains: Vec::new(),
            jumps: Vec::new(),
        };
        if impairment.delays() {
            // The relay binds before any rule can queue a packet to it.
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let stop = Arc::clone(&this.stop);
            let shared = Arc::clone(&this.shared);
            let name = this.router.clone();
            this.relay = Some(std::thread::spawn(move || {
                netns::enter(&name)?;
                let queue = match Queue::bind(QUEUE_NUM) {
                    Ok(q) => {
                        let _ = ready_tx.send(Ok(()));
                        q
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return Err(e);
                    }
                };
                relay(queue, impairment, seed, &stop, &shared)
            }));
            match ready_rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => bail!("the impairment relay: {e}"),
                Err(_) => bail!("the impairment relay did not bind its queue within 5 s"),
            }
        }
        for (chain, (from, to)) in CHAINS.into_iter().zip([(a, b), (b, a)]) {
            let (from, to, port) = (from.to_string(), to.to_string(), port.to_string());
            this.iptables(&["-N", chain])?;
            this.chains.push(chain);
            if impairment.loss > 0.0 {
                let p = impairment.loss.to_string();
                this.iptables(&[
                    "-A",
                    chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "DROP",
                ])?;
            }
            if impairment.duplicate > 0.0 {
                let p = impairment.duplicate.to_string();
                this.iptables(&[
                    "-A",
                    chain,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &p,
                    "-j",
                    "TEE",
                    "--gateway",
                    &to,
                ])?;
            }
            if impairment.delays() {
                this.iptables(&[
                    "-A",
                    chain,
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &QUEUE_NUM.to_string(),
                ])?;
            }
            let jump: Vec<String> = [
                "-s", &from, "-d", &to, "-p", "udp", "--dport", &port, "-j", chain,
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let mut args = vec!["-A", "FORWARD"];
            args.extend(jump.iter().map(String::as_str));
            this.iptables(&args)?;
            this.jumps.push(jump);
        }
        Ok(this)
    }

    /// What is in place.
    pub fn impairment(&self) -> Impairment {
        self.impairment
    }

    /// The counters of both directions: `[a -> b, b -> a]`.
    pub fn counts(&self) -> anyhow::Result<[Counts; 2]> {
        let mut out = [Counts::default(); 2];
        for row in self.rows("FORWARD")? {
            if let Some(i) = CHAINS.iter().position(|c| *c == row.1) {
                out[i].seen += row.0;
            }
        }
        for (i, chain) in CHAINS.iter().enumerate() {
            for (pkts, target) in self.rows(chain)? {
                match target.as_str() {
                    "DROP" => out[i].dropped += pkts,
                    "TEE" => out[i].duplicated += pkts,
                    "NFQUEUE" => out[i].queued += pkts,
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// The relay's counters and the kernel's for its queue (zero without a relay).
    pub fn relay_counts(&self) -> anyhow::Result<RelayCounts> {
        let mut c = RelayCounts {
            queued: self.shared.queued.load(Ordering::Relaxed),
            released: self.shared.released.load(Ordering::Relaxed),
            held: self.shared.held.load(Ordering::Relaxed),
            overruns: self.shared.overruns.load(Ordering::Relaxed),
            ..RelayCounts::default()
        };
        if self.relay.as_ref().is_some_and(|r| !r.is_finished()) {
            let text = self.exec("cat", &["/proc/net/netfilter/nfnetlink_queue"])?;
            // queue_num portid queue_total copy_mode copy_range queue_dropped user_dropped
            // id_sequence 1 (net/netfilter/nfnetlink_queue.c, seq_show).
            for line in text.lines() {
                let f: Vec<u64> = line
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                if f.len() >= 7 && f[0] == u64::from(QUEUE_NUM) {
                    c.kernel_queue_dropped = f[5];
                    c.kernel_user_dropped = f[6];
                }
            }
        }
        Ok(c)
    }

    /// Waits (up to `limit`) until the relay holds no packet: everything it was given has
    /// been released.
    pub fn wait_drained(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let q = self.shared.queued.load(Ordering::Relaxed);
            let r = self.shared.released.load(Ordering::Relaxed);
            if q == r {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the relay still holds {} packets after {limit:?}", q - r);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the rules, then stops the relay (which releases what it holds).
    pub fn remove(mut self) -> anyhow::Result<RelayCounts> {
        self.teardown()
    }

    fn teardown(&mut self) -> anyhow::Result<RelayCounts> {
        let mut result = Ok(());
        // The jumps first (no datagram enters a chain from now on), then the chains.
        for jump in std::mem::take(&mut self.jumps) {
            let mut args = vec!["-D", "FORWARD"];
            args.extend(jump.iter().map(String::as_str));
            if let Err(e) = self.iptables(&args) {
                result = Err(e);
            }
        }
        for chain in std::mem::take(&mut self.chains) {
            for step in ["-F", "-X"] {
                if let Err(e) = self.iptables(&[step, chain]) {
                    result = Err(e);
                }
            }
        }
        // The kernel's figures for the queue vanish with the relay's socket: read them first.
        let kernel = self.relay_counts();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(relay) = self.relay.take() {
            let joined = relay
                .join()
                .map_err(|_| anyhow::anyhow!("the impairment relay panicked"))
                .and_then(|r| r);
            result = result.and(joined);
        }
        result?;
        let kernel = kernel?;
        Ok(RelayCounts {
            kernel_queue_dropped: kernel.kernel_queue_dropped,
            kernel_user_dropped: kernel.kernel_user_dropped,
            ..self.relay_counts()?
        })
    }

    /// `iptables -w -t mangle <args>` in the router.
    fn iptables(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-w", "-t", "mangle"];
        all.extend_from_slice(args);
        self.exec("iptables", &all)
    }

    fn exec(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run_checked(
            Command::new("ip")
                .args(["netns", "exec", &self.router, program])
                .args(args),
        )
        .with_context(|| format!("in the router namespace {}", self.router))
    }

    /// (packets, target) of each rule of `chain`.
    fn rows(&self, chain: &str) -> anyhow::Result<Vec<(u64, String)>> {
        let text = self.iptables(&["-L", chain, "-v", "-n", "-x"])?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let pkts = f.next()?.parse().ok()?;
                let _bytes = f.next()?;
                let target = f.next()?;
                Some((pkts, target.to_owned()))
            })
            .collect())
    }
}

impl Drop for Impaired {
    fn drop(&mut self) {
        if !self.chains.is_empty() || self.relay.is_some() {
            if let Err(e) = self.teardown() {
                eprintln!("impair: removing the impairment: {e:#}");
            }
        }
    }
}

/// A small xorshift64* generator: the relay's delays are reproducible from a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How long the relay holds one packet, and whether it was given the reorder hold.
fn sample(impairment: &Impairment, rng: &mut Rng) -> (Duration, bool) {
    let mut delay = match impairment.jitter {
        Some((lo, hi)) => lo + (hi.saturating_sub(lo)).mul_f64(rng.unit()),
        None => Duration::ZERO,
    };
    let held = impairment.reorder > 0.0 && rng.unit() < impairment.reorder;
    if held {
        delay += impairment.reorder_hold;
    }
    (delay, held)
}

/// The relay's loop: take the queued ids, give each its delay, release them by due time;
/// on stop, release everything still held.
fn relay(
    mut queue: Queue,
    impairment: Impairment,
    seed: u64,
    stop: &AtomicBool,
    shared: &Shared,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(seed);
    // (due, arrival order, id): a min-heap by due time, ties in arrival order.
    let mut held: BinaryHeap<Reverse<(Instant, u64, u32)>> = BinaryHeap::new();
    let mut ids = Vec::new();
    let mut order = 0u64;
    loop {
        let now = Instant::now();
        let stopping = stop.load(Ordering::Relaxed);
        let mut released = 0u64;
        if stopping {
            // The rules are gone: take what is still in the socket, then release it all.
            ids.clear();
            let _ = queue.recv(&mut ids);
            shared.queued.fetch_add(ids.len() as u64, Ordering::Relaxed);
            for &id in &ids {
                queue.accept(id)?;
                released += 1;
            }
        }
        while let Some(Reverse((due, _, id))) = held.peek().copied() {
            if due > now && !stopping {
                break;
            }
            held.pop();
            queue.accept(id)?;
            released += 1;
        }
        queue.flush()?;
        shared.released.fetch_add(released, Ordering::Relaxed);
        if stopping {
            return Ok(());
        }
        let wait = held
            .peek()
            .map_or(RELAY_TICK, |Reverse((due, _, _))| {
                due.saturating_duration_since(now)
            })
            .min(RELAY_TICK);
        let mut fds = [rustix::event::PollFd::new(
            queue.fd(),
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e).context("poll on the NFQUEUE socket"),
        }
        ids.clear();
        if let Err(e) = queue.recv(&mut ids) {
            if e.raw_os_error() == Some(rustix::io::Errno::NOBUFS.raw_os_error()) {
                shared.overruns.fetch_add(1, Ordering::Relaxed);
            } else {
                return Err(e).context("receiving from the NFQUEUE socket");
            }
        }
        shared.queued.fetch_add(ids.len() as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut now_released = 0u64;
        for &id in &ids {
            let (delay, was_held) = sample(&impairment, &mut rng);
            if was_held {
                shared.held.fetch_add(1, Ordering::Relaxed);
            }
            if delay.is_zero() {
                queue.accept(id)?;
                now_released += 1;
            } else {
                order += 1;
                held.push(Reverse((now + delay, order, id)));
            }
        }
        queue.flush()?;
        shared.released.fetch_add(now_released, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_impairment() {
        let mut rng = Rng::new(9);
        let [_, _, (_, reorder), (_, jitter), (_, all)] = Impairment::lossy_path();
        let n = 100_000;
        let held = (0..n).filter(|_| sample(&reorder, &mut rng).1).count();
        assert!((23_000..27_000).contains(&held), "{held}");
        for _ in 0..n {
            let (d, held) = sample(&reorder, &mut rng);
            assert_eq!(
                d,
                if held {
                    reorder.reorder_hold
                } else {
                    Duration::ZERO
                }
            );
            let (d, held) = sample(&jitter, &mut rng);
            assert!(!held);
            assert!((Duration::from_millis(5)..=Duration::from_millis(15)).contains(&d));
            let (d, held) = sample(&all, &mut rng);
            let extra = if held {
                all.reorder_hold
            } else {
                Duration::ZERO
            };
            assert!(
                (Duration::from_millis(5) + extra..=Duration::from_millis(15) + extra).contains(&d)
            );
        }
        assert!(!Impairment::NONE.delays());
        assert!(reorder.delays() && jitter.delays() && all.delays());
        let mut r = Rng::new(3);
        let mean: f64 = (0..n).map(|_| r.unit()).sum::<f64>() / f64::from(n);
        assert!((0.49..0.51).contains(&mean), "{mean}");
    }
}
