//! The engine's unit-test helpers on top of the test kit (`weft-testkit`, which holds
//! `require_root!`, the packet builders and everything else the workspace's tests share).
//!
//! Contract: a test that needs root, `/dev/net/tun` or network namespaces starts with the kit's
//! `require_root!()` (in scope in every module): when something is missing it prints why and
//! returns, unless `CI=true`, where the same lack fails the test. [`in_netns`] runs a closure on
//! a fresh thread inside a new, anonymous network namespace (only `lo`, brought up), which the
//! kernel removes when the thread ends, so a failing test leaves nothing behind on the host; it
//! uses the engine's own `sys` calls, which is why it lives here and not in the kit. Devices
//! made inside are named `wfe-*`. [`packet`] is the kit's packet builders.

use crate::sys::{netif, process};

pub(crate) use weft_testkit::packet;

/// Runs `f` on a new thread in a fresh network namespace whose `lo` is up; panics propagate.
pub(crate) fn in_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            process::unshare_network_namespace().expect("unshare(CLONE_NEWNET)");
            netif::set_up("lo").expect("bring lo up in the new namespace");
            f()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_netns_is_isolated() {
        require_root!();
        let host_mtu = netif::mtu("lo").expect("host lo");
        let inside = in_netns(|| {
            netif::set_mtu("lo", 1300).expect("set lo MTU inside");
            (
                netif::mtu("lo").expect("lo inside"),
                netif::flags("lo").expect("flags"),
            )
        });
        assert_eq!(inside.0, 1300);
        assert!(inside.1 & libc::IFF_UP != 0);
        assert_eq!(
            netif::mtu("lo").expect("host lo"),
            host_mtu,
            "the host's lo was touched"
        );
    }
}
