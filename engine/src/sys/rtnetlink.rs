//! A minimal rtnetlink client: add and delete routes of the main table, and ask which route the
//! kernel takes to an address.
//!
//! Contract: [`add_route`] sends one `RTM_NEWROUTE` request (`NLM_F_CREATE | NLM_F_REPLACE |
//! NLM_F_ACK`, so repeating it is harmless) for a [`RouteKind`] (`prefix/len dev <ifindex>
//! scope link`, or `blackhole prefix/len`) on a fresh `NETLINK_ROUTE` socket of the calling
//! thread's network namespace, and waits (at most [`ACK_TIMEOUT`]) for the kernel's
//! acknowledgement; a negative acknowledgement is returned as the errno it carries.
//! [`delete_route`] sends `RTM_DELROUTE` the same way; a route already gone is success.
//! [`route_get`] is `ip route get`: one `RTM_GETROUTE` and the output interface and gateway of
//! the answer. The messages are built and read in safe code with the layouts of
//! include/uapi/linux/netlink.h and rtnetlink.h; a reply that does not fit them is an error,
//! never a panic.

use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long to wait for the kernel's answer.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// `sizeof(struct nlmsghdr)`: len u32, type u16, flags u16, seq u32, pid u32.
const NLMSG_HDR_LEN: usize = 16;
/// `sizeof(struct rtmsg)`: family, dst_len, src_len, tos, table, protocol, scope, type (u8
/// each), flags u32.
const RTMSG_LEN: usize = 12;
/// `sizeof(struct rtattr)`: len u16, type u16.
const RTA_HDR_LEN: usize = 4;
/// `sizeof(struct nlmsgerr)` up to the echoed header: error i32.
const NLMSGERR_ERROR_LEN: usize = 4;

/// `NLMSG_ALIGN` / `RTA_ALIGN`: 4 bytes.
const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn push_attr(msg: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = RTA_HDR_LEN + data.len();
    // An attribute of a few bytes: the length fits u16.
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&ty.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(align4(msg.len()), 0);
}

/// What a route does with the packets it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `dev <ifindex> scope link`.
    Device(u32),
    /// `blackhole`: dropped here.
    Blackhole,
    /// `via <gateway>`: to a next hop the kernel finds the device of (flannel's DirectRouting
    /// and host-gw routes: `Dst <subnet> Gw <PublicIP>`).
    Via(IpAddr),
}

/// The bytes of an RTM_NEWROUTE / RTM_DELROUTE request for `dst/prefix_len` of `kind`.
fn route_request(msg_type: u16, dst: IpAddr, prefix_len: u8, kind: RouteKind, seq: u32) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.resize(NLMSG_HDR_LEN, 0);
    let (family, addr): (u8, Vec<u8>) = match dst {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
    };
    msg.extend_from_slice(&[
        family,
        prefix_len,
        0, // src_len
        0, // tos
        libc::RT_TABLE_MAIN,
        libc::RTPROT_BOOT,
        match kind {
            RouteKind::Device(_) => libc::RT_SCOPE_LINK,
            RouteKind::Blackhole | RouteKind::Via(_) => libc::RT_SCOPE_UNIVERSE,
        },
        match kind {
            RouteKind::Device(_) | RouteKind::Via(_) => libc::RTN_UNICAST,
            RouteKind::Blackhole => libc::RTN_BLACKHOLE,
        },
    ]);
    msg.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    debug_assert_eq!(msg.len(), NLMSG_HDR_LEN + RTMSG_LEN);
    push_attr(&mut msg, libc::RTA_DST, &addr);
    match kind {
        RouteKind::Device(ifindex) => push_attr(&mut msg, libc::RTA_OIF, &ifindex.to_ne_bytes()),
        RouteKind::Via(gateway) => push_attr(&mut msg, libc::RTA_GATEWAY, &ip_octets(gateway)),
        RouteKind::Blackhole => {}
    }
    finish_header(&mut msg, msg_type, seq);
    msg
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Writes the netlink header of a request: its length, type, flags and sequence number.
fn finish_header(msg: &mut [u8], msg_type: u16, seq: u32) {
    let len = msg.len() as u32;
    let flags = match msg_type {
        libc::RTM_NEWROUTE => {
            libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_REPLACE
        }
        libc::RTM_GETROUTE => libc::NLM_F_REQUEST,
        _ => libc::NLM_F_REQUEST | libc::NLM_F_ACK,
    } as u16;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&msg_type.to_ne_bytes());
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[8..12].copy_from_slice(&seq.to_ne_bytes());
    // nlmsg_pid 0: the kernel fills in our port id.
}

