//! weft's vocabulary: the words every module shares, defined once.
//!
//! - [`Backend`]: flannel's backends that weft speaks (`udp`, `vxlan`), with their ports and
//!   per-packet overhead. Lease JSON (`BackendType`), network config (`Backend.Type`), the
//!   peers file and `--backend` all convert into it at their edges.
//! - [`Cidr`]: an IPv4 or IPv6 prefix with no host bits set (the route table's and the peers
//!   file's prefix); [`Ipv4Net`] / [`Ipv6Net`] where the family is fixed (lease pools and
//!   keys); [`Mac`] with [`parse_mac`] / [`format_mac`] in Go's `net.ParseMAC` /
//!   `HardwareAddr.String` forms, as flannel writes VtepMACs.
//! - Limits: [`MAX_UDP_PAYLOAD_V4`] / [`MAX_UDP_PAYLOAD_V6`].
//!
//! Contract: parsing never panics and names what is wrong; nothing here does I/O.

mod mac;
pub(crate) mod prefix;

pub use encap::backend::Mac;
pub use encap::gso::{MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};
pub use mac::{format_mac, parse_mac};
pub use prefix::{AddrParseError, Cidr, Ipv4Net, Ipv6Net};

/// flannel's backends that weft speaks. Each source of peers (the peers file, lease JSON, the
/// command line) converts its own spelling into this at its edge, so a new backend is a new
/// variant here and the compiler names every `match` it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The UDP payload is the inner IP packet (flannel `"Type": "udp"`).
    Udp,
    /// VXLAN + inner Ethernet, byte-compatible with the kernel's `flannel.1`.
    Vxlan,
    /// flannel's `host-gw`: no encapsulation and no data path of ours; a kernel route to each
    /// peer's subnet via its PublicIP (peers on our L2 segment only).
    #[serde(rename = "host-gw")]
    HostGw,
}

impl Backend {
    /// Every backend, in the order help texts list them.
    pub const ALL: [Backend; 3] = [Backend::Udp, Backend::Vxlan, Backend::HostGw];

    /// The names for a message: `"udp" or "vxlan" or "host-gw"`.
    pub fn names() -> String {
        let quoted: Vec<String> = Backend::ALL
            .iter()
            .map(|b| format!("{:?}", b.as_str()))
            .collect();
        quoted.join(" or ")
    }

    /// The name flannel uses: `udp`, `vxlan` or `host-gw`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Udp => "udp",
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }

    /// Whether weft moves the packets (a TUN, UDP sockets and pumps), or the kernel does
    /// (host-gw: routes only).
    pub fn has_data_path(&self) -> bool {
        match self {
            Backend::Udp | Backend::Vxlan => true,
            Backend::HostGw => false,
        }
    }

    /// flannel's default port for the backend: 8285 (udp), 8472 (vxlan), 0 (host-gw: none).
    pub fn default_port(&self) -> u16 {
        match self {
            Backend::Udp => encap::backend::FLANNEL_UDP_PORT,
            Backend::Vxlan => encap::backend::VXLAN_PORT,
            Backend::HostGw => 0,
        }
    }

    /// The bytes each inner packet costs on an IPv4 underlay: 28 (udp) or 50 (vxlan).
    pub fn overhead(&self) -> usize {
        match self {
            Backend::Udp => encap::backend::UDP_OVERHEAD,
            Backend::Vxlan => encap::backend::VXLAN_OVERHEAD,
            Backend::HostGw => 0,
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| format!("unknown backend {s:?} (expected {})", Backend::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.as_str().parse::<Backend>(), Ok(b));
        }
        assert_eq!(Backend::names(), "\"udp\" or \"vxlan\" or \"host-gw\"");
        assert_eq!(
            "gre".parse::<Backend>(),
            Err(
                "unknown backend \"gre\" (expected \"udp\" or \"vxlan\" or \"host-gw\")".to_owned()
            )
        );
    }
}
