//! ICMP for IPv6 (RFC 4443): the zero-copy view [`Icmpv6Packet`] and its [`Icmpv6Repr`].
//!
//! The view wraps one whole ICMPv6 message (the upper-layer bytes of the IPv6 packet): an
//! 8-byte header (type, code, checksum, four message-specific bytes) and the payload to the
//! end of the buffer. The checksum covers the IPv6 pseudo-header (next header 58, length = the
//! buffer length) and the whole message. [`Icmpv6Packet::check_len`] only needs the 8 header
//! bytes.
//!
//! [`Icmpv6Repr`] names the messages weft reads or writes (destination unreachable, packet too
//! big, time exceeded, echo) and keeps every other header (neighbour discovery, MLD, ...) as
//! [`Icmpv6Repr::Other`], so parse then emit gives back the same 8 bytes for any message.

use super::{get_u16, get_u32, proto, put_u16, put_u32};
use crate::checksum::{self, Sum};
use crate::error::need;
use crate::{ChecksumCaps, Error, Result};

/// The length of the ICMPv6 header: type, code, checksum and the 4 message-specific bytes.
pub const HEADER_LEN: usize = field::REST.end;

/// ICMPv6 message types (RFC 4443 §2.1).
pub mod msg_type {
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet Too Big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter Problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Redirect (neighbour discovery, RFC 4861 §4.5).
    pub const REDIRECT: u8 = 137;

    //= https://www.rfc-editor.org/rfc/rfc4443#section-2.1
    //# Error messages are identified as such by a
    //# zero in the high-order bit of their message Type field values.

    /// Whether `msg_type` is an ICMPv6 error message (type < 128).
    #[inline]
    pub const fn is_error(msg_type: u8) -> bool {
        msg_type & 0x80 == 0
    }
}

/// Destination Unreachable codes (RFC 4443 §3.1).
pub mod dst_unreachable {
    //= https://www.rfc-editor.org/rfc/rfc4443#section-3.1
    //# 0 - No route to destination
    //# 1 - Communication with destination
    //#       administratively prohibited
    //# 2 - Beyond scope of source address
    //# 3 - Address unreachable
    //# 4 - Port unreachable

    /// No route to destination: weft's answer for a destination no lease covers.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Beyond scope of source address.
    pub const BEYOND_SCOPE: u8 = 2;
    /// Address unreachable.
    pub const ADDR_UNREACHABLE: u8 = 3;
    /// Port unreachable.
    pub const PORT_UNREACHABLE: u8 = 4;
}

/// Time Exceeded codes (RFC 4443 §3.3).
pub mod time_exceeded {
    /// Hop limit exceeded in transit.
    pub const HOP_LIMIT_EXCEEDED: u8 = 0;
    /// Fragment reassembly time exceeded.
    pub const FRAG_REASSEMBLY: u8 = 1;
}

mod field {
    use core::ops::Range;

    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: Range<usize> = 2..4;
    pub(super) const REST: Range<usize> = 4..8;
    pub(super) const ECHO_IDENT: Range<usize> = 4..6;
    pub(super) const ECHO_SEQNO: Range<usize> = 6..8;
    pub(super) const MTU: Range<usize> = 4..8;
}

/// A zero-copy view of an ICMPv6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