/// The errno of an acknowledgement for `seq` in `reply` (0 = success), or `None` if `reply`
/// holds no acknowledgement for it.
fn ack_errno(reply: &[u8], seq: u32) -> Option<i32> {
    messages(reply)
        .filter(|m| m.ty == libc::NLMSG_ERROR as u16 && m.seq == seq)
        .find_map(|m| {
            let e = m.body.get(..NLMSGERR_ERROR_LEN)?;
            Some(-i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
        })
}

/// One netlink message of a reply: its type, sequence number and what follows the header.
struct Message<'a> {
    ty: u16,
    seq: u32,
    body: &'a [u8],
}

/// The messages in `reply`, up to the first whose header does not fit.
fn messages(reply: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = reply;
    std::iter::from_fn(move || {
        let h = rest.get(..NLMSG_HDR_LEN)?;
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return None;
        }
        let m = Message {
            ty: u16::from_ne_bytes([h[4], h[5]]),
            seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
            body: &rest[NLMSG_HDR_LEN..len],
        };
        rest = rest.get(align4(len)..).unwrap_or_default();
        Some(m)
    })
}

/// Adds (or replaces) the route `dst/prefix_len dev <ifindex> scope link` in the main table.
pub fn add_device_route(dst: IpAddr, prefix_len: u8, ifindex: u32) -> io::Result<()> {
    add_route(dst, prefix_len, RouteKind::Device(ifindex))
}

/// Adds (or replaces) the route `dst/prefix_len` of `kind` in the main table.
pub fn add_route(dst: IpAddr, prefix_len: u8, kind: RouteKind) -> io::Result<()> {
    request(
        &route_request(libc::RTM_NEWROUTE, dst, prefix_len, kind, 1),
        1,
    )
}

/// Deletes the route `dst/prefix_len` of `kind` from the main table; one that does not exist
/// is success.
pub fn delete_route(dst: IpAddr, prefix_len: u8, kind: RouteKind) -> io::Result<()> {
    match request(
        &route_request(libc::RTM_DELROUTE, dst, prefix_len, kind, 1),
        1,
    ) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

/// The route the kernel takes to an address (`ip route get`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLookup {
    /// The output interface.
    pub oif: Option<u32>,
    /// The next hop, when the destination is not on a directly connected network.
    pub gateway: Option<IpAddr>,
    /// The source address the kernel would send from.
    pub prefsrc: Option<IpAddr>,
}

/// Asks the kernel which route it takes to `dst` (`RTM_GETROUTE`). No route is the errno the
/// kernel answers (`ENETUNREACH`, ...).
pub fn route_get(dst: IpAddr) -> io::Result<RouteLookup> {
    let seq = 1;
    let mut msg = Vec::with_capacity(48);
    msg.resize(NLMSG_HDR_LEN, 0);
    let (family, len) = match dst {
        IpAddr::V4(_) => (libc::AF_INET as u8, 32),
        IpAddr::V6(_) => (libc::AF_INET6 as u8, 128),
    };
    msg.extend_from_slice(&[family, len, 0, 0, 0, 0, 0, 0]);
    msg.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut msg, libc::RTA_DST, &ip_octets(dst));
    finish_header(&mut msg, libc::RTM_GETROUTE, seq);
    let socket = netlink_socket()?;
    socket.send(&msg)?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    loop {
        let n = socket.recv(&mut buf)?;
        // SAFETY: recv initialised the first `n` bytes of `buf`.
        let reply = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        if let Some(errno) = ack_errno(reply, seq).filter(|&e| e != 0) {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if let Some(found) = parse_route(reply, seq, dst) {
            return Ok(found);
        }
    }
}

