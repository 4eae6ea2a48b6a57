//! The subnet manager: our lease, kept alive, and everyone else's, watched.
//!
//! How the daemon uses it:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::net::Ipv4Addr;
//! # use engine::lease::{*, manager::*};
//! # use engine::Stop;
//! # fn run(store: Arc<dyn LeaseStore>, stop: &Stop) -> Result<(), Box<dyn std::error::Error>> {
//! // 1. The network config; flannel retries every second until it is there and valid.
//! let Some(config) = wait_for_config(&*store, stop, CONFIG_RETRY) else { return Ok(()) };
//! // 2. Our lease (what we publish: flannel's udp or vxlan value, with our PublicIP).
//! let attrs = LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, 2), None);
//! let mut manager = SubnetManager::new(store, config, ManagerOptions::new(attrs));
//! let own = manager.acquire()?; // -> TUN address, subnet.env, masquerade rules
//! // 3. Renewal and the peers, on the manager's thread.
//! let (handle, events) = manager.spawn(own, Stop::new()?);
//! for event in events {
//!     match event {
//!         ManagerEvent::Peers(set) => { /* RouteTable::build(set.peers) and swap it in */ }
//!         ManagerEvent::OwnLease(own) => { /* re-acquired, maybe another subnet: redo 2. */ }
//!     }
//! }
//! handle.stop(); // SIGTERM: the lease stays in the store, as with flanneld.
//! # Ok(()) }
//! ```
//!
//! Contract:
//! - [`SubnetManager::acquire`] (flannel's `tryAcquireLease`): list the leases; reuse the one
//!   that carries our `PublicIP` if it fits the config (renewing it with our value), deleting it
//!   if it does not; else take the previous subnet ([`ManagerOptions::previous`], from the
//!   previous subnet.env) if it is free and fits; else pick at random among the first 100 free
//!   subnets from `SubnetMin` to `SubnetMax`. Creation is atomic; a lost race re-lists and tries
//!   another subnet (flanneld gives up there), up to [`RACE_RETRIES`] times. A network with no
//!   free subnet is [`AcquireError::NetworkFull`].
//! - The thread started by [`SubnetManager::spawn`] lists and watches the leases and sends a
//!   [`ManagerEvent::Peers`] with the complete peer set after every change (the first one
//!   right away, even if empty). Our own subnet is never a peer. A lease of another backend
//!   type is left out with one log line per key; a key whose value does not parse is skipped
//!   with a log line naming the key and the reason.
//! - It renews our lease at expiry minus [`ManagerOptions::renew_margin`] and retries every
//!   [`ManagerOptions::renew_retry`] after a failure. If our lease is deleted (or taken by
//!   another node) it logs that, acquires again (the same subnet if still free) and sends
//!   [`ManagerEvent::OwnLease`].
//! - Store outages are ridden out: the last peer set stands until the store answers again.
//!   A peer missing from a re-list (after compaction, or a store restored from an empty
//!   data dir) keeps its route for [`RELIST_GRACE`] unless a watch event deletes it: its node
//!   writes it again when it notices, and traffic to it must not stop meanwhile.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use encap::backend::Mac;

use super::network::NetworkConfig;
use super::{
    Expiry, Lease, LeaseAttrs, LeaseStore, LeaseWatch, Listing, StoreError, SubnetKey, WatchBatch,
    WatchEvent, LEASE_TTL,
};
use crate::model::{Ipv4Net, Ipv6Net};
use crate::Stop;

/// How often flanneld re-reads a missing or invalid config.
pub const CONFIG_RETRY: Duration = Duration::from_secs(1);
/// flanneld's `--subnet-lease-renew-margin` default: 60 minutes.
pub const DEFAULT_RENEW_MARGIN: Duration = Duration::from_secs(60 * 60);
/// The range flanneld accepts for `--subnet-lease-renew-margin`, in minutes (the lease lives
/// 24 h = 1440 minutes).
pub const RENEW_MARGIN_MINUTES: std::ops::RangeInclusive<u64> = 1..=1439;

/// `--subnet-lease-renew-margin` (minutes) as a duration, or why it is out of range.
pub fn renew_margin_from_minutes(minutes: u64) -> Result<Duration, String> {
    if RENEW_MARGIN_MINUTES.contains(&minutes) {
        Ok(Duration::from_secs(minutes * 60))
    } else {
        Err(format!(
            "--subnet-lease-renew-margin {minutes}: must be {} to {} minutes (the lease lives 24 h)",
            RENEW_MARGIN_MINUTES.start(),
            RENEW_MARGIN_MINUTES.end()
        ))
    }
}

