//! The local directory lease store (`--lease-dir DIR`): flannel's keys as files.
//!
//! Layout:
//! - `DIR/config`: the network config, as in etcd's `<prefix>/config`.
//! - `DIR/subnets/<ip>-<len>` (dual stack `<ip>-<len>&<ip6>-<len6>`): one lease, flannel's
//!   `LeaseAttrs` JSON with one more field at the end, `"Expiration"`, the time the lease ends
//!   in RFC 3339 UTC (`"2026-11-02T10:00:00Z"`, the name and format Go gives flannel's
//!   `Lease.Expiration`). A file without `Expiration` is a reservation and never expires. An
//!   expired file counts as absent: listing and watching skip it, and creating its key
//!   replaces it.
//! - `DIR/.lock`: every write (create, renew, delete, config) holds an exclusive `flock` on it,
//!   so the read-check-write of create and renew is atomic between processes: of two weftds
//!   creating one key, one gets [`StoreError::Exists`].
//! - Files are written whole: a temporary `DIR/subnets/.tmp-<pid>-<n>` created with `O_EXCL`,
//!   then renamed over the key, so a reader never sees half a lease. Names starting with `.`
//!   are ignored.
//!
//! Several processes on one machine share a directory safely. Files written by hand (as an
//! operator or a test would, `echo '{..}' > DIR/subnets/10.5.3.0-24`) are picked up too; an
//! empty file is taken as one being written and skipped.
//!
//! Watching uses inotify on `DIR/subnets`; the first batch is always a
//! [`WatchBatch::Resync`] (a directory has no history to replay), later ones are events,
//! including a `Delete` when a lease's `Expiration` passes. An inotify queue overflow gives
//! another `Resync`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::{flock, FlockOperation};
use serde_json::Value;

use super::attrs::{field, LeaseAttrs};
use super::{
    time, Expiry, InvalidLease, Lease, LeaseStore, LeaseWatch, Listing, StoreError, SubnetKey,
    WatchBatch, WatchEvent,
};
use crate::Stop;

/// The lock file's name inside the directory.
const LOCK_FILE: &str = ".lock";
/// The subdirectory holding the leases.
const SUBNETS_DIR: &str = "subnets";
/// The config file's name.
const CONFIG_FILE: &str = "config";
/// inotify read buffer: room for many events with names (each is 16 bytes + name).
const INOTIFY_BUF_LEN: usize = 16 * 1024;

/// Counter making temporary file names unique within the process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// flannel's lease schema in a local directory (see the module documentation).
#[derive(Debug, Clone)]
pub struct DirStore {
    dir: PathBuf,
    subnets: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl DirStore {
    /// Opens (creating `DIR` and `DIR/subnets` if needed) the store in `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<DirStore, StoreError> {
        let dir = dir.into();
        let subnets = dir.join(SUBNETS_DIR);
        fs::create_dir_all(&subnets).map_err(io_err("create", &subnets))?;
        Ok(DirStore { dir, subnets })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn lease_path(&self, key: &SubnetKey) -> PathBuf {
        self.subnets.join(key.to_string())
    }

    /// Takes the store's write lock; released when the returned file is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err("lock", &path)(e.into()))?;
        Ok(file)
    }

    /// Writes `contents` to `path` whole: a temporary file (O_EXCL) renamed over it.
    fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(contents)?;
            f.sync_data()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(io_err("write", path))
    }

    fn write_lease(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        expires: Option<SystemTime>,
    ) -> Result<(), StoreError> {
        let mut json = attrs.to_json();
        if let Some(t) = expires {
            json.pop(); // the closing brace
            json.push_str(",\"Expiration\":\"");
            json.push_str(&time::format(t));
            json.push_str("\"}");
        }
        json.push('\n');
        DirStore::write_atomic(&self.lease_path(key), json.as_bytes())
    }
}

