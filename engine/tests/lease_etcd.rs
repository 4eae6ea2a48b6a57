//! The etcd store and the subnet manager against a real etcd (started per test).

mod lease_common;

use std::sync::Arc;
use std::time::Duration;

use engine::lease::{
    EtcdOptions, EtcdStore, LeaseAttrs, LeaseStore, SubnetKey, WatchBatch, WatchEvent,
    DEFAULT_PREFIX, LEASE_TTL,
};
use lease_common::no_stop;
use lease_common::scenarios::{self, Hand};
use weft_testkit::etcd::Etcd;
use weft_testkit::require_programs;

fn store(etcd: &Etcd) -> Arc<dyn LeaseStore> {
    let options = EtcdOptions {
        endpoints: vec![etcd.endpoint().to_owned()],
        ..EtcdOptions::default()
    };
    Arc::new(EtcdStore::connect(options).expect("connect to etcd"))
}

/// Runs etcdctl against `etcd`; its stdout (the test fails with etcdctl's stderr).
fn etcdctl(etcd: &Etcd, args: &[&str]) -> String {
    etcd.ctl(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// etcdctl, as an operator or a flanneld would write leases.
struct Etcdctl<'a>(&'a Etcd);

impl Hand for Etcdctl<'_> {
    fn put(&self, name: &str, value: &str) {
        let grant = etcdctl(self.0, &["lease", "grant", "600"]);
        // "lease 694d7e1b4f6e1d0a granted with TTL(600s)"
        let id = grant
            .split_whitespace()
            .nth(1)
            .expect("lease id")
            .to_owned();
        etcdctl(
            self.0,
            &[
                "put",
                &format!("--lease={id}"),
                &format!("{DEFAULT_PREFIX}/subnets/{name}"),
                value,
            ],
        );
    }

    fn delete(&self, name: &str) {
        etcdctl(
            self.0,
            &["del", &format!("{DEFAULT_PREFIX}/subnets/{name}")],
        );
    }

    fn get(&self, name: &str) -> String {
        self.0.get(&format!("subnets/{name}")).expect("etcdctl get")
    }
}

#[test]
fn etcd_distinct_subnets_and_restart() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    scenarios::distinct_subnets_and_restart(store(&etcd), &Etcdctl(&etcd));
    // The lease is attached to a 24 h etcd lease, as flanneld's.
    let key = etcdctl(
        &etcd,
        &[
            "get",
            "--prefix",
            "--keys-only",
            "/coreos.com/network/subnets/",
        ],
    );
    let first = key.lines().next().expect("a lease key").to_owned();
    let out = etcdctl(&etcd, &["get", &first, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let lease_id = v["kvs"][0]["lease"].as_i64().expect("a lease id");
    let ttl = etcdctl(&etcd, &["lease", "timetolive", &format!("{lease_id:x}")]);
    let granted: u64 = ttl
        .split("granted with TTL(")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .expect("granted TTL");
    assert_eq!(granted, LEASE_TTL.as_secs(), "{ttl}");
}

#[test]
fn etcd_hand_written_peer() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    scenarios::hand_written_peer(store(&etcd), &Etcdctl(&etcd));
}

#[test]
fn etcd_own_lease_deleted() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    scenarios::own_lease_deleted(store(&etcd), &Etcdctl(&etcd));
}

#[test]
fn etcd_race_for_last_subnet() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    scenarios::race_for_last_subnet([store(&etcd), store(&etcd)], &Etcdctl(&etcd));
}

