//! The local directory store and the subnet manager, with several stores (as several weftd
//! processes would have) on one directory.

mod lease_common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use engine::lease::{DirStore, LeaseAttrs, LeaseStore, SubnetKey, WatchBatch, WatchEvent};
use lease_common::no_stop;
use lease_common::scenarios::{self, Hand};
use tempfile::TempDir;

fn store(dir: &TempDir) -> Arc<dyn LeaseStore> {
    Arc::new(DirStore::open(dir.path()).expect("open the lease directory"))
}

/// Writes lease files by hand, as an operator (or `echo > file`) would.
struct Files<'a>(&'a TempDir);

impl Hand for Files<'_> {
    fn put(&self, name: &str, value: &str) {
        fs::write(self.0.path().join("subnets").join(name), value).expect("write lease file");
    }

    fn delete(&self, name: &str) {
        fs::remove_file(self.0.path().join("subnets").join(name)).expect("delete lease file");
    }

    fn get(&self, name: &str) -> String {
        fs::read_to_string(self.0.path().join("subnets").join(name)).expect("read lease file")
    }
}

#[test]
fn dir_distinct_subnets_and_restart() {
    let dir = TempDir::new().expect("a temporary directory");
    scenarios::distinct_subnets_and_restart(store(&dir), &Files(&dir));
}

#[test]
fn dir_hand_written_peer() {
    let dir = TempDir::new().expect("a temporary directory");
    scenarios::hand_written_peer(store(&dir), &Files(&dir));
}

#[test]
fn dir_own_lease_deleted() {
    let dir = TempDir::new().expect("a temporary directory");
    scenarios::own_lease_deleted(store(&dir), &Files(&dir));
}

#[test]
fn dir_race_for_last_subnet() {
    let dir = TempDir::new().expect("a temporary directory");
    scenarios::race_for_last_subnet([store(&dir), store(&dir)], &Files(&dir));
}

#[test]
fn dir_many_racers_never_share_a_subnet() {
    // Eight "processes" (separate stores on one directory) create leases at once in a
    // network of 14 subnets: all win, all distinct.
    let dir = TempDir::new().expect("a temporary directory");
    let first = store(&dir);
    first
        .set_config(r#"{"Network":"10.7.0.0/24","SubnetLen":28}"#)
        .expect("config");
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (1..=8u8)
        .map(|n| {
            let s = store(&dir);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut m = scenarios::manager(&s, n);
                barrier.wait();
                m.acquire().map(|o| o.key)
            })
        })
        .collect();
    let mut keys: Vec<SubnetKey> = threads
        .into_iter()
        .map(|t| t.join().expect("racer").expect("a subnet"))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 8);
    assert_eq!(first.list().expect("list").leases.len(), 8);
}

#[test]
fn dir_expiry_is_a_delete_event() {
    let dir = TempDir::new().expect("a temporary directory");
    let s = store(&dir);
    let listing = s.list().expect("list");
    let mut watch = s.watch(listing.revision).expect("watch");
    assert!(matches!(
        watch.next(Duration::from_secs(1), &no_stop()).expect("ok"),
        Some(WatchBatch::Resync(l)) if l.leases.is_empty()
    ));
    let key = SubnetKey::parse("10.5.8.0-24").expect("key");
    let attrs = LeaseAttrs::udp("192.168.50.8".parse().expect("ip"), None);
    s.create(&key, &attrs, Duration::from_secs(2))
        .expect("create");
    let batch = watch
        .next(Duration::from_secs(2), &no_stop())
        .expect("ok")
        .expect("the put");
    assert!(
        matches!(&batch, WatchBatch::Events { events, .. } if matches!(&events[..], [WatchEvent::Put(l)] if l.key == key)),
        "{batch:?}"
    );
    let batch = watch
        .next(Duration::from_secs(4), &no_stop())
        .expect("ok")
        .expect("the expiry");
    assert!(
        matches!(&batch, WatchBatch::Events { events, .. } if events[..] == [WatchEvent::Delete(key)]),
        "{batch:?}"
    );
    // Expired: gone from the listing, and the key can be leased again.
    assert!(s.list().expect("list").leases.is_empty());
    s.create(&key, &attrs, Duration::from_secs(60))
        .expect("create again");
}

