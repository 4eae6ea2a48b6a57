//! Host discovery for the defaults: the public IP (flanneld's `--iface` / `--iface-regex`
//! order), the default route's interface, the underlay MTU, a random VtepMAC.

use std::net::{IpAddr, Ipv6Addr};

use encap::backend::Mac;
use regex::Regex;

use super::flags::{IPV6_UNDERLAY_EXTRA, MIN_MTU};
use crate::model::Backend;
use crate::sys::{ifaddrs, netif, rtnetlink};

/// `--public-ip`; else the first `--iface` that exists (an address some interface holds, or
/// the first IPv4 address of the named interface); else the first `--iface-regex` that matches
/// an address, then an interface name; else, with `--iface-can-reach`, the source address of
/// the kernel's route to it; else the first IPv4 address of the interface of the default
/// route. flanneld's order.
pub(super) fn resolve_public_ip(
    public_ip: Option<IpAddr>,
    ifaces: &[String],
    regexes: &[Regex],
    can_reach: Option<IpAddr>,
) -> Result<IpAddr, String> {
    if let Some(ip) = public_ip {
        return Ok(ip);
    }
    if let (true, Some(target)) = (ifaces.is_empty() && regexes.is_empty(), can_reach) {
        return address_reaching(target);
    }
    let listing =
        || ifaddrs::all().map_err(|e| format!("listing the interface addresses failed: {e}"));
    if ifaces.is_empty() && regexes.is_empty() {
        let name = default_route_interface().ok_or_else(|| {
            "no --public-ip, --iface or --iface-regex given and no default route to take the \
             interface from: pass one of them"
                .to_owned()
        })?;
        return preferred_address(&listing()?, &name).ok_or_else(|| {
            format!(
                "the default route's interface {name} has no address: pass --public-ip or --iface"
            )
        });
    }
    let all = listing()?;
    for iface in ifaces {
        let found = match iface.parse::<IpAddr>() {
            Ok(ip) => all.iter().any(|(_, a)| *a == ip).then_some(ip),
            Err(_) => preferred_address(&all, iface),
        };
        if let Some(ip) = found {
            return Ok(ip);
        }
    }
    for re in regexes {
        if let Some((_, ip)) = all.iter().find(|(_, a)| re.is_match(&a.to_string())) {
            return Ok(*ip);
        }
        if let Some(name) = all.iter().map(|(n, _)| n).find(|n| re.is_match(n)) {
            if let Some(ip) = preferred_address(&all, name) {
                return Ok(ip);
            }
        }
    }
    let mut tried: Vec<String> = ifaces.iter().map(|i| format!("--iface {i}")).collect();
    tried.extend(regexes.iter().map(|r| format!("--iface-regex {r}")));
    Err(format!(
        "no interface with an address matches {}: check the names with `ip addr`",
        tried.join(", ")
    ))
}

/// The address this host sends from to `target`: the source address of the kernel's route to
/// it (`ip route get`; flanneld's `--iface-can-reach`).
fn address_reaching(target: IpAddr) -> Result<IpAddr, String> {
    let route = rtnetlink::route_get(target)
        .map_err(|e| format!("--iface-can-reach {target}: no route to it: {e}"))?;
    route
        .prefsrc
        .ok_or_else(|| format!("--iface-can-reach {target}: its route has no source address"))
}

/// The first IPv4 address of interface `name` in `all`, else its first global IPv6 address
/// (an IPv6-only interface: never its link-local one), else its first address.
pub(super) fn preferred_address(all: &[(String, IpAddr)], name: &str) -> Option<IpAddr> {
    let of_name = || all.iter().filter(|(n, _)| n == name).map(|(_, a)| *a);
    of_name()
        .find(IpAddr::is_ipv4)
        .or_else(|| of_name().find(|a| matches!(a, IpAddr::V6(v6) if is_global_ipv6(*v6))))
        .or_else(|| of_name().next())
}

