//! Zero-copy views over packet headers, each with a `Repr`.
//!
//! The contract follows smoltcp's `wire`: a view `Foo<T: AsRef<[u8]>>` has `new_unchecked`,
//! `check_len` and `new_checked` (both), and `into_inner`. Once `check_len` has passed, no
//! accessor panics. Field offsets are `Range<usize>` constants in a private `mod field` beside a
//! public `HEADER_LEN`. Getters need `AsRef`, setters (`set_*`) need `AsMut`. Beside each view a
//! small `Copy` `Repr` has `parse`, `buffer_len` and `emit`; `emit` never panics on a buffer of
//! exactly `buffer_len()` bytes and never calls `new_checked` (a reused buffer holds stale
//! lengths).

pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod virtio;
pub mod vxlan;

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers").
pub mod proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMP for IPv6.
    pub const ICMPV6: u8 = 58;
}

/// Ethernet II ethertypes (IEEE 802 numbers).
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
}
