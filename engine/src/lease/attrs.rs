//! A lease's value: flannel's `LeaseAttrs` JSON, byte for byte.
//!
//! flannel (pkg/lease/lease.go) marshals
//!
//! ```go
//! type LeaseAttrs struct {
//!     PublicIP      ip.IP4
//!     PublicIPv6    *ip.IP6
//!     BackendType   string          `json:",omitempty"`
//!     BackendData   json.RawMessage `json:",omitempty"`
//!     BackendV6Data json.RawMessage `json:",omitempty"`
//! }
//! ```
//!
//! so a vxlan lease is `{"PublicIP":"10.0.0.1","PublicIPv6":null,"BackendType":"vxlan",
//! "BackendData":{"VNI":1,"VtepMAC":"c6:d2:4f:1a:2b:3c"}}` and a lease of flannel's udp
//! backend is `{"PublicIP":"10.0.0.1","PublicIPv6":null}` (no `BackendType`: the udp backend
//! never sets it). [`LeaseAttrs::to_json`] writes exactly that: fields in this order, no
//! spaces, `PublicIPv6` as `null` when unset, the optional fields left out when empty.
//!
//! Reading follows Go's `encoding/json`: field names match case-insensitively (an exact match
//! wins), unknown fields are ignored, a missing `PublicIP` reads as `0.0.0.0`, a missing or
//! empty `BackendType` means udp. Everything else that is malformed is an [`AttrsError`] saying
//! which field and why; the caller names the key.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::model::{format_mac, parse_mac, Backend, Mac};
use serde_json::{Map, Value};

/// The largest VXLAN Network Identifier (24 bits, RFC 7348).
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// Why a lease value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct AttrsError {
    /// The JSON field at fault (`"(value)"` for the whole value).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn attrs_error(field: &'static str, reason: impl Into<String>) -> AttrsError {
    AttrsError {
        field,
        reason: reason.into(),
    }
}

/// vxlan `BackendData`: `{"VNI":1,"VtepMAC":"c6:d2:4f:1a:2b:3c"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanData {
    /// The VNI (flannel before v0.17 did not write it).
    pub vni: Option<u32>,
    /// The MAC address of the node's VTEP.
    pub vtep_mac: Mac,
}

/// A lease's `BackendData` / `BackendV6Data`.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendData {
    /// vxlan data, parsed.
    Vxlan(VxlanData),
    /// Another backend's data, kept as JSON.
    Other(Value),
}

/// A lease's value.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseAttrs {
    /// The node's underlay IPv4 address (`0.0.0.0` for an IPv6-only node).
    pub public_ip: Ipv4Addr,
    /// The node's underlay IPv6 address.
    pub public_ip6: Option<Ipv6Addr>,
    /// `BackendType` as stored: empty for flannel's udp backend. See [`LeaseAttrs::backend`].
    pub backend_type: String,
    /// `BackendData`.
    pub backend_data: Option<BackendData>,
    /// `BackendV6Data` (vxlan, dual stack).
    pub backend_v6_data: Option<BackendData>,
}

impl LeaseAttrs {
    /// The value flannel's udp backend writes: `{"PublicIP":"..","PublicIPv6":null}`.
    pub fn udp(public_ip: Ipv4Addr, public_ip6: Option<Ipv6Addr>) -> LeaseAttrs {
        LeaseAttrs {
            public_ip,
            public_ip6,
            backend_type: String::new(),
            backend_data: None,
            backend_v6_data: None,
        }
    }

    /// The value flannel's host-gw backend writes:
    /// `{"PublicIP":"..","PublicIPv6":null,"BackendType":"host-gw"}`.
    pub fn host_gw(public_ip: Ipv4Addr, public_ip6: Option<Ipv6Addr>) -> LeaseAttrs {
        LeaseAttrs {
            public_ip,
            public_ip6,
            backend_type: Backend::HostGw.as_str().to_owned(),
            backend_data: None,
            backend_v6_data: None,
        }
    }

    /// The value flannel's vxlan backend writes. `dual_stack` adds the same data as
    /// `BackendV6Data`, as flannel does when IPv6 is enabled. An IPv6-only node (`public_ip`
    /// 0.0.0.0) carries it too, so its `BackendData` names the MAC of its IPv4 subnets.
    pub fn vxlan(
        public_ip: Ipv4Addr,
        public_ip6: Option<Ipv6Addr>,
        vni: u32,
        vtep_mac: Mac,
        dual_stack: bool,
    ) -> LeaseAttrs {
        let data = BackendData::Vxlan(VxlanData {
            vni: Some(vni),
            vtep_mac,
        });
        LeaseAttrs {
            public_ip,
            public_ip6,
            backend_type: Backend::Vxlan.as_str().to_owned(),
            backend_data: Some(data.clone()),
            backend_v6_data: dual_stack.then_some(data),
        }
    }

