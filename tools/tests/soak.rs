//! The soak, shortened for CI: `weftctl soak` for 1 minute (three weftd nodes on
//! etcd, TCP and UDP across every pair, lease churn, RSS / fds sampled, counters checked)
//! must pass. The 10-minute run is `weftctl soak` (README).
//!
//! This runs target/<profile>/weftd: build it first (`cargo build -p engine --bins`).

mod common;

use std::time::Duration;

use weft_testkit::{require_programs, require_root};

#[test]
fn one_minute_soak() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    let seconds: u64 = std::env::var("WEFT_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let report = weftctl::soak::run(&weftctl::soak::Config {
        duration: Duration::from_secs(seconds),
        sample_every: Duration::from_secs(10),
        udp_rate: 200,
        binaries: common::binaries_with_weftd(),
    })
    .expect("the soak ran");
    let text = report.render();
    eprintln!("{text}");
    assert!(report.passed(), "the soak failed:\n{text}");
    assert!(
        report.samples.len() >= 3 * (seconds / 10) as usize,
        "{text}"
    );
}
