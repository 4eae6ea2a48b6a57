//! flannel's network config (`<prefix>/config`), read and checked as flannel does.
//!
//! ```json
//! {"Network": "10.5.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan", "VNI": 1}}
//! ```
//!
//! Contract (flannel's `ParseConfig` + `CheckNetworkConfig`, pkg/subnet/config.go):
//! - Field names match case-insensitively (an exact match wins); unknown fields are ignored.
//! - `EnableIPv4` defaults to true, `EnableIPv6` to false. weft needs IPv4 (flannel's etcd keys
//!   are IPv4 subnets), so `EnableIPv4: false` is rejected.
//! - `Network` is required; host bits are cleared (`10.5.0.1/16` is `10.5.0.0/16`). A Network
//!   smaller than /28 is rejected. `SubnetLen` defaults to 24 when the Network is /22 or
//!   larger, else to the Network's prefix + 2; a given SubnetLen must be <= 30 and at least the
//!   Network's prefix + 2. `SubnetMin` defaults to the second subnet, `SubnetMax` to the last;
//!   given ones must lie in the Network, on a SubnetLen boundary, and Min <= Max.
//! - IPv6 likewise with `IPv6Network`, `IPv6SubnetLen` (default 64 when the network is /62 or
//!   larger, else prefix + 2; <= 126; network no smaller than /124), `IPv6SubnetMin`,
//!   `IPv6SubnetMax`.
//! - `Backend`: no `Backend` key means udp (flannel's code; its docs say vxlan). `Type` is
//!   `udp` or `vxlan` (other flannel backends are rejected: weft does not implement them);
//!   `Port` (0 = the backend's default, 8285 / 8472); `VNI` (vxlan, default 1, 24 bits).
//!
//! Every rejection is a [`ConfigError`] naming the field and the reason.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde_json::{Map, Value};

use super::attrs::{field, VNI_MAX};
use crate::model::prefix::{mask_v4, mask_v6};
use crate::model::{Backend, Ipv4Net, Ipv6Net};

/// flannel's default VNI.
pub const VXLAN_DEFAULT_VNI: u32 = 1;

/// An invalid network config: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network config: {field}: {reason}")]
pub struct ConfigError {
    /// The field (`"Network"`, `"Backend.Type"`, ... or `"(config)"` for the whole text).
    pub field: &'static str,
    /// What is wrong and, where it helps, what would be right.
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

/// The `Backend` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// `Type`.
    pub kind: Backend,
    /// `Port` as given (0 or absent = the backend's default); see [`BackendConfig::port`].
    pub configured_port: u16,
    /// `VNI` (vxlan; 1 when absent).
    pub vni: u32,
    /// `DirectRouting`: peers reachable without a gateway get a plain kernel route via their
    /// PublicIP instead of the overlay (flannel's vxlan option; weft also honours it for udp).
    pub direct_routing: bool,
}

impl BackendConfig {
    /// The UDP port to use: `Port`, else 8285 (udp) or 8472 (vxlan).
    pub fn port(&self) -> u16 {
        match self.configured_port {
            0 => self.kind.default_port(),
            p => p,
        }
    }
}

/// The IPv4 pool subnets are leased from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Pool {
    /// `Network`.
    pub network: Ipv4Net,
    /// `SubnetLen`, after defaulting.
    pub subnet_len: u8,
    /// `SubnetMin`: the first subnet that may be leased.
    pub subnet_min: Ipv4Addr,
    /// `SubnetMax`: the last subnet that may be leased.
    pub subnet_max: Ipv4Addr,
}

impl Ipv4Pool {
    /// Whether `subnet` is one this pool leases (flannel's `isSubnetConfigCompat`).
    pub fn accepts(&self, subnet: &Ipv4Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.addr() >= self.subnet_min
            && subnet.addr() <= self.subnet_max
    }
}

/// The IPv6 pool subnets are leased from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Pool {
    /// `IPv6Network`.
    pub network: Ipv6Net,
    /// `IPv6SubnetLen`, after defaulting.
    pub subnet_len: u8,
    /// `IPv6SubnetMin`.
    pub subnet_min: Ipv6Addr,
    /// `IPv6SubnetMax`.
    pub subnet_max: Ipv6Addr,
}