#[test]
fn etcd_create_is_exclusive_and_renew_never_steals() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    let s = store(&etcd);
    let key = SubnetKey::parse("10.5.9.0-24").expect("key");
    let a = LeaseAttrs::udp("192.168.50.1".parse().expect("ip"), None);
    let b = LeaseAttrs::udp("192.168.50.2".parse().expect("ip"), None);
    s.create(&key, &a, Duration::from_secs(60)).expect("create");
    assert!(matches!(
        s.create(&key, &b, Duration::from_secs(60)),
        Err(engine::lease::StoreError::Exists { .. })
    ));
    assert!(matches!(
        s.renew(&key, &b, Some(Duration::from_secs(60))),
        Err(engine::lease::StoreError::Taken { .. })
    ));
    s.renew(&key, &a, Some(Duration::from_secs(60)))
        .expect("renew ours");
    // flannel's udp backend value, byte for byte.
    assert_eq!(
        etcd.get("subnets/10.5.9.0-24").expect("etcdctl get"),
        r#"{"PublicIP":"192.168.50.1","PublicIPv6":null}"#
    );
    // A missing config is an error that says where and what to write.
    let missing = s.config().expect_err("no config yet").to_string();
    assert!(missing.contains("/coreos.com/network/config"), "{missing}");
}