/// The test-only environment variable that shortens the etcd lease TTL (see
/// [`TestLeaseTtl`]). Not a flag: it exists so tests can run many renewal cycles and let a
/// lease expire in seconds; production keeps flannel's 24 h.
pub const TEST_LEASE_TTL_VAR: &str = "WEFT_TEST_LEASE_TTL_SECS";
/// The TTLs [`TEST_LEASE_TTL_VAR`] accepts, in seconds: etcd grants at least 2 s with its
/// default election timeout, and more than flannel's 24 h is not shortening anything.
pub const TEST_LEASE_TTL_SECS: std::ops::RangeInclusive<u64> = 2..=24 * 60 * 60;

/// The lease timing of [`TEST_LEASE_TTL_VAR`] (tests only): the TTL, a renewal half-way
/// through it (instead of `--subnet-lease-renew-margin`, which counts minutes), and a failed
/// renewal retried after a quarter of it (instead of [`RENEW_RETRY`]), so a node keeps
/// renewing on time while etcd is briefly away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestLeaseTtl {
    /// The etcd lease TTL.
    pub ttl: Duration,
    /// Renew this long before expiry: half the TTL.
    pub renew_margin: Duration,
    /// Retry a failed renewal after this long: a quarter of the TTL.
    pub renew_retry: Duration,
}

impl TestLeaseTtl {
    /// Parses the value of [`TEST_LEASE_TTL_VAR`] (whole seconds), or says why it is refused.
    pub fn parse(value: &str) -> Result<TestLeaseTtl, String> {
        let range = &TEST_LEASE_TTL_SECS;
        let secs: u64 = value.trim().parse().map_err(|_| {
            format!(
                "{TEST_LEASE_TTL_VAR}={value:?}: not a whole number of seconds (a test-only \
                 setting: {}..={} s, or unset for flannel's 24 h)",
                range.start(),
                range.end()
            )
        })?;
        if !range.contains(&secs) {
            return Err(format!(
                "{TEST_LEASE_TTL_VAR}={secs}: the lease TTL must be {}..={} s (a test-only \
                 setting; unset it for flannel's 24 h)",
                range.start(),
                range.end()
            ));
        }
        let ttl = Duration::from_secs(secs);
        Ok(TestLeaseTtl {
            ttl,
            renew_margin: ttl / 2,
            renew_retry: ttl / 4,
        })
    }

    /// Applies it to the manager's options.
    pub fn apply(&self, options: &mut ManagerOptions) {
        options.ttl = self.ttl;
        options.renew_margin = self.renew_margin;
        options.renew_retry = self.renew_retry;
    }
}

/// flanneld retries a failed renewal after a minute.
pub const RENEW_RETRY: Duration = Duration::from_secs(60);
/// Attempts at creating a lease when other nodes keep winning the race (flannel's
/// `raceRetries`).
pub const RACE_RETRIES: usize = 10;
/// How many free subnets flannel collects before picking one at random.
pub const FREE_CANDIDATES: usize = 100;
/// The longest the manager thread waits on the watch: it wakes at once for an event, a stop
/// or a due renewal, and otherwise this seldom (an idle weftd makes no frequent wake-ups).
const IDLE_WAIT: Duration = Duration::from_secs(10);
/// How long a peer missing from a re-list stays (see the module documentation).
pub const RELIST_GRACE: Duration = Duration::from_secs(15);
/// Wait between attempts when re-acquiring or re-listing after a store failure.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How the manager behaves.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The value we publish (its `PublicIP` identifies our lease).
    pub attrs: LeaseAttrs,
    /// The subnet in the previous subnet.env, tried before a random one.
    pub previous: Option<SubnetKey>,
    /// Renew this long before expiry (`--subnet-lease-renew-margin`).
    pub renew_margin: Duration,
    /// The lease TTL (24 h as flannel; tests shorten it).
    pub ttl: Duration,
    /// Retry a failed renewal after this long.
    pub renew_retry: Duration,
}