impl Ipv6Pool {
    /// Whether `subnet` is one this pool leases.
    pub fn accepts(&self, subnet: &Ipv6Net) -> bool {
        subnet.prefix_len() == self.subnet_len
            && subnet.addr() >= self.subnet_min
            && subnet.addr() <= self.subnet_max
    }
}

/// A checked network config with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The IPv4 pool (always present: weft requires `EnableIPv4`).
    pub ipv4: Ipv4Pool,
    /// The IPv6 pool when `EnableIPv6` is true.
    pub ipv6: Option<Ipv6Pool>,
    /// The backend.
    pub backend: BackendConfig,
}

impl NetworkConfig {
    /// Parses and checks a config text (see the module documentation).
    pub fn parse(text: &str) -> Result<NetworkConfig, ConfigError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| err("(config)", format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(err("(config)", "expected a JSON object"));
        };
        let enable_ipv4 = bool_field(&map, "EnableIPv4")?.unwrap_or(true);
        let enable_ipv6 = bool_field(&map, "EnableIPv6")?.unwrap_or(false);
        if !enable_ipv4 {
            return Err(err(
                "EnableIPv4",
                "false is not supported: weft needs an IPv4 Network (flannel's lease keys are \
                 IPv4 subnets)",
            ));
        }
        let backend = parse_backend(&map)?;
        let ipv4 = parse_ipv4(&map)?;
        let ipv6 = if enable_ipv6 {
            Some(parse_ipv6(&map)?)
        } else {
            None
        };
        Ok(NetworkConfig {
            ipv4,
            ipv6,
            backend,
        })
    }
}

fn parse_ipv4(map: &Map<String, Value>) -> Result<Ipv4Pool, ConfigError> {
    let network = match string_field(map, "Network")? {
        None => {
            return Err(err(
                "Network",
                "missing: set it to the overlay's IPv4 prefix, e.g. \"10.244.0.0/16\"",
            ))
        }
        Some(s) => Ipv4Net::parse_masked(s).map_err(|e| err("Network", e.0))?,
    };
    let plen = network.prefix_len();
    let subnet_len = match uint_field(map, "SubnetLen", 32)? {
        Some(len) if len > 0 => {
            let len = len as u8;
            if len > 30 {
                return Err(err(
                    "SubnetLen",
                    format!("{len} is too long: a subnet needs at least 4 addresses (at most 30)"),
                ));
            }
            if len < plen + 2 {
                return Err(err(
                    "SubnetLen",
                    format!(
                        "{len} is too short for Network {network}: the network must hold at \
                         least four subnets (SubnetLen >= {})",
                        plen + 2
                    ),
                ));
            }
            len
        }
        _ => {
            if plen > 28 {
                return Err(err(
                    "Network",
                    format!("{network} is too small: the smallest useful Network is a /28"),
                ));
            } else if plen <= 22 {
                24
            } else {
                plen + 2
            }
        }
    };
    let size = 1u64 << (32 - u32::from(subnet_len));
    let net_start = u64::from(u32::from(network.addr()));
    let net_end = net_start + (1u64 << (32 - u32::from(plen)));
    let mask = mask_v4(subnet_len);
    let subnet_min = match addr4_field(map, "SubnetMin")? {
        None => Ipv4Addr::from((net_start + size) as u32),
        Some(a) => check_bound4("SubnetMin", a, &network, mask, subnet_len)?,
    };
    let subnet_max = match addr4_field(map, "SubnetMax")? {
        None => Ipv4Addr::from((net_end - size) as u32),
        Some(a) => check_bound4("SubnetMax", a, &network, mask, subnet_len)?,
    };
    if subnet_min > subnet_max {
        return Err(err(
            "SubnetMin",
            format!("{subnet_min} is above SubnetMax {subnet_max}"),
        ));
    }
    Ok(Ipv4Pool {
        network,
        subnet_len,
        subnet_min,
        subnet_max,
    })
}