/// The output interface and gateway of the `RTM_NEWROUTE` answer for `seq` in `reply`.
fn parse_route(reply: &[u8], seq: u32, dst: IpAddr) -> Option<RouteLookup> {
    let m = messages(reply).find(|m| m.ty == libc::RTM_NEWROUTE && m.seq == seq)?;
    let mut found = RouteLookup {
        oif: None,
        gateway: None,
        prefsrc: None,
    };
    let mut attrs = m.body.get(RTMSG_LEN..)?;
    while attrs.len() >= RTA_HDR_LEN {
        let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let aty = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if alen < RTA_HDR_LEN || alen > attrs.len() {
            break;
        }
        let data = &attrs[RTA_HDR_LEN..alen];
        let addr = || match (data.len(), dst) {
            (4, IpAddr::V4(_)) => Some(IpAddr::from([data[0], data[1], data[2], data[3]])),
            (16, IpAddr::V6(_)) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(data);
                Some(IpAddr::from(a))
            }
            _ => None,
        };
        match aty {
            libc::RTA_OIF if data.len() == 4 => {
                found.oif = Some(u32::from_ne_bytes([data[0], data[1], data[2], data[3]]));
            }
            libc::RTA_GATEWAY => found.gateway = addr(),
            libc::RTA_PREFSRC => found.prefsrc = addr(),
            _ => {}
        }
        attrs = &attrs[align4(alen).min(attrs.len())..];
    }
    Some(found)
}

fn netlink_socket() -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::RAW.cloexec(),
        Some(Protocol::from(libc::NETLINK_ROUTE)),
    )?;
    socket.set_read_timeout(Some(ACK_TIMEOUT))?;
    Ok(socket)
}

