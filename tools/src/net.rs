//! IP prefixes (`10.244.1.0/24`, `fd00:10:244:1::/64`) as the command lines and peer files
//! write them.
//!
//! Contract: [`IpNet::parse`] accepts `ADDR/LEN` with `LEN` within the address family and
//! returns the prefix with its host bits cleared (flannel writes subnets that way); it never
//! panics on any input. [`IpNet::contains`] and [`IpNet::host`] are total.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 prefix: a network address (host bits zero) and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseIpNetError(String);

impl fmt::Display for ParseIpNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseIpNetError {}

impl IpNet {
    /// The prefix `addr/prefix_len` with the host bits of `addr` cleared; `None` when the
    /// length is longer than the address.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<IpNet> {
        let bits = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if prefix_len > bits {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(prefix_len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(prefix_len))),
        };
        Some(IpNet { addr, prefix_len })
    }

    /// Parses `ADDR/LEN`.
    pub fn parse(s: &str) -> Result<IpNet, ParseIpNetError> {
        let err = |why: &str| ParseIpNetError(format!("invalid prefix {s:?}: {why}"));
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| err("expected ADDRESS/LENGTH, e.g. 10.244.1.0/24"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| err("the address is not an IPv4 or IPv6 address"))?;
        let len: u8 = len
            .parse()
            .map_err(|_| err("the length is not a number from 0 to 128"))?;
        IpNet::new(addr, len).ok_or_else(|| err("the length is longer than the address"))
    }

    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether this is an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether `ip` lies inside the prefix (always false across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & v4_mask(self.prefix_len) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & v6_mask(self.prefix_len) == u128::from(net)
            }
            _ => false,
        }
    }

    /// The address `n` past the network address (`host(0)` is the network address itself,
    /// flannel's TUN address; `host(1)` the first host). Wraps within the family.
    pub fn host(&self, n: u32) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(n))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(n.into()))),
        }
    }
}

impl FromStr for IpNet {
    type Err = ParseIpNetError;
    fn from_str(s: &str) -> Result<IpNet, ParseIpNetError> {
        IpNet::parse(s)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn v4_mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn v6_mask(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// A MAC address written `0e:12:34:56:78:9a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = ParseIpNetError;
    fn from_str(s: &str) -> Result<Mac, ParseIpNetError> {
        let err = || {
            ParseIpNetError(format!(
                "invalid MAC address {s:?}: expected 6 hex bytes separated by ':'"
            ))
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_clears_host_bits() {
        let n = IpNet::parse("10.244.1.7/24").expect("valid");
        assert_eq!(n.to_string(), "10.244.1.0/24");
        assert!(n.contains("10.244.1.255".parse().expect("ip")));
        assert!(!n.contains("10.244.2.0".parse().expect("ip")));
        assert!(!n.contains("::1".parse().expect("ip")));
        assert_eq!(n.host(1).to_string(), "10.244.1.1");
        let n6 = IpNet::parse("fd00:10:244:1::5/64").expect("valid");
        assert_eq!(n6.to_string(), "fd00:10:244:1::/64");
        assert!(n6.contains("fd00:10:244:1::1".parse().expect("ip")));
        assert_eq!(IpNet::parse("0.0.0.0/0").expect("valid").prefix_len(), 0);
        assert!(IpNet::parse("0.0.0.0/0")
            .expect("valid")
            .contains("1.2.3.4".parse().expect("ip")));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/33",
            "x/8",
            "10.0.0.0/-1",
            "::/129",
            "/",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn mac_round_trip() {
        let m: Mac = "0e:77:66:00:01:0a".parse().expect("valid");
        assert_eq!(m.to_string(), "0e:77:66:00:01:0a");
        for bad in [
            "",
            "0e:77:66:00:01",
            "0e:77:66:00:01:0a:00",
            "0e:77:66:00:01:zz",
            "0e::66:00:01:0a",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} parsed");
        }
    }
}