fn check_bound4(
    name: &'static str,
    a: Ipv4Addr,
    network: &Ipv4Net,
    mask: u32,
    subnet_len: u8,
) -> Result<Ipv4Addr, ConfigError> {
    if !network.contains(a) {
        return Err(err(name, format!("{a} is not in the Network {network}")));
    }
    if u32::from(a) & mask != u32::from(a) {
        return Err(err(
            name,
            format!("{a} is not on a SubnetLen (/{subnet_len}) boundary"),
        ));
    }
    Ok(a)
}

fn parse_ipv6(map: &Map<String, Value>) -> Result<Ipv6Pool, ConfigError> {
    let network = match string_field(map, "IPv6Network")? {
        None => {
            return Err(err(
                "IPv6Network",
                "missing while EnableIPv6 is true: set it to the overlay's IPv6 prefix, e.g. \
                 \"fd00:10:244::/56\"",
            ))
        }
        Some(s) => Ipv6Net::parse_masked(s).map_err(|e| err("IPv6Network", e.0))?,
    };
    let plen = network.prefix_len();
    let subnet_len = match uint_field(map, "IPv6SubnetLen", 128)? {
        Some(len) if len > 0 => {
            let len = len as u8;
            if len > 126 {
                return Err(err(
                    "IPv6SubnetLen",
                    format!("{len} is too long (at most 126)"),
                ));
            }
            if len < plen + 2 {
                return Err(err(
                    "IPv6SubnetLen",
                    format!(
                        "{len} is too short for IPv6Network {network}: the network must hold at \
                         least four subnets (IPv6SubnetLen >= {})",
                        plen + 2
                    ),
                ));
            }
            len
        }
        _ => {
            if plen > 124 {
                return Err(err(
                    "IPv6Network",
                    format!("{network} is too small: the smallest useful IPv6Network is a /124"),
                ));
            } else if plen <= 62 {
                64
            } else {
                plen + 2
            }
        }
    };
    let size = 1u128 << (128 - u32::from(subnet_len));
    let net_start = u128::from(network.addr());
    // The last subnet: the network's last address with the subnet's host bits cleared.
    let net_last = net_start | !mask_v6(plen);
    let mask = mask_v6(subnet_len);
    let check = |name: &'static str, a: Ipv6Addr| -> Result<Ipv6Addr, ConfigError> {
        if !network.contains(a) {
            return Err(err(
                name,
                format!("{a} is not in the IPv6Network {network}"),
            ));
        }
        if u128::from(a) & mask != u128::from(a) {
            return Err(err(
                name,
                format!("{a} is not on an IPv6SubnetLen (/{subnet_len}) boundary"),
            ));
        }
        Ok(a)
    };
    let subnet_min = match addr6_field(map, "IPv6SubnetMin")? {
        None => Ipv6Addr::from(net_start + size),
        Some(a) => check("IPv6SubnetMin", a)?,
    };
    let subnet_max = match addr6_field(map, "IPv6SubnetMax")? {
        None => Ipv6Addr::from(net_last & mask),
        Some(a) => check("IPv6SubnetMax", a)?,
    };
    if subnet_min > subnet_max {
        return Err(err(
            "IPv6SubnetMin",
            format!("{subnet_min} is above IPv6SubnetMax {subnet_max}"),
        ));
    }
    Ok(Ipv6Pool {
        network,
        subnet_len,
        subnet_min,
        subnet_max,
    })
}

