//! The static peers file: one JSON object per line.
//!
//! ```text
//! {"subnet": "10.244.2.0/24", "public_ip": "192.168.250.2", "backend": "udp"}
//! {"subnet": "10.244.3.0/24", "public_ip": "192.168.250.3", "backend": "vxlan", "vtep_mac": "0e:00:00:00:00:03", "port": 8472}
//! ```
//!
//! Contract: [`parse_peers`] never fails as a whole: each line that is not a valid entry
//! (bad JSON, an unknown field, a missing field, a bad prefix / address / MAC / backend) is a
//! [`RouteError`] with its 1-based line number ([`Origin::Line`]) and the rest are returned.
//! Empty lines and lines starting with `#` are skipped. A dual-stack peer has two lines with
//! one `public_ip`. `port` is optional (the cluster's port, ours, by default).
//! [`load_peers_file`] reads a file and builds the table; only an unreadable file is an error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use encap::backend::Mac;
use serde::Deserialize;

use super::{Local, Origin, RouteError, RouteTable};
use crate::model::{parse_mac, Backend, Cidr};

/// A peer specification: one subnet of a peer, from a line of the peers file or a lease. Route
/// sources turn what they read into these, and [`RouteTable::build`] takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerEntry {
    /// Where it came from, for error messages.
    pub origin: Origin,
    /// The overlay subnet the peer owns.
    pub subnet: Cidr,
    /// The peer's underlay address.
    pub public_ip: IpAddr,
    /// The peer's backend.
    pub backend: Backend,
    /// The peer's VtepMAC (vxlan).
    pub vtep_mac: Option<Mac>,
    /// The peer's port, when it differs from ours.
    pub port: Option<u16>,
    /// Whether the kernel routes the subnet straight to `public_ip` (flannel's DirectRouting:
    /// lease mode sets it for peers on our own network segment; the peers file never does).
    /// The overlay keeps the route as the fallback and for what the peer sends encapsulated.
    pub direct: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    subnet: String,
    public_ip: String,
    backend: String,
    #[serde(default)]
    vtep_mac: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

/// Parses the text of a peers file; see the module documentation.
pub fn parse_peers(text: &str, source_name: &str) -> (Vec<PeerEntry>, Vec<RouteError>) {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (i, raw_line) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match parse_line(trimmed, line) {
            Ok(entry) => entries.push(entry),
            Err(message) => errors.push(RouteError {
                source_name: source_name.to_owned(),
                origin: Origin::Line(line),
                message,
            }),
        }
    }
    (entries, errors)
}

fn parse_line(text: &str, line: usize) -> Result<PeerEntry, String> {
    let raw: RawEntry = serde_json::from_str(text).map_err(|e| format!("not a peer entry: {e}"))?;
    let subnet: Cidr = raw.subnet.parse().map_err(|e| format!("\"subnet\": {e}"))?;
    let public_ip: IpAddr = raw
        .public_ip
        .parse()
        .map_err(|_| format!("\"public_ip\": {:?} is not an IP address", raw.public_ip))?;
    let backend: Backend = raw
        .backend
        .parse()
        .map_err(|e| format!("\"backend\": {e}"))?;
    let vtep_mac = raw
        .vtep_mac
        .as_deref()
        .map(parse_mac)
        .transpose()
        .map_err(|e| format!("\"vtep_mac\": {e}"))?;
    if raw.port == Some(0) {
        return Err("\"port\": 0 is not a port".to_owned());
    }
    Ok(PeerEntry {
        origin: Origin::Line(line),
        subnet,
        public_ip,
        backend,
        vtep_mac,
        port: raw.port,
        direct: false,
    })
}

/// The peers file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the peers file {path} failed: {source}")]
pub struct PeersFileError {
    /// The file.
    pub path: PathBuf,
    /// The error from the read.
    #[source]
    pub source: std::io::Error,
}

/// Reads and parses `path` and builds a table for `local` (keeping `previous`'s counters).
/// Returns the table and every line that was left out.
pub fn load_peers_file(
    path: &Path,
    local: &Local,
    previous: Option<&RouteTable>,
) -> Result<(RouteTable, Vec<RouteError>), PeersFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PeersFileError {
        path: path.to_owned(),
        source,
    })?;
    let name = path.display().to_string();
    let (entries, mut errors) = parse_peers(&text, &name);
    let (table, build_errors) = RouteTable::build(local, &entries, previous, &name);
    errors.extend(build_errors);
    errors.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok((table, errors))
}