impl ManagerOptions {
    /// flannel's defaults for a node publishing `attrs`.
    pub fn new(attrs: LeaseAttrs) -> ManagerOptions {
        ManagerOptions {
            attrs,
            previous: None,
            renew_margin: DEFAULT_RENEW_MARGIN,
            ttl: LEASE_TTL,
            renew_retry: RENEW_RETRY,
        }
    }
}

/// Our lease.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnLease {
    /// Our subnet(s).
    pub key: SubnetKey,
    /// What we published.
    pub attrs: LeaseAttrs,
    /// When it ends.
    pub expiry: Expiry,
}

impl OwnLease {
    /// Our IPv4 subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.key.v4
    }

    /// Our IPv6 subnet (dual stack).
    pub fn subnet6(&self) -> Option<Ipv6Net> {
        self.key.v6
    }
}

/// A peer's lease: what the route table needs (`key`, `attrs.public_ip`,
/// `attrs.vxlan_data()`).
pub type PeerLease = Lease;

/// The complete set of peers after a change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerSet {
    /// Every peer lease, sorted by key.
    pub peers: Vec<PeerLease>,
    /// Keys that are new or whose value changed since the previous set.
    pub added: Vec<SubnetKey>,
    /// Keys that are gone since the previous set.
    pub removed: Vec<SubnetKey>,
}

/// What the manager's thread reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ManagerEvent {
    /// The peers changed (and once at start).
    Peers(PeerSet),
    /// We hold a new lease after ours was deleted or taken; its subnet may differ.
    OwnLease(OwnLease),
}

/// Why no lease could be acquired.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// The store failed.
    #[error("acquiring a subnet lease: {0}")]
    Store(#[from] StoreError),
    /// Every subnet between SubnetMin and SubnetMax is leased.
    #[error(
        "the network is full: all {in_use} subnets of {network} between {min} and {max} are \
         leased; widen Network or SubnetMin/SubnetMax, or delete stale leases"
    )]
    NetworkFull {
        /// The Network (IPv4 or IPv6) that is full.
        network: String,
        /// SubnetMin.
        min: String,
        /// SubnetMax.
        max: String,
        /// How many leases overlap the range.
        in_use: usize,
    },
    /// Other nodes won the race for every subnet we tried.
    #[error("lost the race for a free subnet {0} times in a row; is something creating leases in a loop?")]
    Races(usize),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ManagerStats {
    /// Successful renewals.
    pub renewals: AtomicU64,
    /// Failed renewal attempts.
    pub renew_failures: AtomicU64,
    /// Times our lease was lost and acquired again.
    pub reacquisitions: AtomicU64,
    /// Watch reconnects and re-lists.
    pub watch_reconnects: AtomicU64,
    /// Peers in the last set.
    pub peers: AtomicU64,
}

/// Reads the network config, retrying every `retry` while it is missing, invalid or the store
/// is unreachable (each distinct problem logged once), until it is valid or `stop` is
/// requested (the wait between tries ends at once then).
pub fn wait_for_config(
    store: &dyn LeaseStore,
    stop: &Stop,
    retry: Duration,
) -> Option<NetworkConfig> {
    let mut last_problem = String::new();
    while !stop.requested() {
        let problem = match store.config() {
            Ok(text) => match NetworkConfig::parse(&text) {
                Ok(config) => return Some(config),
                Err(e) => format!("{}: {e}", store.config_location()),
            },
            Err(e) => e.to_string(),
        };
        if problem != last_problem {
            tracing::error!("{}: {problem}; retrying every {retry:?}", store.describe());
            last_problem = problem;
        }
        stop.sleep(retry);
    }
    None
}

/// The VtepMAC of the vxlan lease that already carries `public_ip`, if any, so that a
/// restarted node keeps its MAC (flanneld's `GetStoredMacAddresses`).
pub fn stored_vtep_mac(store: &dyn LeaseStore, node_ip: IpAddr) -> Result<Option<Mac>, StoreError> {
    Ok(store
        .list()?
        .leases
        .iter()
        .filter(|l| l.attrs.node_ip() == Some(node_ip))
        .find_map(|l| l.attrs.vxlan_data())
        .map(|d| d.vtep_mac))
}

