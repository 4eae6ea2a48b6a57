//! The files and firewall rules a flannel node leaves for the rest of the host.
//!
//! - [`subnet_env`]: `/run/flannel/subnet.env`, read by flannel's CNI plugin and Docker
//!   set-ups; written atomically in flanneld's format, and read back at start for the previous
//!   subnet.
//! - [`masq`]: flanneld's `--ip-masq` rules (nat `FLANNEL-POSTRTG`, filter `FLANNEL-FWD`),
//!   applied, checked and removed through `iptables-restore` / `iptables-save`.

pub mod masq;
pub mod subnet_env;
