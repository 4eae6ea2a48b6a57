//! Subnet leases: flannel's lease store, its network config, and the subnet manager.
//!
//! weftd is a drop-in for flanneld, so this module speaks flannel's schema exactly:
//! - `<prefix>/config` holds the network config ([`network::NetworkConfig`]); default prefix
//!   [`DEFAULT_PREFIX`].
//! - `<prefix>/subnets/<ip>-<len>` (dual stack `<ip>-<len>&<ip6>-<len6>`, [`SubnetKey`]) holds
//!   one node's lease, flannel's `LeaseAttrs` JSON ([`LeaseAttrs`]), under a 24 h TTL. A key
//!   without a TTL is a reservation: it never expires.
//!
//! [`LeaseStore`] is that schema over a backing store. Two implementations:
//! - [`EtcdStore`]: etcd v3, what flanneld uses (`--etcd-endpoints`).
//! - [`DirStore`]: a local directory with the same keys as files (`--lease-dir`), for one
//!   machine, tests and the demo.
//!
//! [`SubnetManager`](manager::SubnetManager) sits on a store: it acquires our lease, renews
//! it, and turns the other leases into [`PeerSet`](manager::PeerSet) snapshots for the route
//! table (see [`manager`] for the daemon's side of the contract).
//!
//! Store contract, for both implementations:
//! - [`LeaseStore::create`] is atomic: of two nodes creating one key, exactly one succeeds, the
//!   other gets [`StoreError::Exists`]. An expired lease does not block creation.
//! - [`LeaseStore::renew`] never steals: it rewrites the key only when it is absent or holds a
//!   lease with our `PublicIP`; otherwise [`StoreError::Taken`].
//! - [`LeaseStore::list`] returns the live leases and the store revision they are valid at;
//!   values that do not parse are returned apart ([`InvalidLease`]) with the key and reason.
//! - [`LeaseStore::watch`] reports every change after that revision, in order, as
//!   [`WatchBatch::Events`]. When the store cannot (etcd compacted the history; inotify
//!   overflowed; the directory store always at the start), it sends
//!   [`WatchBatch::Resync`] with a fresh listing instead: the watcher replaces what it knew
//!   and the watch carries on from there. Network failures are retried inside the watch (100 ms
//!   to 5 s backoff, as flanneld) and counted in [`LeaseWatch::reconnects`].

pub mod attrs;
mod dir;
mod etcd;
pub mod manager;
pub mod network;
pub mod subnet;
mod time;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::Stop;

pub use attrs::{BackendData, LeaseAttrs, VxlanData};
pub use dir::DirStore;
pub use etcd::{EtcdError, EtcdOptions, EtcdStore, DEFAULT_ENDPOINTS};
pub use manager::{ManagerEvent, ManagerOptions, OwnLease, PeerLease, PeerSet, SubnetManager};
pub use network::{BackendConfig, ConfigError, NetworkConfig};
pub use subnet::SubnetKey;

/// flannel's default `--etcd-prefix`.
pub const DEFAULT_PREFIX: &str = "/coreos.com/network";

/// flannel's lease TTL (`subnetTTL`, pkg/subnet/etcd/local_manager.go).
pub const LEASE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// When a lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A key without a TTL: an administrator's reservation, never expires.
    Reservation,
    /// The lease expires then.
    At(SystemTime),
    /// The lease has a TTL that was not read (etcd: listing does not ask for each TTL).
    Leased,
}

/// One lease as a store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Its subnet(s).
    pub key: SubnetKey,
    /// Its value.
    pub attrs: LeaseAttrs,
    /// When it ends.
    pub expiry: Expiry,
}

/// A key under `<prefix>/subnets/` whose name or value is not a valid lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLease {
    /// The full key (etcd) or file path (directory).
    pub key: String,
    /// Why it was skipped.
    pub reason: String,
}

impl fmt::Display for InvalidLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

/// The live leases of a store at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// The valid leases.
    pub leases: Vec<Lease>,
    /// Keys skipped because their name or value did not parse.
    pub invalid: Vec<InvalidLease>,
    /// The store revision the listing is valid at (etcd's header revision; 0 for a directory).
    pub revision: i64,
}

/// One change to the leases.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A lease was created or rewritten.
    Put(Lease),
    /// A lease was deleted or expired.
    Delete(SubnetKey),
    /// A key was written with a name or value that is not a valid lease.
    Invalid(InvalidLease),
}

