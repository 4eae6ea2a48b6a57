//! Lease-manager scenarios run against both stores (etcd and the local directory).
#![allow(dead_code, unreachable_pub)]

use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use engine::lease::manager::AcquireError;
use engine::lease::{
    LeaseAttrs, LeaseStore, ManagerEvent, ManagerOptions, NetworkConfig, SubnetKey, SubnetManager,
};

use super::{has, no_stop, wait_peers};

/// Writes and deletes raw lease values the way another flanneld (or an operator) would.
pub trait Hand {
    /// Writes `value` at the lease key `name` (`10.5.3.0-24`), with a TTL.
    fn put(&self, name: &str, value: &str);
    /// Deletes the lease key `name`.
    fn delete(&self, name: &str);
    /// The stored value at `name`, as flanneld would read it.
    fn get(&self, name: &str) -> String;
}

pub const VXLAN_CONFIG: &str =
    r#"{"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan", "VNI": 1}}"#;

pub fn mac(n: u8) -> [u8; 6] {
    [0x0e, 0, 0, 0, 0, n]
}

pub fn node(n: u8) -> LeaseAttrs {
    LeaseAttrs::vxlan(Ipv4Addr::new(192, 168, 50, n), None, 1, mac(n), false)
}

pub fn manager(store: &Arc<dyn LeaseStore>, n: u8) -> SubnetManager {
    let config = NetworkConfig::parse(&store.config().expect("config")).expect("valid config");
    SubnetManager::new(Arc::clone(store), config, ManagerOptions::new(node(n)))
}

/// Two nodes get distinct subnets inside the pool; the stored values are flannel's JSON;
/// a restarted node gets its subnet back; a new node gets the subnet of its previous
/// subnet.env when free.
pub fn distinct_subnets_and_restart(store: Arc<dyn LeaseStore>, hand: &dyn Hand) {
    store.set_config(VXLAN_CONFIG).expect("set config");
    let a = manager(&store, 1).acquire().expect("node 1 acquires");
    let b = manager(&store, 2).acquire().expect("node 2 acquires");
    assert_ne!(a.key, b.key);
    let config = NetworkConfig::parse(VXLAN_CONFIG).expect("config");
    assert!(config.ipv4.accepts(&a.key.v4) && config.ipv4.accepts(&b.key.v4));
    for (own, n) in [(&a, 1), (&b, 2)] {
        let stored = hand.get(&own.key.to_string());
        let expected = format!(
            "{{\"PublicIP\":\"192.168.50.{n}\",\"PublicIPv6\":null,\"BackendType\":\"vxlan\",\
             \"BackendData\":{{\"VNI\":1,\"VtepMAC\":\"0e:00:00:00:00:0{n}\"}}"
        );
        assert!(
            stored.starts_with(&expected),
            "stored value {stored:?} is not flannel's {expected:?}"
        );
    }
    // Restart node 1: the lease with its PublicIP is reused.
    let again = manager(&store, 1).acquire().expect("node 1 again");
    assert_eq!(again.key, a.key);
    // Node 3 with a previous subnet that is free gets it.
    let prev = SubnetKey::parse("10.5.77.0-24").expect("key");
    let mut m3 = manager(&store, 3);
    let mut opts = ManagerOptions::new(node(3));
    opts.previous = Some(prev);
    m3 = SubnetManager::new(Arc::clone(&store), m3.config().clone(), opts);
    // (Nodes 1 and 2 picked at random: one of them may hold it, and node 3 gets another.)
    let third = m3.acquire().expect("node 3");
    if a.key != prev && b.key != prev {
        assert_eq!(third.key, prev);
    } else {
        assert_ne!(third.key, prev);
    }
    assert_eq!(store.list().expect("list").leases.len(), 3);
}

