//! Upgrade without loss: a running weftd hands its data path (TUN queues, UDP sockets, control
//! listener) to a new weftd started beside it with the same flags and `--upgrade`.
//!
//! Why descriptors and not a second set of queues and sockets: packets queued in a TUN queue
//! are purged when that queue is closed (drivers/net/tun.c `tun_detach` -> `tun_queue_purge`),
//! and datagrams in a socket's receive buffer die with the socket; two processes each with its
//! own queues would lose exactly what the old one had queued when it goes. Passing the same
//! open files (`SCM_RIGHTS`) keeps every queued packet: the old process stops reading at a
//! batch boundary, the new one reads on from the same queues.
//!
//! The conversation, on one connection to the old weftd's control socket, one line each way:
//!
//! 1. new -> old: `handover <version>` ([`HANDOVER_VERSION`]). The control thread refuses
//!    another uid than root or its own, another version, or a malformed line, with
//!    `{"error", "handover_version"}`; a weftd older than handovers answers
//!    `{"error": "unknown request ..."}`. Either way the new weftd exits saying so and the
//!    old one runs on untouched.
//! 2. old -> new: the offer, `{"handover": <version>, "pid", "tun", "threads", "backend",
//!    "port", "vni", "vtep_mac", "public_ip", "public_ip6" (dual-stack underlays only),
//!    "subnet", "subnet6", "mtu", "vnet_hdr", "tso", "uso"}`. The new weftd checks it against its own settings (lease mode: after taking its
//!    lease, which must be the same subnet) and answers `abort <reason>` on any difference but
//!    the pump thread count (it takes over as many queues as there are, and says so: the
//!    queue count of a running TUN is what it is until the next full restart).
//! 3. new -> old: `go`. The old weftd stops its pumps at a batch boundary (nothing read is
//!    left unhandled; the rest stays queued in the kernel) and sends `{"fds": {"queues": n,
//!    "sockets": n}}` with the listener, the n queues and the n sockets attached.
//! 4. new: takes the descriptors over (each checked: a TUN file of the right device, a UDP
//!    socket bound to the right address, a unix socket bound to the control address), starts
//!    its pumps on them and answers `ok <pid>`.
//! 5. old: exits 0 without tearing anything down (TUN, routes, lease, subnet file, iptables
//!    rules, blackhole route and the control socket file are the successor's now); with
//!    systemd it first sends `MAINPID=<new pid>`.
//!
//! Failures: while the old weftd has not read `ok`, it still holds its own descriptors. If the
//! new one aborts, dies, or does not answer within [`COMMIT_WAIT`], the old one starts its
//! pumps again on them and runs on (the new one then has nothing, or exits). If the old one
//! dies before the descriptors arrive, the TUN goes with it and the new one falls back to a
//! normal start once the control address is free; if it dies after they arrived, the new one
//! holds everything and carries on.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::control::{ControlAddr, ControlListener, Handover, HANDOVER_VERSION};
use crate::model::format_mac;
use crate::sys::fdpass::{recv_with_fds, send_with_fds, MAX_FDS};
use crate::tun::{Offloads, TunQueue};
use crate::underlay::UdpSocket;

use super::node::Node;
use super::systemd::notify_systemd;

/// How long the old weftd waits for `go` after its offer (the new one may be taking its lease
/// from etcd meanwhile; the old one forwards all along).
pub(super) const PREPARE_WAIT: Duration = Duration::from_secs(30);
/// How long the old weftd waits for `ok` once its pumps are stopped, before it takes its
/// descriptors back and runs on.
pub(super) const COMMIT_WAIT: Duration = Duration::from_secs(10);
/// How long the new weftd waits for each answer of the old one.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The longest line read from the other weftd.
const MAX_LINE: u64 = 4096;
/// How long the new weftd waits for the control address to come free after the old one died
/// in the middle of a handover, before it gives up.
const FREE_WAIT: Duration = Duration::from_secs(5);

/// Test-only: makes the old weftd kill itself (SIGKILL) in the middle of a handover, at
/// `before-fds` (pumps stopped, nothing sent) or `after-fds` (descriptors sent, no `ok`
/// read), so the tests can prove what the new one does then.
const DIE_IN_HANDOVER: &str = "WEFTD_TEST_DIE_IN_HANDOVER";

