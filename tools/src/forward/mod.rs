//! `weftctl forward-udp`: flannel's udp backend data path as flanneld runs it, one packet per
//! system call. It is the interop peer for weftd's udp backend and the floor of the benchmarks.
//!
//! Contract (flannel `pkg/backend/udp/proxy_amd64.c`, `run_proxy`): one thread; `poll()` on the
//! TUN and the UDP socket; then, while either moved a packet, one `read` from the TUN + one
//! `sendto` per packet and one `recv` + one `write` into the TUN per packet, bypassing `poll`.
//! The TUN is `IFF_TUN | IFF_NO_PI` with no virtio header and no offloads, address
//! `<subnet>.0/32`, MTU = the underlay interface's MTU - 28, and one route for the whole
//! Network through it. The wire format is the bare inner IP packet. Like flannel:
//! - the destination is looked up in the peers file's udp entries (longest prefix first);
//!   no entry: an ICMP net unreachable is written back into the TUN (from the Network's base
//!   address, not the TUN's as flannel does, so the kernel does not drop it as a martian);
//! - the IPv4 TTL (IPv6 hop limit) is decremented on both hops and the packet dropped at 0;
//! - the sender of a datagram is not checked; a datagram longer than the TUN MTU is truncated
//!   (and then dropped by the kernel), one shorter than an IP header is dropped.
//!
//! Beyond flannel (which is IPv4 only) it also carries IPv6 inner packets when given
//! `--subnet6`, so dual-stack tests can run against it. It runs until SIGINT / SIGTERM and then
//! prints its counters; closing the TUN removes the device and its routes.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use engine::tun::{Offloads, Tun, TunQueue};
use rustix::event::{PollFd, PollFlags};

use crate::peers;
use engine::model::{Backend, Cidr};

/// The line printed on stderr once packets move (tests wait for it).
pub const READY_LINE: &str = "forward-udp: ready";

/// IPv4 header length without options (RFC 791).
const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length (RFC 8200).
const IPV6_HEADER_LEN: usize = 40;
/// Offset of the IPv4 TTL.
const IPV4_TTL: usize = 8;
/// Offset of the IPv4 header checksum.
const IPV4_CHECKSUM: usize = 10;
/// Offset of the IPv6 hop limit.
const IPV6_HOP_LIMIT: usize = 7;
/// How often a `write` into the TUN is retried on `EAGAIN` (flannel retries forever).
const TUN_WRITE_RETRIES: usize = 1000;

/// What `forward-udp` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The TUN device name (flannel's is `flannel0`).
    pub tun: String,
    /// Our IPv4 subnet; the TUN gets `<subnet>.0/32`.
    pub subnet: Cidr,
    /// Our IPv6 subnet, if any; the TUN gets `<subnet6>::/128`.
    pub subnet6: Option<Cidr>,
    /// The overlay Network routed through the TUN.
    pub network: Cidr,
    /// The IPv6 overlay Network, if any.
    pub network6: Option<Cidr>,
    /// The underlay address to bind.
    pub public_ip: IpAddr,
    /// The UDP port to bind, and the peers' default port.
    pub port: u16,
    /// The peers file.
    pub peers: PathBuf,
    /// The TUN MTU; default: the MTU of the interface holding `public_ip` minus 28.
    pub mtu: Option<u32>,
}

/// Packet counters, printed at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// Packets read from the TUN and sent.
    pub tun_to_udp: u64,
    /// Datagrams received and written into the TUN.
    pub udp_to_tun: u64,
    /// ICMP net unreachable errors written into the TUN.
    pub net_unreachable: u64,
    /// Packets dropped: TTL 0, too short, or a failed send / write.
    pub dropped: u64,
}

/// One route: a peer's subnet and where its datagrams go.
#[derive(Debug, Clone, Copy)]
struct Route {
    subnet: Cidr,
    to: SocketAddr,
}