/// `now + ttl`, truncated to whole seconds as the file stores it.
fn expiry_after(ttl: Duration) -> SystemTime {
    let t = SystemTime::now() + ttl;
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Reads one lease file. `Ok(None)`: absent, empty, or expired.
fn read_lease(path: &Path, key: SubnetKey) -> Result<Option<Lease>, InvalidLease> {
    let invalid = |reason: String| InvalidLease {
        key: path.display().to_string(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(format!("cannot read: {e}"))),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid("not a JSON object".to_owned()));
    };
    let attrs = LeaseAttrs::from_map(&map).map_err(|e| invalid(e.to_string()))?;
    let expiry = match field(&map, "Expiration") {
        None | Some(Value::Null) => Expiry::Reservation,
        Some(Value::String(s)) => match time::parse(s) {
            Some(t) => Expiry::At(t),
            None => {
                return Err(invalid(format!(
                    "Expiration: {s:?} is not an RFC 3339 UTC time"
                )))
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "Expiration: expected a string, found {other}"
            )))
        }
    };
    if let Expiry::At(t) = expiry {
        if t <= SystemTime::now() {
            return Ok(None);
        }
    }
    Ok(Some(Lease { key, attrs, expiry }))
}

/// Reads the lease file `name` in `subnets`: `Ok(None)` for names that are not leases
/// (dot files) or files that are absent, empty or expired.
fn read_entry(subnets: &Path, name: &str) -> Result<Option<Lease>, InvalidLease> {
    if name.starts_with('.') {
        return Ok(None);
    }
    let path = subnets.join(name);
    let key = match SubnetKey::parse(name) {
        Ok(k) => k,
        Err(e) => {
            // Only report names that are files with content, not transient editor files.
            return match fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() > 0 => Err(InvalidLease {
                    key: path.display().to_string(),
                    reason: e.to_string(),
                }),
                _ => Ok(None),
            };
        }
    };
    read_lease(&path, key)
}

fn list_dir(subnets: &Path) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    let entries = fs::read_dir(subnets).map_err(io_err("list", subnets))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", subnets))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            listing.invalid.push(InvalidLease {
                key: entry.path().display().to_string(),
                reason: "the file name is not UTF-8".to_owned(),
            });
            continue;
        };
        match read_entry(subnets, &name) {
            Ok(Some(lease)) => listing.leases.push(lease),
            Ok(None) => {}
            Err(invalid) => listing.invalid.push(invalid),
        }
    }
    listing.leases.sort_by_key(|l| l.key);
    Ok(listing)
}

impl LeaseStore for DirStore {
    fn describe(&self) -> String {
        format!("lease directory {}", self.dir.display())
    }

    fn config_location(&self) -> String {
        self.dir.join(CONFIG_FILE).display().to_string()
    }

    fn config(&self) -> Result<String, StoreError> {
        let path = self.dir.join(CONFIG_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::ConfigMissing {
                location: path.display().to_string(),
            }),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    fn set_config(&self, text: &str) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        DirStore::write_atomic(&self.dir.join(CONFIG_FILE), text.as_bytes())
    }

    fn list(&self) -> Result<Listing, StoreError> {
        list_dir(&self.subnets)
    }

    fn create(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Duration,
    ) -> Result<SystemTime, StoreError> {
        let _lock = self.lock()?;
        match read_lease(&self.lease_path(key), *key) {
            // A live lease, or a file that is not a valid lease: the key is held, as a
            // non-empty etcd key would be.
            Ok(Some(_)) | Err(_) => return Err(StoreError::Exists { key: *key }),
            Ok(None) => {}
        }
        let expires = expiry_after(ttl);
        self.write_lease(key, attrs, Some(expires))?;
        Ok(expires)
    }

    fn renew(
        &self,
        key: &SubnetKey,
        attrs: &LeaseAttrs,
        ttl: Option<Duration>,
    ) -> Result<Expiry, StoreError> {
        let _lock = self.lock()?;
        if let Ok(Some(current)) = read_lease(&self.lease_path(key), *key) {
            if current.attrs.node_ip() != attrs.node_ip() {
                return Err(StoreError::Taken {
                    key: *key,
                    holder: current.attrs.holder(),
                });
            }
        }
        let expires = ttl.map(expiry_after);
        self.write_lease(key, attrs, expires)?;
        Ok(expires.map_or(Expiry::Reservation, Expiry::At))
    }

