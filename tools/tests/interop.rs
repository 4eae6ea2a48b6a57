//! Issue 3, tests 3 and 4: weftd talks to peers it did not write. Node a runs weftd; node b
//! runs the kernel's VXLAN device set up exactly as flanneld's vxlan backend sets up
//! `flannel.1` (test 3), or `weftctl forward-udp`, flannel's one-packet-per-syscall udp data
//! path (test 4). weftd picks its I/O driver (both drivers are covered by tests/weftd.rs). Ping (default size and full MTU) and a verified TCP stream both ways.

mod common;

use weftctl::peers::Backend;
use weftctl::require_root;
use weftctl::testbed::{IoDriver, Overlay, Testbed};

fn interop(weftd: Overlay, peer: Overlay) {
    let mut bed = Testbed::new(2, common::binaries_with_weftd()).expect("testbed");
    bed.start(&[weftd, peer])
        .expect("weftd on a, the peer on b");
    common::interop_check(&mut bed);
}

#[test]
fn vxlan_weftd_and_kernel_flannel_1() {
    require_root!();
    interop(
        Overlay::Weftd {
            backend: Backend::Vxlan,
            driver: IoDriver::Auto,
        },
        Overlay::KernelVxlan,
    );
}

#[test]
fn udp_weftd_and_flannel_udp_forwarder() {
    require_root!();
    interop(
        Overlay::Weftd {
            backend: Backend::Udp,
            driver: IoDriver::Auto,
        },
        Overlay::Forwarder,
    );
}