/// Whether `ip` can be an IPv6 underlay address: global unicast (not loopback, link-local,
/// multicast, unspecified or an IPv4-mapped address).
pub(super) fn is_global_ipv6(ip: Ipv6Addr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_unicast_link_local()
        || ip.to_ipv4_mapped().is_some())
}

/// The first global IPv6 address of the interface holding `addr` (flanneld's `ExtV6Addr`
/// of the external interface).
pub(super) fn ipv6_beside(addr: IpAddr) -> Option<Ipv6Addr> {
    let iface = ifaddrs::interface_with_address(addr).ok()??;
    ifaddrs::addresses_of(&iface)
        .ok()?
        .into_iter()
        .find_map(|a| match a {
            IpAddr::V6(a) if is_global_ipv6(a) => Some(a),
            _ => None,
        })
}

/// The public IP of a node given only `--public-ipv6` (flanneld looks the interface up by
/// that address): the first IPv4 address of its interface, else the IPv6 address itself (an
/// IPv6-only node).
pub(super) fn public_ip_beside(ipv6: Ipv6Addr) -> Result<IpAddr, String> {
    let iface = ifaddrs::interface_with_address(IpAddr::V6(ipv6))
        .map_err(|e| format!("listing the interface addresses failed: {e}"))?
        .ok_or_else(|| {
            format!(
                "invalid value '{ipv6}' for '--public-ipv6': no interface of this host has that                  address"
            )
        })?;
    let addrs = ifaddrs::addresses_of(&iface)
        .map_err(|e| format!("listing the addresses of {iface} failed: {e}"))?;
    Ok(addrs
        .into_iter()
        .find(IpAddr::is_ipv4)
        .unwrap_or(IpAddr::V6(ipv6)))
}

/// The interface of the IPv4 default route, from `/proc/net/route`.
pub(super) fn default_route_interface() -> Option<String> {
    let text = std::fs::read_to_string(PROC_NET_ROUTE).ok()?;
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [iface, "00000000", _, _, _, _, _, "00000000", ..] => Some((*iface).to_owned()),
            _ => None,
        }
    })
}

/// The kernel's IPv4 routing table, as text.
pub(super) const PROC_NET_ROUTE: &str = "/proc/net/route";

/// The default MTU: the underlay interface's minus the backend overhead, and for an
/// encapsulating backend 20 bytes more when any of the traffic crosses an IPv6 underlay (`public_ip` is IPv6, or `ipv6_underlay`: the
/// IPv6 half of a dual-stack underlay).
pub(super) fn default_mtu(
    public_ip: IpAddr,
    ipv6_underlay: bool,
    backend: Backend,
) -> Result<(u32, String), String> {
    let iface = ifaddrs::interface_with_address(public_ip)
        .map_err(|e| format!("listing interface addresses for --public-ip failed: {e}"))?
        .ok_or_else(|| {
            format!(
                "invalid value '{public_ip}' for '--public-ip': no interface of this host has \
                 that address (needed to bind and for the default --mtu)"
            )
        })?;
    let underlay = netif::mtu(&iface)
        .map_err(|e| format!("reading the MTU of {iface} (for the default --mtu) failed: {e}"))?;
    let overhead = backend.overhead()
        + if backend.has_data_path() && (public_ip.is_ipv6() || ipv6_underlay) {
            IPV6_UNDERLAY_EXTRA
        } else {
            0
        };
    let mtu = (underlay as usize)
        .checked_sub(overhead)
        .and_then(|m| u32::try_from(m).ok())
        .filter(|&m| m >= MIN_MTU)
        .ok_or_else(|| {
            format!("the MTU of {iface} ({underlay}) is too small for the {backend} overhead ({overhead}); pass --mtu")
        })?;
    Ok((mtu, format!("{iface} MTU {underlay} - {overhead}")))
}

/// A random locally administered unicast MAC, as flannel makes its VtepMAC.
pub(super) fn random_mac() -> std::io::Result<Mac> {
    use std::io::Read;
    let mut mac = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut mac)?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}
