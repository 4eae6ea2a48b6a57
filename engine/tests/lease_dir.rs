//! The local directory store and the subnet manager, with several stores (as several weftd
//! processes would have) on one directory.

mod lease_common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use engine::lease::{DirStore, LeaseAttrs, LeaseStore, SubnetKey, WatchBatch, WatchEvent};
use lease_common::scenarios::{self, Hand};
use lease_common::TempDir;

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
    let dir = TempDir::new("dir-distinct");
    scenarios::distinct_subnets_and_restart(store(&dir), &Files(&dir));
}

#[test]
fn dir_hand_written_peer() {
    let dir = TempDir::new("dir-hand");
    scenarios::hand_written_peer(store(&dir), &Files(&dir));
}

#[test]
fn dir_own_lease_deleted() {
    let dir = TempDir::new("dir-own");
    scenarios::own_lease_deleted(store(&dir), &Files(&dir));
}

#[test]
fn dir_race_for_last_subnet() {
    let dir = TempDir::new("dir-race");
    scenarios::race_for_last_subnet([store(&dir), store(&dir)], &Files(&dir));
}

#[test]
fn dir_many_racers_never_share_a_subnet() {
    // Eight "processes" (separate stores on one directory) create leases at once in a
    // network of 14 subnets: all win, all distinct.
    let dir = TempDir::new("dir-many");
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
    let dir = TempDir::new("dir-expiry");
    let s = store(&dir);
    let listing = s.list().expect("list");
    let mut watch = s.watch(listing.revision).expect("watch");
    assert!(matches!(
        watch.next(Duration::from_secs(1)).expect("ok"),
        Some(WatchBatch::Resync(l)) if l.leases.is_empty()
    ));
    let key = SubnetKey::parse("10.5.8.0-24").expect("key");
    let attrs = LeaseAttrs::udp("192.168.50.8".parse().expect("ip"), None);
    s.create(&key, &attrs, Duration::from_secs(2))
        .expect("create");
    let batch = watch
        .next(Duration::from_secs(2))
        .expect("ok")
        .expect("the put");
    assert!(
        matches!(&batch, WatchBatch::Events { events, .. } if matches!(&events[..], [WatchEvent::Put(l)] if l.key == key)),
        "{batch:?}"
    );
    let batch = watch
        .next(Duration::from_secs(4))
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
    let dir = TempDir::new("dir-renew");
    let s = store(&dir);
    s.set_config(scenarios::VXLAN_CONFIG).expect("config");
    let config =
        engine::lease::NetworkConfig::parse(scenarios::VXLAN_CONFIG).expect("valid config");
    let mut options = engine::lease::ManagerOptions::new(scenarios::node(1));
    options.ttl = Duration::from_secs(3);
    options.renew_margin = Duration::from_secs(2);
    let mut m = engine::lease::SubnetManager::new(Arc::clone(&s), config, options);
    let own = m.acquire().expect("acquire");
    let (handle, _rx) = m.spawn(own.clone());
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
