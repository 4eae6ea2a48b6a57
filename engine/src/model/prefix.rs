//! Prefixes: [`Cidr`] (IPv4 or IPv6, for routes and peers) and the family-typed [`Ipv4Net`] /
//! [`Ipv6Net`] (for lease pools and keys).
//!
//! Contract: each always holds a network address (no host bits set) and a prefix length
//! that fits its family; parsing rejects anything else with a message naming what is wrong, so
//! `10.244.1.1/24` is an error ("did you mean 10.244.1.0/24?"), not a silent mask.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix: a network address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix, a MAC address or a subnet key did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddrParseError(pub(crate) String);

/// The mask of the first `len` bits of a 32-bit address (`len` <= 32).
#[inline]
pub(crate) fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The mask of the first `len` bits of a 128-bit address (`len` <= 128).
#[inline]
pub(crate) fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

impl From<Ipv4Net> for Cidr {
    fn from(net: Ipv4Net) -> Cidr {
        Cidr {
            addr: IpAddr::V4(net.addr()),
            len: net.prefix_len(),
        }
    }
}

impl From<Ipv6Net> for Cidr {
    fn from(net: Ipv6Net) -> Cidr {
        Cidr {
            addr: IpAddr::V6(net.addr()),
            len: net.prefix_len(),
        }
    }
}

impl Cidr {
    /// `addr/len`, or an error when `len` is too long for the family or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, AddrParseError> {
        let (max, network) = match addr {
            IpAddr::V4(a) => (
                32,
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len.min(32)))),
            ),
            IpAddr::V6(a) => (
                128,
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len.min(128)))),
            ),
        };
        if len > max {
            return Err(AddrParseError(format!(
                "{addr}/{len}: the prefix length is longer than {max}"
            )));
        }
        if network != addr {
            return Err(AddrParseError(format!(
                "{addr}/{len} has host bits set; did you mean {network}/{len}?"
            )));
        }
        Ok(Cidr { addr, len })
    }

    /// `addr/len` with the host bits of `addr` cleared (flannel's `FLANNEL_SUBNET=10.244.1.1/24`
    /// names the prefix by its first host); an error only when `len` is too long.
    pub fn new_masked(addr: IpAddr, len: u8) -> Result<Cidr, AddrParseError> {
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len.min(32)))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len.min(128)))),
        };
        Cidr::new(network, len)
    }

    /// Parses `ADDRESS/LENGTH` as [`Cidr::new_masked`] takes it: host bits are cleared.
    pub fn parse_masked(s: &str) -> Result<Cidr, AddrParseError> {
        let (addr, len) = split_prefix(s)?;
        Cidr::new_masked(addr, len)
    }

    /// The address `n` past the network address (`host(0)` is the network address itself,
    /// flannel's TUN address; `host(1)` the first host). Wraps within the family.
    pub fn host(&self, n: u32) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(n))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(n.into()))),
        }
    }

    /// The network address (the prefix's first address).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether this is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies inside the prefix (never across families).
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask_v4(self.len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask_v6(self.len) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = AddrParseError;

    fn from_str(s: &str) -> Result<Cidr, AddrParseError> {
        let (addr, len) = split_prefix(s)?;
        Cidr::new(addr, len)
    }
}