    /// The backend this lease announces (`BackendType` absent, empty or `"udp"`: udp), or, as
    /// the error, the name of a flannel backend weft does not speak (`host-gw`, `wireguard`,
    /// ...): weft cannot reach such a peer.
    pub fn backend(&self) -> Result<Backend, &str> {
        match self.backend_type.as_str() {
            "" => Ok(Backend::Udp),
            other => other.parse().map_err(|_| other),
        }
    }

    /// The vxlan data, when the lease carries it.
    pub fn vxlan_data(&self) -> Option<VxlanData> {
        match self.backend_data {
            Some(BackendData::Vxlan(d)) => Some(d),
            _ => None,
        }
    }

    /// The vxlan data of the IPv6 underlay (`BackendV6Data`, flannel's `flannel-v6.<VNI>`
    /// device), else the IPv4 one.
    pub fn vxlan_v6_data(&self) -> Option<VxlanData> {
        match self.backend_v6_data {
            Some(BackendData::Vxlan(d)) => Some(d),
            _ => self.vxlan_data(),
        }
    }

    /// The address that names the node: its PublicIP, or the PublicIPv6 of an IPv6-only node
    /// (PublicIP 0.0.0.0). `None` when it has neither.
    pub fn node_ip(&self) -> Option<IpAddr> {
        if !self.public_ip.is_unspecified() {
            Some(IpAddr::V4(self.public_ip))
        } else {
            self.public_ip6.map(IpAddr::V6)
        }
    }

    /// [`LeaseAttrs::node_ip`], else the PublicIP as written: who holds a lease, for messages.
    pub fn holder(&self) -> IpAddr {
        self.node_ip().unwrap_or(IpAddr::V4(self.public_ip))
    }

    /// flannel's JSON for this value (see the module documentation).
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(160);
        s.push_str("{\"PublicIP\":");
        push_json_string(&mut s, &self.public_ip.to_string());
        s.push_str(",\"PublicIPv6\":");
        match self.public_ip6 {
            Some(ip) => push_json_string(&mut s, &ip.to_string()),
            None => s.push_str("null"),
        }
        if !self.backend_type.is_empty() {
            s.push_str(",\"BackendType\":");
            push_json_string(&mut s, &self.backend_type);
        }
        if let Some(d) = &self.backend_data {
            s.push_str(",\"BackendData\":");
            push_backend_data(&mut s, d);
        }
        if let Some(d) = &self.backend_v6_data {
            s.push_str(",\"BackendV6Data\":");
            push_backend_data(&mut s, d);
        }
        s.push('}');
        s
    }

    /// Reads a lease value (see the module documentation for what is accepted).
    pub fn from_json(text: &[u8]) -> Result<LeaseAttrs, AttrsError> {
        let value: Value = serde_json::from_slice(text)
            .map_err(|e| attrs_error("(value)", format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(attrs_error("(value)", "not a JSON object"));
        };
        LeaseAttrs::from_map(&map)
    }

    /// Reads a lease value from a parsed JSON object.
    pub(crate) fn from_map(map: &Map<String, Value>) -> Result<LeaseAttrs, AttrsError> {
        let public_ip = match field(map, "PublicIP") {
            None | Some(Value::Null) => Ipv4Addr::UNSPECIFIED,
            Some(Value::String(s)) => Ipv4Addr::from_str(s)
                .map_err(|_| attrs_error("PublicIP", format!("{s:?} is not an IPv4 address")))?,
            Some(other) => {
                return Err(attrs_error(
                    "PublicIP",
                    format!("expected a string, found {other}"),
                ))
            }
        };
        let public_ip6 =
            match field(map, "PublicIPv6") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(Ipv6Addr::from_str(s).map_err(|_| {
                    attrs_error("PublicIPv6", format!("{s:?} is not an IPv6 address"))
                })?),
                Some(other) => {
                    return Err(attrs_error(
                        "PublicIPv6",
                        format!("expected a string or null, found {other}"),
                    ))
                }
            };
        let backend_type = match field(map, "BackendType") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(attrs_error(
                    "BackendType",
                    format!("expected a string, found {other}"),
                ))
            }
        };
        let vxlan = backend_type == Backend::Vxlan.as_str();
        let backend_data = read_backend_data(map, "BackendData", vxlan)?;
        let backend_v6_data = read_backend_data(map, "BackendV6Data", vxlan)?;
        if vxlan && backend_data.is_none() && backend_v6_data.is_none() {
            return Err(attrs_error(
                "BackendData",
                "a vxlan lease needs {\"VtepMAC\": ...}",
            ));
        }
        Ok(LeaseAttrs {
            public_ip,
            public_ip6,
            backend_type,
            backend_data,
            backend_v6_data,
        })
    }
}

