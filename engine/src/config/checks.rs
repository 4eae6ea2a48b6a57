//! The checks of single values that need the file system or the interfaces, made before
//! anything is set up.

use std::path::Path;

use super::flags::Cli;
use crate::control::ControlAddr;
use crate::sys::{ifaddrs, netif};

impl Cli {
    /// The checks of single values that need the file system or the interfaces: done before
    /// anything is set up, so that a bad value exits 2 and leaves nothing behind (a path that
    /// only fails once the TUN exists would leave a half-configured node until exit).
    pub(super) fn check_values(&self, lease_mode: bool) -> Result<(), String> {
        if self.iface.iter().any(|i| i.trim().is_empty()) {
            return Err(
                "invalid value '' for '--iface': expected an interface name or address".to_owned(),
            );
        }
        if let Some(peers) = &self.peers {
            check_readable_file("--peers", peers)?;
        }
        if let Some(ControlAddr::Path(control)) = &self.control {
            check_creatable_file("--control", control)?;
        }
        if let Some(name) = &self.tun_name {
            check_tun_name_free(name)?;
        }
        if self.healthz_port != 0 && !self.healthz_ip.is_unspecified() {
            match ifaddrs::interface_with_address(self.healthz_ip) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(format!(
                        "invalid value '{}' for '--healthz-ip': no interface of this host has \
                         that address; expected one of its addresses, or 0.0.0.0 / :: for all",
                        self.healthz_ip
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "listing interface addresses for --healthz-ip failed: {e}"
                    ))
                }
            }
        }
        if !lease_mode {
            return Ok(());
        }
        check_creatable_file("--subnet-file", &self.subnet_file)?;
        if let Some(dir) = &self.lease_dir {
            check_creatable_dir("--lease-dir", dir)?;
            return Ok(());
        }
        for endpoint in self.etcd_endpoints.split(',').map(str::trim) {
            if endpoint.is_empty() {
                continue;
            }
            check_endpoint(endpoint)?;
        }
        for (flag, file) in [
            ("--etcd-cafile", &self.etcd_cafile),
            ("--etcd-certfile", &self.etcd_certfile),
            ("--etcd-keyfile", &self.etcd_keyfile),
        ] {
            if let Some(f) = file {
                check_readable_file(flag, f)?;
            }
        }
        for (a, a_set, b, b_set) in [
            (
                "--etcd-certfile",
                self.etcd_certfile.is_some(),
                "--etcd-keyfile",
                self.etcd_keyfile.is_some(),
            ),
            (
                "--etcd-username",
                self.etcd_username.is_some(),
                "--etcd-password",
                self.etcd_password.is_some(),
            ),
        ] {
            if a_set != b_set {
                let (given, missing) = if a_set { (a, b) } else { (b, a) };
                return Err(format!(
                    "{given} needs {missing}: {a} and {b} go together, give both or neither"
                ));
            }
        }
        Ok(())
    }
}

/// An etcd endpoint: `http://` or `https://`, then a host (and port) without spaces.
pub(super) fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"));
    let authority = rest.map(|r| r.trim_end_matches('/'));
    match authority {
        Some(a)
            if !a.is_empty()
                && !a.starts_with(':')
                && !a.contains('/')
                && !a.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "invalid value '{endpoint}' for '--etcd-endpoints': expected http://HOST:PORT or \
             https://HOST:PORT (comma separated)"
        )),
    }
}

/// `path` is a file (not a directory) this process can open.
pub(super) fn check_readable_file(flag: &str, path: &Path) -> Result<(), String> {
    let bad = |why: String| {
        format!(
            "invalid value '{}' for '{flag}': {why}; expected a readable file",
            path.display()
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.is_dir() {
        return Err(bad("a directory".to_owned()));
    }
    std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// `path` is a file weftd can create later: not a directory, and the nearest existing
/// ancestor is a directory (weftd creates the missing ones).
pub(super) fn check_creatable_file(flag: &str, path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() || path.is_dir() {
        return Err(format!(
            "invalid value '{}' for '{flag}': a directory; expected a file path",
            path.display()
        ));
    }
    check_ancestors(flag, path)
}

/// `path` is a directory or can become one.
pub(super) fn check_creatable_dir(flag: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "invalid value '{}' for '{flag}': not a directory; expected a directory (created \
             when missing)",
            path.display()
        )),
        Err(_) => check_ancestors(flag, path),
    }
}

/// The nearest existing ancestor of `path` is a directory.
pub(super) fn check_ancestors(flag: &str, path: &Path) -> Result<(), String> {
    for ancestor in path.ancestors().skip(1) {
        let ancestor = if ancestor.as_os_str().is_empty() {
            Path::new(".")
        } else {
            ancestor
        };
        match std::fs::metadata(ancestor) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "invalid value '{}' for '{flag}': {} is not a directory",
                    path.display(),
                    ancestor.display()
                ))
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

/// No interface named `name` exists, or it is a TUN device (a stale one of ours is replaced).
pub(super) fn check_tun_name_free(name: &str) -> Result<(), String> {
    if netif::index(name).is_err() {
        return Ok(());
    }
    let sys = Path::new("/sys/class/net").join(name);
    // Without a sysfs view of this namespace, leave the decision to TUNSETIFF.
    if !sys.exists() || sys.join("tun_flags").exists() {
        return Ok(());
    }
    Err(format!(
        "invalid value '{name}' for '--tun-name': an interface of that name exists and is not \
         a TUN device; expected a free name (1 to 15 bytes)"
    ))
}
