//! weftctl's own ICMP echo client (what `ping` does), run on a thread inside a testbed
//! namespace, so that neither the demo nor the testbed needs iputils-ping.
//!
//! Contract: [`echo`] sends echo requests (ICMP type 8, ICMPv6 type 128) from `from` to `to`
//! as [`Echo`] says, each carrying this client's identifier, its sequence number (0, 1, ...)
//! and a payload derived from both. A reply counts when it comes from `to` with the request's
//! identifier, sequence number and exact payload within [`Echo::wait`] of its request; a
//! duplicate is ignored. The [`EchoReport`] holds each request's round-trip time (or none),
//! the ICMP errors that quoted one of our requests (net unreachable, fragmentation needed,
//! time exceeded: a request so answered is not waited for) and local send errors. The call
//! is bounded: with no [`Echo::deadline`] it returns at most `interval * (count - 1) + wait`
//! after it starts, with one at most `deadline + wait`.
//!
//! The socket: a `SOCK_DGRAM` ICMP "ping socket" when the namespace's
//! `net.ipv4.ping_group_range` admits our group (the kernel then picks the identifier and
//! hands the socket only its own replies), else a `SOCK_RAW` one (root). A new namespace's
//! range is `1 0` (nobody), so the testbed's namespaces use raw sockets unless someone widens
//! it. A raw socket sees every ICMP message of the namespace: replies are matched as above,
//! and the ICMP errors about our requests are read from the request they quote. A ping
//! socket learns of ICMP errors only through `IP_RECVERR`'s error queue, which neither
//! socket2 nor rustix wraps (and this crate has no `unsafe`): there an error shows as a loss.

use std::fmt;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use encap::wire::icmpv4::{self, Icmpv4Packet, Icmpv4Repr};
use encap::wire::icmpv6::{self, Icmpv6Packet, Icmpv6Repr};
use encap::wire::ipv4::Ipv4Packet;
use encap::wire::ipv6::Ipv6Packet;
use encap::wire::proto;
use encap::ChecksumCaps;
use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
use rustix::net::RecvFlags;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::traffic::End;

/// ping's default payload size.
pub const DEFAULT_SIZE: usize = 56;

/// What [`echo`] sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// Requests to send (without a deadline), or replies to get (with one).
    pub count: u16,
    /// Time between requests.
    pub interval: Duration,
    /// How long a reply may take.
    pub wait: Duration,
    /// Payload bytes after the 8-byte ICMP header (ping's `-s`).
    pub size: usize,
    /// Set DF (IPv4) or refuse local fragmentation (IPv6), as ping's `-M do`: a request too
    /// big for the path fails to send or draws "fragmentation needed".
    pub dont_fragment: bool,
    /// As ping's `-w`: keep sending, one request per interval while fewer than `count` are
    /// answered or in flight, until `count` replies came or this much time passed.
    pub deadline: Option<Duration>,
}

impl Default for Echo {
    /// Three requests 200 ms apart, 2 s for each reply, ping's default size.
    fn default() -> Echo {
        Echo {
            count: 3,
            interval: Duration::from_millis(200),
            wait: Duration::from_secs(2),
            size: DEFAULT_SIZE,
            dont_fragment: false,
            deadline: None,
        }
    }
}

/// The kind of socket an echo used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketKind {
    /// `SOCK_DGRAM`, `IPPROTO_ICMP` / `IPPROTO_ICMPV6`.
    Ping,
    /// `SOCK_RAW`, `IPPROTO_ICMP` / `IPPROTO_ICMPV6`.
    Raw,
}

impl SocketKind {
    /// `ping socket` or `raw socket`.
    pub fn name(&self) -> &'static str {
        match self {
            SocketKind::Ping => "ping socket",
            SocketKind::Raw => "raw socket",
        }
    }
}

/// What [`echo`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoReport {
    /// The address pinged.
    pub to: IpAddr,
    /// The round-trip time of each request sent, by sequence number (`None`: no reply).
    pub rtts: Vec<Option<Duration>>,
    /// ICMP errors about our requests and failed sends, one line each.
    pub errors: Vec<String>,
    /// The socket used.
    pub socket: SocketKind,
}

