//! UDP header (RFC 768): the zero-copy view [`UdpPacket`] and its [`UdpRepr`].
//!
//! The view wraps the UDP datagram (the IP payload). [`UdpPacket::check_len`] guarantees
//! `8 <= length field <= buffer len`, after which no accessor panics; [`UdpPacket::payload`] is
//! bytes 8..length. Checksums take the pseudo-header as a [`Sum`] the caller builds
//! ([`crate::checksum::pseudo_header_v4`] / [`crate::checksum::pseudo_header_v6`], or the IP
//! view's `pseudo_header`), with protocol 17 and the UDP length.
//!
//! A zero checksum field means "no checksum" over IPv4 (RFC 768) and is forbidden over IPv6
//! (RFC 8200 §8.1): [`UdpPacket::verify_checksum`] is the arithmetic check only, and
//! [`UdpRepr::parse`] accepts a zero field, so an IPv6 caller rejects `checksum() == 0` first.

use super::{get_u16, len16, put_u16};
use crate::checksum::{self, Sum};
use crate::error::need;
use crate::{ChecksumCaps, Error, Result};

/// The length of a UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

mod field {
    use core::ops::Range;

    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const CHECKSUM: Range<usize> = 6..8;
}

//= https://www.rfc-editor.org/rfc/rfc768
//#  0      7 8     15 16    23 24    31
//# +--------+--------+--------+--------+
//# |     Source      |   Destination   |
//# |      Port       |      Port       |
//# +--------+--------+--------+--------+
//# |                 |                 |
//# |     Length      |    Checksum     |
//# +--------+--------+--------+--------+

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps `buffer` without any check; accessors may panic until [`Self::check_len`] passes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps `buffer` and runs [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks `len >= 8` and `8 <= length field <= len`.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        need(data, HEADER_LEN)?;
        //= https://www.rfc-editor.org/rfc/rfc768
        //# Length  is the length  in octets  of this user datagram  including  this
        //# header  and the data.   (This  means  the minimum value of the length is
        //# eight.)
        let len = usize::from(self.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed("udp length"));
        }
        need(data, len)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length: header plus data, in bytes.
    #[inline]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Whether the length field says there is no data (length 8).
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum (0: none was computed).
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Whether the checksum over `pseudo` (the whole pseudo-header, length included) and the
    /// datagram (0..length) verifies. Arithmetic only: a zero field is not special here.
    pub fn verify_checksum(&self, pseudo: Sum) -> bool {
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::verifies(pseudo.bytes(data))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> UdpPacket<&'a T> {
    /// The payload: bytes 8..length.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: u16) {
        put_u16(self.buffer.as_mut(), field::SRC_PORT.start, port);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: u16) {
        put_u16(self.buffer.as_mut(), field::DST_PORT.start, port);
    }

    /// Sets Length.
    #[inline]
    pub fn set_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets Checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, check);
    }

    /// Computes the checksum over `pseudo` and 0..length and writes it; a computed 0 is written
    /// as 0xffff.
    pub fn fill_checksum(&mut self, pseudo: Sum) {
        self.set_checksum(0);
        let len = usize::from(self.len());
        let check = pseudo.bytes(&self.buffer.as_ref()[..len]).finish();
        //= https://www.rfc-editor.org/rfc/rfc768
        //# If the computed  checksum  is zero,  it is transmitted  as all ones (the
        //# equivalent  in one's complement  arithmetic).
        self.set_checksum(if check == 0 { 0xffff } else { check });
    }

    /// The payload (8..length), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A high-level UDP header. The payload length is given to [`UdpRepr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses a datagram. With [`ChecksumCaps::Complete`] a non-zero checksum must verify
    /// against `pseudo`; a zero one means "none" (valid over IPv4 only: see the module doc).
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        pseudo: Sum,
        caps: ChecksumCaps,
    ) -> Result<UdpRepr> {
        packet.check_len()?;
        //= https://www.rfc-editor.org/rfc/rfc768
        //# An all zero  transmitted
        //# checksum  value means that the transmitter  generated  no checksum  (for
        //# debugging or for higher level protocols that don't care).
        if caps == ChecksumCaps::Complete
            && packet.checksum() != 0
            && !packet.verify_checksum(pseudo)
        {
            return Err(Error::Malformed("udp checksum"));
        }
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// The length of the header: [`HEADER_LEN`].
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the datagram for `payload_len` bytes of payload.
    #[inline]
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes the header with length `8 + payload_len` and a zero checksum.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        payload_len: usize,
    ) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len16(self.buffer_len(payload_len)));
        packet.set_checksum(0);
    }

    /// Writes the header, lets `emit_payload` fill the `payload_len` bytes of payload (pass
    /// `|_| {}` if they are already in place), then the checksum: computed over `pseudo` (the
    /// whole pseudo-header, length `8 + payload_len`) with [`ChecksumCaps::Complete`], or the
    /// folded pseudo-header sum (a partial checksum the kernel completes, as for
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`) with [`ChecksumCaps::Offloaded`].
    ///
    /// `8 + payload_len` must fit in 16 bits. Panics only if `packet` is shorter than
    /// [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut UdpPacket<T>,
        pseudo: Sum,
        payload_len: usize,
        emit_payload: impl FnOnce(&mut [u8]),
        caps: ChecksumCaps,
    ) {
        self.emit_header(packet, payload_len);
        emit_payload(packet.payload_mut());
        match caps {
            ChecksumCaps::Complete => packet.fill_checksum(pseudo),
            ChecksumCaps::Offloaded => packet.set_checksum(pseudo.fold()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::ipv6::Ipv6Packet;
    use crate::wire::proto;

    /// Python `sendto(b"hello weft", ("10.77.0.2", 9999))` in a netns, captured with tcpdump.
    const UDP4: [u8; 38] = [
        0x45, 0x00, 0x00, 0x26, 0x61, 0x0b, 0x40, 0x00, 0x40, 0x11, 0xc5, 0x1f, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0xeb, 0x63, 0x27, 0x0f, 0x00, 0x12, 0xb6, 0xee, 0x68, 0x65,
        0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x65, 0x66, 0x74,
    ];

    /// The same over IPv6: `sendto(b"hello weft6", ("fd00:77::2", 9999))`.
    const UDP6: [u8; 59] = [
        0x60, 0x07, 0x66, 0xe0, 0x00, 0x13, 0x11, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xd6, 0x58, 0x27, 0x0f, 0x00,
        0x13, 0xaf, 0xa1, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x65, 0x66, 0x74, 0x36,
    ];

    #[test]
    fn parse_captured_v4() {
        let ip = Ipv4Packet::new_checked(&UDP4[..]).expect("ip");
        let pseudo = ip.pseudo_header();
        let udp = UdpPacket::new_checked(ip.payload()).expect("udp");
        assert_eq!(udp.src_port(), 60259);
        assert_eq!(udp.dst_port(), 9999);
        assert_eq!(udp.len(), 18);
        assert_eq!(udp.checksum(), 0xb6ee);
        assert_eq!(udp.payload(), b"hello weft");
        assert!(udp.verify_checksum(pseudo));
        let repr = UdpRepr::parse(&udp, pseudo, ChecksumCaps::Complete).expect("parse");
        assert_eq!(
            repr,
            UdpRepr {
                src_port: 60259,
                dst_port: 9999
            }
        );
        let mut buf = [0u8; 18];
        repr.emit(
            &mut UdpPacket::new_unchecked(&mut buf[..]),
            pseudo,
            10,
            |p| p.copy_from_slice(b"hello weft"),
            ChecksumCaps::Complete,
        );
        assert_eq!(buf, UDP4[20..]);
    }

    #[test]
    fn parse_captured_v6() {
        let ip = Ipv6Packet::new_checked(&UDP6[..]).expect("ip");
        let pseudo = ip.pseudo_header(proto::UDP, 19);
        let udp = UdpPacket::new_checked(ip.payload()).expect("udp");
        assert_eq!(udp.src_port(), 54872);
        assert_eq!(udp.payload(), b"hello weft6");
        assert!(udp.verify_checksum(pseudo));
        let mut buf = UDP6;
        let mut udp = UdpPacket::new_unchecked(&mut buf[40..]);
        udp.set_checksum(0x1234);
        udp.fill_checksum(pseudo);
        assert_eq!(buf, UDP6);
    }

    #[test]
    fn bad_checksum_and_zero_checksum() {
        let ip = Ipv4Packet::new_checked(&UDP4[..]).expect("ip");
        let pseudo = ip.pseudo_header();
        let mut dgram = [0u8; 18];
        dgram.copy_from_slice(ip.payload());
        dgram[10] ^= 0x20;
        let udp = UdpPacket::new_checked(&dgram[..]).expect("udp");
        assert!(!udp.verify_checksum(pseudo));
        assert_eq!(
            UdpRepr::parse(&udp, pseudo, ChecksumCaps::Complete),
            Err(Error::Malformed("udp checksum"))
        );
        assert!(UdpRepr::parse(&udp, pseudo, ChecksumCaps::Offloaded).is_ok());
        dgram[6..8].fill(0);
        let udp = UdpPacket::new_checked(&dgram[..]).expect("udp");
        assert!(!udp.verify_checksum(pseudo));
        assert!(UdpRepr::parse(&udp, pseudo, ChecksumCaps::Complete).is_ok());
    }

    #[test]
    fn computed_zero_is_sent_as_all_ones() {
        // Choose the payload word so that the whole sum is 0xffff: the checksum computes to 0.
        let pseudo = checksum::pseudo_header_v4([10, 0, 0, 1], [10, 0, 0, 2], proto::UDP, 10);
        let mut buf = [0u8; 10];
        let repr = UdpRepr {
            src_port: 1,
            dst_port: 2,
        };
        repr.emit_header(&mut UdpPacket::new_unchecked(&mut buf[..]), 2);
        let partial = pseudo.bytes(&buf).fold();
        buf[8..10].copy_from_slice(&(!partial).to_be_bytes());
        let mut udp = UdpPacket::new_unchecked(&mut buf[..]);
        udp.fill_checksum(pseudo);
        assert_eq!(udp.checksum(), 0xffff);
        assert!(udp.verify_checksum(pseudo));
    }

    #[test]
    fn truncated_and_malformed() {
        let check = |b: &[u8]| UdpPacket::new_unchecked(b).check_len();
        assert_eq!(check(&UDP4[20..27]), Err(Error::Truncated { needed: 8 }));
        assert_eq!(check(&UDP4[20..37]), Err(Error::Truncated { needed: 18 }));
        let mut b = [0u8; 18];
        b.copy_from_slice(&UDP4[20..]);
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(check(&b), Err(Error::Malformed("udp length")));
        b[4..6].copy_from_slice(&8u16.to_be_bytes());
        let udp = UdpPacket::new_checked(&b[..]).expect("valid");
        assert!(udp.is_empty());
        assert_eq!(udp.payload(), b"");
    }

    #[test]
    fn repr_round_trip_and_offload() {
        let repr = UdpRepr {
            src_port: 40000,
            dst_port: 8472,
        };
        let payload = [7u8; 33];
        let pseudo = checksum::pseudo_header_v6(&[1; 16], &[2; 16], proto::UDP, 41);
        let mut buf = vec![0u8; repr.buffer_len(payload.len())];
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(
            &mut p,
            pseudo,
            payload.len(),
            |b| b.copy_from_slice(&payload),
            ChecksumCaps::Complete,
        );
        let p = UdpPacket::new_checked(&buf[..]).expect("valid");
        assert!(p.verify_checksum(pseudo));
        assert_eq!(p.payload(), &payload);
        assert_eq!(UdpRepr::parse(&p, pseudo, ChecksumCaps::Complete), Ok(repr));

        // Offloaded: the field holds the folded pseudo-header; adding the datagram completes it.
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        repr.emit(
            &mut p,
            pseudo,
            payload.len(),
            |_| {},
            ChecksumCaps::Offloaded,
        );
        assert_eq!(p.checksum(), pseudo.fold());
        let full = Sum::ZERO.bytes(&buf).finish();
        let mut p = UdpPacket::new_unchecked(&mut buf[..]);
        p.set_checksum(full);
        assert!(p.verify_checksum(pseudo));
    }
}
