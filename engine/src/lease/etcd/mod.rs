//! The etcd v3 lease store: flannel's schema, what flanneld reads and writes.
//!
//! - Config: `Get(<prefix>/config)`.
//! - Every read is linearizable (`RangeRequest.serializable` is never set): a member cut off
//!   from the quorum cannot answer it from its stale copy, and the client
//!   ([`rpc::Client::read`]) sends it on to the next endpoint.
//! - List: `Get(<prefix>/subnets/, prefix)`; the header revision is the listing's revision.
//!   Each key's TTL is not read (flanneld asks `TimeToLive` per key; weft has no use for a
//!   peer's expiry), so listed leases are [`Expiry::Leased`] or, without an etcd lease,
//!   [`Expiry::Reservation`].
//! - Create (flannel's `createSubnet`): `Grant(ttl)`, then
//!   `Txn(If(Version(key) == 0) Then Put(key, value, lease))`; a failed compare revokes the
//!   grant and is [`StoreError::Exists`].
//! - Renew (flannel's `updateSubnet`: a new grant, then a put with it; the old lease expires
//!   by itself) made safe: it reads the key first and refuses ([`StoreError::Taken`]) when
//!   another `PublicIP` holds it; the put is a transaction on the key's `ModRevision` (or on
//!   `Version == 0` when it is gone: expired while etcd was out of reach, which is logged,
//!   and the same subnet is written again as flanneld's renewal does), retried a few times
//!   if the key changes in between.
//! - Watch: `Watch(<prefix>/subnets/, prefix, from revision + 1)`. A compacted start revision
//!   (`compact_revision` set, watch cancelled) re-lists and delivers
//!   [`WatchBatch::Resync`], then watches on from the new revision. A broken stream (etcd
//!   down, connection reset) is re-created from the revision after the last event delivered,
//!   with backoff 100 ms doubling to 5 s (flanneld's), and counted in
//!   [`LeaseWatch::reconnects`]. A store found behind the watch's revision when a stream
//!   starts (restored from an older or empty data dir) is re-listed like a compaction. A
//!   watch canceled for another reason (a refused token: authenticate again; permission
//!   denied) is reconnected with the same backoff. Watches require a leader, so a member cut
//!   off from the quorum ends the stream and the watch reconnects to the next endpoint.
//!
//! The client ([`rpc`]) is a small async gRPC client on tonic, with the protobuf messages
//! written by hand ([`pb`]): no `protoc`, no build script. It fails over between the
//! endpoints and re-authenticates when etcd refuses its token (see [`rpc`]). [`EtcdStore`]
//! owns a small tokio runtime (one worker thread) and offers the blocking [`LeaseStore`] API,
//! so callers need no runtime of their own. Options: endpoints, prefix, TLS (CA file;
//! certificate and key files for a client identity; `https://` endpoints), user name and
//! password, all as flanneld's `--etcd-*` flags.

mod pb;
mod rpc;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use tokio::runtime::Runtime;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use pb::{
    prefix_range_end, Compare, DeleteRangeRequest, EventType, KeyValue, LeaseGrantRequest,
    LeaseRevokeRequest, PutRequest, RangeRequest, Request, RequestOp, TxnRequest,
    WatchCreateRequest, DELETE_RANGE, LEASE_GRANT, LEASE_REVOKE, PUT, RANGE, TXN,
};
pub use rpc::EtcdError;
use rpc::{Client, Credentials, Watching};

use super::attrs::LeaseAttrs;
use super::{
    Expiry, InvalidLease, Lease, LeaseStore, LeaseWatch, Listing, StoreError, SubnetKey,
    WatchBatch, WatchEvent, DEFAULT_PREFIX,
};
use crate::Stop;

/// flanneld's default `--etcd-endpoints`.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["http://127.0.0.1:4001", "http://127.0.0.1:2379"];
/// Watch reconnect backoff, first step (flanneld's).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Watch reconnect backoff, cap (flanneld's).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often renew re-reads and retries when the key changes under it.
const RENEW_ATTEMPTS: usize = 3;