#[test]
fn dir_lease_ttl_renewal_keeps_it() {
    // A manager with a 3 s TTL and a 2 s margin renews every second or so; the lease never
    // expires while it runs.
    let dir = TempDir::new().expect("a temporary directory");
    let s = store(&dir);
    s.set_config(scenarios::VXLAN_CONFIG).expect("config");
    let config =
        engine::lease::NetworkConfig::parse(scenarios::VXLAN_CONFIG).expect("valid config");
    let mut options = engine::lease::ManagerOptions::new(scenarios::node(1));
    options.ttl = Duration::from_secs(3);
    options.renew_margin = Duration::from_secs(2);
    let mut m = engine::lease::SubnetManager::new(Arc::clone(&s), config, options);
    let own = m.acquire().expect("acquire");
    let (handle, _rx) = m.spawn(own.clone(), no_stop());
    std::thread::sleep(Duration::from_secs(5));
    let listing = s.list().expect("list");
    assert!(
        listing.leases.iter().any(|l| l.key == own.key),
        "{listing:?}"
    );
    let renewals = handle
        .stats()
        .renewals
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(renewals >= 3, "{renewals} renewals");
    handle.stop();
}

#[test]
fn dir_dual_stack_lease() {
    let dir = TempDir::new().expect("a temporary directory");
    let s = store(&dir);
    let config_text = r#"{"Network":"10.8.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:8::/48","Backend":{"Type":"vxlan"}}"#;
    s.set_config(config_text).expect("config");
    let config = engine::lease::NetworkConfig::parse(config_text).expect("valid");
    let attrs = LeaseAttrs::vxlan(
        "192.168.50.1".parse().expect("ip"),
        Some("fd00::1".parse().expect("ip6")),
        1,
        scenarios::mac(1),
        true,
    );
    let mut m = engine::lease::SubnetManager::new(
        Arc::clone(&s),
        config.clone(),
        engine::lease::ManagerOptions::new(attrs),
    );
    let own = m.acquire().expect("acquire");
    let v6 = own.subnet6().expect("a v6 subnet");
    assert!(config.ipv6.expect("pool").accepts(&v6));
    let name = own.key.to_string();
    assert!(name.contains('&'), "{name}");
    assert!(dir.path().join("subnets").join(&name).exists());
    let listing = s.list().expect("list");
    assert_eq!(listing.leases[0].key, own.key);
    assert!(listing.leases[0]
        .attrs
        .to_json()
        .contains("\"BackendV6Data\""));
}

#[test]
fn dir_wait_for_config_until_valid() {
    let dir = TempDir::new().expect("a temporary directory");
    let s = store(&dir);
    let writer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            s.set_config(r#"{"Network":"10.9.0.0/30"}"#)
                .expect("invalid config");
            std::thread::sleep(Duration::from_millis(300));
            s.set_config(r#"{"Network":"10.9.0.0/16"}"#)
                .expect("valid config");
        })
    };
    let stop = engine::Stop::new().expect("eventfd");
    let start = std::time::Instant::now();
    let config = engine::lease::manager::wait_for_config(&*s, &stop, Duration::from_millis(100))
        .expect("a config");
    assert!(start.elapsed() >= Duration::from_millis(600));
    assert_eq!(config.ipv4.network.to_string(), "10.9.0.0/16");
    writer.join().expect("writer");
    // With stop set it returns at once.
    let empty = TempDir::new().expect("a temporary directory");
    stop.request();
    assert!(engine::lease::manager::wait_for_config(
        &*store(&empty),
        &stop,
        Duration::from_secs(1)
    )
    .is_none());
}

#[test]
fn dir_stored_vtep_mac_survives_restart() {
    let dir = TempDir::new().expect("a temporary directory");
    let s = store(&dir);
    s.set_config(scenarios::VXLAN_CONFIG).expect("config");
    let ip = "192.168.50.1".parse().expect("ip");
    assert_eq!(
        engine::lease::manager::stored_vtep_mac(&*s, ip).expect("list"),
        None
    );
    scenarios::manager(&s, 1).acquire().expect("acquire");
    assert_eq!(
        engine::lease::manager::stored_vtep_mac(&*s, ip).expect("list"),
        Some(scenarios::mac(1))
    );
}