fn read_backend_data(
    map: &Map<String, Value>,
    name: &'static str,
    vxlan: bool,
) -> Result<Option<BackendData>, AttrsError> {
    match field(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) if vxlan => parse_vxlan_data(v)
            .map(|d| Some(BackendData::Vxlan(d)))
            .map_err(|reason| attrs_error(name, reason)),
        Some(v) => Ok(Some(BackendData::Other(v.clone()))),
    }
}

fn parse_vxlan_data(v: &Value) -> Result<VxlanData, String> {
    let Value::Object(map) = v else {
        return Err(format!("expected an object, found {v}"));
    };
    let vni = match field(map, "VNI") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(vni) if vni <= u64::from(VNI_MAX) => Some(vni as u32),
            _ => return Err(format!("VNI {n} is not in 0..={VNI_MAX}")),
        },
        Some(other) => return Err(format!("VNI: expected a number, found {other}")),
    };
    let vtep_mac = match field(map, "VtepMAC") {
        Some(Value::String(s)) => parse_mac(s).map_err(|e| format!("VtepMAC: {e}"))?,
        None | Some(Value::Null) => return Err("VtepMAC is missing".to_owned()),
        Some(other) => return Err(format!("VtepMAC: expected a string, found {other}")),
    };
    Ok(VxlanData { vni, vtep_mac })
}

fn push_backend_data(s: &mut String, d: &BackendData) {
    match d {
        BackendData::Vxlan(v) => {
            s.push('{');
            if let Some(vni) = v.vni {
                let _ = write!(s, "\"VNI\":{vni},");
            }
            s.push_str("\"VtepMAC\":\"");
            s.push_str(&format_mac(&v.vtep_mac));
            s.push_str("\"}");
        }
        BackendData::Other(v) => s.push_str(&v.to_string()),
    }
}

fn push_json_string(s: &mut String, text: &str) {
    // serde_json escapes exactly what a JSON string needs; addresses never need any.
    s.push_str(&Value::String(text.to_owned()).to_string());
}