/// Sends one request and waits for its acknowledgement.
fn request(msg: &[u8], seq: u32) -> io::Result<()> {
    let socket = netlink_socket()?;
    // An unbound netlink socket sends to the kernel (port id 0) and is bound on first send.
    socket.send(msg)?;
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    loop {
        let n = socket.recv(&mut buf)?;
        // SAFETY: recv initialised the first `n` bytes of `buf`.
        let reply = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        match ack_errno(reply, seq) {
            Some(0) => return Ok(()),
            Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
            None => continue,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let new = libc::RTM_NEWROUTE;
        let m = route_request(
            new,
            "10.244.0.0".parse().unwrap(),
            16,
            RouteKind::Device(7),
            1,
        );
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(
            u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 16, 0, 0]);
        assert_eq!(&m[28..30], &8u16.to_ne_bytes());
        assert_eq!(&m[32..36], &[10, 244, 0, 0]);
        assert_eq!(&m[40..44], &7u32.to_ne_bytes());
        let m6 = route_request(new, "fd00::".parse().unwrap(), 48, RouteKind::Device(7), 1);
        assert_eq!(m6.len(), 16 + 12 + 20 + 8);
        let b = route_request(
            new,
            "10.244.3.0".parse().unwrap(),
            24,
            RouteKind::Blackhole,
            1,
        );
        assert_eq!(b.len(), 16 + 12 + 8);
        assert_eq!(b[16 + 7], libc::RTN_BLACKHOLE);
    }

    #[test]
    fn adds_a_route_in_a_private_namespace() {
        require_root!();
        crate::test_support::in_netns(|| {
            let lo = crate::sys::netif::index("lo").unwrap();
            add_device_route("10.99.0.0".parse().unwrap(), 16, lo).unwrap();
            // Again: NLM_F_REPLACE makes it idempotent.
            add_device_route("10.99.0.0".parse().unwrap(), 16, lo).unwrap();
            // /proc/thread-self/net is this thread's namespace: destination 10.99.0.0 is
            // 0000630A in host order on little-endian.
            let routes = std::fs::read_to_string("/proc/thread-self/net/route").unwrap();
            let want = format!("{:08X}", u32::from_ne_bytes([10, 99, 0, 0]));
            assert!(
                routes
                    .lines()
                    .any(|l| l.starts_with("lo") && l.contains(&want)),
                "{routes}"
            );
            let err = add_device_route("10.98.0.0".parse().unwrap(), 16, 9999).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENODEV));
        });
    }

    #[test]
    fn adds_and_deletes_a_blackhole_route() {
        require_root!();
        crate::test_support::in_netns(|| {
            let dst: IpAddr = "10.97.3.0".parse().unwrap();
            add_route(dst, 24, RouteKind::Blackhole).unwrap();
            // /proc/net/route shows a blackhole (RTF_REJECT, 0x0200) route on "*".
            let want = format!("{:08X}", u32::from_ne_bytes([10, 97, 3, 0]));
            let listed = || {
                std::fs::read_to_string("/proc/thread-self/net/route")
                    .unwrap()
                    .lines()
                    .any(|l| l.contains(&want))
            };
            assert!(listed());
            delete_route(dst, 24, RouteKind::Blackhole).unwrap();
            assert!(!listed());
            // Deleting it again is not an error.
            delete_route(dst, 24, RouteKind::Blackhole).unwrap();
        });
    }

    #[test]
    fn ack_parsing() {
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        ack[8..12].copy_from_slice(&5u32.to_ne_bytes());
        assert_eq!(ack_errno(&ack, 5), Some(0));
        assert_eq!(ack_errno(&ack, 6), None);
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(ack_errno(&ack, 5), Some(libc::EEXIST));
        assert_eq!(ack_errno(&ack[..10], 5), None);
    }

    #[test]
    fn gateway_routes_and_route_get_in_a_private_namespace() {
        require_root!();
        crate::test_support::in_netns(|| {
            let lo = crate::sys::netif::index("lo").unwrap();
            crate::sys::netif::set_up("lo").unwrap();
            // A connected network on lo, and a subnet reached through a gateway inside it.
            // (A /24 on lo would make the whole /24 local: a /32 and a device route instead.)
            crate::sys::netif::set_ipv4_addr("lo", "10.96.0.1".parse().unwrap(), 32).unwrap();
            add_device_route("10.96.0.0".parse().unwrap(), 24, lo).unwrap();
            let gw: IpAddr = "10.96.0.7".parse().unwrap();
            let subnet: IpAddr = "10.95.3.0".parse().unwrap();
            add_route(subnet, 24, RouteKind::Via(gw)).unwrap();
            let direct = route_get(gw).unwrap();
            let src: IpAddr = "10.96.0.1".parse().unwrap();
            assert_eq!(
                direct,
                RouteLookup {
                    oif: Some(lo),
                    gateway: None,
                    prefsrc: Some(src),
                }
            );
            let via = route_get("10.95.3.9".parse().unwrap()).unwrap();
            assert_eq!(
                via,
                RouteLookup {
                    oif: Some(lo),
                    gateway: Some(gw),
                    prefsrc: Some(src),
                }
            );
            delete_route(subnet, 24, RouteKind::Via(gw)).unwrap();
            let gone = route_get("10.95.3.9".parse().unwrap()).unwrap_err();
            assert_eq!(gone.raw_os_error(), Some(libc::ENETUNREACH));
            // A gateway that is not on a connected network is refused by the kernel.
            let far = add_route(subnet, 24, RouteKind::Via("10.94.0.1".parse().unwrap()));
            assert!(far.is_err());
        });
    }

    #[test]
    fn route_replies_that_do_not_fit_are_ignored() {
        let dst: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(parse_route(&[], 1, dst), None);
        assert_eq!(parse_route(&[0xff; 15], 1, dst), None);
        // A header claiming more bytes than there are.
        let mut m = vec![0u8; 28];
        m[0..4].copy_from_slice(&200u32.to_ne_bytes());
        m[4..6].copy_from_slice(&libc::RTM_NEWROUTE.to_ne_bytes());
        m[8..12].copy_from_slice(&1u32.to_ne_bytes());
        assert_eq!(parse_route(&m, 1, dst), None);
        // A route with a broken attribute: what was read before it stands.
        m[0..4].copy_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&libc::RTA_OIF.to_ne_bytes());
        m.extend_from_slice(&3u32.to_ne_bytes());
        let none = RouteLookup {
            oif: None,
            gateway: None,
            prefsrc: None,
        };
        assert_eq!(
            parse_route(&m, 1, dst),
            Some(RouteLookup {
                oif: Some(3),
                ..none
            })
        );
        let mut broken = m.clone();
        broken[28..30].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(parse_route(&broken, 1, dst), Some(none));
    }
}