/// Sets up the TUN, socket and routes, then forwards until `stop` is set (SIGINT / SIGTERM).
pub fn run(config: &Config, stop: &Arc<AtomicBool>) -> anyhow::Result<Counters> {
    if !config.subnet.is_ipv4() || !config.network.is_ipv4() {
        bail!("--subnet and --network must be IPv4 prefixes");
    }
    if config.subnet6.is_some_and(|s| s.is_ipv4()) || config.network6.is_some_and(|s| s.is_ipv4()) {
        bail!("--subnet6 and --network6 must be IPv6 prefixes");
    }
    let routes = load_routes(config)?;
    let mtu = match config.mtu {
        Some(mtu) => mtu,
        None => underlay_mtu(config.public_ip)?
            .checked_sub(Backend::Udp.overhead() as u32)
            .context("the underlay MTU is smaller than the udp overhead (28 bytes)")?,
    };

    let socket = UdpSocket::bind((config.public_ip, config.port))
        .with_context(|| format!("binding UDP {}:{}", config.public_ip, config.port))?;
    socket
        .set_nonblocking(true)
        .context("making the UDP socket non-blocking")?;

    let tun = Tun::open_with(&config.tun, 1, Offloads::NONE)
        .with_context(|| format!("opening TUN {}", config.tun))?;
    tun.set_mtu(mtu)?;
    let IpAddr::V4(tun_addr) = config.subnet.addr() else {
        bail!("--subnet must be IPv4");
    };
    tun.set_ipv4_addr(tun_addr, 32)?;
    if let Some(subnet6) = config.subnet6 {
        let IpAddr::V6(addr6) = subnet6.addr() else {
            bail!("--subnet6 must be IPv6");
        };
        tun.add_ipv6_addr(addr6, 128)?;
    }
    tun.set_up()?;
    add_route(config.network, tun.name())?;
    if let Some(network6) = config.network6 {
        add_route(network6, tun.name())?;
    }
    let name = tun.name().to_owned();
    let mut queues = tun.into_queues();
    let queue = queues.pop().context("the TUN has no queue")?;
    queue.set_nonblocking(true)?;

    eprintln!(
        "{READY_LINE}: tun {name} mtu {mtu}, udp {}:{}, {} route(s)",
        config.public_ip,
        config.port,
        routes.len()
    );
    let mut forwarder = Forwarder {
        tun: queue,
        socket,
        routes,
        icmp_src: config.network.addr(),
        icmp_src6: config.network6.map(|n| n.addr()),
        buf: vec![0u8; mtu as usize],
        icmp: [0u8; encap::icmp::MAX_ERROR_LEN],
        counters: Counters::default(),
    };
    forwarder.run(stop)?;
    Ok(forwarder.counters)
}

fn load_routes(config: &Config) -> anyhow::Result<Vec<Route>> {
    let mut routes: Vec<Route> = peers::load(&config.peers)?
        .into_iter()
        .filter(|p| {
            let udp = p.backend == Backend::Udp;
            if !udp {
                eprintln!(
                    "forward-udp: ignoring {} peer {} ({}): only udp peers are served",
                    p.backend, p.subnet, p.public_ip
                );
            }
            udp
        })
        .map(|p| Route {
            subnet: p.subnet,
            to: SocketAddr::new(p.public_ip, p.port.unwrap_or(config.port)),
        })
        .collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.subnet.prefix_len()));
    Ok(routes)
}

/// The MTU of the interface that holds `ip` (`ip -o addr show to IP`).
fn underlay_mtu(ip: IpAddr) -> anyhow::Result<u32> {
    let out = Command::new("ip")
        .args(["-o", "addr", "show", "to", &ip.to_string()])
        .output()
        .context("running `ip -o addr show` to find the underlay interface")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ifname = text
        .split_whitespace()
        .nth(1)
        .map(|n| n.split('@').next().unwrap_or(n))
        .with_context(|| format!("no interface holds {ip} (give --mtu, or check --public-ip)"))?;
    engine::sys::netif::mtu(ifname).with_context(|| format!("reading the MTU of {ifname}"))
}