    fn delete(&self, key: &SubnetKey) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let path = self.lease_path(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("delete", &path)(e)),
        }
    }

    fn watch(&self, _revision: i64) -> Result<Box<dyn LeaseWatch>, StoreError> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)
            .map_err(|e| io_err("inotify_init", &self.subnets)(e.into()))?;
        inotify::add_watch(
            &fd,
            &self.subnets,
            WatchFlags::CREATE
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::MOVED_TO
                | WatchFlags::MOVED_FROM
                | WatchFlags::DELETE
                | WatchFlags::ONLYDIR,
        )
        .map_err(|e| io_err("inotify_add_watch", &self.subnets)(e.into()))?;
        Ok(Box::new(DirWatch {
            subnets: self.subnets.clone(),
            fd,
            buf: vec![MaybeUninit::uninit(); INOTIFY_BUF_LEN],
            known: HashMap::new(),
            need_resync: true,
            reconnects: 0,
        }))
    }
}

/// A watch of `DIR/subnets` (see the module documentation).
struct DirWatch {
    subnets: PathBuf,
    fd: OwnedFd,
    buf: Vec<MaybeUninit<u8>>,
    /// The leases the watcher has been told about.
    known: HashMap<SubnetKey, Lease>,
    need_resync: bool,
    reconnects: u64,
}

impl DirWatch {
    fn resync(&mut self) -> Result<WatchBatch, StoreError> {
        let listing = list_dir(&self.subnets)?;
        self.known = listing.leases.iter().map(|l| (l.key, l.clone())).collect();
        self.need_resync = false;
        Ok(WatchBatch::Resync(listing))
    }

    /// Deletes for known leases whose expiry has passed.
    fn expire(&mut self, events: &mut Vec<WatchEvent>) {
        let now = SystemTime::now();
        let expired: Vec<SubnetKey> = self
            .known
            .values()
            .filter(|l| matches!(l.expiry, Expiry::At(t) if t <= now))
            .map(|l| l.key)
            .collect();
        for key in expired {
            self.known.remove(&key);
            events.push(WatchEvent::Delete(key));
        }
    }

    /// How long until the next known lease expires.
    fn until_next_expiry(&self) -> Option<Duration> {
        let now = SystemTime::now();
        self.known
            .values()
            .filter_map(|l| match l.expiry {
                Expiry::At(t) => Some(t.duration_since(now).unwrap_or(Duration::ZERO)),
                _ => None,
            })
            .min()
    }

    /// Drains the inotify queue: the names that changed, or `None` after a queue overflow.
    fn drain(&mut self) -> Result<Option<Vec<String>>, StoreError> {
        let mut names: Vec<String> = Vec::new();
        let mut overflow = false;
        let mut reader = inotify::Reader::new(&self.fd, &mut self.buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                        overflow = true;
                    }
                    if let Some(name) = event.file_name() {
                        let name = name.to_string_lossy().into_owned();
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(io_err("read inotify events of", &self.subnets)(e.into()));
                }
            }
        }
        Ok((!overflow).then_some(names))
    }

    fn changes(&mut self, names: Vec<String>, events: &mut Vec<WatchEvent>) {
        for name in names {
            match read_entry(&self.subnets, &name) {
                Ok(Some(lease)) => {
                    if self.known.get(&lease.key) != Some(&lease) {
                        self.known.insert(lease.key, lease.clone());
                        events.push(WatchEvent::Put(lease));
                    }
                }
                Ok(None) => {
                    if let Ok(key) = SubnetKey::parse(&name) {
                        // Absent or expired now; an empty file being written keeps its old
                        // lease until its content arrives.
                        let path = self.subnets.join(&name);
                        let empty = fs::metadata(&path).is_ok_and(|m| m.len() == 0);
                        if !empty && self.known.remove(&key).is_some() {
                            events.push(WatchEvent::Delete(key));
                        }
                    }
                }
                Err(invalid) => {
                    if let Ok(key) = SubnetKey::parse(&name) {
                        if self.known.remove(&key).is_some() {
                            events.push(WatchEvent::Delete(key));
                        }
                    }
                    events.push(WatchEvent::Invalid(invalid));
                }
            }
        }
    }
}

