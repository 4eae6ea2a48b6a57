//! VXLAN header (RFC 7348 §5): a zero-copy view and its `Repr`.
//!
//! Owns the 8-byte header between the outer UDP header and the inner Ethernet frame: the flags
//! byte (only the I flag, 0x08, is defined), 24 reserved bits, the 24-bit VNI and 8 more reserved
//! bits. The view exposes every reserved field so that the decapsulator can reject what the
//! Linux kernel rejects; [`Repr::parse`] itself enforces the kernel's rule (see
//! [`Repr::parse`]), while the raw accessors stay available for diagnostics.

//= https://www.rfc-editor.org/rfc/rfc7348#section-5
//# VXLAN Header:  This is an 8-byte field that has:
//#
//#    - Flags (8 bits): where the I flag MUST be set to 1 for a valid
//#      VXLAN Network ID (VNI).  The other 7 bits (designated "R") are
//#      reserved fields and MUST be set to zero on transmission and
//#      ignored on receipt.
//#
//#    - VXLAN Segment ID/VXLAN Network Identifier (VNI): this is a
//#      24-bit value used to designate the individual VXLAN overlay
//#      network on which the communicating VMs are situated.  VMs in
//#      different VXLAN overlay networks cannot communicate with each
//#      other.
//#
//#    - Reserved fields (24 bits and 8 bits): MUST be set to zero on
//#      transmission and ignored on receipt.

use crate::error::need;
use crate::{Error, Result};

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// The I flag: the VNI is valid. The only flag a plain (non-GBP, non-GPE) VTEP accepts.
pub const FLAG_I: u8 = 0x08;

/// The largest VNI: 24 bits.
pub const VNI_MAX: u32 = 0x00ff_ffff;

mod field {
    use core::ops::{Range, RangeFrom};

    pub(super) const FLAGS: usize = 0;
    pub(super) const RESERVED_0: Range<usize> = 1..4;
    pub(super) const VNI: Range<usize> = 4..7;
    pub(super) const RESERVED_1: usize = 7;
    pub(super) const PAYLOAD: RangeFrom<usize> = 8..;
}

/// A read/write view of a VXLAN header and the frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer and checks that it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds a whole header; after this no accessor panics.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref(), HEADER_LEN)
    }

    /// Returns the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte (`R R R R I R R R`).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag is set.
    #[inline]
    pub fn i_flag(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The flag bits other than I; zero in a conforming header.
    #[inline]
    pub fn reserved_flags(&self) -> u8 {
        self.flags() & !FLAG_I
    }

    /// The 24 reserved bits after the flags byte.
    #[inline]
    pub fn reserved0(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::RESERVED_0];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The 24-bit VXLAN Network Identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// The 8 reserved bits after the VNI.
    #[inline]
    pub fn reserved1(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED_1]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The encapsulated Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the 24 reserved bits after the flags byte (the top 8 bits of `value` are ignored).
    #[inline]
    pub fn set_reserved0(&mut self, value: u32) {
        self.buffer.as_mut()[field::RESERVED_0].copy_from_slice(&value.to_be_bytes()[1..]);
    }

    /// Sets the VNI (the top 8 bits of `vni` are ignored).
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&vni.to_be_bytes()[1..]);
    }

    /// Sets the 8 reserved bits after the VNI.
    #[inline]
    pub fn set_reserved1(&mut self, value: u8) {
        self.buffer.as_mut()[field::RESERVED_1] = value;
    }

    /// The encapsulated frame, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A VXLAN header as a plain VTEP sends and accepts it: the I flag and a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The 24-bit VNI.
    pub vni: u32,
}

