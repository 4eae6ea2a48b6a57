//! `encap`: every packet format and transform weft needs, pure.
//!
//! This crate owns the bytes: zero-copy header views with `Repr`s ([`wire`]), the Internet
//! checksum ([`checksum`]), encapsulation and decapsulation for flannel's udp and vxlan
//! backends ([`backend`]), the split of a TUN super-packet into MTU-sized segments laid out for
//! one UDP_SEGMENT send ([`gso`]), the coalescing of received segments back into super-packets
//! for one TUN write ([`gro`]), inner checksums a same-host sender left partial
//! ([`partial_checksum`]), and the ICMP errors the dataplane generates ([`icmp`]).
//!
//! Contract: no I/O, no threads, no clock, no `unsafe`, no allocation per packet. Everything works
//! on buffers the caller owns; a bad packet is an [`Error`] value, never a panic.
#![forbid(unsafe_code)]

pub mod backend;
pub mod checksum;
mod error;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod partial_checksum;
#[cfg(test)]
mod test_packets;
pub mod wire;

pub use error::{Error, Result};

/// Whether a checksum is computed in software or left to the kernel (offloaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumCaps {
    /// Compute and verify every checksum in software.
    #[default]
    Complete,
    /// Leave checksums to the kernel: emit partial checksums, do not verify on parse.
    Offloaded,
}