/// What a watch delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchBatch {
    /// Changes, in order, up to `revision`.
    Events {
        /// The changes.
        events: Vec<WatchEvent>,
        /// The store revision after them (0 for a directory).
        revision: i64,
    },
    /// The watch could not follow the history: here is the whole current state instead.
    Resync(Listing),
}

/// A running watch of `<prefix>/subnets/`. Dropping it stops it.
pub trait LeaseWatch: Send {
    /// The next batch, waiting at most `timeout`; `Ok(None)` when nothing changed in time or
    /// `stop` was requested (the wait ends at once then). An error means the watch is over
    /// (the store was closed); transient failures are retried inside.
    fn next(&mut self, timeout: Duration, stop: &Stop) -> Result<Option<WatchBatch>, StoreError>;

    /// How many times the watch lost its connection and reconnected (or re-listed).
    fn reconnects(&self) -> u64;
}

/// flannel's lease schema over a backing store (see the module documentation).
pub trait LeaseStore: Send + Sync + fmt::Debug {
    /// Where the store is, for logs (`etcd http://127.0.0.1:2379 /coreos.com/network`).
    fn describe(&self) -> String;

    /// Where the network config lives, for messages (`etcd key /coreos.com/network/config`,
    /// a file path).
    fn config_location(&self) -> String;

    /// The network config text at `<prefix>/config`; [`StoreError::ConfigMissing`] if absent.
    fn config(&self) -> Result<String, StoreError>;

    /// Writes the network config (tests, the demo, `weftctl`; flanneld never does).
    fn set_config(&self, text: &str) -> Result<(), StoreError>;

    /// The live leases and the revision they are valid at.
    fn list(&self) -> Result<Listing, StoreError>;

    /// Creates `key` with `attrs` for `ttl`, atomically; [`StoreError::Exists`] if a live
    /// lease holds the key. Returns when the new lease expires.
    fn create(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<SystemTime, StoreError>;

    /// Rewrites `key` with `attrs` and a fresh `ttl` (`None`: keep it a reservation, no TTL).
    /// [`StoreError::Taken`] if the key holds another node's lease (another `PublicIP`).
    fn renew(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<Expiry, StoreError>;

    /// Deletes `key` (no error if it is absent).
    fn delete(&self, key: &SubnetKey) -> Result<(), StoreError>;

    /// Watches `<prefix>/subnets/` for changes after `revision` (from [`LeaseStore::list`]).
    fn watch(&self, revision: i64) -> Result<Box<dyn LeaseWatch>, StoreError>;
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `<prefix>/config` does not exist.
    #[error(
        "no network config at {location}: write one, e.g. {{\"Network\": \"10.244.0.0/16\", \
         \"Backend\": {{\"Type\": \"vxlan\"}}}}"
    )]
    ConfigMissing {
        /// The key or file that was read.
        location: String,
    },
    /// [`LeaseStore::create`] lost: a live lease holds the key.
    #[error("subnet {key} is already leased")]
    Exists {
        /// The key.
        key: SubnetKey,
    },
    /// [`LeaseStore::renew`] refused: another node holds the key.
    #[error("subnet {key} is now leased to {holder}, not to us")]
    Taken {
        /// The key.
        key: SubnetKey,
        /// The node that holds it ([`LeaseAttrs::node_ip`]).
        holder: IpAddr,
    },
    /// An etcd request failed.
    #[error("etcd {op} failed: {source}")]
    Etcd {
        /// What was being done (`"list subnets"`, `"create lease"`, ...).
        op: &'static str,
        /// The endpoint it went to, what etcd or the transport said, and what to check.
        #[source]
        source: EtcdError,
    },
    /// The etcd options are unusable (a TLS file that cannot be read, ...).
    #[error("etcd set-up: {0}")]
    EtcdSetup(String),
    /// A file operation of the directory store failed.
    #[error("lease directory: {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The watch ended because its store is gone.
    #[error("the lease watch ended: {0}")]
    WatchClosed(String),
}

impl StoreError {
    /// Whether retrying later may help (network and I/O failures), as opposed to a verdict.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Etcd { .. } | StoreError::Io { .. } | StoreError::ConfigMissing { .. }
        )
    }
}
