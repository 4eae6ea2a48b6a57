//! Shared by the `lease_*` integration tests: the lease-manager scenarios both stores run
//! ([`scenarios`]) and helpers to wait for the manager's events. The etcd, the skipping rules
//! (`require_programs!`, `require_root!`) and the namespaces are the test kit's
//! (`weft-testkit`): a test that lacks etcd (or root) prints why and returns, unless
//! `CI=true`, where it fails.
#![allow(dead_code, unreachable_pub)]

pub mod scenarios;

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use engine::lease::{ManagerEvent, PeerSet, SubnetKey};
use engine::Stop;

/// A stop request nobody makes (for watches and managers a test ends by dropping them).
pub fn no_stop() -> Stop {
    Stop::new().expect("creating an eventfd")
}

/// Waits up to `timeout` for a peer set satisfying `pred`; returns it and the time it took.
pub fn wait_peers(
    rx: &Receiver<ManagerEvent>,
    timeout: Duration,
    pred: impl Fn(&PeerSet) -> bool,
) -> Option<(PeerSet, Duration)> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ManagerEvent::Peers(set)) if pred(&set) => return Some((set, start.elapsed())),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Whether a peer set holds `key`.
pub fn has(set: &PeerSet, key: &str) -> bool {
    let key = SubnetKey::parse(key).expect("key");
    set.peers.iter().any(|p| p.key == key)
}