/// How to reach etcd (flanneld's `--etcd-*` flags).
#[derive(Clone)]
pub struct EtcdOptions {
    /// `--etcd-endpoints`.
    pub endpoints: Vec<String>,
    /// `--etcd-prefix` (no trailing slash).
    pub prefix: String,
    /// `--etcd-cafile`.
    pub ca_file: Option<PathBuf>,
    /// `--etcd-certfile`.
    pub cert_file: Option<PathBuf>,
    /// `--etcd-keyfile`.
    pub key_file: Option<PathBuf>,
    /// `--etcd-username`.
    pub username: Option<String>,
    /// `--etcd-password`.
    pub password: Option<String>,
    /// The deadline of one request (connection set-up included).
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> EtcdOptions {
        EtcdOptions {
            endpoints: DEFAULT_ENDPOINTS.iter().map(|s| (*s).to_owned()).collect(),
            prefix: DEFAULT_PREFIX.to_owned(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

/// flannel's lease schema in etcd v3 (see the module documentation).
pub struct EtcdStore {
    runtime: Runtime,
    client: Arc<Client>,
    options: EtcdOptions,
    endpoints: String,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn read_file(what: &str, path: &PathBuf) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::EtcdSetup(format!("cannot read {what} {}: {e}", path.display())))
}

impl EtcdStore {
    /// Builds the client. With a user name it authenticates at once (and fails if etcd is
    /// unreachable); without, connections are made on first use.
    pub fn connect(options: EtcdOptions) -> Result<EtcdStore, StoreError> {
        let endpoints = options.endpoints.join(",");
        let tls = tls_config(&options)?;
        let credentials = options.username.as_ref().map(|user| Credentials {
            user: user.clone(),
            password: options.password.clone().unwrap_or_default(),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weft-etcd")
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::EtcdSetup(format!("cannot start the etcd client runtime: {e}"))
            })?;
        let client = {
            // tonic spawns each channel's worker on the current runtime.
            let _inside = runtime.enter();
            Client::new(
                &options.endpoints,
                tls,
                options.request_timeout,
                credentials,
            )
            .map_err(StoreError::EtcdSetup)?
        };
        runtime
            .block_on(client.authenticate())
            .map_err(etcd_err("authenticate"))?;
        Ok(EtcdStore {
            runtime,
            client: Arc::new(client),
            options,
            endpoints,
        })
    }

    fn config_key(&self) -> String {
        format!("{}/config", self.options.prefix)
    }

    fn subnets_prefix(&self) -> String {
        format!("{}/subnets/", self.options.prefix)
    }

    fn lease_key(&self, key: &SubnetKey) -> String {
        format!("{}{key}", self.subnets_prefix())
    }

    /// Reads one key's value and mod revision.
    fn get_one(&self, key: &str) -> Result<Option<(Vec<u8>, i64, i64)>, StoreError> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            range_end: Vec::new(),
        };
        let resp = self
            .runtime
            .block_on(self.client.read(&RANGE, request))
            .map_err(etcd_err("get"))?;
        Ok(resp
            .kvs
            .into_iter()
            .next()
            .map(|kv| (kv.value, kv.mod_revision, kv.lease)))
    }

    /// Grants an etcd lease of `ttl`; returns its id and granted TTL.
    fn grant(&self, ttl: Duration) -> Result<(i64, Duration), StoreError> {
        let ttl = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let resp = self
            .runtime
            .block_on(self.client.call(&LEASE_GRANT, LeaseGrantRequest { ttl }))
            .map_err(etcd_err("grant lease"))?;
        Ok((resp.id, Duration::from_secs(resp.ttl.max(0) as u64)))
    }

    fn revoke(&self, id: i64) {
        let request = LeaseRevokeRequest { id };
        if let Err(e) = self
            .runtime
            .block_on(self.client.call(&LEASE_REVOKE, request))
        {
            tracing::debug!("etcd: revoking unused lease {id:x} failed: {e}");
        }
    }

    /// `Txn(If(compare) Then Put(key, value, lease))`; whether the compare held.
    fn put_if(
        &self,
        compare: Compare,
        key: &str,
        value: String,
        lease: i64,
    ) -> Result<bool, EtcdError> {
        let put = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.into_bytes(),
            lease,
        };
        let txn = TxnRequest {
            compare: vec![compare],
            success: vec![RequestOp {
                request: Some(Request::Put(put)),
            }],
        };
        let resp = self.runtime.block_on(self.client.call(&TXN, txn))?;
        Ok(resp.succeeded)
    }
}

