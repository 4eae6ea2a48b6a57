//! `weftctl scale-leases`: how weftd copes with a big cluster. Writes N leases (default 10 000)
//! into a lease store as flannel nodes write them, starts weftd in lease mode on a testbed
//! node, and measures the time from weftd's start until every lease is a route, and weftd's
//! memory (VmRSS, VmHWM) with that many peers.
//!
//! Contract: [`run`] builds a two-node testbed (network namespaces with the testbed's unique
//! prefix; only node a is used), and either starts its own etcd inside node a (the test kit's
//! launcher, on node a's underlay address; `--store etcd`, the default), or uses a lease directory in the
//! testbed's scratch directory (`--store dir`). The network config is
//! `{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "udp"}}`; lease `i` is
//! `10.<1 + i / 256>.<i % 256>.0/24` with PublicIP `100.64.0.0 + 1 + i` and flannel's udp
//! value, under a 24 h TTL (etcd lease per key, as flanneld). weftd is then started
//! (`--pump-threads 1`) and its control socket's `routes` is polled every
//! [`POLL_INTERVAL`] until all N routes are there ([`Report::routes_after`]), at most
//! [`Config::timeout`]; that reply must then hold exactly the leases' routes, each to its
//! PublicIP ([`check_routes`]), or `run` fails. Everything (weftd, etcd, namespaces, files) is removed when `run`
//! returns, also on error. Figures are returned for the caller to print; nothing is asserted
//! about them.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use engine::lease::{
    DirStore, EtcdOptions, EtcdStore, LeaseAttrs, LeaseStore, StoreError, SubnetKey, LEASE_TTL,
};
use engine::model::Ipv4Net;

use crate::testbed::{Binaries, Testbed};
use weft_testkit::etcd::Etcd;

/// The network config written to the store.
pub const CONFIG: &str =
    r#"{"Network": "10.0.0.0/8", "SubnetLen": 24, "Backend": {"Type": "udp"}}"#;
/// The most leases the address plan has room for (10.1.0.0/24 .. 10.254.255.0/24, minus the
/// one weftd takes for itself).
pub const MAX_LEASES: usize = 254 * 256 - 1;
/// How often weftd's routes are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Threads writing leases to etcd (etcd batches concurrent writes into one commit).
const WRITERS: usize = 16;

/// Which lease store to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A real etcd started inside node a (weftd `--etcd-endpoints`).
    Etcd,
    /// A lease directory (weftd `--lease-dir`).
    Dir,
}

impl Store {
    /// `etcd` or `dir`.
    pub fn name(&self) -> &'static str {
        match self {
            Store::Etcd => "etcd",
            Store::Dir => "dir",
        }
    }
}

impl std::str::FromStr for Store {
    type Err = String;
    fn from_str(s: &str) -> Result<Store, String> {
        match s {
            "etcd" => Ok(Store::Etcd),
            "dir" => Ok(Store::Dir),
            other => Err(format!("unknown store {other:?}: etcd or dir")),
        }
    }
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many leases (peers) to write.
    pub leases: usize,
    /// The store.
    pub store: Store,
    /// The weftd binary.
    pub weftd: PathBuf,
    /// weftctl itself (for the testbed).
    pub weftctl: PathBuf,
    /// How long to wait for all routes before giving up.
    pub timeout: Duration,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Leases written.
    pub leases: usize,
    /// The store used.
    pub store: Store,
    /// How long writing the leases took (set-up, not a weftd figure).
    pub write_time: Duration,
    /// From spawning weftd to its `weftd: ready` line.
    pub ready_after: Duration,
    /// From spawning weftd to the first `routes` reply holding every lease.
    pub routes_after: Duration,
    /// Routes in that reply (every lease).
    pub routes: usize,
    /// weftd's resident memory then (kB, VmRSS).
    pub rss_kb: u64,
    /// weftd's peak resident memory then (kB, VmHWM).
    pub hwm_kb: u64,
}

impl Report {
    /// One line per figure, for people.
    pub fn render(&self) -> String {
        format!(
            "scale-leases: {} leases in {} (written in {:.2} s)\n\
             weftd ready after      {:>9.1} ms\n\
             all {} routes after {:>9.1} ms (polled every {} ms)\n\
             weftd VmRSS            {:>9.1} MB\n\
             weftd VmHWM            {:>9.1} MB\n",
            self.leases,
            self.store.name(),
            self.write_time.as_secs_f64(),
            self.ready_after.as_secs_f64() * 1e3,
            self.routes,
            self.routes_after.as_secs_f64() * 1e3,
            POLL_INTERVAL.as_millis(),
            self.rss_kb as f64 / 1024.0,
            self.hwm_kb as f64 / 1024.0,
        )
    }
}

/// The key of lease `i` (see the module documentation).
pub fn lease_key(i: usize) -> anyhow::Result<SubnetKey> {
    let i = u32::try_from(i).context("lease index")?;
    let addr = Ipv4Addr::from(0x0a00_0000 | ((i + 256) << 8));
    Ok(SubnetKey {
        v4: Ipv4Net::new(addr, 24).with_context(|| format!("lease {i}'s subnet"))?,
        v6: None,
    })
}

/// The PublicIP of lease `i`.
pub fn lease_public_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x6440_0001u32.wrapping_add(i as u32))
}

/// Writes `n` leases into `store` with `threads` writers.
fn write_leases(store: Arc<dyn LeaseStore>, n: usize, threads: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(&store);
            let next = Arc::clone(&next);
            std::thread::spawn(move || -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(());
                    }
                    let key = lease_key(i)?;
                    let attrs = LeaseAttrs::udp(lease_public_ip(i), None);
                    match store.create(&key, &attrs, LEASE_TTL) {
                        Ok(_) | Err(StoreError::Exists { .. }) => {}
                        Err(e) => {
                            return Err(e).with_context(|| format!("writing lease {i} ({key})"))
                        }
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a lease writer panicked"))??;
    }
    Ok(())
}