#[test]
fn etcd_compaction_past_the_watch_revision_resyncs() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    let s = store(&etcd);
    let hand = Etcdctl(&etcd);
    hand.put("10.5.1.0-24", r#"{"PublicIP":"192.168.50.1"}"#);
    let listing = s.list().expect("list");
    assert_eq!(listing.leases.len(), 1);
    // Changes after the listing, then compaction past the listing's revision.
    hand.delete("10.5.1.0-24");
    hand.put("10.5.2.0-24", r#"{"PublicIP":"192.168.50.2"}"#);
    hand.put("10.5.3.0-24", r#"{"PublicIP":"192.168.50.3"}"#);
    let rev = etcd.revision().expect("revision");
    etcdctl(&etcd, &["compaction", &rev.to_string()]);
    let mut watch = s.watch(listing.revision).expect("watch");
    let batch = watch
        .next(Duration::from_secs(5), &no_stop())
        .expect("watch works")
        .expect("a batch");
    let WatchBatch::Resync(fresh) = batch else {
        panic!("expected a resync after compaction, got {batch:?}");
    };
    let keys: Vec<String> = fresh.leases.iter().map(|l| l.key.to_string()).collect();
    assert_eq!(keys, ["10.5.2.0-24", "10.5.3.0-24"]);
    assert!(watch.reconnects() >= 1);
    // The watch carries on from the re-listed revision.
    hand.put("10.5.4.0-24", r#"{"PublicIP":"192.168.50.4"}"#);
    let batch = watch
        .next(Duration::from_secs(5), &no_stop())
        .expect("watch works")
        .expect("a batch");
    let WatchBatch::Events { events, .. } = batch else {
        panic!("expected events, got {batch:?}");
    };
    assert!(
        matches!(&events[..], [WatchEvent::Put(l)] if l.key.to_string() == "10.5.4.0-24"),
        "{events:?}"
    );
}

#[test]
fn etcd_watch_survives_an_etcd_restart() {
    require_programs!("etcd", "etcdctl");
    let mut etcd = Etcd::loopback().expect("etcd");
    let s = store(&etcd);
    let listing = s.list().expect("list");
    let mut watch = s.watch(listing.revision).expect("watch");
    assert_eq!(
        watch
            .next(Duration::from_millis(200), &no_stop())
            .expect("ok"),
        None
    );
    etcd.stop();
    assert_eq!(
        watch
            .next(Duration::from_secs(1), &no_stop())
            .expect("still ok"),
        None
    );
    etcd.restart().expect("etcd restarts");
    Etcdctl(&etcd).put("10.5.5.0-24", r#"{"PublicIP":"192.168.50.5"}"#);
    let batch = watch
        .next(Duration::from_secs(10), &no_stop())
        .expect("watch works")
        .expect("the put after the restart arrives");
    assert!(
        matches!(&batch, WatchBatch::Events { events, .. }
            if matches!(&events[..], [WatchEvent::Put(l)] if l.key.to_string() == "10.5.5.0-24")),
        "{batch:?}"
    );
    assert!(watch.reconnects() >= 1);
}

#[test]
fn etcd_tls_with_client_certificates() {
    require_programs!("etcd", "etcdctl", "openssl");
    let etcd = Etcd::loopback_with(&[], true).expect("etcd with TLS");
    let tls = etcd.tls().expect("tls files").clone();
    let options = EtcdOptions {
        endpoints: vec![etcd.endpoint().to_owned()],
        ca_file: Some(tls.ca.clone()),
        cert_file: Some(tls.client_cert.clone()),
        key_file: Some(tls.client_key.clone()),
        ..EtcdOptions::default()
    };
    let s: Arc<dyn LeaseStore> = Arc::new(EtcdStore::connect(options.clone()).expect("connect"));
    scenarios::distinct_subnets_and_restart(Arc::clone(&s), &Etcdctl(&etcd));
    // Without a client certificate etcd refuses us.
    let no_cert = EtcdOptions {
        cert_file: None,
        key_file: None,
        ..options.clone()
    };
    let refused = EtcdStore::connect(no_cert).and_then(|s| s.list());
    assert!(
        refused.is_err(),
        "listing without a client certificate worked"
    );
    // Half an identity is a set-up error that names both flags.
    let half = EtcdOptions {
        key_file: None,
        ..options
    };
    let e = EtcdStore::connect(half)
        .expect_err("cert without key")
        .to_string();
    assert!(
        e.contains("--etcd-certfile") && e.contains("--etcd-keyfile"),
        "{e}"
    );
}

#[test]
fn etcd_user_and_password() {
    require_programs!("etcd", "etcdctl");
    let mut etcd = Etcd::loopback().expect("etcd");
    etcd.enable_auth("wfl-secret").expect("authentication on");
    let with_user = EtcdOptions {
        endpoints: vec![etcd.endpoint().to_owned()],
        username: Some("root".to_owned()),
        password: Some("wfl-secret".to_owned()),
        ..EtcdOptions::default()
    };
    let s: Arc<dyn LeaseStore> = Arc::new(EtcdStore::connect(with_user.clone()).expect("connect"));
    scenarios::distinct_subnets_and_restart(Arc::clone(&s), &Etcdctl(&etcd));
    // The password is not printed in debug output.
    let debug = format!("{with_user:?} {s:?}");
    assert!(!debug.contains("wfl-secret"), "{debug}");
    // Without credentials etcd refuses, and says what to check.
    let anonymous = EtcdOptions {
        endpoints: vec![etcd.endpoint().to_owned()],
        ..EtcdOptions::default()
    };
    let refused = EtcdStore::connect(anonymous)
        .and_then(|s| s.list())
        .expect_err("listing without credentials worked")
        .to_string();
    assert!(refused.contains("--etcd-username"), "{refused}");
    // A wrong password fails at once.
    let wrong = EtcdOptions {
        password: Some("not-it".to_owned()),
        ..with_user.clone()
    };
    let e = EtcdStore::connect(wrong)
        .expect_err("wrong password")
        .to_string();
    assert!(
        e.contains("authenticate") && e.contains(etcd.endpoint()) && e.contains("--etcd-password"),
        "{e}"
    );
}

#[test]
fn etcd_an_expired_token_is_renewed() {
    require_programs!("etcd", "etcdctl");
    let mut etcd = Etcd::loopback_with(&["--auth-token-ttl=1"], false).expect("etcd");
    etcd.enable_auth("wfl-secret").expect("authentication on");
    let options = EtcdOptions {
        endpoints: vec![etcd.endpoint().to_owned()],
        username: Some("root".to_owned()),
        password: Some("wfl-secret".to_owned()),
        ..EtcdOptions::default()
    };
    let s = EtcdStore::connect(options).expect("connect");
    let listing = s.list().expect("list");
    let mut watch = s.watch(listing.revision).expect("watch");
    // The token expires after 1 s unused: calls authenticate again.
    std::thread::sleep(Duration::from_millis(2000));
    s.list().expect("listing with an expired token");
    // A watch that reconnects with an expired token is canceled for it, authenticates again
    // and carries on. Its backoff while etcd is down puts the reconnect about 6 s after the
    // stop, when the token (restored with etcd's log, 1 s to live) has expired again.
    etcd.stop();
    std::thread::sleep(Duration::from_millis(4000));
    etcd.restart().expect("etcd restarts");
    std::thread::sleep(Duration::from_millis(3000));
    Etcdctl(&etcd).put("10.5.8.0-24", r#"{"PublicIP":"192.168.50.8"}"#);
    let batch = watch
        .next(Duration::from_secs(10), &no_stop())
        .expect("watch works")
        .expect("the put after the restart arrives");
    assert!(
        matches!(&batch, WatchBatch::Events { events, .. }
            if matches!(&events[..], [WatchEvent::Put(l)] if l.key.to_string() == "10.5.8.0-24")),
        "{batch:?}"
    );
}

#[test]
fn etcd_a_dead_endpoint_is_skipped() {
    require_programs!("etcd", "etcdctl");
    let etcd = Etcd::loopback().expect("etcd");
    // Nothing listens on the first endpoint: calls and watches go on to the second.
    let dead = format!(
        "http://127.0.0.1:{}",
        weft_testkit::etcd::free_port().expect("a port")
    );
    let options = EtcdOptions {
        endpoints: vec![dead.clone(), etcd.endpoint().to_owned()],
        ..EtcdOptions::default()
    };
    let watcher = EtcdStore::connect(options.clone()).expect("connect");
    let mut watch = watcher.watch(0).expect("watch");
    let s: Arc<dyn LeaseStore> = Arc::new(EtcdStore::connect(options).expect("connect"));
    scenarios::distinct_subnets_and_restart(Arc::clone(&s), &Etcdctl(&etcd));
    let batch = watch
        .next(Duration::from_secs(5), &no_stop())
        .expect("watch works")
        .expect("the leases written through the live endpoint arrive");
    assert!(
        matches!(&batch, WatchBatch::Events { events, .. } if !events.is_empty()),
        "{batch:?}"
    );
    assert_eq!(watch.reconnects(), 0, "the watch skipped the dead endpoint");
    // With only the dead endpoint, the error names the call and the endpoint, and says
    // what to check.
    let only_dead = EtcdOptions {
        endpoints: vec![dead.clone()],
        ..EtcdOptions::default()
    };
    let e = EtcdStore::connect(only_dead)
        .expect("connections are made on first use")
        .list()
        .expect_err("nothing listens there")
        .to_string();
    assert!(
        e.contains("list subnets") && e.contains(&dead) && e.contains("--etcd-endpoints"),
        "{e}"
    );
}

#[test]
fn etcd_outage_keeps_the_peers_and_resumes() {
    require_programs!("etcd", "etcdctl");
    let mut etcd = Etcd::loopback().expect("etcd");
    let s = store(&etcd);
    let hand = Etcdctl(&etcd);
    s.set_config(scenarios::VXLAN_CONFIG).expect("config");
    hand.put(
        "10.5.10.0-24",
        r#"{"PublicIP":"192.168.50.10","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:10"}}"#,
    );
    let mut m = scenarios::manager(&s, 1);
    let own = m.acquire().expect("acquire");
    let (handle, rx) = m.spawn(own, no_stop());
    lease_common::wait_peers(&rx, Duration::from_secs(5), |p| {
        lease_common::has(p, "10.5.10.0-24")
    })
    .expect("the peer is there");
    etcd.stop();
    // While etcd is down nothing changes: no event removes the peer.
    let during = lease_common::wait_peers(&rx, Duration::from_secs(3), |_| true);
    assert_eq!(during, None, "the peer set changed during the outage");
    etcd.restart().expect("etcd restarts");
    let hand = Etcdctl(&etcd);
    hand.put(
        "10.5.11.0-24",
        r#"{"PublicIP":"192.168.50.11","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:11"}}"#,
    );
    // The watch retries with a backoff of up to 5 s (BACKOFF_MAX) and each try may wait out a
    // 5 s request timeout: allow several rounds on a loaded machine.
    let (set, _) = lease_common::wait_peers(&rx, Duration::from_secs(30), |p| {
        lease_common::has(p, "10.5.11.0-24")
    })
    .expect("watching resumes after etcd returns");
    assert!(lease_common::has(&set, "10.5.10.0-24"), "{set:?}");
    assert!(
        handle
            .stats()
            .watch_reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    handle.stop();
}
