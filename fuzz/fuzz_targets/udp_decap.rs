//! A flannel udp datagram from the network (the payload is the inner IP packet). Invariants:
//! decap never panics; what it accepts is a prefix of the datagram of exactly its IP length, and
//! decapsulating that prefix again accepts all of it.
#![no_main]

use encap::backend::{ip_packet_len, udp_decap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|datagram: &[u8]| {
    let Ok(inner) = udp_decap(datagram) else {
        return;
    };
    assert_eq!(inner, &datagram[..inner.len()]);
    assert_eq!(ip_packet_len(inner), Ok(inner.len()));
    assert_eq!(udp_decap(inner), Ok(inner));
});