impl EchoReport {
    /// Requests sent.
    pub fn sent(&self) -> usize {
        self.rtts.len()
    }

    /// Replies received.
    pub fn received(&self) -> usize {
        self.rtts.iter().flatten().count()
    }

    /// The round-trip times of the replies, in sequence order.
    pub fn replies(&self) -> Vec<Duration> {
        self.rtts.iter().flatten().copied().collect()
    }

    /// Percent of requests without a reply (0 when none was sent).
    pub fn loss_percent(&self) -> f64 {
        let sent = self.sent();
        if sent == 0 {
            return 0.0;
        }
        (sent - self.received()) as f64 * 100.0 / sent as f64
    }

    /// The smallest, median and largest round trip, when a reply came.
    pub fn min_median_max(&self) -> Option<(Duration, Duration, Duration)> {
        let mut r = self.replies();
        r.sort_unstable();
        let (&min, &max) = (r.first()?, r.last()?);
        let mid = r.len() / 2;
        let median = if r.len() % 2 == 1 {
            r[mid]
        } else {
            (r[mid - 1] + r[mid]) / 2
        };
        Some((min, median, max))
    }
}

impl fmt::Display for EchoReport {
    /// `3 sent, 3 received, 0% packet loss, rtt min/median/max 0.041/0.052/0.101 ms (raw
    /// socket)`, then the errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let loss = self.loss_percent();
        write!(f, "{} sent, {} received, ", self.sent(), self.received())?;
        if loss == 0.0 || loss == 100.0 {
            write!(f, "{loss:.0}% packet loss")?;
        } else {
            write!(f, "{loss:.1}% packet loss")?;
        }
        if let Some((min, median, max)) = self.min_median_max() {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            write!(
                f,
                ", rtt min/median/max {:.3}/{:.3}/{:.3} ms",
                ms(min),
                ms(median),
                ms(max)
            )?;
        }
        write!(f, " ({})", self.socket.name())?;
        if !self.errors.is_empty() {
            write!(f, "; {}", self.errors.join("; "))?;
        }
        Ok(())
    }
}

/// Sends echo requests from `from` (unbound when `from.ip` is unspecified) to `to` inside
/// `from.ns`, as `echo` says (see the module documentation).
pub fn echo(from: End<'_>, to: IpAddr, echo: &Echo) -> anyhow::Result<EchoReport> {
    let src = from.ip;
    let params = *echo;
    let handle = from.ns.spawn_inside(move || run(src, to, &params));
    super::traffic::join(handle)
        .with_context(|| format!("ICMP echo {src} ({}) -> {to}", from.ns.name()))
}

/// Distinguishes the raw-socket clients of one process.
static NEXT_IDENT: AtomicU16 = AtomicU16::new(0);

