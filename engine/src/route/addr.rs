//! Address types of the route table: [`Cidr`] (an IPv4 or IPv6 prefix) and VtepMAC parsing.
//!
//! Contract: a [`Cidr`] always holds a network address (no host bits set) and a prefix length
//! that fits its family; parsing rejects anything else with a message naming what is wrong, so
//! `10.244.1.1/24` is an error ("did you mean 10.244.1.0/24?"), not a silent mask.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use encap::backend::Mac;

/// An IPv4 or IPv6 prefix: a network address and a prefix length, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

/// Why a prefix or MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddrParseError(String);

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
        let (addr, len) = s.split_once('/').ok_or_else(|| {
            AddrParseError(format!(
                "{s:?} is not a prefix: expected ADDRESS/LENGTH, e.g. 10.244.1.0/24"
            ))
        })?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| AddrParseError(format!("{s:?}: {addr:?} is not an IP address")))?;
        let len: u8 = len
            .parse()
            .map_err(|_| AddrParseError(format!("{s:?}: {len:?} is not a prefix length")))?;
        Cidr::new(addr, len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Parses a MAC address written as six colon-separated hex bytes (`0e:5a:1b:2c:3d:4e`).
pub fn parse_mac(s: &str) -> Result<Mac, AddrParseError> {
    let bad = || {
        AddrParseError(format!(
            "{s:?} is not a MAC address (expected 0e:5a:1b:2c:3d:4e)"
        ))
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        // from_str_radix alone would take a sign: "+e" as 0x0e (found by fuzz/peers_file).
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Formats a MAC address as lower-case colon-separated hex.
pub fn format_mac(mac: &Mac) -> String {
    let [a, b, c, d, e, f] = *mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
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
    fn mac_round_trip() {
        let m = parse_mac("0e:5A:1b:2c:3d:4e").unwrap();
        assert_eq!(m, [0x0e, 0x5a, 0x1b, 0x2c, 0x3d, 0x4e]);
        assert_eq!(format_mac(&m), "0e:5a:1b:2c:3d:4e");
        for bad in [
            "",
            "0e:5a:1b:2c:3d",
            "0e:5a:1b:2c:3d:4e:5f",
            "0e:5a:1b:2c:3d:4g",
            "0e::1b:2c:3d:4e",
            "0e:5a:1b:2c:3d:4e0",
            "+e:00:00:00:00:05",
            "0e:00:00:00:00:+5",
            "0e:00:00:00:00:-5",
            "+:00:00:00:00:05",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
    }
}
