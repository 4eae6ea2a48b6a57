//! weftd's command line: flags, their `FLANNELD_*` variables, and the checks that need more
//! than one flag.
//!
//! Contract: [`Cli::parse_flanneld`] takes flanneld's syntax ([`goflags`]: `-flag=value`,
//! `-flag value`, Go booleans, klog's `-v=N`) and parses it with clap; a flag value that does not parse or is out of range is
//! a clap error naming the flag (exit code 2). [`Cli::resolve`] turns the flags into
//! [`Settings`], filling the defaults that depend on other flags (port, TUN name, VtepMAC,
//! MTU, threads, control path); a combination that cannot work is again a clap error naming the
//! flags (exit code 2). Before anything is set up, `resolve` also checks the values that need
//! the system: paths (`--peers`, `--etcd-*file` readable; `--control`, `--subnet-file`,
//! `--lease-dir` creatable), etcd endpoints (`http(s)://HOST:PORT`), flags that go in pairs
//! (cert + key, user + password), `--tun-name` (free or a TUN), `--healthz-ip` (an address of
//! this host), so that a bad value never fails late with a half-configured node. Flags shared
//! with flanneld keep flanneld's names and defaults (`--public-ip`, `--iptables-forward-rules`
//! on, `-v`); every flag but `-v` can also come from `FLANNELD_<FLAG_IN_UPPER_SNAKE_CASE>`.
//! flanneld's flags that weftd does not implement yet ([`FlanneldOnly`]) are parsed so that
//! giving one exits 2 naming it, not with a generic usage error.
//!
//! Files: `flags` (clap), `settings` (resolution), `checks` (values checked against the
//! system), `host` (discovery of the defaults), [`goflags`] (flanneld's syntax).

mod checks;
mod flags;
pub mod goflags;
mod host;
mod settings;
#[cfg(test)]
mod tests;

pub use flags::{
    Cli, DriverArg, FlanneldOnly, IPV6_UNDERLAY_EXTRA, MAX_PUMP_THREADS, MAX_VNI, MIN_MTU,
};
pub use settings::{LeaseSettings, LeasedNetwork, Settings, StoreSettings};