/// One echo run on the calling thread (already inside the namespace).
fn run(src: IpAddr, to: IpAddr, p: &Echo) -> anyhow::Result<EchoReport> {
    if p.count == 0 {
        bail!("an echo of 0 requests");
    }
    if !src.is_unspecified() && src.is_ipv4() != to.is_ipv4() {
        bail!("source {src} and destination {to} are of different IP versions");
    }
    let (socket, kind) = open(to)?;
    if !src.is_unspecified() {
        socket
            .bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .with_context(|| format!("binding {src}"))?;
    }
    if p.dont_fragment {
        match to {
            IpAddr::V4(_) => sockopt::set_ip_mtu_discover(&socket, Ipv4PathMtuDiscovery::DO),
            IpAddr::V6(_) => sockopt::set_ipv6_mtu_discover(&socket, Ipv6PathMtuDiscovery::DO),
        }
        .context("setting IP_MTU_DISCOVER")?;
    }
    // A ping socket's identifier is its port, chosen by the kernel: ours is ignored.
    let ident = (std::process::id() as u16)
        .wrapping_mul(31)
        .wrapping_add(NEXT_IDENT.fetch_add(1, Ordering::Relaxed));
    let dst = SockAddr::from(SocketAddr::new(to, 0));
    let mut client = Client {
        to,
        kind,
        ident,
        size: p.size,
        sent_at: Vec::new(),
        report: EchoReport {
            to,
            rtts: Vec::new(),
            errors: Vec::new(),
            socket: kind,
        },
        settled: Vec::new(),
    };
    let mut request = Vec::with_capacity(icmpv4::HEADER_LEN + p.size);
    let mut buf = vec![0u8; 65536];
    let started = Instant::now();
    let mut next_send = started;
    loop {
        let now = Instant::now();
        let answered = client.report.received();
        let in_flight = client.in_flight(now, p.wait);
        let (want_more, finished) = match p.deadline {
            None => {
                let all_sent = client.sent_at.len() >= usize::from(p.count);
                (!all_sent, all_sent && in_flight == 0)
            }
            Some(deadline) => (
                answered + in_flight < usize::from(p.count) && now < started + deadline,
                answered >= usize::from(p.count) || (now >= started + deadline && in_flight == 0),
            ),
        };
        if finished {
            break;
        }
        if want_more && now >= next_send {
            let seq =
                u16::try_from(client.sent_at.len()).context("more than 65536 echo requests")?;
            client.build(seq, &mut request);
            client.sent_at.push(Instant::now());
            client.report.rtts.push(None);
            client.settled.push(false);
            if let Err(e) = socket.send_to(&request, &dst) {
                // A route or neighbour still settling, or a request too big with DF.
                client.settled[usize::from(seq)] = true;
                client.report.errors.push(format!("seq {seq}: send: {e}"));
            }
            next_send = started + p.interval * u32::from(seq + 1);
            continue;
        }
        // Listen until the next send or until the oldest request in flight expires.
        let mut until = client.expiry(p.wait).unwrap_or(now + p.interval);
        if want_more {
            until = until.min(next_send);
        }
        let timeout = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        socket.set_read_timeout(Some(timeout))?;
        match rustix::net::recvfrom(&socket, &mut buf[..], RecvFlags::empty()) {
            Ok((n, _, from)) => {
                let arrived = Instant::now();
                let from = from.and_then(|a| SocketAddr::try_from(a).ok());
                if let Some(from) = from {
                    client.receive(&buf[..n], from.ip(), arrived, p.wait);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e).context("receiving ICMP"),
        }
    }
    Ok(client.report)
}

/// A ping socket if the namespace admits us, else a raw socket.
fn open(to: IpAddr) -> anyhow::Result<(Socket, SocketKind)> {
    let (domain, protocol) = if to.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(s) => return Ok((s, SocketKind::Ping)),
        // EACCES: our group is outside net.ipv4.ping_group_range.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {}
        Err(e) => return Err(e).context("opening an ICMP ping socket"),
    }
    let s = Socket::new(domain, Type::RAW, Some(protocol)).context(
        "opening a raw ICMP socket (net.ipv4.ping_group_range refuses a ping socket here, and a \
         raw one needs CAP_NET_RAW)",
    )?;
    Ok((s, SocketKind::Raw))
}

/// The state of one echo run.
struct Client {
    to: IpAddr,
    kind: SocketKind,
    ident: u16,
    size: usize,
    sent_at: Vec<Instant>,
    report: EchoReport,
    /// Per request: answered, or given up (an ICMP error or a failed send).
    settled: Vec<bool>,
}

impl Client {
    /// Requests neither settled nor older than `wait`.
    fn in_flight(&self, now: Instant, wait: Duration) -> usize {
        self.sent_at
            .iter()
            .zip(&self.settled)
            .filter(|(sent, settled)| !**settled && now < **sent + wait)
            .count()
    }

    /// When the oldest request in flight stops being waited for.
    fn expiry(&self, wait: Duration) -> Option<Instant> {
        let now = Instant::now();
        self.sent_at
            .iter()
            .zip(&self.settled)
            .filter(|(sent, settled)| !**settled && now < **sent + wait)
            .map(|(sent, _)| *sent + wait)
            .min()
    }

