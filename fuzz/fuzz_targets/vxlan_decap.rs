//! A VXLAN datagram from the network. Invariants: decap never panics; what it accepts is an IP
//! packet of exactly its IP length that lies inside the datagram; re-encapsulating the accepted
//! inner packet and decapsulating again gives the same inner packet and source MAC.
#![no_main]

use encap::backend::{ip_packet_len, VxlanDecap, VxlanEncap, VXLAN_HEADER_LEN};
use libfuzzer_sys::fuzz_target;

/// The VNI and VtepMAC of the kernel captures in encap/tests/fixtures, so seeds get through.
const VNI: u32 = 1;
const OWN_MAC: [u8; 6] = [0x0e, 0x7f, 0x1a, 0x00, 0x00, 0x0b];

fuzz_target!(|datagram: &[u8]| {
    let decap = VxlanDecap {
        vni: VNI,
        local_mac: OWN_MAC,
    };
    let Ok(d) = decap.decap(datagram) else { return };

    assert_eq!(ip_packet_len(d.inner), Ok(d.inner.len()));
    assert_eq!(
        &datagram[VXLAN_HEADER_LEN..VXLAN_HEADER_LEN + d.inner.len()],
        d.inner
    );
    assert_ne!(d.src_mac, OWN_MAC, "a loop was accepted");

    let encap = VxlanEncap {
        vni: VNI,
        local_mac: d.src_mac,
        peer_mac: OWN_MAC,
    };
    let mut out = vec![0u8; VXLAN_HEADER_LEN + d.inner.len()];
    let n = encap
        .encap(d.inner, &mut out)
        .expect("an accepted inner packet re-encapsulates");
    assert_eq!(n, out.len());
    let again = decap
        .decap(&out[..n])
        .expect("our own encapsulation decapsulates");
    assert_eq!(again.inner, d.inner);
    assert_eq!(again.src_mac, d.src_mac);
});