/// Runs the measurement (see the module documentation).
pub fn run(config: &Config) -> anyhow::Result<Report> {
    if config.leases == 0 || config.leases > MAX_LEASES {
        bail!(
            "--leases {}: give 1 to {MAX_LEASES} (the address plan's room)",
            config.leases
        );
    }
    if config.store == Store::Etcd {
        if let Some(why) = weft_testkit::privileges::missing_programs(&["etcd", "etcdctl"]) {
            bail!(
                "--store etcd: {why} (apt-get install etcd-server etcd-client), or use --store dir"
            );
        }
    }
    let mut bed = Testbed::new(
        2,
        Binaries {
            weftctl: config.weftctl.clone(),
            weftd: Some(config.weftd.clone()),
        },
    )?;
    let n = config.leases;
    let started_writing = Instant::now();
    // Declared after the testbed: dropped (killed by PID) before its namespace goes.
    let etcd = match config.store {
        Store::Etcd => Some(
            Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), bed.dir())
                .context("starting etcd inside node a")?,
        ),
        Store::Dir => None,
    };
    let store_args = match (config.store, &etcd) {
        (Store::Etcd, Some(etcd)) => {
            let endpoint = etcd.endpoint().to_owned();
            let ep = endpoint.clone();
            bed.node(0)
                .ns()
                .spawn_inside(move || {
                    let store = EtcdStore::connect(EtcdOptions {
                        endpoints: vec![ep.clone()],
                        ..EtcdOptions::default()
                    })
                    .with_context(|| format!("connecting to etcd {ep}"))?;
                    let store: Arc<dyn LeaseStore> = Arc::new(store);
                    store
                        .set_config(CONFIG)
                        .context("writing the network config")?;
                    write_leases(store, n, WRITERS)
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the etcd writer panicked"))??;
            vec!["--etcd-endpoints".to_owned(), endpoint]
        }
        (Store::Etcd, None) => bail!("etcd did not start"),
        (Store::Dir, _) => {
            let dir = bed.dir().join("leases");
            let store = DirStore::open(&dir)
                .with_context(|| format!("opening the lease directory {}", dir.display()))?;
            store
                .set_config(CONFIG)
                .context("writing the network config")?;
            write_leases(Arc::new(store), n, 1)?;
            vec!["--lease-dir".to_owned(), dir.display().to_string()]
        }
    };
    let write_time = started_writing.elapsed();

    let ns = bed.node(0).ns().name().to_owned();
    let mut args = vec![
        "--public-ip".to_owned(),
        bed.node(0).underlay().to_string(),
        "--subnet-file".to_owned(),
        bed.dir().join("subnet.env").display().to_string(),
        "--pump-threads".to_owned(),
        "1".to_owned(),
    ];
    args.extend(store_args);
    let start = Instant::now();
    let h = bed.spawn(0, "scale-weftd", &config.weftd, &args)?;
    bed.process(h)
        .wait_for_line("weftd: ready", config.timeout)
        .context("waiting for weftd to start")?;
    let ready_after = start.elapsed();
    let (routes_after, reply) = loop {
        if let Ok(v) = crate::control::request_in(&ns, None, "routes") {
            if v.as_array().map_or(0, Vec::len) >= n {
                break (start.elapsed(), v);
            }
        }
        if let Some(status) = bed.process(h).try_status() {
            bail!(
                "weftd exited ({status}) before all routes came; its log:\n{}",
                bed.process(h).tail()
            );
        }
        if start.elapsed() > config.timeout {
            let got = crate::control::request_in(&ns, None, "routes")
                .ok()
                .and_then(|v| v.as_array().map(Vec::len));
            bail!(
                "weftd has {got:?} of {n} routes after {:?}; its log:\n{}",
                config.timeout,
                bed.process(h).tail()
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let pid = bed.process(h).pid().context("weftd's pid")?;
    let (rss_kb, hwm_kb) = memory(pid)?;
    let routes = check_routes(&reply, n)?;
    Ok(Report {
        leases: n,
        store: config.store,
        write_time,
        ready_after,
        routes_after,
        routes,
        rss_kb,
        hwm_kb,
    })
}

/// Checks that `reply` (the control socket's `routes`) holds lease `i`'s subnet, going to its
/// PublicIP, for every `i < n`, and nothing else; returns the number of routes.
pub fn check_routes(reply: &serde_json::Value, n: usize) -> anyhow::Result<usize> {
    let list = reply
        .as_array()
        .context("the routes reply is not a JSON array")?;
    let mut got = std::collections::HashMap::with_capacity(list.len());
    for r in list {
        let subnet = r["subnet"].as_str().unwrap_or_default().to_owned();
        let ip = r["public_ip"].as_str().unwrap_or_default().to_owned();
        if let Some(before) = got.insert(subnet.clone(), ip) {
            bail!("route {subnet} is listed twice (also to {before})");
        }
    }
    for i in 0..n {
        let subnet = lease_key(i)?.v4.to_string();
        let want = lease_public_ip(i).to_string();
        match got.remove(&subnet) {
            Some(ip) if ip == want => {}
            Some(ip) => bail!("route {subnet} goes to {ip}, not to lease {i}'s {want}"),
            None => bail!("no route for lease {i} ({subnet})"),
        }
    }
    if let Some((subnet, ip)) = got.into_iter().next() {
        bail!("a route no lease asked for: {subnet} to {ip}");
    }
    Ok(list.len())
}

/// VmRSS and VmHWM of `pid`, in kB.
pub fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}