    /// The echo request `seq`, into `out`.
    fn build(&self, seq: u16, out: &mut Vec<u8>) {
        out.clear();
        out.resize(icmpv4::HEADER_LEN + self.size, 0);
        let fill = |p: &mut [u8]| payload(self.ident, seq, p);
        match self.to {
            IpAddr::V4(_) => {
                let repr = Icmpv4Repr::EchoRequest {
                    ident: self.ident,
                    seq_no: seq,
                };
                // Raw sockets send the checksum as written; ping sockets recompute it.
                let mut packet = Icmpv4Packet::new_unchecked(&mut out[..]);
                repr.emit(&mut packet, self.size, fill, ChecksumCaps::Complete);
            }
            IpAddr::V6(dst) => {
                let repr = Icmpv6Repr::EchoRequest {
                    ident: self.ident,
                    seq_no: seq,
                };
                // The kernel computes ICMPv6 checksums of raw and ping sockets (RFC 3542
                // §3.1), whatever the field holds.
                let mut packet = Icmpv6Packet::new_unchecked(&mut out[..]);
                let any = [0u8; 16];
                repr.emit(
                    &mut packet,
                    &any,
                    &dst.octets(),
                    self.size,
                    fill,
                    ChecksumCaps::Offloaded,
                );
            }
        }
    }

    /// One datagram from the socket, from `from`.
    fn receive(&mut self, data: &[u8], from: IpAddr, arrived: Instant, wait: Duration) {
        let icmp = match (self.to, self.kind) {
            // A raw IPv4 socket reads the IP header too.
            (IpAddr::V4(_), SocketKind::Raw) => {
                let Ok(ip) = Ipv4Packet::new_checked(data) else {
                    return;
                };
                if ip.protocol() != proto::ICMP {
                    return;
                }
                ip.payload()
            }
            _ => data,
        };
        match self.classify(icmp) {
            Some(Message::Reply { seq, payload_ok }) => {
                if from != self.to || !payload_ok {
                    return;
                }
                let i = usize::from(seq);
                let (Some(sent), Some(rtt)) = (self.sent_at.get(i), self.report.rtts.get_mut(i))
                else {
                    return;
                };
                let took = arrived.saturating_duration_since(*sent);
                if rtt.is_none() && took <= wait {
                    *rtt = Some(took);
                    self.settled[i] = true;
                }
            }
            Some(Message::Error { seq, what }) => {
                let i = usize::from(seq);
                if self.settled.get(i) == Some(&false) {
                    self.settled[i] = true;
                    self.report
                        .errors
                        .push(format!("seq {seq}: from {from}: {what}"));
                }
            }
            None => {}
        }
    }

    /// What an ICMP message means to this client, if anything.
    fn classify(&self, icmp: &[u8]) -> Option<Message> {
        match self.to {
            IpAddr::V4(_) => {
                let packet = Icmpv4Packet::new_checked(icmp).ok()?;
                match Icmpv4Repr::parse(&packet, ChecksumCaps::Complete).ok()? {
                    Icmpv4Repr::EchoReply { ident, seq_no } => {
                        if self.kind == SocketKind::Raw && ident != self.ident {
                            return None;
                        }
                        Some(Message::Reply {
                            seq: seq_no,
                            payload_ok: self.payload_ok(seq_no, packet.payload()),
                        })
                    }
                    repr if icmpv4::msg_type::is_error(packet.msg_type()) => {
                        let seq = self.quoted_v4(packet.payload())?;
                        Some(Message::Error {
                            seq,
                            what: describe_v4(repr, packet.msg_type(), packet.msg_code()),
                        })
                    }
                    _ => None,
                }
            }
            IpAddr::V6(_) => {
                let packet = Icmpv6Packet::new_checked(icmp).ok()?;
                // The kernel checked the checksum (it owns the pseudo-header's addresses).
                let any = [0u8; 16];
                match Icmpv6Repr::parse(&packet, &any, &any, ChecksumCaps::Offloaded).ok()? {
                    Icmpv6Repr::EchoReply { ident, seq_no } => {
                        if self.kind == SocketKind::Raw && ident != self.ident {
                            return None;
                        }
                        Some(Message::Reply {
                            seq: seq_no,
                            payload_ok: self.payload_ok(seq_no, packet.payload()),
                        })
                    }
                    repr if icmpv6::msg_type::is_error(packet.msg_type()) => {
                        let seq = self.quoted_v6(packet.payload())?;
                        Some(Message::Error {
                            seq,
                            what: describe_v6(repr, packet.msg_type(), packet.msg_code()),
                        })
                    }
                    _ => None,
                }
            }
        }
    }