/// What the old weftd offers (step 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Offer {
    /// The protocol version.
    pub handover: u32,
    /// The old weftd's pid.
    pub pid: u32,
    /// The TUN device.
    pub tun: String,
    /// Pump threads: TUN queues, UDP sockets.
    pub threads: usize,
    /// `udp` or `vxlan`.
    pub backend: String,
    /// The UDP port.
    pub port: u16,
    /// The VNI.
    pub vni: u32,
    /// The VtepMAC.
    pub vtep_mac: String,
    /// The public IP (the sockets are bound to it, or to `[::]` with `public_ip6`).
    pub public_ip: IpAddr,
    /// The IPv6 underlay address of a dual-stack underlay (left out when none, so that a
    /// single-stack offer reads as it did before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip6: Option<std::net::Ipv6Addr>,
    /// Our IPv4 subnet.
    pub subnet: Option<String>,
    /// Our IPv6 subnet.
    pub subnet6: Option<String>,
    /// The TUN MTU.
    pub mtu: u32,
    /// The TUN queues carry a virtio header.
    pub vnet_hdr: bool,
    /// TSO negotiated.
    pub tso: bool,
    /// USO negotiated.
    pub uso: bool,
}

impl Offer {
    /// The offer of the running `node` started with `s`.
    fn of(node: &Node, s: &Settings) -> Offer {
        let offloads = node.offloads();
        Offer {
            handover: HANDOVER_VERSION,
            pid: std::process::id(),
            tun: node.tun_name().to_owned(),
            threads: node.threads(),
            backend: s.backend.as_str().to_owned(),
            port: s.port,
            vni: s.vni,
            vtep_mac: format_mac(&s.vtep_mac),
            public_ip: s.public_ip,
            public_ip6: s.public_ip6,
            subnet: s.subnet.map(|c| c.to_string()),
            subnet6: s.subnet6.map(|c| c.to_string()),
            mtu: s.mtu,
            vnet_hdr: offloads.vnet_hdr,
            tso: offloads.tso,
            uso: offloads.uso,
        }
    }

    /// Why the data path offered cannot run as `s` says, if it cannot: every difference but
    /// the thread count (what the new weftd would set up differently).
    pub(super) fn mismatch(&self, s: &Settings) -> Option<String> {
        let mut ours = Offer {
            pid: self.pid,
            threads: self.threads,
            vnet_hdr: self.vnet_hdr,
            tso: self.tso,
            uso: self.uso,
            ..Offer::from_settings(s)
        };
        if s.backend != crate::model::Backend::Vxlan {
            // Only vxlan puts the VtepMAC on the wire; the udp backend's is a random unused one.
            ours.vtep_mac.clone_from(&self.vtep_mac);
        }
        if *self == ours {
            return None;
        }
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(&ours).unwrap_or_default();
        let mut diffs = Vec::new();
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for (key, theirs) in a {
                let mine = b.get(key).cloned().unwrap_or_default();
                if *theirs != mine {
                    diffs.push(format!("{key} {theirs} (running) vs {mine} (ours)"));
                }
            }
        }
        Some(format!("the running weftd differs: {}", diffs.join(", ")))
    }

    fn from_settings(s: &Settings) -> Offer {
        Offer {
            handover: HANDOVER_VERSION,
            pid: 0,
            tun: s.tun_name.clone(),
            threads: s.pump_threads,
            backend: s.backend.as_str().to_owned(),
            port: s.port,
            vni: s.vni,
            vtep_mac: format_mac(&s.vtep_mac),
            public_ip: s.public_ip,
            public_ip6: s.public_ip6,
            subnet: s.subnet.map(|c| c.to_string()),
            subnet6: s.subnet6.map(|c| c.to_string()),
            mtu: s.mtu,
            vnet_hdr: false,
            tso: false,
            uso: false,
        }
    }

    fn offloads(&self) -> Offloads {
        Offloads {
            vnet_hdr: self.vnet_hdr,
            tso: self.tso,
            uso: self.uso,
        }
    }
}

/// The descriptor counts sent with the descriptors (step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FdCounts {
    queues: usize,
    sockets: usize,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FdsLine {
    fds: FdCounts,
}

/// What the old weftd did with a handover request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Served {
    /// The successor runs the data path: leave ([`Node::leave`]) and exit.
    HandedOver {
        /// The successor's pid.
        pid: u32,
    },
    /// The handover did not happen; the pumps run (again) and so does this weftd.
    Kept,
}