fn parse_backend(map: &Map<String, Value>) -> Result<BackendConfig, ConfigError> {
    let backend = match field(map, "Backend") {
        // flannel: `if len(be) == 0 { return "udp" }`.
        None => {
            return Ok(BackendConfig {
                kind: Backend::Udp,
                configured_port: 0,
                vni: VXLAN_DEFAULT_VNI,
                direct_routing: false,
            })
        }
        Some(Value::Object(b)) => b,
        Some(other) => {
            return Err(err(
                "Backend",
                format!("expected an object like {{\"Type\": \"vxlan\"}}, found {other}"),
            ))
        }
    };
    let kind = match field(backend, "Type") {
        Some(Value::String(t)) => match t.parse::<Backend>() {
            Ok(b) => b,
            Err(_) => {
                return Err(err(
                    "Backend.Type",
                    format!("{t:?} is not supported by weft (use {})", Backend::names()),
                ))
            }
        },
        None | Some(Value::Null) => {
            return Err(err(
                "Backend.Type",
                format!("missing: set {}", Backend::names()),
            ))
        }
        Some(other) => {
            return Err(err(
                "Backend.Type",
                format!("expected a string, found {other}"),
            ))
        }
    };
    let configured_port = match uint_value(field(backend, "Port"), u64::from(u16::MAX)) {
        Ok(p) => p.unwrap_or(0) as u16,
        Err(reason) => return Err(err("Backend.Port", reason)),
    };
    let vni = match uint_value(field(backend, "VNI"), u64::from(VNI_MAX)) {
        Ok(v) => v.map_or(VXLAN_DEFAULT_VNI, |v| v as u32),
        Err(reason) => return Err(err("Backend.VNI", reason)),
    };
    // flannel reads it as a JSON bool; anything else fails its config decode.
    let direct_routing = match field(backend, "DirectRouting") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(err(
                "Backend.DirectRouting",
                format!("expected true or false, found {other}"),
            ))
        }
    };
    Ok(BackendConfig {
        kind,
        configured_port,
        vni,
        direct_routing,
    })
}

fn bool_field(map: &Map<String, Value>, name: &'static str) -> Result<Option<bool>, ConfigError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(err(name, format!("expected true or false, found {other}"))),
    }
}

fn string_field<'a>(
    map: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ConfigError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(err(name, format!("expected a string, found {other}"))),
    }
}

fn uint_field(
    map: &Map<String, Value>,
    name: &'static str,
    max: u64,
) -> Result<Option<u64>, ConfigError> {
    uint_value(field(map, name), max).map_err(|reason| err(name, reason))
}

fn uint_value(v: Option<&Value>, max: u64) -> Result<Option<u64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(x) if x <= max => Ok(Some(x)),
            _ => Err(format!("{n} is not a whole number in 0..={max}")),
        },
        Some(other) => Err(format!("expected a number, found {other}")),
    }
}