    /// Whether `got` is the payload of request `seq`.
    fn payload_ok(&self, seq: u16, got: &[u8]) -> bool {
        let mut want = vec![0u8; self.size];
        payload(self.ident, seq, &mut want);
        got == &want[..]
    }

    /// The sequence number of our echo request quoted in an ICMP error's payload (the
    /// original IPv4 header and at least 8 bytes of its payload).
    fn quoted_v4(&self, quoted: &[u8]) -> Option<u16> {
        let first = *quoted.first()?;
        let header_len = usize::from(first & 0x0f) * 4;
        if first >> 4 != 4 || header_len < 20 || quoted.len() < header_len + icmpv4::HEADER_LEN {
            return None;
        }
        let ip = Ipv4Packet::new_unchecked(quoted);
        if ip.protocol() != proto::ICMP || IpAddr::from(ip.dst()) != self.to {
            return None;
        }
        let request = Icmpv4Packet::new_unchecked(&quoted[header_len..]);
        self.ours(
            request.msg_type() == icmpv4::msg_type::ECHO_REQUEST,
            request.echo_ident(),
            request.echo_seq_no(),
        )
    }

    /// As [`Client::quoted_v4`] for ICMPv6 (an IPv6 header without extension headers).
    fn quoted_v6(&self, quoted: &[u8]) -> Option<u16> {
        const IPV6_HEADER_LEN: usize = 40;
        if quoted.len() < IPV6_HEADER_LEN + icmpv6::HEADER_LEN || quoted[0] >> 4 != 6 {
            return None;
        }
        let ip = Ipv6Packet::new_unchecked(quoted);
        if ip.next_header() != proto::ICMPV6 || IpAddr::from(ip.dst()) != self.to {
            return None;
        }
        let request = Icmpv6Packet::new_unchecked(&quoted[IPV6_HEADER_LEN..]);
        self.ours(
            request.msg_type() == icmpv6::msg_type::ECHO_REQUEST,
            request.echo_ident(),
            request.echo_seq_no(),
        )
    }

    /// `seq` when a quoted echo request is one of ours.
    fn ours(&self, is_request: bool, ident: u16, seq: u16) -> Option<u16> {
        // A ping socket's identifier is the kernel's; only raw sockets receive quoted
        // errors here anyway.
        let ident_ok = self.kind == SocketKind::Ping || ident == self.ident;
        (is_request && ident_ok && usize::from(seq) < self.sent_at.len()).then_some(seq)
    }
}

/// An ICMP message that concerns one of our requests.
enum Message {
    Reply { seq: u16, payload_ok: bool },
    Error { seq: u16, what: String },
}

/// The payload of request `seq` of client `ident`: bytes that differ between requests and
/// clients, so a reply to another request (or another pinger) cannot pass for ours.
fn payload(ident: u16, seq: u16, out: &mut [u8]) {
    let mut state = (u32::from(ident) << 16 | u32::from(seq)) ^ 0x9e37_79b9;
    for b in out {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        *b = state as u8;
    }
}

/// An ICMP error in ping's words (`Destination Net Unreachable`).
fn describe_v4(repr: Icmpv4Repr, msg_type: u8, code: u8) -> String {
    use icmpv4::dst_unreachable as du;
    match repr {
        Icmpv4Repr::DstUnreachable {
            code: du::FRAG_NEEDED,
            next_hop_mtu,
        } => format!("Frag needed and DF set (mtu = {next_hop_mtu})"),
        Icmpv4Repr::DstUnreachable { code, .. } => match code {
            du::NET_UNREACHABLE => "Destination Net Unreachable".to_owned(),
            du::HOST_UNREACHABLE => "Destination Host Unreachable".to_owned(),
            du::PROTO_UNREACHABLE => "Destination Protocol Unreachable".to_owned(),
            du::PORT_UNREACHABLE => "Destination Port Unreachable".to_owned(),
            _ => format!("Destination Unreachable, code {code}"),
        },
        Icmpv4Repr::TimeExceeded { code: 0 } => "Time to live exceeded".to_owned(),
        _ => format!("ICMP error type {msg_type} code {code}"),
    }
}

