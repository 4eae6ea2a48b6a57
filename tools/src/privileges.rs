//! The privilege probe behind [`require_root!`](crate::require_root) for tests that build
//! testbeds.
//!
//! Contract: [`missing`] says why a testbed cannot be built here (not root, no
//! `/dev/net/tun`, a missing command), or `None`. A test starts with `require_root!()`: when
//! something is missing it prints why and returns, unless the environment has `CI=true`,
//! where the same lack fails the test (CI runs as root and must run these tests). The
//! commands needed are those of the testbed, all iproute2's: `ip`, `bridge` and `ss` (the
//! testbed pings with its own ICMP echo client, [`crate::testbed::ping`]).

use std::path::Path;

/// Commands a testbed runs.
pub const COMMANDS: [&str; 3] = ["ip", "bridge", "ss"];

/// Why testbeds cannot run here, or `None` when they can.
pub fn missing() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some(
            "not running as root (a testbed needs CAP_NET_ADMIN and CAP_SYS_ADMIN)".into(),
        );
    }
    if !Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun does not exist (modprobe tun?)".into());
    }
    let lacking: Vec<&str> = COMMANDS.iter().copied().filter(|c| !on_path(c)).collect();
    if !lacking.is_empty() {
        return Some(format!(
            "commands not found: {} (apt-get install iproute2)",
            lacking.join(", ")
        ));
    }
    None
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

/// Whether the environment says this is CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test that cannot run: panics (fails it) under `CI=true`, else prints why.
pub fn skip(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test}: cannot run: {reason}; with CI=true this test must run (as root, with the testbed's tools)"
    );
    eprintln!("skipping {test}: {reason}");
}

/// Returns early from a test (printing why) when testbeds cannot run here; fails the test
/// instead when `CI=true`.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(reason) = $crate::privileges::missing() {
            fn here() {}
            let name = ::std::any::type_name_of_val(&here);
            $crate::privileges::skip(name.strip_suffix("::here").unwrap_or(name), &reason);
            return;
        }
    };
}
