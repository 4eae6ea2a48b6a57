//! flannel's subnet keys.
//!
//! Contract: [`SubnetKey`] is the last path element of a lease key,
//! `10.5.72.0-24` or, dual stack, `10.5.72.0-24&fd00:10:5:48::-64`, exactly as flannel's
//! `MakeSubnetKey` writes it; [`SubnetKey::parse`] accepts only that form (a key with host bits
//! set, a prefix too long, or the same subnets spelt otherwise, `10.5.72.0-024`, is an error
//! naming the key), so whatever it accepts round-trips to the same text.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::model::prefix::parse_decimal_u8;
use crate::model::{AddrParseError, Ipv4Net, Ipv6Net};

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
    pub fn parse(name: &str) -> Result<SubnetKey, AddrParseError> {
        let key = SubnetKey::parse_any_form(name)?;
        let canonical = key.to_string();
        if canonical != name {
            return Err(AddrParseError(format!(
                "subnet key {name:?}: not in flannel's form, which is {canonical:?}"
            )));
        }
        Ok(key)
    }

    fn parse_any_form(name: &str) -> Result<SubnetKey, AddrParseError> {
        let bad = |why: &str| AddrParseError(format!("subnet key {name:?}: {why}"));
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
}