/// `ADDRESS/LENGTH` split and parsed, the length not yet checked against the family.
fn split_prefix(s: &str) -> Result<(IpAddr, u8), AddrParseError> {
    let (addr, len) = split_cidr(s)?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| AddrParseError(format!("{s:?}: {addr:?} is not an IP address")))?;
    Ok((addr, len))
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An IPv4 prefix with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    /// `addr/len`, or an error when `len` > 32 or host bits are set.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, AddrParseError> {
        if len > 32 {
            return Err(AddrParseError(format!(
                "{addr}/{len}: an IPv4 prefix length is at most 32"
            )));
        }
        let masked = Ipv4Addr::from(u32::from(addr) & mask_v4(len));
        if masked != addr {
            return Err(AddrParseError(format!(
                "{addr}/{len} has host bits set (did you mean {masked}/{len}?)"
            )));
        }
        Ok(Ipv4Net { addr, len })
    }

    /// `addr/len` with the host bits of `addr` cleared (as Go's `net.ParseCIDR` does).
    pub fn new_masked(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, AddrParseError> {
        if len > 32 {
            return Err(AddrParseError(format!(
                "{addr}/{len}: an IPv4 prefix length is at most 32"
            )));
        }
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask_v4(len)),
            len,
        })
    }

    /// Parses `a.b.c.d/len`, clearing host bits (flannel's config accepts `10.5.0.1/16`).
    pub fn parse_masked(s: &str) -> Result<Ipv4Net, AddrParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv4Addr::from_str(addr)
            .map_err(|_| AddrParseError(format!("{s:?} is not an IPv4 prefix (a.b.c.d/len)")))?;
        Ipv4Net::new_masked(addr, len)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask_v4(self.len) == u32::from(self.addr)
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let len = self.len.min(other.len);
        u32::from(self.addr) & mask_v4(len) == u32::from(other.addr) & mask_v4(len)
    }

    /// The first address after this prefix, or `None` at the end of the address space.
    pub(crate) fn next_addr(&self) -> Option<u32> {
        let end = u64::from(u32::from(self.addr)) + (1u64 << (32 - u32::from(self.len)));
        u32::try_from(end).ok()
    }

    /// The first host address (`addr + 1`), as flannel writes it into `FLANNEL_SUBNET`.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(1))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = AddrParseError;

    /// Parses `a.b.c.d/len` strictly: host bits must be zero.
    fn from_str(s: &str) -> Result<Ipv4Net, AddrParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv4Addr::from_str(addr)
            .map_err(|_| AddrParseError(format!("{s:?} is not an IPv4 prefix (a.b.c.d/len)")))?;
        Ipv4Net::new(addr, len)
    }
}

/// An IPv6 prefix with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv6Net {
    addr: Ipv6Addr,
    len: u8,
}

impl Ipv6Net {
    /// `addr/len`, or an error when `len` > 128 or host bits are set.
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Ipv6Net, AddrParseError> {
        if len > 128 {
            return Err(AddrParseError(format!(
                "{addr}/{len}: an IPv6 prefix length is at most 128"
            )));
        }
        let masked = Ipv6Addr::from(u128::from(addr) & mask_v6(len));
        if masked != addr {
            return Err(AddrParseError(format!(
                "{addr}/{len} has host bits set (did you mean {masked}/{len}?)"
            )));
        }
        Ok(Ipv6Net { addr, len })
    }

    /// `addr/len` with the host bits of `addr` cleared.
    pub fn new_masked(addr: Ipv6Addr, len: u8) -> Result<Ipv6Net, AddrParseError> {
        if len > 128 {
            return Err(AddrParseError(format!(
                "{addr}/{len}: an IPv6 prefix length is at most 128"
            )));
        }
        Ok(Ipv6Net {
            addr: Ipv6Addr::from(u128::from(addr) & mask_v6(len)),
            len,
        })
    }

    /// Parses `addr/len`, clearing host bits.
    pub fn parse_masked(s: &str) -> Result<Ipv6Net, AddrParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv6Addr::from_str(addr)
            .map_err(|_| AddrParseError(format!("{s:?} is not an IPv6 prefix (addr/len)")))?;
        Ipv6Net::new_masked(addr, len)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv6Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is inside this prefix.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        u128::from(ip) & mask_v6(self.len) == u128::from(self.addr)
    }

    /// Whether the two prefixes share an address.
    pub fn overlaps(&self, other: &Ipv6Net) -> bool {
        let len = self.len.min(other.len);
        u128::from(self.addr) & mask_v6(len) == u128::from(other.addr) & mask_v6(len)
    }

    /// The first address after this prefix, or `None` at the end of the address space.
    pub(crate) fn next_addr(&self) -> Option<u128> {
        1u128
            .checked_shl(128 - u32::from(self.len))
            .and_then(|size| u128::from(self.addr).checked_add(size))
    }

    /// The first host address (`addr + 1`), as flannel writes it into `FLANNEL_IPV6_SUBNET`.
    pub fn first_host(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr).wrapping_add(1))
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv6Net {
    type Err = AddrParseError;

    /// Parses `addr/len` strictly: host bits must be zero.
    fn from_str(s: &str) -> Result<Ipv6Net, AddrParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv6Addr::from_str(addr)
            .map_err(|_| AddrParseError(format!("{s:?} is not an IPv6 prefix (addr/len)")))?;
        Ipv6Net::new(addr, len)
    }
}

