//! The static peers file shared by `weftd --peers` and `weftctl forward-udp --peers`.
//!
//! Contract: one JSON object per line, `{"subnet": "10.244.2.0/24", "public_ip":
//! "192.168.250.2", "backend": "udp"|"vxlan", "vtep_mac": "0e:..:0b" (vxlan only), "port":
//! 8472 (optional)}`; blank lines and lines starting with `#` are skipped. A dual-stack peer
//! has two lines with one `public_ip`. [`parse`] reports the first bad line by number and
//! never panics; [`PeerLine::to_line`] writes the same format (the testbed writes peer files
//! with it).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::net::{IpNet, Mac};

/// A peer's backend, as the peers file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// flannel's udp backend: the datagram is the bare inner IP packet (port 8285).
    Udp,
    /// VXLAN as the kernel's `flannel.1` speaks it (port 8472).
    Vxlan,
}

impl Backend {
    /// The name on the command line and in the peers file.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Udp => "udp",
            Backend::Vxlan => "vxlan",
        }
    }

    /// The default port of the backend.
    pub fn default_port(&self) -> u16 {
        match self {
            Backend::Udp => encap::backend::FLANNEL_UDP_PORT,
            Backend::Vxlan => encap::backend::VXLAN_PORT,
        }
    }

    /// Bytes of encapsulation per packet (outer IPv4 + UDP, + VXLAN + inner Ethernet).
    pub fn overhead(&self) -> u32 {
        match self {
            Backend::Udp => encap::backend::UDP_OVERHEAD as u32,
            Backend::Vxlan => encap::backend::VXLAN_OVERHEAD as u32,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One line of a peers file, in the shape it is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerLine {
    /// The peer's subnet (v4 or v6).
    pub subnet: String,
    /// The peer's underlay address.
    pub public_ip: String,
    /// The peer's backend.
    pub backend: Backend,
    /// The peer's VtepMAC (vxlan only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vtep_mac: Option<String>,
    /// The peer's port, when not the backend's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl PeerLine {
    /// The line as JSON, without the newline.
    pub fn to_line(&self) -> String {
        // A struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A validated peer entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The subnet the peer owns.
    pub subnet: IpNet,
    /// Its underlay address.
    pub public_ip: IpAddr,
    /// Its backend.
    pub backend: Backend,
    /// Its VtepMAC (required for vxlan).
    pub vtep_mac: Option<Mac>,
    /// Its port, when given.
    pub port: Option<u16>,
}

/// Parses a peers file's text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<Vec<Peer>> {
    let mut peers = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{origin}:{}", i + 1);
        let raw: PeerLine = serde_json::from_str(line).with_context(|| {
            format!(
                "{}: not a peer line (expected {{\"subnet\", \"public_ip\", \"backend\", \"vtep_mac\"?, \"port\"?}})",
                at()
            )
        })?;
        let subnet = IpNet::parse(&raw.subnet).with_context(at)?;
        let public_ip: IpAddr = raw.public_ip.parse().with_context(|| {
            format!(
                "{}: public_ip {:?} is not an IP address",
                at(),
                raw.public_ip
            )
        })?;
        let vtep_mac = raw
            .vtep_mac
            .as_deref()
            .map(str::parse::<Mac>)
            .transpose()
            .with_context(at)?;
        if raw.backend == Backend::Vxlan && vtep_mac.is_none() {
            bail!("{}: a vxlan peer needs \"vtep_mac\"", at());
        }
        if raw.port == Some(0) {
            bail!("{}: port 0 is not a port", at());
        }
        peers.push(Peer {
            subnet,
            public_ip,
            backend: raw.backend,
            vtep_mac,
            port: raw.port,
        });
    }
    Ok(peers)
}

/// Reads and parses a peers file.
pub fn load(path: &Path) -> anyhow::Result<Vec<Peer>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the peers file {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_skips_comments() {
        let text = r#"
# a comment
{"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}
{"subnet": "fd00:10:244:2::/64", "public_ip": "192.168.250.2", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:02", "port": 4789}
"#;
        let peers = parse(text, "test").expect("valid");
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].backend, Backend::Udp);
        assert_eq!(peers[1].port, Some(4789));
        assert_eq!(peers[1].vtep_mac, Some(Mac([0x0e, 0, 0, 0, 0, 2])));
    }

    #[test]
    fn names_the_bad_line() {
        let text = "{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"udp\"}\n{\"subnet\": \"10.244.3.0/24\", \"public_ip\": \"x\", \"backend\": \"udp\"}";
        let e = parse(text, "peers.json").expect_err("bad ip");
        assert!(format!("{e:#}").contains("peers.json:2"), "{e:#}");
        let e = parse(
            r#"{"subnet": "10.244.2.0/24", "public_ip": "1.2.3.4", "backend": "vxlan"}"#,
            "p",
        )
        .expect_err("no mac");
        assert!(format!("{e:#}").contains("vtep_mac"), "{e:#}");
        assert!(parse("garbage", "p").is_err());
        assert!(parse(
            r#"{"subnet": "10.0.0.0/8", "public_ip": "1.2.3.4", "backend": "gre"}"#,
            "p"
        )
        .is_err());
    }

    #[test]
    fn round_trips_through_to_line() {
        let line = PeerLine {
            subnet: "10.244.2.0/24".into(),
            public_ip: "192.168.250.2".into(),
            backend: Backend::Vxlan,
            vtep_mac: Some("0e:00:00:00:00:02".into()),
            port: None,
        };
        let peers = parse(&line.to_line(), "p").expect("valid");
        assert_eq!(peers[0].backend, Backend::Vxlan);
        assert!(!line.to_line().contains("port"));
    }
}
