//! `weftctl scale-leases --leases 500`: every lease written to the store becomes a route to
//! its PublicIP in weftd (the command checks the whole routes reply and fails otherwise), on
//! etcd and on a lease directory. No timing is asserted: the figures are for people
//! (`cargo bench -p weftctl --bench scale_leases` and BENCHMARKS.md, "Scaling").
//!
//! These run target/<profile>/weftd: build it first (`cargo build -p engine`).

mod common;

use std::process::Command;

use weft_testkit::{require_programs, require_root};

fn scale_leases(store: &str) {
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["scale-leases", "--leases", "500", "--store", store])
        .arg("--weftd")
        .arg(&weftd)
        .output()
        .expect("run weftctl scale-leases");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weftctl scale-leases --store {store} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
    assert!(
        stdout.contains("500 leases in ") && stdout.contains("all 500 routes after"),
        "not every route arrived:\n{stdout}"
    );
}

#[test]
fn scale_leases_500_on_etcd() {
    require_root!();
    require_programs!("etcd", "etcdctl");
    scale_leases("etcd");
}

#[test]
fn scale_leases_500_on_a_lease_directory() {
    require_root!();
    scale_leases("dir");
}

#[test]
fn routes_check_finds_missing_wrong_and_extra_routes() {
    use serde_json::json;
    use weftctl::scale::{check_routes, lease_key, lease_public_ip};
    let route = |i: usize| {
        json!({"subnet": lease_key(i).expect("lease key").v4.to_string(),
               "public_ip": lease_public_ip(i).to_string()})
    };
    let good = json!([route(0), route(1), route(2)]);
    assert_eq!(check_routes(&good, 3).expect("all routes"), 3);
    assert_eq!(route(0)["subnet"], "10.1.0.0/24");
    assert_eq!(route(257)["subnet"], "10.2.1.0/24");
    assert_eq!(route(0)["public_ip"], "100.64.0.1");
    let missing = json!([route(0), route(2)]);
    assert!(check_routes(&missing, 3).is_err());
    let extra = json!([route(0), route(1), route(2), route(3)]);
    assert!(check_routes(&extra, 3).is_err());
    let mut wrong = route(1);
    wrong["public_ip"] = json!("100.64.0.9");
    assert!(check_routes(&json!([route(0), wrong, route(2)]), 3).is_err());
    assert!(check_routes(&json!([route(0), route(0), route(1)]), 2).is_err());
}
