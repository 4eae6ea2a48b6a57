//! `cargo bench -p weftctl --bench scale_leases`: `weftctl scale-leases` with 10 000 leases,
//! on etcd and on a lease directory (the scaling targets: all routes within 2 s of weftd's
//! start, weftd under 50 MB with 10 000 peers). Prints the figures; asserts none.
//!
//! `harness = false`. It needs root (the testbed's namespaces) and etcd for the etcd run, and
//! skips with a printed reason otherwise. It runs target/release/weftd, building it first
//! when it is missing. Run outside `cargo bench` (`cargo test --benches`) it does nothing.
//! `WEFT_SCALE_LEASES=n` changes the lease count.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use weftctl::scale::{self, Store};
use weftctl::testbed::Binaries;

fn weftd() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding the bench's path: {e}"))?;
    if let Some(w) = Binaries::weftd_near(&exe) {
        return Ok(w);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the workspace directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("scale_leases: building weftd (cargo build --release -p engine --bin weftd)");
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "engine", "--bin", "weftd"])
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building weftd failed ({status})"));
    }
    Binaries::weftd_near(&exe).ok_or_else(|| "weftd is not next to the bench after building".into())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Some(reason) = weft_testkit::privileges::missing() {
        println!("scale_leases: skipped: {reason}");
        return;
    }
    let weftd = match weftd() {
        Ok(w) => w,
        Err(e) => {
            println!("scale_leases: skipped: {e}");
            return;
        }
    };
    let leases = std::env::var("WEFT_SCALE_LEASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut failed = false;
    for store in [Store::Etcd, Store::Dir] {
        let missing = weft_testkit::privileges::missing_programs(&["etcd", "etcdctl"]);
        if let (Store::Etcd, Some(why)) = (store, missing) {
            println!("scale_leases: etcd run skipped: {why}");
            continue;
        }
        let config = scale::Config {
            leases,
            store,
            weftd: weftd.clone(),
            weftctl: PathBuf::from(env!("CARGO_BIN_EXE_weftctl")),
            timeout: Duration::from_secs(60),
        };
        match scale::run(&config) {
            Ok(report) => print!("{}", report.render()),
            Err(e) => {
                println!("scale_leases: {} run failed: {e:#}", store.name());
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