/// Looks a field up as Go's `encoding/json` does: an exact match, else a case-insensitive one.
pub(crate) fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: Mac = [0xc6, 0xd2, 0x4f, 0x1a, 0x2b, 0x3c];

    #[test]
    fn udp_lease_is_flannels_bytes() {
        let a = LeaseAttrs::udp(Ipv4Addr::new(192, 168, 1, 10), None);
        assert_eq!(
            a.to_json(),
            r#"{"PublicIP":"192.168.1.10","PublicIPv6":null}"#
        );
        assert_eq!(a.backend(), Ok(Backend::Udp));
    }

    #[test]
    fn vxlan_lease_is_flannels_bytes() {
        let a = LeaseAttrs::vxlan(Ipv4Addr::new(192, 168, 1, 10), None, 1, MAC, false);
        assert_eq!(
            a.to_json(),
            r#"{"PublicIP":"192.168.1.10","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:4f:1a:2b:3c"}}"#
        );
        let dual = LeaseAttrs::vxlan(
            Ipv4Addr::new(192, 168, 1, 10),
            Some("fd00::10".parse().expect("v6")),
            7,
            MAC,
            true,
        );
        assert_eq!(
            dual.to_json(),
            r#"{"PublicIP":"192.168.1.10","PublicIPv6":"fd00::10","BackendType":"vxlan","BackendData":{"VNI":7,"VtepMAC":"c6:d2:4f:1a:2b:3c"},"BackendV6Data":{"VNI":7,"VtepMAC":"c6:d2:4f:1a:2b:3c"}}"#
        );
    }

    #[test]
    fn round_trip() {
        for a in [
            LeaseAttrs::udp(Ipv4Addr::new(10, 0, 0, 1), None),
            LeaseAttrs::udp(
                Ipv4Addr::new(10, 0, 0, 1),
                Some("fd00::1".parse().expect("v6")),
            ),
            LeaseAttrs::vxlan(Ipv4Addr::new(10, 0, 0, 1), None, 4096, MAC, false),
        ] {
            assert_eq!(LeaseAttrs::from_json(a.to_json().as_bytes()), Ok(a));
        }
    }

    #[test]
    fn other_backends_data_round_trips_exactly() {
        // Found by fuzz/lease_attrs: without serde_json's float_roundtrip this number read back
        // as 1170.2473777777775 after to_json.
        let text = br#"{"PublicIP":"172.16.0.5","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"9yWp0Zh0Zs+Ikd7gCzOYqZEm6AqrRWTkKC1xNqA0vXM=","Weight":1170.2473777777777,"Small":5e-324,"Big":1.7976931348623157e308}}"#;
        let a = LeaseAttrs::from_json(text).expect("wireguard lease");
        assert_eq!(a.backend(), Err("wireguard"));
        let again = LeaseAttrs::from_json(a.to_json().as_bytes()).expect("reads back");
        assert_eq!(again, a);
        assert_eq!(again.to_json(), a.to_json());
        assert!(
            a.to_json().contains("1170.2473777777777"),
            "{}",
            a.to_json()
        );
    }

    #[test]
    fn reads_what_flanneld_writes() {
        // As flanneld v0.2x writes a vxlan lease (and an old one without VNI).
        let a = LeaseAttrs::from_json(
            br#"{"PublicIP":"172.16.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"2a:9b:77:0e:ab:01"}}"#,
        )
        .expect("flannel lease");
        assert_eq!(a.backend(), Ok(Backend::Vxlan));
        let d = a.vxlan_data().expect("vxlan data");
        assert_eq!(d.vni, Some(1));
        assert_eq!(d.vtep_mac, [0x2a, 0x9b, 0x77, 0x0e, 0xab, 0x01]);
        let old = LeaseAttrs::from_json(
            br#"{"PublicIP":"172.16.0.2","BackendType":"vxlan","BackendData":{"VtepMAC":"2A-9B-77-0E-AB-01"}}"#,
        )
        .expect("old flannel lease");
        assert_eq!(old.vxlan_data().expect("data").vni, None);
        // Case-insensitive names, unknown fields ignored, no BackendType = udp.
        let u = LeaseAttrs::from_json(br#"{"publicip":"172.16.0.3","Extra":5}"#).expect("udp");
        assert_eq!(u.public_ip, Ipv4Addr::new(172, 16, 0, 3));
        assert_eq!(u.backend(), Ok(Backend::Udp));
        let h = LeaseAttrs::from_json(
            br#"{"PublicIP":"172.16.0.4","BackendType":"host-gw","BackendData":null}"#,
        )
        .expect("host-gw");
        assert_eq!(h.backend(), Ok(Backend::HostGw));
        let written = LeaseAttrs::host_gw(Ipv4Addr::new(172, 16, 0, 4), None).to_json();
        assert_eq!(
            written,
            r#"{"PublicIP":"172.16.0.4","PublicIPv6":null,"BackendType":"host-gw"}"#
        );
    }

    #[test]
    fn rejects_bad_values() {
        for (text, field) in [
            (&b"not json"[..], "(value)"),
            (b"[1]", "(value)"),
            (br#"{"PublicIP":"300.1.1.1"}"#, "PublicIP"),
            (br#"{"PublicIP":5}"#, "PublicIP"),
            (br#"{"PublicIP":"1.1.1.1","PublicIPv6":"1.1.1.1"}"#, "PublicIPv6"),
            (br#"{"PublicIP":"1.1.1.1","BackendType":3}"#, "BackendType"),
            (br#"{"PublicIP":"1.1.1.1","BackendType":"vxlan"}"#, "BackendData"),
            (
                br#"{"PublicIP":"1.1.1.1","BackendType":"vxlan","BackendData":{"VtepMAC":"zz"}}"#,
                "BackendData",
            ),
            (
                br#"{"PublicIP":"1.1.1.1","BackendType":"vxlan","BackendData":{"VNI":16777216,"VtepMAC":"00:00:00:00:00:01"}}"#,
                "BackendData",
            ),
        ] {
            let e = LeaseAttrs::from_json(text).expect_err("must fail");
            assert_eq!(e.field, field, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn macs() {
        assert_eq!(parse_mac("c6:d2:4f:1a:2b:3c").ok(), Some(MAC));
        assert_eq!(parse_mac("C6-D2-4F-1A-2B-3C").ok(), Some(MAC));
        assert_eq!(parse_mac("c6:d2:4f:1a:2b").ok(), None);
        assert_eq!(parse_mac("c6:d2:4f:1a:2b:3c:00").ok(), None);
        assert_eq!(parse_mac("c6:d2:4f:1a:2b:3").ok(), None);
        assert_eq!(parse_mac("+6:d2:4f:1a:2b:3c").ok(), None);
        assert_eq!(parse_mac("c6-d2-4f-1a-2b-+c").ok(), None);
        assert_eq!(format_mac(&MAC), "c6:d2:4f:1a:2b:3c");
    }
}