fn split_cidr(s: &str) -> Result<(&str, u8), AddrParseError> {
    let (addr, len) = s.split_once('/').ok_or_else(|| {
        AddrParseError(format!(
            "{s:?} is not a prefix: expected ADDRESS/LENGTH, e.g. 10.244.1.0/24"
        ))
    })?;
    let len = parse_decimal_u8(len)
        .ok_or_else(|| AddrParseError(format!("{s:?}: the prefix length is not a number")))?;
    Ok((addr, len))
}

/// A decimal number of 1 to 3 ASCII digits that fits a `u8`.
pub(crate) fn parse_decimal_u8(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "10.244.1.0/24".parse().unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert!(c.contains("10.244.1.255".parse().unwrap()));
        assert!(!c.contains("10.244.2.0".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let d: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(d.contains("1.2.3.4".parse().unwrap()));
        let v6: Cidr = "fd00:10:244:1::/64".parse().unwrap();
        assert!(v6.contains("fd00:10:244:1::5".parse().unwrap()));
        assert!(!v6.contains("fd00:10:244:2::5".parse().unwrap()));
        let h: Cidr = "10.0.0.1/32".parse().unwrap();
        assert!(h.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn masked_prefixes_clear_host_bits() {
        let c = Cidr::parse_masked("10.244.1.1/24").unwrap();
        assert_eq!(c.to_string(), "10.244.1.0/24");
        assert_eq!(c.host(1).to_string(), "10.244.1.1");
        let v6 = Cidr::parse_masked("fd00:10:244:1::7/64").unwrap();
        assert_eq!(v6.to_string(), "fd00:10:244:1::/64");
        assert_eq!(v6.host(2).to_string(), "fd00:10:244:1::2");
        assert!(Cidr::parse_masked("10.0.0.1/33").is_err());
        assert!(Cidr::parse_masked("::1/129").is_err());
        assert!(Cidr::parse_masked("garbage").is_err());
    }

    #[test]
    fn cidr_errors_say_what_is_wrong() {
        let e = "10.244.1.1/24".parse::<Cidr>().unwrap_err().to_string();
        assert!(e.contains("did you mean 10.244.1.0/24"), "{e}");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0/8".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0/x".parse::<Cidr>().is_err());
    }

    #[test]
    fn nets() {
        let n: Ipv4Net = "10.5.0.0/16".parse().expect("net");
        assert!(n.contains(Ipv4Addr::new(10, 5, 255, 1)));
        assert!(!n.contains(Ipv4Addr::new(10, 6, 0, 0)));
        assert!("10.5.0.1/16".parse::<Ipv4Net>().is_err());
        assert_eq!(Ipv4Net::parse_masked("10.5.0.1/16").expect("masked"), n);
        let s: Ipv4Net = "10.5.72.0/24".parse().expect("net");
        assert!(n.overlaps(&s) && s.overlaps(&n));
        assert!(!s.overlaps(&"10.5.73.0/24".parse().expect("net")));
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 5, 72, 1));
        assert_eq!(s.next_addr(), Some(u32::from(Ipv4Addr::new(10, 5, 73, 0))));
        let z: Ipv4Net = "0.0.0.0/0".parse().expect("net");
        assert_eq!(z.next_addr(), None);
        let v6: Ipv6Net = "fd00::/64".parse().expect("net");
        assert_eq!(v6.first_host().to_string(), "fd00::1");
        assert!(v6.contains("fd00::5".parse().expect("addr")));
        assert!("fd00::/200".parse::<Ipv6Net>().is_err());
        assert!("fd00::/".parse::<Ipv6Net>().is_err());
    }
}