/// An ICMPv6 error in ping's words (`Destination unreachable: No route`).
fn describe_v6(repr: Icmpv6Repr, msg_type: u8, code: u8) -> String {
    use icmpv6::dst_unreachable as du;
    match repr {
        Icmpv6Repr::DstUnreachable { code } => match code {
            du::NO_ROUTE => "Destination unreachable: No route".to_owned(),
            du::ADMIN_PROHIBITED => "Destination unreachable: Administratively prohibited".into(),
            du::ADDR_UNREACHABLE => "Destination unreachable: Address unreachable".to_owned(),
            du::PORT_UNREACHABLE => "Destination unreachable: Port unreachable".to_owned(),
            _ => format!("Destination unreachable, code {code}"),
        },
        Icmpv6Repr::PacketTooBig { mtu } => format!("Packet too big: mtu={mtu}"),
        Icmpv6Repr::TimeExceeded { code: 0 } => "Time exceeded: Hop limit".to_owned(),
        _ => format!("ICMPv6 error type {msg_type} code {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rtts_us: &[Option<u64>]) -> EchoReport {
        EchoReport {
            to: "10.244.2.1".parse().expect("address"),
            rtts: rtts_us
                .iter()
                .map(|r| r.map(Duration::from_micros))
                .collect(),
            errors: Vec::new(),
            socket: SocketKind::Raw,
        }
    }

    #[test]
    fn the_summary_counts_losses_and_orders_round_trips() {
        let r = report(&[Some(300), None, Some(100), Some(200)]);
        assert_eq!((r.sent(), r.received()), (4, 3));
        assert_eq!(
            r.min_median_max(),
            Some((
                Duration::from_micros(100),
                Duration::from_micros(200),
                Duration::from_micros(300)
            ))
        );
        assert_eq!(
            r.to_string(),
            "4 sent, 3 received, 25.0% packet loss, rtt min/median/max 0.100/0.200/0.300 ms \
             (raw socket)"
        );
        let even = report(&[Some(100), Some(400)]);
        assert_eq!(
            even.min_median_max().map(|m| m.1),
            Some(Duration::from_micros(250))
        );
        assert!(even.to_string().contains(" 0% packet loss"), "{even}");
        let mut none = report(&[None, None, None]);
        none.errors
            .push("seq 0: from 10.244.1.0: Destination Net Unreachable".into());
        assert_eq!(none.min_median_max(), None);
        assert_eq!(
            none.to_string(),
            "3 sent, 0 received, 100% packet loss (raw socket); seq 0: from 10.244.1.0: \
             Destination Net Unreachable"
        );
    }

    fn client(to: &str, kind: SocketKind) -> Client {
        let to: IpAddr = to.parse().expect("address");
        let now = Instant::now();
        Client {
            to,
            kind,
            ident: 0x1234,
            size: 16,
            sent_at: vec![now, now],
            report: EchoReport {
                to,
                rtts: vec![None, None],
                errors: Vec::new(),
                socket: kind,
            },
            settled: vec![false, false],
        }
    }

    /// Request `seq` of `c` as the peer's kernel answers it: type 0, checksum redone.
    fn reply_to(c: &Client, seq: u16) -> Vec<u8> {
        let mut p = Vec::new();
        c.build(seq, &mut p);
        let mut packet = Icmpv4Packet::new_unchecked(&mut p[..]);
        packet.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
        packet.fill_checksum();
        p
    }

    /// `icmp` in an IPv4 header from `src` to 10.244.1.1, as a raw IPv4 socket reads it.
    fn in_ipv4(src: [u8; 4], icmp: &[u8]) -> Vec<u8> {
        let len = u16::try_from(20 + icmp.len())
            .expect("length")
            .to_be_bytes();
        let mut ip = vec![0x45, 0, len[0], len[1], 0, 0, 0x40, 0, 64, 1, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[10, 244, 1, 1]);
        ip.extend_from_slice(icmp);
        ip
    }

    #[test]
    fn replies_count_only_from_the_peer_with_our_payload_in_time() {
        let mut c = client("10.244.2.1", SocketKind::Ping);
        let peer = c.to;
        let wait = Duration::from_secs(2);
        let good = reply_to(&c, 1);
        let mut bad_payload = good.clone();
        bad_payload[20] ^= 1;
        Icmpv4Packet::new_unchecked(&mut bad_payload[..]).fill_checksum();
        let mut bad_checksum = good.clone();
        bad_checksum[2] ^= 1;
        c.receive(&bad_payload, peer, Instant::now(), wait);
        c.receive(&bad_checksum, peer, Instant::now(), wait);
        let elsewhere: IpAddr = "10.244.9.9".parse().expect("address");
        c.receive(&good, elsewhere, Instant::now(), wait);
        c.receive(&good, peer, c.sent_at[1] + wait * 2, wait);
        assert_eq!(c.report.received(), 0);
        c.receive(&good, peer, Instant::now(), wait);
        assert!(c.report.rtts[1].is_some());
        assert_eq!(c.settled, vec![false, true]);
        // A duplicate changes nothing.
        let first = c.report.rtts[1];
        c.receive(&good, peer, Instant::now() + Duration::from_millis(5), wait);
        assert_eq!(c.report.rtts[1], first);
        assert_eq!(c.report.received(), 1);
    }

    #[test]
    fn a_raw_socket_reads_ip_headers_and_checks_the_identifier() {
        let mut c = client("10.244.2.1", SocketKind::Raw);
        let peer = c.to;
        let wait = Duration::from_secs(2);
        let mut other = reply_to(&c, 0);
        Icmpv4Packet::new_unchecked(&mut other[..]).set_echo_ident(0x4321);
        Icmpv4Packet::new_unchecked(&mut other[..]).fill_checksum();
        c.receive(
            &in_ipv4([10, 244, 2, 1], &other),
            peer,
            Instant::now(),
            wait,
        );
        // Our own request, seen by the raw socket on its way out, is no reply.
        let mut request = Vec::new();
        c.build(0, &mut request);
        c.receive(
            &in_ipv4([10, 244, 1, 1], &request),
            peer,
            Instant::now(),
            wait,
        );
        assert_eq!(c.report.received(), 0);
        c.receive(
            &in_ipv4([10, 244, 2, 1], &reply_to(&c, 0)),
            peer,
            Instant::now(),
            wait,
        );
        assert_eq!(c.report.received(), 1);
    }

    #[test]
    fn errors_quoting_our_request_settle_it() {
        let mut c = client("10.244.77.1", SocketKind::Raw);
        let mut request = Vec::new();
        c.build(1, &mut request);
        // What node a's forwarder answers: net unreachable quoting the request's IPv4 header
        // and its first 8 bytes.
        let error = |request: &[u8]| {
            let mut icmp = vec![3, 0, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&[
                0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 244, 1, 1, 10, 244, 77, 1,
            ]);
            icmp.extend_from_slice(&request[..8]);
            Icmpv4Packet::new_unchecked(&mut icmp[..]).fill_checksum();
            in_ipv4([10, 244, 1, 0], &icmp)
        };
        let from: IpAddr = "10.244.1.0".parse().expect("address");
        // The same error about another pinger's request is not ours.
        let mut foreign = request.clone();
        foreign[4] ^= 0xff;
        c.receive(
            &error(&foreign),
            from,
            Instant::now(),
            Duration::from_secs(2),
        );
        assert!(c.report.errors.is_empty());
        c.receive(
            &error(&request),
            from,
            Instant::now(),
            Duration::from_secs(2),
        );
        assert_eq!(c.settled, vec![false, true]);
        assert_eq!(
            c.report.errors,
            vec!["seq 1: from 10.244.1.0: Destination Net Unreachable".to_owned()]
        );
    }

    #[test]
    fn payloads_differ_by_request_and_client() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        let mut c = [0u8; 32];
        payload(1, 1, &mut a);
        payload(1, 2, &mut b);
        payload(2, 1, &mut c);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, [0u8; 32]);
    }
}