/// Reads one line (up to [`MAX_LINE`] bytes, without its newline) from `stream`, byte by byte
/// so nothing after it is consumed. `None` at the end of the stream.
fn read_line(stream: &UnixStream) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let got =
        BufReader::with_capacity(1, Read::take(stream, MAX_LINE)).read_until(b'\n', &mut line)?;
    if got == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a line without its newline (too long, or the peer closed mid-line)",
        ));
    }
    line.pop();
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a line that is not UTF-8"))
}

fn write_line(stream: &UnixStream, line: &str) -> io::Result<()> {
    let mut bytes = line.as_bytes().to_vec();
    bytes.push(b'\n');
    (&mut &*stream).write_all(&bytes)
}

/// The old weftd's side (steps 2, 3 and 5) for `request`, with `node` started from `s`.
pub(super) fn serve(node: &mut Node, s: &Settings, request: Handover) -> Served {
    let Handover { stream, peer } = request;
    match offer_and_hand(node, s, &stream) {
        Ok(Some(pid)) => {
            tracing::info!("handed the data path over to pid {pid}; leaving it running");
            notify_systemd(&format!("MAINPID={pid}"));
            Served::HandedOver { pid }
        }
        Ok(None) => Served::Kept,
        Err(e) if node.running() => {
            tracing::error!(
                "handover to pid {} failed: {e:#}; this weftd keeps forwarding",
                peer.pid
            );
            Served::Kept
        }
        Err(e) => {
            // No pump runs and none could start again: stop cleanly (exit 1) rather than
            // stay up without a data path.
            tracing::error!(
                "handover to pid {} failed: {e:#}; no pump runs: stopping",
                peer.pid
            );
            if let Err(e) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
                tracing::error!("raising SIGTERM failed: {e}");
            }
            Served::Kept
        }
    }
}

/// Offers, waits for `go`, pauses the pumps and sends the descriptors; the successor's pid on
/// success, `None` when it aborted before the pumps stopped. Whenever the pumps were stopped
/// and no `ok` came, they are started again before returning.
fn offer_and_hand(node: &mut Node, s: &Settings, stream: &UnixStream) -> Result<Option<u32>> {
    let offer = Offer::of(node, s);
    let fd_count = 1 + 2 * offer.threads;
    if fd_count > MAX_FDS {
        let reason = format!(
            "{} pump threads need {fd_count} descriptors, more than one message carries ({MAX_FDS})",
            offer.threads
        );
        let _ = write_line(stream, &serde_json::json!({ "error": reason }).to_string());
        bail!(reason);
    }
    stream.set_write_timeout(Some(ANSWER_WAIT))?;
    write_line(stream, &serde_json::to_string(&offer)?).context("sending the offer")?;
    stream.set_read_timeout(Some(PREPARE_WAIT))?;
    match read_line(stream).context("waiting for go")?.as_deref() {
        Some("go") => {}
        Some(other) => {
            tracing::warn!(
                "the successor did not take the handover: {}",
                other.chars().take(300).collect::<String>()
            );
            return Ok(None);
        }
        None => bail!("the successor closed the connection before go"),
    }

    let started = Instant::now();
    let Some(pairs) = node.pause() else {
        bail!("a pump thread had panicked: nothing to hand over");
    };
    die_if_asked("before-fds");
    let handed = send_fds(node, stream, &pairs).and_then(|()| {
        die_if_asked("after-fds");
        stream.set_read_timeout(Some(COMMIT_WAIT))?;
        let line = read_line(stream).context("waiting for ok")?;
        line.as_deref()
            .and_then(|l| l.strip_prefix("ok "))
            .and_then(|pid| pid.trim().parse::<u32>().ok())
            .with_context(|| format!("the successor answered {line:?} instead of ok <pid>"))
    });
    match handed {
        Ok(pid) => {
            tracing::info!(
                "pumps stopped {:.1} ms before the successor ran them",
                started.elapsed().as_secs_f64() * 1e3
            );
            Ok(Some(pid))
        }
        Err(e) => {
            tracing::warn!("handover not completed ({e:#}): starting the pumps again");
            node.resume(pairs)
                .context("restarting the pumps after a failed handover")?;
            Ok(None)
        }
    }
}