/// Reads the TLS files into tonic's settings; `None` without any.
fn tls_config(options: &EtcdOptions) -> Result<Option<ClientTlsConfig>, StoreError> {
    let mut tls = None;
    if let Some(ca) = &options.ca_file {
        let pem = read_file("the etcd CA file", ca)?;
        tls = Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)));
    }
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            let identity = Identity::from_pem(
                read_file("the etcd certificate", cert)?,
                read_file("the etcd key", key)?,
            );
            tls = Some(tls.unwrap_or_default().identity(identity));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::EtcdSetup(
                "--etcd-certfile and --etcd-keyfile go together: give both or neither".to_owned(),
            ))
        }
    }
    Ok(tls)
}

fn etcd_err(op: &'static str) -> impl FnOnce(EtcdError) -> StoreError {
    move |source| StoreError::Etcd { op, source }
}

/// Turns one listed or watched key-value into a lease.
fn kv_to_lease(prefix: &str, kv: &KeyValue) -> Result<Lease, InvalidLease> {
    let full = String::from_utf8_lossy(&kv.key).into_owned();
    let invalid = |reason: String| InvalidLease {
        key: full.clone(),
        reason,
    };
    let name = full
        .strip_prefix(prefix)
        .ok_or_else(|| invalid("not under the subnets prefix".to_owned()))?;
    let key = SubnetKey::parse(name).map_err(|e| invalid(e.to_string()))?;
    let attrs = LeaseAttrs::from_json(&kv.value).map_err(|e| invalid(e.to_string()))?;
    let expiry = if kv.lease == 0 {
        Expiry::Reservation
    } else {
        Expiry::Leased
    };
    Ok(Lease { key, attrs, expiry })
}

async fn list_async(client: &Client, prefix: &str) -> Result<Listing, EtcdError> {
    let request = RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: prefix_range_end(prefix.as_bytes()),
    };
    let resp = client.read(&RANGE, request).await?;
    let mut listing = Listing {
        revision: resp.header.map_or(0, |h| h.revision),
        ..Listing::default()
    };
    for kv in &resp.kvs {
        match kv_to_lease(prefix, kv) {
            Ok(lease) => listing.leases.push(lease),
            Err(invalid) => listing.invalid.push(invalid),
        }
    }
    Ok(listing)
}

impl LeaseStore for EtcdStore {
    fn describe(&self) -> String {
        format!("etcd {} {}", self.endpoints, self.options.prefix)
    }

    fn config_location(&self) -> String {
        format!("etcd key {}", self.config_key())
    }

    fn config(&self) -> Result<String, StoreError> {
        let key = self.config_key();
        match self.get_one(&key)? {
            Some((value, _, _)) => Ok(String::from_utf8_lossy(&value).into_owned()),
            None => Err(StoreError::ConfigMissing {
                location: self.config_location(),
            }),
        }
    }

    fn set_config(&self, text: &str) -> Result<(), StoreError> {
        let request = PutRequest {
            key: self.config_key().into_bytes(),
            value: text.as_bytes().to_vec(),
            lease: 0,
        };
        self.runtime
            .block_on(self.client.call(&PUT, request))
            .map_err(etcd_err("put config"))?;
        Ok(())
    }

    fn list(&self) -> Result<Listing, StoreError> {
        let prefix = self.subnets_prefix();
        self.runtime
            .block_on(list_async(&self.client, &prefix))
            .map_err(etcd_err("list subnets"))
    }

