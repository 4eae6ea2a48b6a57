//! Subnets and flannel's subnet keys.
//!
//! Contract: an [`Ipv4Net`] / [`Ipv6Net`] always holds a network address (host bits zero) and a
//! prefix length that fits its family. [`SubnetKey`] is the last path element of a lease key,
//! `10.5.72.0-24` or, dual stack, `10.5.72.0-24&fd00:10:5:48::-64`, exactly as flannel's
//! `MakeSubnetKey` writes it; [`SubnetKey::parse`] accepts only that form (a key with host bits
//! set, a prefix too long, or the same subnets spelt otherwise, `10.5.72.0-024`, is an error
//! naming the key), so whatever it accepts round-trips to the same text.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Why a prefix or a subnet key did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NetParseError(pub(crate) String);

/// The mask of the first `len` bits of an IPv4 address (`len` <= 32).
pub(crate) fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The mask of the first `len` bits of an IPv6 address (`len` <= 128).
pub(crate) fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// An IPv4 prefix with its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Net {
    /// `addr/len`, or an error when `len` > 32 or host bits are set.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, NetParseError> {
        if len > 32 {
            return Err(NetParseError(format!(
                "{addr}/{len}: an IPv4 prefix length is at most 32"
            )));
        }
        let masked = Ipv4Addr::from(u32::from(addr) & mask_v4(len));
        if masked != addr {
            return Err(NetParseError(format!(
                "{addr}/{len} has host bits set (did you mean {masked}/{len}?)"
            )));
        }
        Ok(Ipv4Net { addr, len })
    }

    /// `addr/len` with the host bits of `addr` cleared (as Go's `net.ParseCIDR` does).
    pub fn new_masked(addr: Ipv4Addr, len: u8) -> Result<Ipv4Net, NetParseError> {
        if len > 32 {
            return Err(NetParseError(format!(
                "{addr}/{len}: an IPv4 prefix length is at most 32"
            )));
        }
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask_v4(len)),
            len,
        })
    }

    /// Parses `a.b.c.d/len`, clearing host bits (flannel's config accepts `10.5.0.1/16`).
    pub fn parse_masked(s: &str) -> Result<Ipv4Net, NetParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv4Addr::from_str(addr)
            .map_err(|_| NetParseError(format!("{s:?} is not an IPv4 prefix (a.b.c.d/len)")))?;
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
    type Err = NetParseError;

    /// Parses `a.b.c.d/len` strictly: host bits must be zero.
    fn from_str(s: &str) -> Result<Ipv4Net, NetParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv4Addr::from_str(addr)
            .map_err(|_| NetParseError(format!("{s:?} is not an IPv4 prefix (a.b.c.d/len)")))?;
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
    pub fn new(addr: Ipv6Addr, len: u8) -> Result<Ipv6Net, NetParseError> {
        if len > 128 {
            return Err(NetParseError(format!(
                "{addr}/{len}: an IPv6 prefix length is at most 128"
            )));
        }
        let masked = Ipv6Addr::from(u128::from(addr) & mask_v6(len));
        if masked != addr {
            return Err(NetParseError(format!(
                "{addr}/{len} has host bits set (did you mean {masked}/{len}?)"
            )));
        }
        Ok(Ipv6Net { addr, len })
    }

    /// `addr/len` with the host bits of `addr` cleared.
    pub fn new_masked(addr: Ipv6Addr, len: u8) -> Result<Ipv6Net, NetParseError> {
        if len > 128 {
            return Err(NetParseError(format!(
                "{addr}/{len}: an IPv6 prefix length is at most 128"
            )));
        }
        Ok(Ipv6Net {
            addr: Ipv6Addr::from(u128::from(addr) & mask_v6(len)),
            len,
        })
    }

    /// Parses `addr/len`, clearing host bits.
    pub fn parse_masked(s: &str) -> Result<Ipv6Net, NetParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv6Addr::from_str(addr)
            .map_err(|_| NetParseError(format!("{s:?} is not an IPv6 prefix (addr/len)")))?;
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
    type Err = NetParseError;

    /// Parses `addr/len` strictly: host bits must be zero.
    fn from_str(s: &str) -> Result<Ipv6Net, NetParseError> {
        let (addr, len) = split_cidr(s)?;
        let addr = Ipv6Addr::from_str(addr)
            .map_err(|_| NetParseError(format!("{s:?} is not an IPv6 prefix (addr/len)")))?;
        Ipv6Net::new(addr, len)
    }
}

fn split_cidr(s: &str) -> Result<(&str, u8), NetParseError> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| NetParseError(format!("{s:?} has no prefix length (addr/len)")))?;
    let len = parse_decimal_u8(len)
        .ok_or_else(|| NetParseError(format!("{s:?}: the prefix length is not a number")))?;
    Ok((addr, len))
}

