//! The static peers file shared by `weftd --peers` and `weftctl forward-udp --peers`.
//!
//! Contract: one JSON object per line, `{"subnet": "10.244.2.0/24", "public_ip":
//! "192.168.250.2", "backend": "udp"|"vxlan", "vtep_mac": "0e:..:0b" (vxlan only), "port":
//! 8472 (optional)}`; blank lines and lines starting with `#` are skipped. A dual-stack peer
//! has two lines with one `public_ip`. [`parse`] is weftd's own parser
//! ([`engine::route::parse_peers`]) and reports the first bad line by number;
//! [`PeerLine::to_line`] writes the same format (the testbed writes peer files with it).

use std::path::Path;

use anyhow::{bail, Context};
use engine::model::Backend;
use engine::route::{parse_peers, PeerEntry};
use serde::{Deserialize, Serialize};

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

/// Reads and parses a peers file with weftd's parser; the first bad line is an error naming it.
pub fn load(path: &Path) -> anyhow::Result<Vec<PeerEntry>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the peers file {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses a peers file's text with weftd's parser; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<Vec<PeerEntry>> {
    let (peers, errors) = parse_peers(text, origin);
    if let Some(e) = errors.first() {
        bail!("{e}");
    }
    Ok(peers)
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
        assert_eq!(peers[1].vtep_mac, Some([0x0e, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn names_the_bad_line() {
        let text = "{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"udp\"}\n{\"subnet\": \"10.244.3.0/24\", \"public_ip\": \"x\", \"backend\": \"udp\"}";
        let e = parse(text, "peers.json").expect_err("bad ip");
        assert!(format!("{e:#}").contains("peers.json line 2"), "{e:#}");
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