impl Repr {
    /// Reads a header the way Linux `vxlan_rcv` (drivers/net/vxlan/vxlan_core.c) does for a
    /// device without GBP, GPE or remote checksum offload: the I flag must be set, and every
    /// other flag bit and every reserved bit must be zero.
    ///
    /// This departs from RFC 7348 ("ignored on receipt") on purpose, as the kernel does: its
    /// comment says so "maintains compatibility with previous stack code, and also is more
    /// robust". A weft node must drop exactly what its kernel peers drop.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.i_flag() {
            return Err(Error::Malformed("vxlan I flag clear"));
        }
        if packet.reserved_flags() != 0 {
            return Err(Error::Malformed("vxlan reserved flag bits set"));
        }
        if packet.reserved0() != 0 || packet.reserved1() != 0 {
            return Err(Error::Malformed("vxlan reserved bits set"));
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// The header length: [`HEADER_LEN`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header (flags 0x08, reserved bits zero) into the first [`HEADER_LEN`] bytes
    /// of `packet`, which must hold them. The VNI is cut to 24 bits.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.set_reserved0(0);
        packet.set_vni(self.vni);
        packet.set_reserved1(0);
    }

    /// The header as bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let v = (self.vni & VNI_MAX).to_be_bytes();
        [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // The first 10 bytes of a kernel flannel.1 frame, VNI 1 (tests/fixtures/kernel_vxlan.txt).
    const CAPTURED: [u8; 10] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x0e, 0x7f];

    #[test]
    fn parse_captured() {
        let p = Packet::new_checked(&CAPTURED[..]).unwrap();
        assert_eq!(p.flags(), 0x08);
        assert!(p.i_flag());
        assert_eq!(p.reserved_flags(), 0);
        assert_eq!(p.reserved0(), 0);
        assert_eq!(p.vni(), 1);
        assert_eq!(p.reserved1(), 0);
        assert_eq!(p.payload(), &[0x0e, 0x7f]);
        assert_eq!(Repr::parse(&p), Ok(Repr { vni: 1 }));
    }

    #[test]
    fn round_trip() {
        for vni in [0, 1, 0x1234, VNI_MAX] {
            let repr = Repr { vni };
            let mut buf = [0xffu8; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, repr.to_bytes());
            assert_eq!(
                Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
                Ok(repr)
            );
        }
        assert_eq!(
            Repr { vni: 0xabcdef }.to_bytes(),
            [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]
        );
        assert_eq!(Repr { vni: 1 }.buffer_len(), 8);
    }

    #[test]
    fn vni_is_cut_to_24_bits() {
        assert_eq!(Repr { vni: 0x0100_0002 }.to_bytes()[4..8], [0, 0, 2, 0]);
    }

    #[test]
    fn rejects_what_the_kernel_rejects() {
        let check = |mutate: fn(&mut [u8; 10]), want: &'static str| {
            let mut b = CAPTURED;
            mutate(&mut b);
            let p = Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Repr::parse(&p), Err(Error::Malformed(want)));
        };
        check(|b| b[0] = 0x00, "vxlan I flag clear");
        check(|b| b[0] = 0x80, "vxlan I flag clear");
        check(|b| b[0] = 0x0c, "vxlan reserved flag bits set");
        check(|b| b[0] = 0x88, "vxlan reserved flag bits set");
        check(|b| b[1] = 0x01, "vxlan reserved bits set");
        check(|b| b[3] = 0x80, "vxlan reserved bits set");
        check(|b| b[7] = 0x01, "vxlan reserved bits set");
    }

    #[test]
    fn setters() {
        let mut buf = [0u8; 9];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_flags(0x0c);
        p.set_reserved0(0x00a0_b0c0);
        p.set_vni(0x0012_3456);
        p.set_reserved1(0x77);
        p.payload_mut()[0] = 0x99;
        assert_eq!(p.reserved_flags(), 0x04);
        assert_eq!(p.reserved0(), 0xa0b0c0);
        assert_eq!(p.vni(), 0x123456);
        assert_eq!(
            p.into_inner(),
            &[0x0c, 0xa0, 0xb0, 0xc0, 0x12, 0x34, 0x56, 0x77, 0x99]
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&CAPTURED[..7]).err(),
            Some(Error::Truncated { needed: 8 })
        );
    }
}
