//! Whether privileged tests can run here, and how a test that cannot says so.
//!
//! Contract: [`missing`] says why a test that builds network namespaces, TUN devices or
//! testbeds cannot run here (not root, without `CAP_NET_ADMIN` / `CAP_SYS_ADMIN`, no
//! `/dev/net/tun`, iproute2's `ip`, `bridge` or `ss` missing), or `None`.
//! [`missing_programs`] does the same for other programs. A test starts with
//! [`require_root!`](crate::require_root) or [`require_programs!`](crate::require_programs):
//! when something is missing it prints why and returns, unless the environment has `CI=true`,
//! where the same lack fails the test ([`skip`]). Nothing here changes the system.

use std::path::Path;

/// The iproute2 commands the namespace tests and testbeds run (pings are weftctl's own).
pub const COMMANDS: [&str; 3] = ["ip", "bridge", "ss"];
/// The TUN clone device.
pub const TUN_DEVICE: &str = "/dev/net/tun";
/// `CAP_NET_ADMIN` (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN` (linux/capability.h): `setns`, `unshare(CLONE_NEWNET)`, `ip netns add`.
const CAP_SYS_ADMIN: u32 = 21;

/// Why privileged network tests cannot run here, or `None` when they can.
pub fn missing() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not running as root (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)".to_owned());
    }
    let effective = effective_capabilities();
    for (bit, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    ] {
        if effective.is_some_and(|caps| caps & (1 << bit) == 0) {
            return Some(format!("root without {name} (a restricted container?)"));
        }
    }
    if !Path::new(TUN_DEVICE).exists() {
        return Some(format!("{TUN_DEVICE} does not exist (modprobe tun?)"));
    }
    missing_programs(&COMMANDS).map(|why| format!("{why} (apt-get install iproute2)"))
}

/// Which of `programs` are not installed, as a reason, or `None` when all are.
pub fn missing_programs(programs: &[&str]) -> Option<String> {
    let lacking: Vec<&str> = programs.iter().copied().filter(|p| !on_path(p)).collect();
    (!lacking.is_empty()).then(|| format!("not installed: {}", lacking.join(", ")))
}

/// Whether `program` is an executable file in a `$PATH` directory (or the sbin directories,
/// which a non-login root shell may lack).
pub fn on_path(program: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|dir| Path::new(dir).join(program).is_file());
    found
}

/// The effective capability set of this process (`CapEff` in `/proc/self/status`).
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Whether the environment says this is CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test that cannot run: panics (fails it) under `CI=true`, else prints why.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test}: cannot run: {reason}; with CI=true this test must run (as root, after \
         tools/test.sh installed what the tests run)"
    );
    eprintln!("skipping {test}: {reason}");
}

/// The name of the test function `here` sits in (from `type_name_of_val(&here)`).
#[doc(hidden)]
pub fn test_name(here: &'static str) -> &'static str {
    here.strip_suffix("::here").unwrap_or(here)
}

/// Returns early from a test (printing why) when it lacks root, `CAP_NET_ADMIN` /
/// `CAP_SYS_ADMIN`, `/dev/net/tun` or iproute2; fails the test instead when `CI=true`.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = $crate::privileges::missing() {
            fn here() {}
            let name = $crate::privileges::test_name(::std::any::type_name_of_val(&here));
            $crate::privileges::skip(name, &reason);
            return;
        }
    };
}

/// Returns early from a test (printing why) when one of the programs is not installed
/// (`require_programs!("etcd", "etcdctl")`); fails the test instead when `CI=true`.
#[macro_export]
macro_rules! require_programs {
    ($($program:expr),+ $(,)?) => {
        if let Some(reason) = $crate::privileges::missing_programs(&[$($program),+]) {
            fn here() {}
            let name = $crate::privileges::test_name(::std::any::type_name_of_val(&here));
            $crate::privileges::skip(name, &reason);
            return;
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_on_the_path() {
        assert!(on_path("sh"));
        assert_eq!(missing_programs(&["sh"]), None);
        let why = missing_programs(&["sh", "no-such-program-weft"]).unwrap_or_default();
        assert_eq!(why, "not installed: no-such-program-weft");
    }

    #[test]
    fn the_test_name_drops_the_marker() {
        fn here() {}
        let name = test_name(std::any::type_name_of_val(&here));
        assert!(
            name.ends_with("tests::the_test_name_drops_the_marker"),
            "{name}"
        );
    }
}