fn add_route(net: Cidr, dev: &str) -> anyhow::Result<()> {
    let family = if net.is_ipv4() { "-4" } else { "-6" };
    let out = Command::new("ip")
        .args([family, "route", "replace", &net.to_string(), "dev", dev])
        .output()
        .context("running `ip route replace`")?;
    if !out.status.success() {
        bail!(
            "ip route replace {net} dev {dev} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

struct Forwarder {
    tun: TunQueue,
    socket: UdpSocket,
    routes: Vec<Route>,
    icmp_src: IpAddr,
    icmp_src6: Option<IpAddr>,
    buf: Vec<u8>,
    icmp: [u8; encap::icmp::MAX_ERROR_LEN],
    counters: Counters,
}

impl Forwarder {
    fn run(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [
                PollFd::new(&self.tun, PollFlags::IN),
                PollFd::new(&self.socket, PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(io::Error::from(e)).context("poll on the TUN and socket"),
            }
            // As flannel does: while either side moved a packet, skip poll.
            loop {
                let moved = self.tun_to_udp()? | self.udp_to_tun()?;
                if !moved || stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One TUN read and one send; false when the TUN had nothing.
    fn tun_to_udp(&mut self) -> anyhow::Result<bool> {
        let n = match self.tun.read(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => return Err(e).context("reading the TUN"),
        };
        let packet = &mut self.buf[..n];
        let Some(dst) = encap::wire::destination(packet) else {
            self.counters.dropped += 1;
            return Ok(true);
        };
        let Some(route) = self.routes.iter().find(|r| r.subnet.contains(dst)) else {
            self.net_unreachable(n);
            return Ok(true);
        };
        if !decrement_ttl(packet) {
            self.counters.dropped += 1;
            return Ok(true);
        }
        match self.socket.send_to(packet, route.to) {
            Ok(_) => self.counters.tun_to_udp += 1,
            // A full socket buffer or an unreachable peer loses the packet, as in flannel.
            Err(_) => self.counters.dropped += 1,
        }
        Ok(true)
    }

    /// One receive and one TUN write; false when the socket had nothing.
    fn udp_to_tun(&mut self) -> anyhow::Result<bool> {
        let n = match self.socket.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            // ICMP port unreachable from a peer that is down surfaces here: not fatal.
            Err(_) => {
                self.counters.dropped += 1;
                return Ok(true);
            }
        };
        let packet = &mut self.buf[..n];
        if n < IPV4_HEADER_LEN || !decrement_ttl(packet) {
            self.counters.dropped += 1;
            return Ok(true);
        }
        for _ in 0..TUN_WRITE_RETRIES {
            match self.tun.write(packet) {
                Ok(_) => {
                    self.counters.udp_to_tun += 1;
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                // The kernel refused the packet (malformed, truncated): drop it.
                Err(_) => break,
            }
        }
        self.counters.dropped += 1;
        Ok(true)
    }

    fn net_unreachable(&mut self, n: usize) {
        let packet = &self.buf[..n];
        let src = match encap::wire::ip_version(packet) {
            Some(4) => Some(self.icmp_src),
            Some(6) => self.icmp_src6,
            _ => None,
        };
        let written = src.and_then(|src| encap::icmp::net_unreachable(packet, src, &mut self.icmp));
        match written {
            Some(len) if self.tun.write(&self.icmp[..len]).is_ok() => {
                self.counters.net_unreachable += 1;
            }
            _ => self.counters.dropped += 1,
        }
    }
}

/// Decrements the IPv4 TTL (patching the header checksum, RFC 1624) or the IPv6 hop limit;
/// false when the packet must be dropped (it reached 0, or the header is cut short).
fn decrement_ttl(packet: &mut [u8]) -> bool {
    match encap::wire::ip_version(packet) {
        Some(4) if packet.len() >= IPV4_HEADER_LEN => {
            let ttl = packet[IPV4_TTL];
            if ttl <= 1 {
                return false;
            }
            let old_word = u16::from_be_bytes([ttl, packet[IPV4_TTL + 1]]);
            packet[IPV4_TTL] = ttl - 1;
            let new_word = u16::from_be_bytes([ttl - 1, packet[IPV4_TTL + 1]]);
            //= https://www.rfc-editor.org/rfc/rfc1624#section-3
            //# HC' = ~(~HC + ~m + m')
            let hc = u16::from_be_bytes([packet[IPV4_CHECKSUM], packet[IPV4_CHECKSUM + 1]]);
            let sum = u32::from(!hc) + u32::from(!old_word) + u32::from(new_word);
            let sum = (sum & 0xffff) + (sum >> 16);
            let sum = (sum & 0xffff) + (sum >> 16);
            let new = !(sum as u16);
            packet[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&new.to_be_bytes());
            true
        }
        Some(6) if packet.len() >= IPV6_HEADER_LEN => {
            let hops = packet[IPV6_HOP_LIMIT];
            if hops <= 1 {
                return false;
            }
            packet[IPV6_HOP_LIMIT] = hops - 1;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encap::checksum::checksum;
    use std::net::Ipv4Addr;
    use weft_testkit::packet::{Ip, PROTO_UDP};

    /// An IPv4 header (no payload) with `ttl`.
    fn ipv4_header(ttl: u8) -> Vec<u8> {
        let mut ip = Ip::new(Ipv4Addr::new(10, 244, 1, 1), Ipv4Addr::new(10, 244, 2, 1));
        ip.ttl = ttl;
        ip.header(PROTO_UDP, &[], 0)
    }

    #[test]
    fn ttl_decrement_keeps_the_checksum_valid() {
        for ttl in 2..=255u8 {
            let mut h = ipv4_header(ttl);
            assert!(decrement_ttl(&mut h));
            assert_eq!(h[IPV4_TTL], ttl - 1);
            assert_eq!(checksum(&h), 0, "ttl {ttl}: checksum does not verify");
            assert_eq!(h, ipv4_header(ttl - 1), "ttl {ttl}");
        }
    }

    #[test]
    fn ttl_one_and_short_packets_drop() {
        assert!(!decrement_ttl(&mut ipv4_header(1)));
        assert!(!decrement_ttl(&mut ipv4_header(0)));
        assert!(!decrement_ttl(&mut [0x45; 10]));
        assert!(!decrement_ttl(&mut []));
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[IPV6_HOP_LIMIT] = 64;
        assert!(decrement_ttl(&mut v6));
        assert_eq!(v6[IPV6_HOP_LIMIT], 63);
        v6[IPV6_HOP_LIMIT] = 1;
        assert!(!decrement_ttl(&mut v6));
    }
}