    fn create(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<SystemTime, StoreError> {
        let etcd_key = self.lease_key(key);
        let (id, granted) = self.grant(ttl)?;
        let absent = Compare::version_is(&etcd_key, 0);
        match self.put_if(absent, &etcd_key, attrs.to_json(), id) {
            Ok(true) => Ok(SystemTime::now() + granted),
            Ok(false) => {
                self.revoke(id);
                Err(StoreError::Exists { key: *key })
            }
            Err(e) => {
                self.revoke(id);
                Err(etcd_err("create lease")(e))
            }
        }
    }

    fn renew(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<Expiry, StoreError> {
        let etcd_key = self.lease_key(key);
        for _ in 0..RENEW_ATTEMPTS {
            let compare = match self.get_one(&etcd_key)? {
                Some((value, mod_revision, _)) => {
                    if let Ok(current) = LeaseAttrs::from_json(&value) {
                        if current.node_ip() != attrs.node_ip() {
                            return Err(StoreError::Taken {
                                key: *key,
                                holder: current.holder(),
                            });
                        }
                    }
                    Compare::mod_revision_is(&etcd_key, mod_revision)
                }
                None => {
                    tracing::warn!(
                        "etcd: our lease {etcd_key} is gone (it expired: not renewed within its \
                         TTL, e.g. while etcd was unreachable; or someone deleted it); writing \
                         the same subnet again"
                    );
                    Compare::version_is(&etcd_key, 0)
                }
            };
            let grant = match ttl {
                Some(ttl) => Some(self.grant(ttl)?),
                None => None,
            };
            let lease = grant.map_or(0, |(id, _)| id);
            match self.put_if(compare, &etcd_key, attrs.to_json(), lease) {
                Ok(true) => {
                    return Ok(match grant {
                        Some((_, granted)) => Expiry::At(SystemTime::now() + granted),
                        None => Expiry::Reservation,
                    });
                }
                Ok(false) => {
                    // The key changed between the read and the write: look again.
                    if let Some((id, _)) = grant {
                        self.revoke(id);
                    }
                }
                Err(e) => {
                    if let Some((id, _)) = grant {
                        self.revoke(id);
                    }
                    return Err(etcd_err("renew lease")(e));
                }
            }
        }
        Err(StoreError::EtcdSetup(format!(
            "renewing {etcd_key}: the key kept changing under us ({RENEW_ATTEMPTS} attempts)"
        )))
    }

    fn delete(&self, key: &SubnetKey) -> Result<(), StoreError> {
        let request = DeleteRangeRequest {
            key: self.lease_key(key).into_bytes(),
        };
        self.runtime
            .block_on(self.client.call(&DELETE_RANGE, request))
            .map_err(etcd_err("delete lease"))?;
        Ok(())
    }

    fn watch(&self, revision: i64) -> Result<Box<dyn LeaseWatch>, StoreError> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let reconnects = Arc::new(AtomicU64::new(0));
        let task = self.runtime.spawn(watch_task(
            Arc::clone(&self.client),
            self.subnets_prefix(),
            revision + 1,
            tx,
            Arc::clone(&reconnects),
        ));
        Ok(Box::new(EtcdWatch {
            rx,
            reconnects,
            task,
        }))
    }
}

/// How one watch stream ended.
enum StreamEnd {
    /// Compacted: re-listed and sent a resync; watch again from the new revision at once.
    Resynced,
    /// Broken, closed or canceled: reconnect after the backoff.
    Broken,
    /// Nobody listens any more.
    Closed,
}

/// The watch loop, on the store's runtime; ends when the receiver is dropped (the task is
/// aborted then) or a send fails.
async fn watch_task(
    client: Arc<Client>,
    prefix: String,
    mut since: i64,
    tx: Sender<WatchBatch>,
    reconnects: Arc<AtomicU64>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut term = 0u64;
    loop {
        let create = WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_range_end(prefix.as_bytes()),
            start_revision: since,
        };
        let end = match client.watch(create).await {
            Ok(mut watching) => {
                let mut ctx = Follow {
                    client: &client,
                    prefix: &prefix,
                    since: &mut since,
                    tx: &tx,
                    backoff: &mut backoff,
                    reconnects: &reconnects,
                    term: &mut term,
                };
                follow(&mut watching, &mut ctx).await
            }
            Err(e) => {
                tracing::warn!(
                    "etcd watch of {prefix} from revision {since} failed: {e}; retrying in \
                     {backoff:?}"
                );
                StreamEnd::Broken
            }
        };
        match end {
            StreamEnd::Closed => return,
            StreamEnd::Resynced => {}
            StreamEnd::Broken => {
                reconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The watch loop's state that [`follow`] updates.
struct Follow<'a> {
    client: &'a Client,
    prefix: &'a str,
    since: &'a mut i64,
    tx: &'a Sender<WatchBatch>,
    backoff: &'a mut Duration,
    reconnects: &'a AtomicU64,
    /// The highest raft term seen.
    term: &'a mut u64,
}

/// Forwards one watch stream's events until it ends.
async fn follow(watching: &mut Watching, ctx: &mut Follow<'_>) -> StreamEnd {
    let (client, prefix, tx) = (ctx.client, ctx.prefix, ctx.tx);
    let since = &mut *ctx.since;
    let backoff = &mut *ctx.backoff;
    let endpoint = client.endpoint(watching.member);
    loop {
        let resp = match watching.stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => {
                tracing::warn!(
                    "etcd watch of {prefix} at {endpoint} ended; reconnecting from revision \
                     {since}"
                );
                client.move_on(watching.member);
                return StreamEnd::Broken;
            }
            Err(status) => {
                // With hasleader set, a member that lost its leader ends the stream here.
                tracing::warn!(
                    "etcd watch of {prefix} at {endpoint} broke: {} ({:?}); reconnecting from \
                     revision {since} in {backoff:?}",
                    status.message(),
                    status.code()
                );
                client.move_on(watching.member);
                return StreamEnd::Broken;
            }
        };
        *backoff = BACKOFF_MIN;
        let header = resp.header.clone().unwrap_or_default();
        // A store whose revision is behind what we have seen was restored from an older or
        // empty data dir: the history we follow is gone, so start over from a listing.
        // The raft term only grows in one cluster's life; a smaller one is a new cluster.
        let reset = resp.created
            && resp.header.is_some()
            && ((header.revision > 0 && header.revision + 1 < *since)
                || header.raft_term < *ctx.term);
        *ctx.term = (*ctx.term).max(header.raft_term);
        if reset {
            tracing::warn!(
                "etcd at revision {} term {} is behind the watch's revision {since} term {} \
                 (restored from an older or empty data dir?): re-listing",
                header.revision,
                header.raft_term,
                ctx.term
            );
        } else if resp.compact_revision > 0 {
            tracing::warn!(
                "etcd watch of {prefix} fell behind compaction (revision {since} < {}): \
                 re-listing",
                resp.compact_revision
            );
        } else if resp.canceled {
            // Not compaction: etcd refused the watch (a token it no longer takes, no
            // permission on the prefix). Authenticate again if that helps, then retry.
            let reason = &resp.cancel_reason;
            tracing::warn!(
                "etcd at {endpoint} canceled the watch of {prefix}: {reason}; retrying in \
                 {backoff:?}"
            );
            if rpc::token_refusal(reason) {
                if let Err(e) = client.token_refused(watching).await {
                    tracing::warn!("etcd: authenticating again for the watch failed: {e}");
                }
            }
            return StreamEnd::Broken;
        }
        if reset || resp.compact_revision > 0 {
            return match list_async(client, prefix).await {
                Ok(listing) => {
                    *since = listing.revision + 1;
                    // Counted before the send, so a reader of the resync sees it.
                    ctx.reconnects.fetch_add(1, Ordering::Relaxed);
                    if tx.send(WatchBatch::Resync(listing)).is_err() {
                        StreamEnd::Closed
                    } else {
                        StreamEnd::Resynced
                    }
                }
                Err(e) => {
                    tracing::warn!("etcd re-list of {prefix} failed: {e}");
                    StreamEnd::Broken
                }
            };
        }
        if resp.events.is_empty() {
            // A progress notification vouches for everything up to its revision.
            if !resp.created && resp.header.is_some() {
                *since = (*since).max(header.revision + 1);
            }
            continue;
        }
        let mut events = Vec::with_capacity(resp.events.len());
        for event in &resp.events {
            let Some(kv) = &event.kv else { continue };
            *since = (*since).max(kv.mod_revision + 1);
            match EventType::try_from(event.r#type) {
                Ok(EventType::Put) => match kv_to_lease(prefix, kv) {
                    Ok(lease) => events.push(WatchEvent::Put(lease)),
                    Err(invalid) => events.push(WatchEvent::Invalid(invalid)),
                },
                Ok(EventType::Delete) => {
                    let full = String::from_utf8_lossy(&kv.key);
                    // Deleting a key that was never a lease changes nothing.
                    if let Some(Ok(key)) = full.strip_prefix(prefix).map(SubnetKey::parse) {
                        events.push(WatchEvent::Delete(key));
                    }
                }
                // A newer etcd's event type: nothing weft knows how to apply.
                Err(_) => {}
            }
        }
        let revision = *since - 1;
        if !events.is_empty() && tx.send(WatchBatch::Events { events, revision }).is_err() {
            return StreamEnd::Closed;
        }
    }
}

/// A running etcd watch.
struct EtcdWatch {
    rx: Receiver<WatchBatch>,
    reconnects: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LeaseWatch for EtcdWatch {
    fn next(&mut self, timeout: Duration, stop: &Stop) -> Result<Option<WatchBatch>, StoreError> {
        crossbeam_channel::select! {
            recv(self.rx) -> batch => match batch {
                Ok(batch) => Ok(Some(batch)),
                Err(_) => Err(StoreError::WatchClosed(
                    "the etcd watch task stopped".to_owned(),
                )),
            },
            recv(stop.closed()) -> _ => Ok(None),
            default(timeout) => Ok(None),
        }
    }

    fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}