/// A lease written by hand (as flanneld writes it) shows up as a peer within a second, and
/// its deletion removes it; other backends and bad values are left out.
pub fn hand_written_peer(store: Arc<dyn LeaseStore>, hand: &dyn Hand) {
    store.set_config(VXLAN_CONFIG).expect("set config");
    let mut m = manager(&store, 1);
    let own = m.acquire().expect("acquire");
    let (handle, rx) = m.spawn(own.clone(), no_stop());
    let (first, _) = wait_peers(&rx, Duration::from_secs(5), |_| true).expect("first peer set");
    assert!(first.peers.is_empty(), "{first:?}");

    let name = if own.key.to_string() == "10.5.200.0-24" {
        "10.5.201.0-24"
    } else {
        "10.5.200.0-24"
    };
    // Timed from before the write (which includes starting etcdctl).
    let start = Instant::now();
    hand.put(
        name,
        r#"{"PublicIP":"192.168.50.9","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}}"#,
    );
    let (set, _) = wait_peers(&rx, Duration::from_secs(5), |s| has(s, name))
        .expect("the hand-written lease becomes a peer");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!(
        "{}: a hand-written lease became a peer in {took:?}",
        store.describe()
    );
    let peer = &set.peers[0];
    assert_eq!(peer.attrs.public_ip, Ipv4Addr::new(192, 168, 50, 9));
    assert_eq!(peer.attrs.vxlan_data().expect("vxlan").vtep_mac, mac(9));
    assert_eq!(set.added, vec![SubnetKey::parse(name).expect("key")]);

    // Another backend and a bad value: ignored, the peer set does not change.
    hand.put(
        "10.5.202.0-24",
        r#"{"PublicIP":"192.168.50.10","BackendType":"host-gw"}"#,
    );
    hand.put("10.5.203.0-24", r#"{"PublicIP":"nonsense"}"#);
    let start = Instant::now();
    hand.delete(name);
    let (set, _) = wait_peers(&rx, Duration::from_secs(5), |s| !has(s, name))
        .expect("the deletion removes the peer");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    eprintln!(
        "{}: its deletion removed the peer in {took:?}",
        store.describe()
    );
    assert!(set.peers.is_empty(), "{set:?}");
    assert_eq!(set.removed, vec![SubnetKey::parse(name).expect("key")]);
    handle.stop();
}

/// Our own lease deleted from under us: the manager logs, acquires again, reports it.
pub fn own_lease_deleted(store: Arc<dyn LeaseStore>, hand: &dyn Hand) {
    store.set_config(VXLAN_CONFIG).expect("set config");
    let mut m = manager(&store, 1);
    let own = m.acquire().expect("acquire");
    let (handle, rx) = m.spawn(own.clone(), no_stop());
    wait_peers(&rx, Duration::from_secs(5), |_| true).expect("first peer set");
    hand.delete(&own.key.to_string());
    let event = loop {
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(ManagerEvent::OwnLease(o)) => break o,
            Ok(_) => continue,
            Err(e) => panic!("no re-acquisition: {e}"),
        }
    };
    // The same subnet, since it is free again.
    assert_eq!(event.key, own.key);
    let listing = store.list().expect("list");
    assert!(listing.leases.iter().any(|l| l.key == own.key));
    assert_eq!(
        handle
            .stats()
            .reacquisitions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    handle.stop();
}

/// Two nodes race for the last free subnet: one wins, the other reports a full network;
/// with two free, both win distinct subnets (the loser of a race retries).
pub fn race_for_last_subnet(stores: [Arc<dyn LeaseStore>; 2], hand: &dyn Hand) {
    // 10.6.0.0/28: SubnetLen 30, subnets .4, .8, .12.
    stores[0]
        .set_config(r#"{"Network":"10.6.0.0/28","Backend":{"Type":"vxlan"}}"#)
        .expect("config");
    hand.put(
        "10.6.0.4-30",
        r#"{"PublicIP":"192.168.50.20","BackendType":"vxlan","BackendData":{"VtepMAC":"0e:00:00:00:00:20"}}"#,
    );
    let race = |n: [u8; 2]| -> Vec<Result<SubnetKey, AcquireError>> {
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let mut m = manager(&stores[i], n[i]);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    m.acquire().map(|o| o.key)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("racer"))
            .collect()
    };
    // Two free subnets: both win, distinct.
    let results = race([1, 2]);
    let keys: Vec<SubnetKey> = results
        .into_iter()
        .map(|r| r.expect("both get a subnet"))
        .collect();
    assert_ne!(keys[0], keys[1]);
    // Free one again: two new nodes race for it.
    hand.delete(&keys[0].to_string());
    let results = race([3, 4]);
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let loss = results
        .into_iter()
        .find_map(Result::err)
        .expect("one loses");
    assert!(
        matches!(loss, AcquireError::NetworkFull { .. }),
        "the loser must report a full network: {loss}"
    );
    let message = loss.to_string();
    assert!(
        message.contains("full") && message.contains("10.6.0.0/28"),
        "{message}"
    );
}
