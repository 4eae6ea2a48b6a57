//! `weftctl demo` (the README's first command) exits 0 and prints its ping and
//! throughput lines; and `weftctl leases` reads a lease directory. On a fresh machine's tools: the demo runs
//! with `ping`, `ethtool`, `iperf3` and `protoc` off its `PATH` (a fresh machine has only
//! the Rust toolchain and iproute2).
//!
//! Runs target/<profile>/weftctl and target/<profile>/weftd: build them first
//! (`cargo build --workspace --bins`; `tools/test.sh` does).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use weft_testkit::require_root;

/// The demo promises under a minute.
const DEMO_LIMIT: Duration = Duration::from_secs(60);
/// Programs a fresh machine lacks and the demo must not run: it pings and measures with its
/// own code, and the testbed sets veth features itself.
const HIDDEN: [&str; 4] = ["ping", "ethtool", "iperf3", "protoc"];

/// A directory of symlinks to every program in the `$PATH` directories and the (s)bin
/// directories (which weftctl also searches), the first of each name, except `hidden`.
fn path_without(hidden: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path.split(':').chain([
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]);
    for from in dirs.filter(|d| !d.is_empty()) {
        let Ok(entries) = std::fs::read_dir(from) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let link = dir.path().join(&name);
            if hidden.iter().any(|h| name == **h) || link.symlink_metadata().is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), &link).expect("symlink");
        }
    }
    dir
}

/// Fails unless a shell with `PATH=dir` finds none of `hidden` (and does find `ip`).
fn assert_hidden(dir: &Path, hidden: &[&str]) {
    for (program, found) in hidden.iter().map(|h| (*h, false)).chain([("ip", true)]) {
        let status = Command::new("/bin/sh")
            .args(["-c", &format!("command -v {program}")])
            .env("PATH", dir)
            .output()
            .expect("sh");
        assert_eq!(
            status.status.success(),
            found,
            "{program} on the demo's PATH: {}",
            String::from_utf8_lossy(&status.stdout)
        );
    }
}

fn demo(extra: &[&str]) {
    let weftd = common::binaries_with_weftd().weftd.expect("weftd");
    let path = path_without(&HIDDEN);
    assert_hidden(path.path(), &HIDDEN);
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .arg("demo")
        .args(["--weftd", weftd.to_str().expect("UTF-8 path")])
        .args(extra)
        .env("PATH", path.path())
        .output()
        .expect("run weftctl demo");
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "weftctl demo {extra:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("{stdout}");
    let ping = stdout
        .lines()
        .find(|l| l.starts_with("ping:"))
        .unwrap_or_else(|| panic!("no ping line:\n{stdout}"));
    assert!(
        ping.contains("3 received") && ping.contains("0% packet loss"),
        "{ping}"
    );
    let throughput = stdout
        .lines()
        .find(|l| l.starts_with("throughput:"))
        .unwrap_or_else(|| panic!("no throughput line:\n{stdout}"));
    assert!(
        throughput.contains("Gbit/s") && throughput.contains("every byte verified"),
        "{throughput}"
    );
    assert!(stdout.contains("SUBNET"), "no lease table:\n{stdout}");
    // Other tests' testbeds may hold the machine's testbed lock first: that wait, which the
    // demo reports, is not the demo's time.
    let waited = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: ")?.split_once(" s of that waiting"))
        .map_or(0.0, |(s, _)| s.parse::<f64>().expect("seconds"));
    let own = took.saturating_sub(Duration::from_secs_f64(waited));
    assert!(
        own < DEMO_LIMIT,
        "the demo took {own:?} (plus {waited} s waiting)"
    );
}

#[test]
fn demo_on_the_lease_directory() {
    require_root!();
    demo(&[]);
}

#[test]
fn demo_on_etcd_with_vxlan() {
    require_root!();
    let have_etcd = Command::new("sh")
        .args(["-c", "command -v etcd && command -v etcdctl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_etcd {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "etcd is not installed; with CI=true this test must run"
        );
        eprintln!("skipping demo_on_etcd_with_vxlan: etcd is not installed");
        return;
    }
    demo(&["--etcd", "--backend", "vxlan"]);
}

#[test]
fn leases_prints_a_lease_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config"),
        r#"{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}"#,
    )
    .expect("config");
    std::fs::create_dir_all(dir.path().join("subnets")).expect("subnets");
    std::fs::write(
        dir.path().join("subnets").join("10.244.7.0-24"),
        r#"{"PublicIP":"192.168.1.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:07"}}"#,
    )
    .expect("lease");
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["leases", "--lease-dir"])
        .arg(dir.path())
        .output()
        .expect("run weftctl leases");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "10.244.7.0/24",
        "192.168.1.7",
        "vxlan",
        "0e:00:00:00:00:07",
        "never",
        "10.244.0.0/16",
    ] {
        assert!(stdout.contains(want), "no {want} in:\n{stdout}");
    }
}