/// An IPv4 address field; `"0.0.0.0"` means unset, as in flannel.
fn addr4_field(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<Ipv4Addr>, ConfigError> {
    match string_field(map, name)? {
        None => Ok(None),
        Some(s) => match Ipv4Addr::from_str(s) {
            Ok(a) if a.is_unspecified() => Ok(None),
            Ok(a) => Ok(Some(a)),
            Err(_) => Err(err(name, format!("{s:?} is not an IPv4 address"))),
        },
    }
}

/// An IPv6 address field; `"::"` means unset.
fn addr6_field(
    map: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<Ipv6Addr>, ConfigError> {
    match string_field(map, name)? {
        None => Ok(None),
        Some(s) => match Ipv6Addr::from_str(s) {
            Ok(a) if a.is_unspecified() => Ok(None),
            Ok(a) => Ok(Some(a)),
            Err(_) => Err(err(name, format!("{s:?} is not an IPv6 address"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NetworkConfig {
        NetworkConfig::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn reject(text: &str, field: &str) -> String {
        let e = NetworkConfig::parse(text).expect_err(text);
        assert_eq!(e.field, field, "{text}: {e}");
        e.to_string()
    }

    fn a4(s: &str) -> Ipv4Addr {
        s.parse().expect("addr")
    }

    #[test]
    fn defaults_for_a_slash_16() {
        let c = parse(r#"{"Network": "10.5.0.0/16"}"#);
        assert_eq!(c.ipv4.network.to_string(), "10.5.0.0/16");
        assert_eq!(c.ipv4.subnet_len, 24);
        assert_eq!(c.ipv4.subnet_min, a4("10.5.1.0"));
        assert_eq!(c.ipv4.subnet_max, a4("10.5.255.0"));
        assert_eq!(c.ipv6, None);
        // No Backend key: udp, as flannel's code does.
        assert_eq!(c.backend.kind, Backend::Udp);
        assert_eq!(c.backend.port(), Backend::Udp.default_port());
        assert_eq!(c.backend.vni, 1);
    }

    #[test]
    fn subnet_len_defaults() {
        // /22 or larger: 24.
        assert_eq!(parse(r#"{"Network":"10.0.0.0/22"}"#).ipv4.subnet_len, 24);
        assert_eq!(parse(r#"{"Network":"10.0.0.0/8"}"#).ipv4.subnet_len, 24);
        // Smaller: prefix + 2.
        let c = parse(r#"{"Network":"10.0.0.0/23"}"#);
        assert_eq!(c.ipv4.subnet_len, 25);
        assert_eq!(c.ipv4.subnet_min, a4("10.0.0.128"));
        assert_eq!(c.ipv4.subnet_max, a4("10.0.1.128"));
        let c = parse(r#"{"Network":"10.0.0.0/28"}"#);
        assert_eq!(c.ipv4.subnet_len, 30);
        assert_eq!(c.ipv4.subnet_min, a4("10.0.0.4"));
        assert_eq!(c.ipv4.subnet_max, a4("10.0.0.12"));
        // SubnetLen 0 means the default too.
        assert_eq!(
            parse(r#"{"Network":"10.0.0.0/16","SubnetLen":0}"#)
                .ipv4
                .subnet_len,
            24
        );
    }

    #[test]
    fn explicit_values_and_case_insensitive_names() {
        let c = parse(
            r#"{"network":"10.5.0.1/16","SUBNETLEN":26,"subnetMin":"10.5.4.0","SubnetMax":"10.5.8.192",
                "backend":{"type":"vxlan","port":4789,"vni":42},"Unknown":[1,2]}"#,
        );
        assert_eq!(c.ipv4.network.to_string(), "10.5.0.0/16");
        assert_eq!(c.ipv4.subnet_len, 26);
        assert_eq!(c.ipv4.subnet_min, a4("10.5.4.0"));
        assert_eq!(c.ipv4.subnet_max, a4("10.5.8.192"));
        assert_eq!(c.backend.kind, Backend::Vxlan);
        assert_eq!(c.backend.port(), 4789);
        assert_eq!(c.backend.vni, 42);
        // An exact match wins over a case-insensitive one.
        let c = parse(r#"{"network":"10.9.0.0/16","Network":"10.5.0.0/16"}"#);
        assert_eq!(c.ipv4.network.to_string(), "10.5.0.0/16");
        // SubnetMin "0.0.0.0" means unset, as in flannel.
        let c = parse(r#"{"Network":"10.5.0.0/16","SubnetMin":"0.0.0.0"}"#);
        assert_eq!(c.ipv4.subnet_min, a4("10.5.1.0"));
    }

    #[test]
    fn backend_defaults() {
        let c = parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}"#);
        assert_eq!(c.backend.port(), Backend::Vxlan.default_port());
        assert_eq!(c.backend.configured_port, 0);
        assert_eq!(c.backend.vni, VXLAN_DEFAULT_VNI);
        let c = parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":0}}"#);
        assert_eq!(c.backend.port(), Backend::Udp.default_port());
        assert!(!c.backend.direct_routing);
    }

    #[test]
    fn direct_routing_is_a_json_bool() {
        let c =
            parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#);
        assert!(c.backend.direct_routing);
        let c =
            parse(r#"{"Network":"10.5.0.0/16","Backend":{"Type":"udp","directrouting":false}}"#);
        assert!(!c.backend.direct_routing);
        let e = NetworkConfig::parse(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}"#,
        )
        .expect_err("a string is not a bool");
        assert_eq!(e.field, "Backend.DirectRouting");
    }

    #[test]
    fn ipv6_defaults() {
        let c =
            parse(r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:5::/48"}"#);
        let v6 = c.ipv6.expect("v6 pool");
        assert_eq!(v6.subnet_len, 64);
        assert_eq!(v6.subnet_min.to_string(), "fd00:10:5:1::");
        assert_eq!(v6.subnet_max.to_string(), "fd00:10:5:ffff::");
        let c = parse(r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/120"}"#);
        let v6 = c.ipv6.expect("v6 pool");
        assert_eq!(v6.subnet_len, 122);
        assert_eq!(v6.subnet_min.to_string(), "fd00::40");
        assert_eq!(v6.subnet_max.to_string(), "fd00::c0");
        let c = parse(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":60}"#,
        );
        assert_eq!(c.ipv6.expect("v6").subnet_len, 60);
        // IPv6Network without EnableIPv6 is ignored, as in flannel.
        let c = parse(r#"{"Network":"10.5.0.0/16","IPv6Network":"fd00::/56"}"#);
        assert_eq!(c.ipv6, None);
    }

    #[test]
    fn rejections_name_the_field() {
        reject("", "(config)");
        reject("[]", "(config)");
        reject("{}", "Network");
        reject(r#"{"Network":5}"#, "Network");
        reject(r#"{"Network":"10.5.0.0"}"#, "Network");
        reject(r#"{"Network":"10.5.0.0/33"}"#, "Network");
        reject(r#"{"Network":"fd00::/64"}"#, "Network");
        let m = reject(r#"{"Network":"10.5.0.0/29"}"#, "Network");
        assert!(m.contains("/28"), "{m}");
        reject(r#"{"Network":"10.5.0.0/16","SubnetLen":31}"#, "SubnetLen");
        let m = reject(r#"{"Network":"10.5.0.0/16","SubnetLen":17}"#, "SubnetLen");
        assert!(m.contains(">= 18"), "{m}");
        reject(r#"{"Network":"10.5.0.0/16","SubnetLen":"24"}"#, "SubnetLen");
        reject(r#"{"Network":"10.5.0.0/16","SubnetLen":-1}"#, "SubnetLen");
        reject(r#"{"Network":"10.5.0.0/16","SubnetLen":24.5}"#, "SubnetLen");
        reject(
            r#"{"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"}"#,
            "SubnetMin",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.0.1"}"#,
            "SubnetMin",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","SubnetMin":"nope"}"#,
            "SubnetMin",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","SubnetMax":"10.6.0.0"}"#,
            "SubnetMax",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","SubnetMax":"10.5.3.128"}"#,
            "SubnetMax",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.8.0"}"#,
            "SubnetMin",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv4":false}"#,
            "EnableIPv4",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv4":"yes"}"#,
            "EnableIPv4",
        );
        reject(r#"{"Network":"10.5.0.0/16","EnableIPv6":1}"#, "EnableIPv6");
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true}"#,
            "IPv6Network",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"10.0.0.0/8"}"#,
            "IPv6Network",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/125"}"#,
            "IPv6Network",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":127}"#,
            "IPv6SubnetLen",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetLen":57}"#,
            "IPv6SubnetLen",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMin":"fe00::"}"#,
            "IPv6SubnetMin",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/56","IPv6SubnetMax":"fd00:0:0:1::1"}"#,
            "IPv6SubnetMax",
        );
        reject(r#"{"Network":"10.5.0.0/16","Backend":"vxlan"}"#, "Backend");
        reject(r#"{"Network":"10.5.0.0/16","Backend":{}}"#, "Backend.Type");
        let m = reject(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":"wireguard"}}"#,
            "Backend.Type",
        );
        assert!(m.contains("wireguard") && m.contains("host-gw"), "{m}");
        reject(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":1}}"#,
            "Backend.Type",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":"udp","Port":65536}}"#,
            "Backend.Port",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#,
            "Backend.VNI",
        );
        reject(
            r#"{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":"1"}}"#,
            "Backend.VNI",
        );
    }

    #[test]
    fn pool_accepts() {
        let c =
            parse(r#"{"Network":"10.5.0.0/16","SubnetMin":"10.5.10.0","SubnetMax":"10.5.20.0"}"#);
        assert!(c.ipv4.accepts(&"10.5.10.0/24".parse().expect("net")));
        assert!(c.ipv4.accepts(&"10.5.20.0/24".parse().expect("net")));
        assert!(!c.ipv4.accepts(&"10.5.21.0/24".parse().expect("net")));
        assert!(!c.ipv4.accepts(&"10.5.12.0/25".parse().expect("net")));
    }
}