/// A decimal number of 1 to 3 ASCII digits that fits a `u8`.
fn parse_decimal_u8(s: &str) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The subnet(s) a lease holds: the last path element of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubnetKey {
    /// The IPv4 subnet (flannel's keys always start with one).
    pub v4: Ipv4Net,
    /// The IPv6 subnet of a dual-stack lease.
    pub v6: Option<Ipv6Net>,
}

impl SubnetKey {
    /// An IPv4-only key.
    pub fn v4(v4: Ipv4Net) -> SubnetKey {
        SubnetKey { v4, v6: None }
    }

    /// Parses a key's last path element (`10.5.72.0-24`, `10.5.72.0-24&fd00::-64`), in the one
    /// form flannel writes: a key that names the same subnets in another spelling
    /// (`10.5.72.0-024`, `...&fd00:0::-64`, upper-case hex) is an error, so one lease has one key
    /// and deleting or renewing it by `to_string` never touches another.
    pub fn parse(name: &str) -> Result<SubnetKey, NetParseError> {
        let key = SubnetKey::parse_any_form(name)?;
        let canonical = key.to_string();
        if canonical != name {
            return Err(NetParseError(format!(
                "subnet key {name:?}: not in flannel's form, which is {canonical:?}"
            )));
        }
        Ok(key)
    }

    fn parse_any_form(name: &str) -> Result<SubnetKey, NetParseError> {
        let bad = |why: &str| NetParseError(format!("subnet key {name:?}: {why}"));
        let (v4, v6) = match name.split_once('&') {
            Some((v4, v6)) => (v4, Some(v6)),
            None => (name, None),
        };
        let (addr, len) = v4
            .rsplit_once('-')
            .ok_or_else(|| bad("expected <ip>-<prefix length>"))?;
        let addr = Ipv4Addr::from_str(addr).map_err(|_| bad("not an IPv4 address"))?;
        let len = parse_decimal_u8(len).ok_or_else(|| bad("bad IPv4 prefix length"))?;
        let v4 = Ipv4Net::new(addr, len).map_err(|e| bad(&e.0))?;
        let v6 = match v6 {
            None => None,
            Some(v6) => {
                let (addr, len) = v6
                    .rsplit_once('-')
                    .ok_or_else(|| bad("expected <ipv6>-<prefix length> after '&'"))?;
                let addr = Ipv6Addr::from_str(addr).map_err(|_| bad("not an IPv6 address"))?;
                let len = parse_decimal_u8(len).ok_or_else(|| bad("bad IPv6 prefix length"))?;
                Some(Ipv6Net::new(addr, len).map_err(|e| bad(&e.0))?)
            }
        };
        Ok(SubnetKey { v4, v6 })
    }
}

impl fmt::Display for SubnetKey {
    /// flannel's `MakeSubnetKey`: `<ip>-<len>` and, dual stack, `&<ip6>-<len6>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.v4.addr(), self.v4.prefix_len())?;
        if let Some(v6) = self.v6 {
            write!(f, "&{}-{}", v6.addr(), v6.prefix_len())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trip_v4() {
        let k = SubnetKey::parse("10.5.72.0-24").expect("valid");
        assert_eq!(k.v4, "10.5.72.0/24".parse().expect("net"));
        assert_eq!(k.v6, None);
        assert_eq!(k.to_string(), "10.5.72.0-24");
    }

    #[test]
    fn key_round_trip_dual_stack() {
        let k = SubnetKey::parse("10.5.72.0-24&fd00:10:5:48::-64").expect("valid");
        assert_eq!(k.v6, Some("fd00:10:5:48::/64".parse().expect("net")));
        assert_eq!(k.to_string(), "10.5.72.0-24&fd00:10:5:48::-64");
    }

    #[test]
    fn key_rejects() {
        for bad in [
            "",
            "10.5.72.0",
            "10.5.72.0/24",
            "10.5.72.1-24",
            "10.5.72.0-33",
            "10.5.72.0-",
            "10.5.72.0-x",
            "10.5.72-24",
            "10.5.72.0-24&",
            "10.5.72.0-24&fd00::",
            "10.5.72.0-24&fd00::1-64",
            "10.5.72.0-24&zz::-64",
            "10.5.72.0-24&fd00::-129",
            // The same subnets in another spelling than flannel's (found by fuzzing).
            "10.5.72.0-024",
            "10.5.72.0-24&fd00:0::-64",
            "10.244.1.0-24&2001:cafe:09:1::-64",
            "10.5.72.0-24&FD00::-64",
            "10.5.72.0-24&fd00:0:0:0:0:0:0:0-64",
            "config",
            ".tmp-123",
        ] {
            assert!(SubnetKey::parse(bad).is_err(), "{bad:?} parsed");
        }
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
