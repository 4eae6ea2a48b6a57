//! flannel's subnet file (`--subnet-file`, default `/run/flannel/subnet.env`).
//!
//! flanneld's `WriteSubnetFile` (pkg/subnet/subnet.go) writes, in this order:
//!
//! ```text
//! FLANNEL_NETWORK=10.5.0.0/16
//! FLANNEL_SUBNET=10.5.72.1/24
//! FLANNEL_IPV6_NETWORK=fd00:10:5::/48
//! FLANNEL_IPV6_SUBNET=fd00:10:5:48::1/64
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```
//!
//! `FLANNEL_SUBNET` is the lease's subnet with its first host address (subnet + 1); the IPv6
//! lines appear only when IPv6 is enabled. [`SubnetEnv::write`] creates the directory (0755)
//! and writes the file (0644) atomically: a temporary file in the same directory renamed over
//! it, so a reader sees the old file or the new one, never half. [`read_previous`] reads the
//! subnets back (as flanneld does at start, to ask for the same subnet again), tolerating a
//! missing or foreign file.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::lease::SubnetKey;
use crate::model::{Ipv4Net, Ipv6Net};

/// flanneld's default `--subnet-file`.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";

/// Why the subnet file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing the subnet file {path}: {source}")]
pub struct SubnetEnvError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// The content of a subnet file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetEnv {
    /// The whole IPv4 Network.
    pub network: Ipv4Net,
    /// Our IPv4 subnet (its network address; the file gets the first host).
    pub subnet: Ipv4Net,
    /// The IPv6 network and our IPv6 subnet, when IPv6 is enabled.
    pub ipv6: Option<(Ipv6Net, Ipv6Net)>,
    /// The TUN's MTU.
    pub mtu: u32,
    /// Whether `--ip-masq` is on.
    pub ip_masq: bool,
}

impl SubnetEnv {
    /// The file's text, in flanneld's order.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "FLANNEL_NETWORK={}", self.network);
        let _ = writeln!(
            s,
            "FLANNEL_SUBNET={}/{}",
            self.subnet.first_host(),
            self.subnet.prefix_len()
        );
        if let Some((network6, subnet6)) = &self.ipv6 {
            let _ = writeln!(s, "FLANNEL_IPV6_NETWORK={network6}");
            let _ = writeln!(
                s,
                "FLANNEL_IPV6_SUBNET={}/{}",
                subnet6.first_host(),
                subnet6.prefix_len()
            );
        }
        let _ = writeln!(s, "FLANNEL_MTU={}", self.mtu);
        let _ = writeln!(s, "FLANNEL_IPMASQ={}", self.ip_masq);
        s
    }

    /// Writes the file atomically (see the module documentation).
    pub fn write(&self, path: &Path) -> Result<(), SubnetEnvError> {
        let err = |source| SubnetEnvError {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(err)?;
        let name = path
            .file_name()
            .map_or_else(|| "subnet.env".into(), |n| n.to_string_lossy().into_owned());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_data()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(err)
    }
}

/// The subnets a previous run left in its subnet file (`FLANNEL_SUBNET`, and
/// `FLANNEL_IPV6_SUBNET`), as a lease key; `None` when the file is missing or has no
/// readable `FLANNEL_SUBNET`. The text is read by [`parse_previous`].
pub fn read_previous(path: &Path) -> Option<SubnetKey> {
    parse_previous(&fs::read_to_string(path).ok()?)
}

/// The subnets in the text of a subnet file, as [`read_previous`] reads them.
///
/// Contract: lines are `NAME=VALUE`, optionally after `export ` and with the value in double
/// quotes; other lines are ignored, and the last `FLANNEL_SUBNET` / `FLANNEL_IPV6_SUBNET`
/// wins. A value is a host address and a prefix length (`10.5.72.1/24`) and is read as its
/// subnet (`10.5.72.0/24`), so for a [`SubnetEnv`] whose subnets hold a host address besides
/// the network address (IPv4 /31 or shorter, IPv6 /127 or shorter: flannel's are /30 and /126
/// at most) `parse_previous(&env.render())` gives back `env.subnet` and the IPv6 subnet.
/// `None` when there is no readable `FLANNEL_SUBNET`; an unreadable `FLANNEL_IPV6_SUBNET`
/// gives an IPv4-only key.
pub fn parse_previous(text: &str) -> Option<SubnetKey> {
    let mut v4 = None;
    let mut v6 = None;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match name.trim() {
            "FLANNEL_SUBNET" => v4 = Ipv4Net::parse_masked(value).ok(),
            "FLANNEL_IPV6_SUBNET" => v6 = Ipv6Net::parse_masked(value).ok(),
            _ => {}
        }
    }
    Some(SubnetKey { v4: v4?, v6 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ipv6: bool) -> SubnetEnv {
        SubnetEnv {
            network: "10.5.0.0/16".parse().expect("net"),
            subnet: "10.5.72.0/24".parse().expect("net"),
            ipv6: ipv6.then(|| {
                (
                    "fd00:10:5::/48".parse().expect("net"),
                    "fd00:10:5:48::/64".parse().expect("net"),
                )
            }),
            mtu: 1450,
            ip_masq: false,
        }
    }

    #[test]
    fn flannels_format() {
        assert_eq!(
            env(false).render(),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        let mut e = env(true);
        e.ip_masq = true;
        assert_eq!(
            e.render(),
            "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\n\
             FLANNEL_IPV6_NETWORK=fd00:10:5::/48\nFLANNEL_IPV6_SUBNET=fd00:10:5:48::1/64\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn write_then_read_previous() {
        let dir = std::env::temp_dir().join(format!("wfl-env-{}", std::process::id()));
        let path = dir.join("run/flannel/subnet.env");
        let e = env(true);
        e.write(&path).expect("write");
        assert_eq!(fs::read_to_string(&path).expect("read"), e.render());
        let prev = read_previous(&path).expect("previous");
        assert_eq!(prev.v4, e.subnet);
        assert_eq!(prev.v6, e.ipv6.map(|(_, s)| s));
        // Rewriting replaces it whole and leaves no temporary file behind.
        env(false).write(&path).expect("rewrite");
        let names: Vec<_> = fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(read_previous(&path).expect("previous").v6, None);
        assert_eq!(read_previous(&dir.join("missing")), None);
        fs::write(&path, "FLANNEL_SUBNET=garbage\n").expect("write");
        assert_eq!(read_previous(&path), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn parse_previous_reads_what_render_writes() {
        for e in [env(false), env(true)] {
            let key = parse_previous(&e.render()).expect("previous");
            assert_eq!(key.v4, e.subnet);
            assert_eq!(key.v6, e.ipv6.map(|(_, s)| s));
        }
        // Shell syntax, the last assignment wins, an unreadable IPv6 subnet is left out.
        let key = parse_previous(
            "# written by hand\nexport FLANNEL_SUBNET=\"10.5.9.1/24\"\n\
             FLANNEL_SUBNET = 10.5.72.1/24 \nFLANNEL_IPV6_SUBNET=nope\n",
        )
        .expect("previous");
        assert_eq!(key, SubnetKey::v4("10.5.72.0/24".parse().expect("net")));
        assert_eq!(parse_previous(""), None);
        assert_eq!(parse_previous("FLANNEL_IPV6_SUBNET=fd00::1/64\n"), None);
        assert_eq!(
            parse_previous("FLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_SUBNET=\n"),
            None
        );
    }
}