/// A random locally administered unicast MAC (as the kernel gives a new vxlan device).
pub fn random_vtep_mac() -> Mac {
    let mut mac = [0u8; 6];
    fastrand::fill(&mut mac);
    // Unicast (I/G bit clear), locally administered (U/L bit set).
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The subnet manager (see the module documentation).
#[derive(Debug)]
pub struct SubnetManager {
    store: Arc<dyn LeaseStore>,
    config: NetworkConfig,
    options: ManagerOptions,
    /// Keys already logged as another backend or invalid, with the reason.
    logged: HashSet<(SubnetKey, String)>,
    logged_invalid: HashSet<String>,
}

impl SubnetManager {
    /// A manager for `config` on `store`.
    pub fn new(
        store: Arc<dyn LeaseStore>,
        config: NetworkConfig,
        options: ManagerOptions,
    ) -> SubnetManager {
        SubnetManager {
            store,
            config,
            options,
            logged: HashSet::new(),
            logged_invalid: HashSet::new(),
        }
    }

    /// The config it works with.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    fn log_invalid(&mut self, key: &str, reason: &str) {
        if self.logged_invalid.insert(format!("{key}\0{reason}")) {
            tracing::warn!("skipping the bad lease at {key}: {reason}");
        }
    }

    /// Whether `key` is a subnet this config leases.
    fn fits(&self, key: &SubnetKey) -> bool {
        let v4 = self.config.ipv4.accepts(&key.v4);
        let v6 = match (&self.config.ipv6, &key.v6) {
            (Some(pool), Some(v6)) => pool.accepts(v6),
            (None, None) => true,
            _ => false,
        };
        v4 && v6
    }

    /// Acquires our lease (see the module documentation).
    pub fn acquire(&mut self) -> Result<OwnLease, AcquireError> {
        for _ in 0..RACE_RETRIES {
            if let Some(own) = self.try_acquire()? {
                return Ok(own);
            }
        }
        Err(AcquireError::Races(RACE_RETRIES))
    }

    /// One attempt; `Ok(None)` when another node won a race and we should look again.
    fn try_acquire(&mut self) -> Result<Option<OwnLease>, AcquireError> {
        let listing = self.store.list()?;
        for invalid in &listing.invalid {
            self.log_invalid(&invalid.key, &invalid.reason);
        }
        let ours = self.options.attrs.holder();
        let mine = self.options.attrs.node_ip().and_then(|node| {
            listing
                .leases
                .iter()
                .find(|l| l.attrs.node_ip() == Some(node))
        });
        if let Some(lease) = mine {
            if self.fits(&lease.key) {
                tracing::info!(
                    "found the lease {} for our PublicIP {ours}; reusing it",
                    lease.key
                );
                let ttl = (lease.expiry != Expiry::Reservation).then_some(self.options.ttl);
                return match self.store.renew(&lease.key, &self.options.attrs, ttl) {
                    Ok(expiry) => Ok(Some(OwnLease {
                        key: lease.key,
                        attrs: self.options.attrs.clone(),
                        expiry,
                    })),
                    Err(StoreError::Taken { .. }) => Ok(None),
                    Err(e) => Err(e.into()),
                };
            }
            tracing::info!(
                "the lease {} for our PublicIP {ours} does not fit the network config; deleting it",
                lease.key
            );
            self.store.delete(&lease.key)?;
        }
        let key = match self.free_previous(&listing) {
            Some(key) => {
                tracing::info!("reusing the previous subnet {key}");
                key
            }
            None => self.pick_free(&listing)?,
        };
        match self
            .store
            .create(&key, &self.options.attrs, self.options.ttl)
        {
            Ok(expires) => {
                tracing::info!("leased subnet {key} for {ours}");
                Ok(Some(OwnLease {
                    key,
                    attrs: self.options.attrs.clone(),
                    expiry: Expiry::At(expires),
                }))
            }
            Err(StoreError::Exists { .. }) => {
                tracing::info!("another node took subnet {key} first; trying another");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn free_previous(&self, listing: &Listing) -> Option<SubnetKey> {
        let prev = self.options.previous?;
        if !self.fits(&prev) {
            tracing::warn!(
                "the previous subnet {prev} does not fit the network config; ignoring it"
            );
            return None;
        }
        let taken = listing.leases.iter().any(|l| {
            l.key.v4.overlaps(&prev.v4)
                || matches!((l.key.v6, prev.v6), (Some(a), Some(b)) if a.overlaps(&b))
        });
        (!taken).then_some(prev)
    }

    /// flannel's `allocateSubnet`: a random pick among the first free subnets.
    fn pick_free(&self, listing: &Listing) -> Result<SubnetKey, AcquireError> {
        let pool = &self.config.ipv4;
        let mut free4: Vec<Ipv4Net> = Vec::new();
        let mut addr = u32::from(pool.subnet_min);
        let max = u32::from(pool.subnet_max);
        while addr <= max && free4.len() < FREE_CANDIDATES {
            let Ok(sn) = Ipv4Net::new(Ipv4Addr::from(addr), pool.subnet_len) else {
                break;
            };
            if !listing.leases.iter().any(|l| l.key.v4.overlaps(&sn)) {
                free4.push(sn);
            }
            match sn.next_addr() {
                Some(next) => addr = next,
                None => break,
            }
        }
        if free4.is_empty() {
            return Err(AcquireError::NetworkFull {
                network: pool.network.to_string(),
                min: pool.subnet_min.to_string(),
                max: pool.subnet_max.to_string(),
                in_use: listing
                    .leases
                    .iter()
                    .filter(|l| pool.network.overlaps(&l.key.v4))
                    .count(),
            });
        }
        let v4 = free4[fastrand::usize(..free4.len())];
        let v6 = match &self.config.ipv6 {
            None => None,
            Some(pool) => {
                let mut free6: Vec<Ipv6Net> = Vec::new();
                let mut addr = u128::from(pool.subnet_min);
                let max = u128::from(pool.subnet_max);
                while addr <= max && free6.len() < FREE_CANDIDATES {
                    let Ok(sn) = Ipv6Net::new(addr.into(), pool.subnet_len) else {
                        break;
                    };
                    if !listing
                        .leases
                        .iter()
                        .any(|l| l.key.v6.is_some_and(|v6| v6.overlaps(&sn)))
                    {
                        free6.push(sn);
                    }
                    match sn.next_addr() {
                        Some(next) => addr = next,
                        None => break,
                    }
                }
                if free6.is_empty() {
                    return Err(AcquireError::NetworkFull {
                        network: pool.network.to_string(),
                        min: pool.subnet_min.to_string(),
                        max: pool.subnet_max.to_string(),
                        in_use: listing.leases.iter().filter(|l| l.key.v6.is_some()).count(),
                    });
                }
                Some(free6[fastrand::usize(..free6.len())])
            }
        };
        Ok(SubnetKey { v4, v6 })
    }

    /// Starts the thread that renews `own` and watches the peers (see the module
    /// documentation). Events arrive on the returned channel until [`ManagerHandle::stop`].
    /// `stop` ends the thread when requested ([`ManagerHandle::stop`] requests it).
    pub fn spawn(self, own: OwnLease, stop: Stop) -> (ManagerHandle, Receiver<ManagerEvent>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(ManagerStats::default());
        let mut runner = Runner {
            manager: self,
            own,
            peers: BTreeMap::new(),
            lingering: BTreeMap::new(),
            first: true,
            tx,
            stop: stop.clone(),
            stats: Arc::clone(&stats),
            watch: None,
            watch_reconnects_seen: 0,
            renew_at: Instant::now(),
        };
        runner.schedule_renewal();
        let thread = std::thread::Builder::new()
            .name("weft-leases".to_owned())
            .spawn(move || runner.run());
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("cannot start the lease manager thread: {e}");
                None
            }
        };
        (
            ManagerHandle {
                stop,
                stats,
                thread,
            },
            rx,
        )
    }
}

/// Controls the manager's thread.
#[derive(Debug)]
pub struct ManagerHandle {
    stop: Stop,
    stats: Arc<ManagerStats>,
    thread: Option<JoinHandle<()>>,
}

impl ManagerHandle {
    /// The counters.
    pub fn stats(&self) -> &ManagerStats {
        &self.stats
    }

    /// The counters, shareable with another thread (the metrics endpoint).
    pub fn stats_handle(&self) -> Arc<ManagerStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the thread and waits for it (at once, unless a store call is in flight).
    /// The lease stays in the store.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The manager thread's state.
struct Runner {
    manager: SubnetManager,
    own: OwnLease,
    peers: BTreeMap<SubnetKey, Lease>,
    /// Peers kept after a re-list did not show them, until then.
    lingering: BTreeMap<SubnetKey, Instant>,
    first: bool,
    tx: Sender<ManagerEvent>,
    stop: Stop,
    stats: Arc<ManagerStats>,
    watch: Option<Box<dyn LeaseWatch>>,
    watch_reconnects_seen: u64,
    renew_at: Instant,
}

impl Runner {
    fn stopped(&self) -> bool {
        self.stop.requested()
    }

    fn schedule_renewal(&mut self) {
        let now = Instant::now();
        self.renew_at = match self.own.expiry {
            // A reservation never expires: look again in a day anyway.
            Expiry::Reservation => now + LEASE_TTL,
            Expiry::Leased => now,
            Expiry::At(t) => {
                let left = t
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                now + left.saturating_sub(self.manager.options.renew_margin)
            }
        };
    }

    fn run(mut self) {
        while !self.stopped() {
            if Instant::now() >= self.renew_at {
                self.renew();
            }
            if self.watch.is_none() && !self.start_watch() {
                self.stop.sleep(STORE_RETRY);
                continue;
            }
            let wait = self
                .renew_at
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), IDLE_WAIT);
            let Some(watch) = self.watch.as_mut() else {
                continue;
            };
            let result = watch.next(wait, &self.stop);
            let reconnects = watch.reconnects();
            if reconnects > self.watch_reconnects_seen {
                self.stats
                    .watch_reconnects
                    .fetch_add(reconnects - self.watch_reconnects_seen, Ordering::Relaxed);
                self.watch_reconnects_seen = reconnects;
            }
            let before = self.peers.clone();
            let mut own_lost = None;
            match result {
                Ok(None) => {}
                Ok(Some(WatchBatch::Events { events, .. })) => {
                    for event in events {
                        if let Some(why) = self.apply(event) {
                            own_lost = Some(why);
                        }
                    }
                }
                Ok(Some(WatchBatch::Resync(listing))) => own_lost = self.replace(listing),
                Err(e) => {
                    tracing::warn!("the lease watch ended ({e}); listing again");
                    self.watch = None;
                    self.stats.watch_reconnects.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(why) = own_lost {
                self.reacquire(&why);
            }
            self.expire_lingering();
            if !self.send_peers(&before) {
                return;
            }
        }
    }

    /// Lists and starts a watch from the listing; false after logging a failure.
    fn start_watch(&mut self) -> bool {
        let listing = match self.manager.store.list() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing the leases failed: {e}; retrying");
                return false;
            }
        };
        let revision = listing.revision;
        let before = self.peers.clone();
        if let Some(why) = self.replace(listing) {
            self.reacquire(&why);
        }
        match self.manager.store.watch(revision) {
            Ok(w) => {
                self.watch = Some(w);
                self.watch_reconnects_seen = 0;
            }
            Err(e) => {
                tracing::warn!("watching the leases failed: {e}; retrying");
                return false;
            }
        }
        self.send_peers(&before)
    }

    /// Sends the peer set if it changed (or is the first); false when nobody listens.
    fn send_peers(&mut self, before: &BTreeMap<SubnetKey, Lease>) -> bool {
        if !self.first && *before == self.peers {
            return true;
        }
        self.first = false;
        let added = self
            .peers
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(*v))
            .map(|(k, _)| *k)
            .collect();
        let removed = before
            .keys()
            .filter(|k| !self.peers.contains_key(*k))
            .copied()
            .collect();
        let set = PeerSet {
            peers: self.peers.values().cloned().collect(),
            added,
            removed,
        };
        self.stats
            .peers
            .store(set.peers.len() as u64, Ordering::Relaxed);
        self.tx.send(ManagerEvent::Peers(set)).is_ok()
    }

    /// Whether a lease is one of our backend's (logging the others once per key).
    fn wanted(&mut self, lease: &Lease) -> bool {
        let ours = self.manager.config.backend.kind;
        let theirs = match lease.attrs.backend() {
            Ok(b) if b == ours => return true,
            Ok(b) => b.as_str(),
            Err(foreign) => foreign,
        };
        if self.manager.logged.insert((lease.key, theirs.to_owned())) {
            tracing::warn!(
                "ignoring the lease {} of {}: its backend is {theirs}, this node runs {ours}",
                lease.key,
                lease.attrs.holder()
            );
        }
        false
    }

    /// Drops the lingering peers whose grace is over.
    fn expire_lingering(&mut self) {
        let now = Instant::now();
        let over: Vec<SubnetKey> = self
            .lingering
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in over {
            self.lingering.remove(&key);
            if self.peers.remove(&key).is_some() {
                tracing::info!("the lease {key} did not come back: removing its route");
            }
        }
    }

    /// Applies one event; returns why our lease is lost, if it is.
    fn apply(&mut self, event: WatchEvent) -> Option<String> {
        match &event {
            WatchEvent::Put(lease) => {
                self.lingering.remove(&lease.key);
            }
            WatchEvent::Delete(key) => {
                self.lingering.remove(key);
            }
            WatchEvent::Invalid(_) => {}
        }
        match event {
            WatchEvent::Put(lease) => {
                if lease.key == self.own.key {
                    if lease.attrs.node_ip() != self.own.attrs.node_ip() {
                        return Some(format!(
                            "our lease {} was overwritten by {}",
                            lease.key,
                            lease.attrs.holder()
                        ));
                    }
                    return None;
                }
                if self.wanted(&lease) {
                    self.peers.insert(lease.key, lease);
                } else {
                    self.peers.remove(&lease.key);
                }
                None
            }
            WatchEvent::Delete(key) => {
                if key == self.own.key {
                    return Some(format!(
                        "our lease {key} was deleted from the store (it expired: not renewed \
                         within its TTL, e.g. while etcd was unreachable; or someone deleted it)"
                    ));
                }
                self.peers.remove(&key);
                None
            }
            WatchEvent::Invalid(invalid) => {
                self.manager.log_invalid(&invalid.key, &invalid.reason);
                None
            }
        }
    }

    /// Replaces the peers with a listing; returns why our lease is lost, if it is.
    fn replace(&mut self, listing: Listing) -> Option<String> {
        for invalid in &listing.invalid {
            self.manager.log_invalid(&invalid.key, &invalid.reason);
        }
        let mut own_present = false;
        let mut lost = None;
        let old = std::mem::take(&mut self.peers);
        for lease in listing.leases {
            if lease.key == self.own.key {
                own_present = true;
                if lease.attrs.node_ip() != self.own.attrs.node_ip() {
                    lost = Some(format!(
                        "our lease {} is now held by {}",
                        lease.key,
                        lease.attrs.holder()
                    ));
                }
                continue;
            }
            if self.wanted(&lease) {
                self.peers.insert(lease.key, lease);
            }
        }
        if !own_present {
            lost = Some(format!("our lease {} is gone from the store", self.own.key));
        }
        let until = Instant::now() + RELIST_GRACE;
        for (key, lease) in old {
            if self.peers.contains_key(&key) {
                self.lingering.remove(&key);
            } else if key != self.own.key {
                if let std::collections::btree_map::Entry::Vacant(e) = self.lingering.entry(key) {
                    tracing::info!(
                        "the lease {key} is missing from a re-list of the store; keeping its \
                         route for {RELIST_GRACE:?} in case its node writes it again"
                    );
                    e.insert(until);
                }
                self.peers.insert(key, lease);
            }
        }
        lost
    }

    fn renew(&mut self) {
        let ttl = (self.own.expiry != Expiry::Reservation).then_some(self.manager.options.ttl);
        match self
            .manager
            .store
            .renew(&self.own.key, &self.own.attrs, ttl)
        {
            Ok(expiry) => {
                self.own.expiry = expiry;
                self.stats.renewals.fetch_add(1, Ordering::Relaxed);
                self.schedule_renewal();
                tracing::info!("renewed the lease {} ({:?})", self.own.key, expiry);
            }
            Err(StoreError::Taken { holder, .. }) => {
                self.stats.renew_failures.fetch_add(1, Ordering::Relaxed);
                let why = format!("our lease {} is now held by {holder}", self.own.key);
                self.reacquire(&why);
            }
            Err(e) => {
                self.stats.renew_failures.fetch_add(1, Ordering::Relaxed);
                let retry = self.manager.options.renew_retry;
                tracing::error!(
                    "renewing the lease {} failed: {e}; retrying in {retry:?}",
                    self.own.key
                );
                self.renew_at = Instant::now() + retry;
            }
        }
    }

    /// Acquires a lease again (the same subnet if it is free), retrying until it works or
    /// the manager stops, and reports it.
    fn reacquire(&mut self, why: &str) {
        tracing::warn!("{why}; acquiring a lease again");
        self.manager.options.previous = Some(self.own.key);
        while !self.stopped() {
            match self.manager.acquire() {
                Ok(own) => {
                    if own.key != self.own.key {
                        tracing::warn!("our subnet changed from {} to {}", self.own.key, own.key);
                    }
                    self.peers.remove(&own.key);
                    self.lingering.remove(&own.key);
                    self.own = own.clone();
                    self.schedule_renewal();
                    self.stats.reacquisitions.fetch_add(1, Ordering::Relaxed);
                    let _ = self.tx.send(ManagerEvent::OwnLease(own));
                    return;
                }
                Err(e) => {
                    tracing::error!("{e}; retrying in {STORE_RETRY:?}");
                    self.stop.sleep(STORE_RETRY);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_lease_ttl_knob() {
        let t = TestLeaseTtl::parse("4").expect("4 s");
        assert_eq!(t.ttl, Duration::from_secs(4));
        assert_eq!(t.renew_margin, Duration::from_secs(2));
        assert_eq!(t.renew_retry, Duration::from_secs(1));
        let mut options = ManagerOptions::new(LeaseAttrs::udp(Ipv4Addr::new(10, 0, 0, 1), None));
        t.apply(&mut options);
        assert_eq!(
            (options.ttl, options.renew_margin, options.renew_retry),
            (t.ttl, t.renew_margin, t.renew_retry)
        );
        assert!(TestLeaseTtl::parse(" 86400 ").is_ok());
        for bad in [
            "0",
            "1",
            "86401",
            "-3",
            "2.5",
            "",
            "4s",
            "18446744073709551616",
        ] {
            let e = TestLeaseTtl::parse(bad).expect_err(bad);
            assert!(
                e.starts_with(TEST_LEASE_TTL_VAR) && e.contains("test-only"),
                "{bad}: {e}"
            );
        }
    }

    /// IPv6-only nodes all publish PublicIP 0.0.0.0: each finds its own lease again by its
    /// PublicIPv6 and never takes another's; a dual-stack node is still found by its PublicIP.
    #[test]
    fn ipv6_only_nodes_find_their_own_lease_by_public_ipv6() {
        let dir = std::env::temp_dir().join(format!("wfl-mgr-v6-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store: Arc<dyn LeaseStore> =
            Arc::new(crate::lease::DirStore::open(&dir).expect("store"));
        let config = NetworkConfig::parse(
            r#"{"Network": "10.5.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:5::/48"}"#,
        )
        .expect("config");
        let acquire = |attrs: LeaseAttrs| {
            SubnetManager::new(
                Arc::clone(&store),
                config.clone(),
                ManagerOptions::new(attrs),
            )
            .acquire()
            .expect("acquire")
        };
        let only6 = |last: u16| {
            LeaseAttrs::udp(
                Ipv4Addr::UNSPECIFIED,
                Some(std::net::Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, last)),
            )
        };
        let dual = LeaseAttrs::udp(
            Ipv4Addr::new(192, 168, 0, 3),
            Some(std::net::Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 3)),
        );
        let (a, b, c) = (acquire(only6(1)), acquire(only6(2)), acquire(dual.clone()));
        assert_ne!(
            a.key, b.key,
            "a second IPv6-only node took the first one's lease"
        );
        assert_ne!(a.key, c.key);
        assert_eq!(a.attrs.holder().to_string(), "fd99::1");
        assert_eq!(acquire(only6(2)).key, b.key, "b's restart reuses its lease");
        assert_eq!(acquire(only6(1)).key, a.key);
        assert_eq!(acquire(dual).key, c.key);
        assert!(a
            .attrs
            .to_json()
            .starts_with(r#"{"PublicIP":"0.0.0.0","PublicIPv6":"fd99::1""#));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn renew_margin_range() {
        assert_eq!(renew_margin_from_minutes(60), Ok(DEFAULT_RENEW_MARGIN));
        assert_eq!(renew_margin_from_minutes(1), Ok(Duration::from_secs(60)));
        assert!(renew_margin_from_minutes(1439).is_ok());
        assert!(renew_margin_from_minutes(0).is_err());
        let e = renew_margin_from_minutes(1440).expect_err("too long");
        assert!(e.contains("--subnet-lease-renew-margin"), "{e}");
    }

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..64 {
            let m = random_vtep_mac();
            assert_eq!(m[0] & 0x01, 0, "multicast bit set: {m:x?}");
            assert_eq!(m[0] & 0x02, 0x02, "not locally administered: {m:x?}");
        }
        assert_ne!(random_vtep_mac(), random_vtep_mac());
    }
}