fn send_fds(node: &Node, stream: &UnixStream, pairs: &[(TunQueue, UdpSocket)]) -> Result<()> {
    let mut fds: Vec<BorrowedFd<'_>> = vec![node.control_listener()];
    fds.extend(pairs.iter().map(|(q, _)| q.as_fd()));
    fds.extend(pairs.iter().map(|(_, u)| u.as_fd()));
    let line = serde_json::to_string(&FdsLine {
        fds: FdCounts {
            queues: pairs.len(),
            sockets: pairs.len(),
        },
    })? + "\n";
    let sent =
        send_with_fds(stream.as_fd(), line.as_bytes(), &fds).context("sending the descriptors")?;
    if sent != line.len() {
        // The descriptors went with the first bytes; the rest of the line follows.
        (&mut &*stream)
            .write_all(&line.as_bytes()[sent..])
            .context("sending the descriptors' line")?;
    }
    Ok(())
}

fn die_if_asked(stage: &str) {
    if std::env::var(DIE_IN_HANDOVER).is_ok_and(|v| v == stage) {
        tracing::warn!("{DIE_IN_HANDOVER}={stage}: killing myself (test)");
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGKILL);
    }
}

/// The new weftd's connection to the old one, after the offer (step 2).
#[derive(Debug)]
pub(super) struct Offered {
    stream: UnixStream,
    offer: Offer,
}

/// What the new weftd took over (step 4): everything [`Node::adopt`] needs.
#[derive(Debug)]
pub(super) struct Handed {
    /// The control socket, listening.
    pub listener: ControlListener,
    /// The TUN queues, queue 0 first.
    pub queues: Vec<TunQueue>,
    /// One UDP socket per queue.
    pub sockets: Vec<UdpSocket>,
    /// What the TUN negotiated.
    pub offloads: Offloads,
    /// The TUN device.
    pub tun_name: String,
}

/// Why the new weftd got no descriptors.
#[derive(Debug, thiserror::Error)]
pub(super) enum TakeError {
    /// The old weftd went away before sending them: start normally once the address is free.
    #[error("the running weftd went away in the middle of the handover ({0})")]
    Gone(String),
    /// Anything else: exit saying why (the old weftd runs on).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Step 1: asks the weftd listening on `addr` for a handover; its offer, `None` when nobody
/// listens there (a normal start).
pub(super) fn ask(addr: &ControlAddr) -> Result<Option<Offered>> {
    let stream = match addr.connect() {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {addr} for a handover")),
    };
    stream.set_read_timeout(Some(ANSWER_WAIT))?;
    stream.set_write_timeout(Some(ANSWER_WAIT))?;
    write_line(&stream, &format!("handover {HANDOVER_VERSION}"))?;
    let Some(line) =
        read_line(&stream).with_context(|| format!("reading the offer from {addr}"))?
    else {
        bail!("the weftd on {addr} closed the connection without an offer");
    };
    let value: serde_json::Value = serde_json::from_str(&line)
        .with_context(|| format!("the weftd on {addr} answered something that is not JSON"))?;
    if let Some(error) = value.get("error") {
        let theirs = value.get("handover_version");
        bail!(
            "the weftd on {addr} refused the handover: {error}{}",
            match theirs {
                Some(v) => format!(" (it speaks handover version {v}, we {HANDOVER_VERSION})"),
                None => " (a weftd without handovers: stop it, then start this one)".to_owned(),
            }
        );
    }
    let offer: Offer = serde_json::from_value(value)
        .with_context(|| format!("reading the offer of the weftd on {addr}"))?;
    if offer.handover != HANDOVER_VERSION {
        let _ = write_line(&stream, "abort version");
        bail!(
            "the weftd on {addr} offered handover version {} (we speak {HANDOVER_VERSION})",
            offer.handover
        );
    }
    tracing::info!(
        "weftd pid {} on {addr} offers TUN {} with {} queue(s)",
        offer.pid,
        offer.tun,
        offer.threads
    );
    Ok(Some(Offered { stream, offer }))
}

impl Offered {
    /// The offer.
    pub(super) fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Declines (the old weftd runs on) and returns `reason` as the error to exit with.
    pub(super) fn abort(self, reason: String) -> anyhow::Error {
        let line: String = reason.chars().filter(|c| *c != '\n').take(1000).collect();
        let _ = write_line(&self.stream, &format!("abort {line}"));
        anyhow::anyhow!("handover aborted: {reason}")
    }