impl LeaseWatch for DirWatch {
    fn next(&mut self, timeout: Duration, stop: &Stop) -> Result<Option<WatchBatch>, StoreError> {
        if self.need_resync {
            return self.resync().map(Some);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let mut events = Vec::new();
            self.expire(&mut events);
            if !events.is_empty() {
                return Ok(Some(WatchBatch::Events {
                    events,
                    revision: 0,
                }));
            }
            let now = Instant::now();
            if now >= deadline && timeout > Duration::ZERO {
                return Ok(None);
            }
            let mut wait = deadline.saturating_duration_since(now);
            if let Some(e) = self.until_next_expiry() {
                // Wake just after the expiry (whole seconds in the file).
                wait = wait.min(e + Duration::from_millis(10));
            }
            let ts = Timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            };
            let mut fds = [
                PollFd::new(&self.fd, PollFlags::IN),
                PollFd::new(stop.event(), PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(io_err("poll inotify of", &self.subnets)(e.into())),
            }
            if stop.requested() {
                return Ok(None);
            }
            match self.drain()? {
                None => {
                    self.reconnects += 1;
                    return self.resync().map(Some);
                }
                Some(names) => self.changes(names, &mut events),
            }
            if !events.is_empty() {
                return Ok(Some(WatchBatch::Events {
                    events,
                    revision: 0,
                }));
            }
            if timeout == Duration::ZERO || Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    fn reconnects(&self) -> u64 {
        self.reconnects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wfl-dir-{name}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn key(s: &str) -> SubnetKey {
        SubnetKey::parse(s).expect("key")
    }

    #[test]
    fn file_format_is_flannels_json_plus_expiration() {
        let d = tmpdir("format");
        let store = DirStore::open(&d).expect("open");
        let k = key("10.5.3.0-24");
        let attrs = LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, 3), None);
        let exp = store
            .create(&k, &attrs, Duration::from_secs(3600))
            .expect("create");
        let text = fs::read_to_string(d.join("subnets/10.5.3.0-24")).expect("read");
        assert_eq!(
            text,
            format!(
                "{{\"PublicIP\":\"192.168.0.3\",\"PublicIPv6\":null,\"Expiration\":\"{}\"}}\n",
                time::format(exp)
            )
        );
        let listing = store.list().expect("list");
        assert_eq!(listing.leases.len(), 1);
        assert_eq!(listing.leases[0].expiry, Expiry::At(exp));
        assert!(matches!(
            store.create(&k, &attrs, Duration::from_secs(3600)),
            Err(StoreError::Exists { .. })
        ));
        // Renew by another PublicIP is refused; by ours it works; a reservation has no expiry.
        let other = LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, 4), None);
        assert!(matches!(
            store.renew(&k, &other, Some(Duration::from_secs(60))),
            Err(StoreError::Taken { holder, .. }) if holder == IpAddr::V4(Ipv4Addr::new(192, 168, 0, 3))
        ));
        assert_eq!(
            store.renew(&k, &attrs, None).expect("renew"),
            Expiry::Reservation
        );
        assert_eq!(
            store.list().expect("list").leases[0].expiry,
            Expiry::Reservation
        );
        store.delete(&k).expect("delete");
        store.delete(&k).expect("delete twice");
        assert!(store.list().expect("list").leases.is_empty());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn expired_leases_are_absent_and_replaceable() {
        let d = tmpdir("expired");
        let store = DirStore::open(&d).expect("open");
        fs::write(
            d.join("subnets/10.5.4.0-24"),
            r#"{"PublicIP":"192.168.0.9","PublicIPv6":null,"Expiration":"2001-01-01T00:00:00Z"}"#,
        )
        .expect("write");
        fs::write(d.join("subnets/garbage"), "x").expect("write");
        fs::write(d.join("subnets/10.5.5.0-24"), "{").expect("write");
        let listing = store.list().expect("list");
        assert!(listing.leases.is_empty());
        assert_eq!(listing.invalid.len(), 2, "{:?}", listing.invalid);
        let attrs = LeaseAttrs::udp(Ipv4Addr::new(192, 168, 0, 3), None);
        store
            .create(&key("10.5.4.0-24"), &attrs, Duration::from_secs(60))
            .expect("replaces the expired lease");
        // An unparseable value holds its key, as in etcd.
        assert!(store
            .create(&key("10.5.5.0-24"), &attrs, Duration::from_secs(60))
            .is_err());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn config_round_trip() {
        let d = tmpdir("config");
        let store = DirStore::open(&d).expect("open");
        assert!(matches!(
            store.config(),
            Err(StoreError::ConfigMissing { .. })
        ));
        store
            .set_config(r#"{"Network":"10.5.0.0/16"}"#)
            .expect("set");
        assert_eq!(
            store.config().expect("config"),
            r#"{"Network":"10.5.0.0/16"}"#
        );
        let _ = fs::remove_dir_all(&d);
    }
}