/// The pseudo-header of an ICMPv6 message of `len` bytes.
#[inline]
fn pseudo(src: &[u8; 16], dst: &[u8; 16], len: usize) -> Sum {
    //= https://www.rfc-editor.org/rfc/rfc4443#section-2.3
    //# The checksum is the 16-bit one's complement of the one's complement
    //# sum of the entire ICMPv6 message, starting with the ICMPv6 message
    //# type field, and prepended with a "pseudo-header" of IPv6 header
    //# fields, as specified in [IPv6, Section 8.1].  The Next Header value
    //# used in the pseudo-header is 58.
    checksum::pseudo_header_v6(src, dst, proto::ICMPV6, len as u32)
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps `buffer` without any check; accessors may panic until [`Self::check_len`] passes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv6Packet<T> {
        Icmpv6Packet { buffer }
    }

    /// Wraps `buffer` and runs [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the 8 header bytes are present.
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref(), HEADER_LEN)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Type (see [`msg_type`]).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The four message-specific header bytes.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let d = self.buffer.as_ref();
        [d[4], d[5], d[6], d[7]]
    }

    /// Echo identifier (echo request and reply).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number (echo request and reply).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// MTU (packet too big).
    #[inline]
    pub fn mtu(&self) -> u32 {
        //= https://www.rfc-editor.org/rfc/rfc4443#section-3.2
        //# MTU            The Maximum Transmission Unit of the next-hop link.
        get_u32(self.buffer.as_ref(), field::MTU.start)
    }

    /// Whether the checksum over the pseudo-header of `src` -> `dst` and the whole message
    /// verifies.
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        let data = self.buffer.as_ref();
        checksum::verifies(pseudo(src, dst, data.len()).bytes(data))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv6Packet<&'a T> {
    /// The payload: everything after the 8 header bytes (for errors, the quoted packet).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets Type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets Code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets Checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, check);
    }

    /// Sets the four message-specific header bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, rest: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&rest);
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, ident: u16) {
        put_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, ident);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, seq_no: u16) {
        put_u16(self.buffer.as_mut(), field::ECHO_SEQNO.start, seq_no);
    }

    /// Sets the MTU (packet too big).
    #[inline]
    pub fn set_mtu(&mut self, mtu: u32) {
        put_u32(self.buffer.as_mut(), field::MTU.start, mtu);
    }

    /// Computes the checksum over the pseudo-header of `src` -> `dst` and the whole message,
    /// and writes it.
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let check = pseudo(src, dst, data.len()).bytes(data).finish();
        self.set_checksum(check);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A high-level ICMPv6 header; the payload is given to [`Icmpv6Repr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv6Repr {
    /// Destination Unreachable (type 1) with the unused field zero.
    DstUnreachable {
        /// Code (see [`dst_unreachable`]).
        code: u8,
    },
    /// Packet Too Big (type 2, code 0).
    PacketTooBig {
        /// The MTU of the next-hop link.
        mtu: u32,
    },
    /// Time Exceeded (type 3) with the unused field zero.
    TimeExceeded {
        /// Code (see [`time_exceeded`]).
        code: u8,
    },
    /// Echo Request (type 128, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo Reply (type 129, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Any other header, kept as its bytes.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// The message-specific header bytes.
        rest: [u8; 4],
    },
}

impl Icmpv6Repr {
    /// Parses a message carried from `src` to `dst`; with [`ChecksumCaps::Complete`] the
    /// checksum must verify.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Icmpv6Packet<T>,
        src: &[u8; 16],
        dst: &[u8; 16],
        caps: ChecksumCaps,
    ) -> Result<Icmpv6Repr> {
        packet.check_len()?;
        if caps == ChecksumCaps::Complete && !packet.verify_checksum(src, dst) {
            return Err(Error::Malformed("icmpv6 checksum"));
        }
        let rest = packet.rest_of_header();
        let unused_zero = rest == [0; 4];
        Ok(match (packet.msg_type(), packet.msg_code()) {
            (msg_type::DST_UNREACHABLE, code) if unused_zero => Icmpv6Repr::DstUnreachable { code },
            (msg_type::PACKET_TOO_BIG, 0) => Icmpv6Repr::PacketTooBig { mtu: packet.mtu() },
            (msg_type::TIME_EXCEEDED, code) if unused_zero => Icmpv6Repr::TimeExceeded { code },
            (msg_type::ECHO_REQUEST, 0) => Icmpv6Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
            },
            (msg_type::ECHO_REPLY, 0) => Icmpv6Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
            },
            (msg_type, code) => Icmpv6Repr::Other {
                msg_type,
                code,
                rest,
            },
        })
    }

    /// The type, code and message-specific bytes this emits.
    pub fn header_fields(&self) -> (u8, u8, [u8; 4]) {
        let pair = |a: u16, b: u16| {
            let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
            [a[0], a[1], b[0], b[1]]
        };
        match *self {
            Icmpv6Repr::DstUnreachable { code } => (msg_type::DST_UNREACHABLE, code, [0; 4]),
            Icmpv6Repr::PacketTooBig { mtu } => (msg_type::PACKET_TOO_BIG, 0, mtu.to_be_bytes()),
            Icmpv6Repr::TimeExceeded { code } => (msg_type::TIME_EXCEEDED, code, [0; 4]),
            Icmpv6Repr::EchoRequest { ident, seq_no } => {
                (msg_type::ECHO_REQUEST, 0, pair(ident, seq_no))
            }
            Icmpv6Repr::EchoReply { ident, seq_no } => {
                (msg_type::ECHO_REPLY, 0, pair(ident, seq_no))
            }
            Icmpv6Repr::Other {
                msg_type,
                code,
                rest,
            } => (msg_type, code, rest),
        }
    }

    /// The length of the header: [`HEADER_LEN`].
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the message for `payload_len` bytes of payload.
    #[inline]
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Writes the header, lets `emit_payload` fill the `payload_len` bytes after it (pass
    /// `|_| {}` if they are already in place), then the checksum over the pseudo-header of
    /// `src` -> `dst` and those `buffer_len(payload_len)` bytes (the buffer may be longer).
    /// With [`ChecksumCaps::Offloaded`] the field holds the folded pseudo-header sum, a partial
    /// checksum.
    ///
    /// Panics only if `packet` is shorter than [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv6Packet<T>,
        src: &[u8; 16],
        dst: &[u8; 16],
        payload_len: usize,
        emit_payload: impl FnOnce(&mut [u8]),
        caps: ChecksumCaps,
    ) {
        let (msg_type, code, rest) = self.header_fields();
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_checksum(0);
        packet.set_rest_of_header(rest);
        let end = self.buffer_len(payload_len);
        emit_payload(&mut packet.buffer.as_mut()[HEADER_LEN..end]);
        let sum = pseudo(src, dst, end);
        let check = match caps {
            ChecksumCaps::Complete => sum.bytes(&packet.buffer.as_ref()[..end]).finish(),
            ChecksumCaps::Offloaded => sum.fold(),
        };
        packet.set_checksum(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv6::Ipv6Packet;

    const A1: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const A2: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// `ping -6 -s 16 fd00:77::2` from a netns, captured with tcpdump (IPv6 + ICMPv6).
    const ICMP6_ECHO: [u8; 64] = [
        0x60, 0x0d, 0x7c, 0xbc, 0x00, 0x18, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0xa4, 0x42, 0x1e,
        0x98, 0x00, 0x01, 0x7d, 0xa7, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x36, 0xcc, 0x0c, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];

    // Linux's answers, captured the same way: no route (`ip -6 route add unreachable`), packet
    // too big at a 1280-byte link (first 96 bytes), and hop limit exceeded for `ping -6 -t 1`.
    const NO_ROUTE6: [u8; 152] = [
        0x60, 0x07, 0xc7, 0xe5, 0x00, 0x70, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x6f, 0x77, 0x00,
        0x00, 0x00, 0x00, 0x60, 0x08, 0xf9, 0xdc, 0x00, 0x40, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00,
        0x99, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00,
        0x9c, 0xd1, 0x1e, 0xc3, 0x00, 0x01, 0x7d, 0xa7, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x7c,
        0xf6, 0x0e, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
        0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,
        0x36, 0x37,
    ];

    const PTB_HEAD: [u8; 96] = [
        0x60, 0x07, 0x97, 0xb1, 0x04, 0xd8, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x18, 0x41, 0x00,
        0x00, 0x05, 0x00, 0x60, 0x0b, 0x1f, 0xed, 0x05, 0x80, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00,
        0x88, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00,
        0x4b, 0x34, 0x1e, 0xc5, 0x00, 0x01,
    ];

    const TIME_EXCEEDED6: [u8; 152] = [
        0x60, 0x02, 0x37, 0xd9, 0x00, 0x70, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x00, 0x47, 0xa3, 0x00,
        0x00, 0x00, 0x00, 0x60, 0x0b, 0x1f, 0xed, 0x00, 0x40, 0x3a, 0x01, 0xfd, 0x00, 0x00, 0x77,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00,
        0x88, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x80, 0x00,
        0x49, 0x9a, 0x1e, 0xc7, 0x00, 0x01, 0x7d, 0xa7, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0xcf,
        0x3a, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26,
        0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35,
        0x36, 0x37,
    ];

    fn icmp(ip: &[u8]) -> (Icmpv6Packet<&[u8]>, [u8; 16], [u8; 16]) {
        let ip = Ipv6Packet::new_unchecked(ip);
        let (src, dst) = (ip.src(), ip.dst());
        let p = Icmpv6Packet::new_checked(&ip.into_inner()[40..]).expect("icmp");
        (p, src, dst)
    }

    #[test]
    fn error_types() {
        assert!(msg_type::is_error(0));
        assert!(msg_type::is_error(msg_type::DST_UNREACHABLE));
        assert!(msg_type::is_error(127));
        assert!(!msg_type::is_error(msg_type::ECHO_REQUEST));
        assert!(!msg_type::is_error(msg_type::REDIRECT));
        assert!(!msg_type::is_error(255));
    }

    #[test]
    fn parse_captured_echo() {
        let (p, src, dst) = icmp(&ICMP6_ECHO);
        assert_eq!((src, dst), (A1, A2));
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.checksum(), 0xa442);
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &[0; 16]));
        let repr = Icmpv6Repr::parse(&p, &src, &dst, ChecksumCaps::Complete).expect("parse");
        assert_eq!(
            repr,
            Icmpv6Repr::EchoRequest {
                ident: 0x1e98,
                seq_no: 1
            }
        );
        let mut buf = [0u8; 24];
        let payload = p.payload();
        repr.emit(
            &mut Icmpv6Packet::new_unchecked(&mut buf[..]),
            &src,
            &dst,
            payload.len(),
            |b| b.copy_from_slice(payload),
            ChecksumCaps::Complete,
        );
        assert_eq!(buf, ICMP6_ECHO[40..]);
    }

    #[test]
    fn parse_captured_errors() {
        let (p, src, dst) = icmp(&NO_ROUTE6);
        assert!(p.verify_checksum(&src, &dst));
        assert_eq!(
            Icmpv6Repr::parse(&p, &src, &dst, ChecksumCaps::Complete),
            Ok(Icmpv6Repr::DstUnreachable {
                code: dst_unreachable::NO_ROUTE
            })
        );
        let quoted = Ipv6Packet::new_unchecked(p.payload());
        assert_eq!(
            quoted.dst_addr(),
            "fd00:99::1".parse::<core::net::Ipv6Addr>().expect("a")
        );

        // Linux re-emits the same message from the parsed Repr and the quote.
        let repr = Icmpv6Repr::parse(&p, &src, &dst, ChecksumCaps::Complete).expect("parse");
        let mut buf = vec![0u8; repr.buffer_len(p.payload().len())];
        repr.emit(
            &mut Icmpv6Packet::new_unchecked(&mut buf[..]),
            &src,
            &dst,
            p.payload().len(),
            |b| b.copy_from_slice(p.payload()),
            ChecksumCaps::Complete,
        );
        assert_eq!(buf, NO_ROUTE6[40..]);

        let (p, src, dst) = icmp(&PTB_HEAD);
        assert_eq!(p.msg_type(), msg_type::PACKET_TOO_BIG);
        assert_eq!(p.mtu(), 1280);
        assert_eq!(
            Icmpv6Repr::parse(&p, &src, &dst, ChecksumCaps::Offloaded),
            Ok(Icmpv6Repr::PacketTooBig { mtu: 1280 })
        );

        let (p, src, dst) = icmp(&TIME_EXCEEDED6);
        assert_eq!(
            Icmpv6Repr::parse(&p, &src, &dst, ChecksumCaps::Complete),
            Ok(Icmpv6Repr::TimeExceeded {
                code: time_exceeded::HOP_LIMIT_EXCEEDED
            })
        );
    }

    #[test]
    fn bad_checksum_and_truncated() {
        let mut b = [0u8; 24];
        b.copy_from_slice(&ICMP6_ECHO[40..]);
        b[10] ^= 4;
        let p = Icmpv6Packet::new_checked(&b[..]).expect("len");
        assert_eq!(
            Icmpv6Repr::parse(&p, &A1, &A2, ChecksumCaps::Complete),
            Err(Error::Malformed("icmpv6 checksum"))
        );
        assert!(Icmpv6Repr::parse(&p, &A1, &A2, ChecksumCaps::Offloaded).is_ok());
        assert_eq!(
            Icmpv6Packet::new_checked(&b[..7]),
            Err(Error::Truncated { needed: 8 })
        );
    }

    #[test]
    fn non_canonical_headers_stay_other() {
        for hdr in [
            [2u8, 1, 0, 0, 0, 0, 5, 0],
            [1, 4, 0, 0, 0, 0, 0, 9],
            [3, 0, 0, 0, 1, 0, 0, 0],
            [129, 3, 0, 0, 0, 1, 0, 2],
            [135, 0, 0, 0, 0, 0, 0, 0],
        ] {
            let mut b = hdr;
            Icmpv6Packet::new_unchecked(&mut b[..]).fill_checksum(&A1, &A2);
            let p = Icmpv6Packet::new_unchecked(&b[..]);
            let repr = Icmpv6Repr::parse(&p, &A1, &A2, ChecksumCaps::Complete).expect("parse");
            assert!(matches!(repr, Icmpv6Repr::Other { .. }), "{repr:?}");
            let mut out = [0u8; 8];
            repr.emit(
                &mut Icmpv6Packet::new_unchecked(&mut out[..]),
                &A1,
                &A2,
                0,
                |_| {},
                ChecksumCaps::Complete,
            );
            assert_eq!(out, b);
        }
    }

    #[test]
    fn repr_round_trip() {
        let reprs = [
            Icmpv6Repr::DstUnreachable {
                code: dst_unreachable::ADDR_UNREACHABLE,
            },
            Icmpv6Repr::PacketTooBig { mtu: 1450 },
            Icmpv6Repr::TimeExceeded {
                code: time_exceeded::FRAG_REASSEMBLY,
            },
            Icmpv6Repr::EchoRequest {
                ident: 0xabcd,
                seq_no: 9,
            },
            Icmpv6Repr::EchoReply {
                ident: 1,
                seq_no: 0,
            },
            Icmpv6Repr::Other {
                msg_type: 136,
                code: 0,
                rest: [0x60, 0, 0, 0],
            },
        ];
        for repr in reprs {
            let mut buf = vec![0u8; repr.buffer_len(7) + 1];
            let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
            repr.emit(
                &mut p,
                &A2,
                &A1,
                7,
                |b| b.copy_from_slice(b"payload"),
                ChecksumCaps::Complete,
            );
            let p = Icmpv6Packet::new_checked(&buf[..repr.buffer_len(7)]).expect("valid");
            assert!(p.verify_checksum(&A2, &A1));
            assert_eq!(
                Icmpv6Repr::parse(&p, &A2, &A1, ChecksumCaps::Complete),
                Ok(repr)
            );
        }
        let mut buf = [0u8; 8];
        let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
        reprs[1].emit(&mut p, &A1, &A2, 0, |_| {}, ChecksumCaps::Offloaded);
        assert_eq!(p.checksum(), pseudo(&A1, &A2, 8).fold());
        p.set_checksum(Sum::ZERO.bytes(p.as_ref()).finish());
        assert!(p.verify_checksum(&A1, &A2));
        p.fill_checksum(&A1, &A2);
        assert!(p.verify_checksum(&A1, &A2));
        p.set_mtu(9000);
        p.set_echo_ident(1);
        assert_eq!(p.rest_of_header(), [0, 1, 0x23, 0x28]);
    }
}