    /// Steps 3 and 4: `go`, then the descriptors, each checked against `s` and `addr`.
    pub(super) fn take(
        self,
        s: &Settings,
        addr: &ControlAddr,
    ) -> Result<(Handed, Committer), TakeError> {
        let Offered { stream, offer } = self;
        let gone = |e: &dyn std::fmt::Display| TakeError::Gone(e.to_string());
        write_line(&stream, "go").map_err(|e| gone(&e))?;
        let mut buf = [0u8; 256];
        let (n, fds) =
            recv_with_fds(stream.as_fd(), &mut buf).context("receiving the descriptors")?;
        if n == 0 && fds.is_empty() {
            return Err(gone(&"end of stream before the descriptors"));
        }
        // The line may arrive in pieces; the descriptors came with its first bytes.
        let mut line = buf[..n].to_vec();
        while line.last() != Some(&b'\n') {
            if line.len() > 1024 {
                return Err(anyhow::anyhow!("the descriptors' line is too long").into());
            }
            let mut more = [0u8; 256];
            let got = (&mut &stream)
                .read(&mut more)
                .context("reading the descriptors' line")?;
            if got == 0 {
                return Err(gone(&"end of stream in the descriptors' line"));
            }
            line.extend_from_slice(&more[..got]);
        }
        let text = String::from_utf8_lossy(&line);
        let counts: FdsLine = serde_json::from_str(text.trim()).map_err(|e| {
            anyhow::anyhow!(
                "the descriptors came with {:?}: {e}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        let handed = adopt(s, addr, &offer, counts.fds, fds)?;
        Ok((handed, Committer { stream }))
    }
}

/// Checks and takes over the descriptors (listener, queues, sockets, in that order).
fn adopt(
    s: &Settings,
    addr: &ControlAddr,
    offer: &Offer,
    counts: FdCounts,
    fds: Vec<OwnedFd>,
) -> Result<Handed> {
    let n = offer.threads;
    if counts.queues != n || counts.sockets != n || fds.len() != 1 + 2 * n || n == 0 {
        bail!(
            "{} descriptors came for {} queue(s) and {} socket(s); the offer said {n} of each",
            fds.len(),
            counts.queues,
            counts.sockets
        );
    }
    let mut fds = fds.into_iter();
    let listener = fds.next().context("no listener")?;
    let listener = ControlListener::adopt(addr, listener)?;
    let offloads = offer.offloads();
    let mut queues = Vec::with_capacity(n);
    for index in 0..n {
        let fd = fds.next().context("a queue short")?;
        let (queue, flags) = TunQueue::adopt(fd, &offer.tun, index)?;
        if (flags & libc::IFF_VNET_HDR != 0) != offloads.vnet_hdr {
            bail!(
                "queue {index} of {} disagrees with the offer about the virtio header",
                offer.tun
            );
        }
        queues.push(queue);
    }
    let bind = s.underlay_bind();
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let fd = fds.next().context("a socket short")?;
        sockets.push(UdpSocket::adopt(fd, bind)?);
    }
    Ok(Handed {
        listener,
        queues,
        sockets,
        offloads,
        tun_name: offer.tun.clone(),
    })
}

/// The new weftd's last word (step 4): `ok <pid>` once its pumps run.
#[derive(Debug)]
pub(super) struct Committer {
    stream: UnixStream,
}

impl Committer {
    /// Tells the old weftd to go. If it is gone already, the new one carries on: it holds
    /// everything.
    pub(super) fn commit(self) {
        if let Err(e) = write_line(&self.stream, &format!("ok {}", std::process::id())) {
            tracing::warn!("telling the previous weftd to go failed ({e}); it may have died");
        }
    }
}

/// After [`TakeError::Gone`]: binds `addr` once the dead weftd's listener is gone (at most
/// [`FREE_WAIT`]), for a normal start.
pub(super) fn bind_when_free(addr: &ControlAddr) -> Result<ControlListener> {
    let deadline = Instant::now() + FREE_WAIT;
    loop {
        match ControlListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(crate::control::ControlError::InUse { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How a weftd with `--upgrade` gets its control socket: bound afresh (nobody ran), or an
/// offer from the weftd running (to be checked and taken).
#[derive(Debug)]
pub(super) enum Start {
    /// Nobody listens: a normal start on this listener.
    Fresh(ControlListener),
    /// A weftd runs and offers its data path.
    Upgrade(Offered),
}

/// Binds `addr`; when a weftd listens there and `upgrade` is set, asks it for a handover.
pub(super) fn bind_or_ask(addr: &ControlAddr, upgrade: bool) -> Result<Start> {
    match ControlListener::bind(addr) {
        Ok(l) => {
            if upgrade {
                tracing::info!("--upgrade: no weftd runs on {addr}; starting normally");
            }
            Ok(Start::Fresh(l))
        }
        Err(crate::control::ControlError::InUse { .. }) if upgrade => match ask(addr)? {
            Some(offered) => Ok(Start::Upgrade(offered)),
            // It went between the bind and the connect.
            None => Ok(Start::Fresh(bind_when_free(addr)?)),
        },
        Err(e) => Err(e.into()),
    }
}

/// The signal that makes weftd start its own successor ([`spawn_successor`]): what the unit's
/// `ExecReload` sends, so `systemctl reload weftd` upgrades in place.
pub(super) const UPGRADE_SIGNAL: libc::c_int = signal_hook::consts::SIGUSR2;

/// On [`UPGRADE_SIGNAL`]: starts the weftd binary at the path this one was started from (the
/// new one, once an install replaced the file) with the same arguments and `--upgrade`, with
/// our environment, output and cgroup (so systemd keeps it in the unit); it then asks us for a
/// handover like any successor. A successor that fails is reaped and logged; we run on.
pub(super) fn spawn_successor() {
    let mut args = std::env::args_os();
    let Some(program) = args.next() else {
        tracing::error!("upgrade: no argv[0] to start the successor from");
        return;
    };
    let mut rest: Vec<std::ffi::OsString> = args.collect();
    if !rest.iter().any(|a| a == "--upgrade" || a == "-upgrade") {
        rest.push("--upgrade".into());
    }
    let spawned = std::process::Command::new(&program)
        .args(&rest)
        .stdin(std::process::Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            let pid = child.id();
            tracing::info!("upgrade: started {} (pid {pid})", program.to_string_lossy());
            let reaper = std::thread::Builder::new()
                .name("weft-successor".to_owned())
                .spawn(move || match child.wait() {
                    Ok(status) if !status.success() => {
                        tracing::error!("upgrade: the successor pid {pid} exited ({status}); this weftd runs on");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("upgrade: waiting for pid {pid}: {e}"),
                });
            if let Err(e) = reaper {
                tracing::warn!("upgrade: no thread to reap pid {pid}: {e}");
            }
        }
        Err(e) => tracing::error!(
            "upgrade: starting {} failed: {e}; this weftd runs on",
            program.to_string_lossy()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            handover: HANDOVER_VERSION,
            pid: 42,
            tun: "flannel.1".to_owned(),
            threads: 2,
            backend: "vxlan".to_owned(),
            port: 8472,
            vni: 1,
            vtep_mac: "0e:00:00:00:00:01".to_owned(),
            public_ip: "192.168.250.1".parse().unwrap(),
            public_ip6: None,
            subnet: Some("10.244.1.0/24".to_owned()),
            subnet6: None,
            mtu: 1450,
            vnet_hdr: true,
            tso: true,
            uso: false,
        }
    }

    #[test]
    fn offers_round_trip_and_refuse_unknown_fields() {
        let o = offer();
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Offer>(&text).unwrap(), o);
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<Offer>(&extra).is_err());
        for bad in ["", "{}", "[1]", "{\"handover\": -1}", "null"] {
            assert!(serde_json::from_str::<Offer>(bad).is_err(), "{bad}");
        }
        // A single-stack offer has no public_ip6 key (an older weftd reads it); a dual-stack
        // one has it and round-trips.
        assert!(!text.contains("public_ip6"), "{text}");
        let dual = Offer {
            public_ip6: Some("fd99::1".parse().unwrap()),
            ..offer()
        };
        let text = serde_json::to_string(&dual).unwrap();
        assert!(text.contains("\"public_ip6\":\"fd99::1\""), "{text}");
        assert_eq!(serde_json::from_str::<Offer>(&text).unwrap(), dual);
    }

    #[test]
    fn lines_are_read_one_at_a_time_and_bounded() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"go\nok 12\n").unwrap();
        assert_eq!(read_line(&b).unwrap().as_deref(), Some("go"));
        assert_eq!(read_line(&b).unwrap().as_deref(), Some("ok 12"));
        (&a).write_all(&vec![b'x'; MAX_LINE as usize + 10]).unwrap();
        assert!(read_line(&b).is_err());
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(b"\xff\n").unwrap();
        assert!(read_line(&b).is_err());
        drop(a);
        assert_eq!(read_line(&b).unwrap(), None);
    }
}
