//! Ethernet II header: a zero-copy view and its `Repr`.
//!
//! Owns the 14-byte header (destination MAC, source MAC, ethertype) that VXLAN puts in front of
//! the inner IP packet. No 802.1Q tags: flannel's VTEPs never send them, and a tagged frame's
//! ethertype (0x8100) is simply not IP to the decapsulator. The frame check sequence is not part
//! of a VXLAN payload and is not modelled.

use crate::error::need;
use crate::Result;

/// A MAC address.
pub type Address = [u8; 6];

/// The broadcast MAC address.
pub const BROADCAST: Address = [0xff; 6];

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

mod field {
    use core::ops::Range;

    pub(super) const DESTINATION: Range<usize> = 0..6;
    pub(super) const SOURCE: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: Range<usize> = 12..14;
    pub(super) const PAYLOAD: core::ops::RangeFrom<usize> = 14..;
}

/// Whether `mac` is a group (multicast or broadcast) address: the I/G bit, the least
/// significant bit of the first octet, is set.
#[inline]
pub fn is_multicast(mac: &Address) -> bool {
    mac[0] & 0x01 != 0
}

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer and checks that it holds a whole header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
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

    /// The destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> Address {
        mac(&self.buffer.as_ref()[field::DESTINATION])
    }

    /// The source MAC address.
    #[inline]
    pub fn src_addr(&self) -> Address {
        mac(&self.buffer.as_ref()[field::SOURCE])
    }

    /// The ethertype.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Frame<&'a T> {
    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Address) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&addr);
    }

    /// Sets the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Address) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&addr);
    }

    /// Sets the ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    /// The bytes after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

#[inline]
fn mac(b: &[u8]) -> Address {
    let mut a = [0u8; 6];
    a.copy_from_slice(b);
    a
}

/// The fields of an Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Destination MAC address.
    pub dst_addr: Address,
    /// Source MAC address.
    pub src_addr: Address,
    /// Ethertype of the payload.
    pub ethertype: u16,
}

impl Repr {
    /// Reads the header of a checked frame.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        frame.check_len()?;
        Ok(Repr {
            dst_addr: frame.dst_addr(),
            src_addr: frame.src_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// The header length: [`HEADER_LEN`].
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `frame`, which must hold them.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
    }

    /// The header as bytes.
    #[inline]
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.emit(&mut Frame::new_unchecked(&mut b[..]));
        b
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::ethertype;

    // The inner Ethernet header of a kernel flannel.1 frame (tests/fixtures/kernel_vxlan.txt).
    const CAPTURED: [u8; 16] = [
        0x0e, 0x7f, 0x1a, 0x00, 0x00, 0x0b, 0x0e, 0x7f, 0x1a, 0x00, 0x00, 0x0a, 0x08, 0x00, 0x45,
        0x00,
    ];

    #[test]
    fn parse_captured() {
        let frame = Frame::new_checked(&CAPTURED[..]).unwrap();
        assert_eq!(frame.dst_addr(), [0x0e, 0x7f, 0x1a, 0, 0, 0x0b]);
        assert_eq!(frame.src_addr(), [0x0e, 0x7f, 0x1a, 0, 0, 0x0a]);
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        assert_eq!(frame.payload(), &[0x45, 0x00]);
        let repr = Repr::parse(&frame).unwrap();
        assert_eq!(repr.ethertype, 0x0800);
        assert_eq!(repr.to_bytes()[..], CAPTURED[..HEADER_LEN]);
    }

    #[test]
    fn round_trip() {
        let repr = Repr {
            dst_addr: [1, 2, 3, 4, 5, 6],
            src_addr: [0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f],
            ethertype: ethertype::IPV6,
        };
        let mut buf = [0xaau8; HEADER_LEN];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(
            buf,
            [1, 2, 3, 4, 5, 6, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x86, 0xdd]
        );
        assert_eq!(
            Repr::parse(&Frame::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
        assert_eq!(repr.buffer_len(), 14);
    }

    #[test]
    fn setters_and_payload_mut() {
        let mut buf = [0u8; 16];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        frame.set_ethertype(ethertype::ARP);
        frame.payload_mut()[0] = 0x42;
        assert_eq!(frame.ethertype(), 0x0806);
        assert_eq!(frame.into_inner()[14], 0x42);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&CAPTURED[..13]).err(),
            Some(crate::Error::Truncated { needed: 14 })
        );
    }

    #[test]
    fn multicast_bit() {
        assert!(is_multicast(&BROADCAST));
        assert!(is_multicast(&[0x01, 0x00, 0x5e, 0, 0, 1]));
        assert!(is_multicast(&[0x33, 0x33, 0, 0, 0, 1]));
        assert!(!is_multicast(&[0x0e, 0x7f, 0x1a, 0, 0, 0x0a]));
    }
}
