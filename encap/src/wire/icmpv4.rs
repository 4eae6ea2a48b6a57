//! ICMP for IPv4 (RFC 792, RFC 1191): the zero-copy view [`Icmpv4Packet`] and its
//! [`Icmpv4Repr`].
//!
//! The view wraps one whole ICMP message (the IP payload): an 8-byte header (type, code,
//! checksum, four "rest of header" bytes) and the payload to the end of the buffer. The
//! checksum covers the whole message and has no pseudo-header. [`Icmpv4Packet::check_len`]
//! only needs the 8 header bytes.
//!
//! [`Icmpv4Repr`] names the messages weft reads or writes (echo, destination unreachable, time
//! exceeded) and keeps every other header as [`Icmpv4Repr::Other`], so parse then emit gives
//! back the same 8 bytes for any message.

use super::{get_u16, put_u16};
use crate::checksum::{self, Sum};
use crate::error::need;
use crate::{ChecksumCaps, Error, Result};

/// The length of the ICMP header: type, code, checksum and the 4 rest-of-header bytes.
pub const HEADER_LEN: usize = field::REST.end;

/// ICMP message types (RFC 792).
pub mod msg_type {
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source Quench (deprecated by RFC 6633, still an error message).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter Problem.
    pub const PARAM_PROBLEM: u8 = 12;

    /// Whether `msg_type` is an ICMP error message (RFC 792 / RFC 1122 §3.2.2: destination
    /// unreachable, source quench, redirect, time exceeded, parameter problem), which no ICMP
    /// error may answer.
    #[inline]
    pub const fn is_error(msg_type: u8) -> bool {
        matches!(
            msg_type,
            DST_UNREACHABLE | SOURCE_QUENCH | REDIRECT | TIME_EXCEEDED | PARAM_PROBLEM
        )
    }
}

/// Destination Unreachable codes (RFC 792).
pub mod dst_unreachable {
    //= https://www.rfc-editor.org/rfc/rfc792
    //# 0 = net unreachable;
    //# 1 = host unreachable;
    //# 2 = protocol unreachable;
    //# 3 = port unreachable;
    //# 4 = fragmentation needed and DF set;

    /// Net unreachable: what flannel (and weft) answer for a destination no lease covers.
    pub const NET_UNREACHABLE: u8 = 0;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 1;
    /// Protocol unreachable.
    pub const PROTO_UNREACHABLE: u8 = 2;
    /// Port unreachable.
    pub const PORT_UNREACHABLE: u8 = 3;
    /// Fragmentation needed and DF set; carries the next-hop MTU (RFC 1191).
    pub const FRAG_NEEDED: u8 = 4;
}

/// Time Exceeded codes (RFC 792).
pub mod time_exceeded {
    /// Time to live exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
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
    pub(super) const UNUSED: Range<usize> = 4..6;
    pub(super) const MTU: Range<usize> = 6..8;
}

/// A zero-copy view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Wraps `buffer` without any check; accessors may panic until [`Self::check_len`] passes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    /// Wraps `buffer` and runs [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
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

    /// The four rest-of-header bytes.
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

    /// Next-Hop MTU (destination unreachable, fragmentation needed).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        //= https://www.rfc-editor.org/rfc/rfc1191#section-4
        //# The router MUST include the MTU of that next-hop network in the
        //# low-order 16 bits of the ICMP header field that is labelled "unused"
        //# in the ICMP specification [7].  The high-order 16 bits remain unused,
        //# and MUST be set to zero.
        get_u16(self.buffer.as_ref(), field::MTU.start)
    }

    /// Whether the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(Sum::ZERO.bytes(self.buffer.as_ref()))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// The payload: everything after the 8 header bytes (for errors, the quoted datagram).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
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

    /// Sets the four rest-of-header bytes.
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

    /// Sets the next-hop MTU and zeroes the unused high half.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        put_u16(self.buffer.as_mut(), field::UNUSED.start, 0);
        put_u16(self.buffer.as_mut(), field::MTU.start, mtu);
    }

    /// Computes the checksum over the whole message and writes it.
    pub fn fill_checksum(&mut self) {
        //= https://www.rfc-editor.org/rfc/rfc792
        //# The checksum is the 16-bit ones's complement of the one's
        //# complement sum of the ICMP message starting with the ICMP Type.
        //# For computing the checksum , the checksum field should be zero.
        self.set_checksum(0);
        let check = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(check);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A high-level ICMPv4 header; the payload is given to [`Icmpv4Repr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr {
    /// Echo (type 8, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo Reply (type 0, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Destination Unreachable (type 3) with the unused high half zero. `next_hop_mtu` is
    /// meaningful for [`dst_unreachable::FRAG_NEEDED`] and 0 otherwise.
    DstUnreachable {
        /// Code (see [`dst_unreachable`]).
        code: u8,
        /// Next-Hop MTU (RFC 1191).
        next_hop_mtu: u16,
    },
    /// Time Exceeded (type 11) with the unused field zero.
    TimeExceeded {
        /// Code (see [`time_exceeded`]).
        code: u8,
    },
    /// Any other header, kept as its bytes.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// The rest-of-header bytes.
        rest: [u8; 4],
    },
}

impl Icmpv4Repr {
    /// Parses a message; with [`ChecksumCaps::Complete`] the checksum must verify.
    pub fn parse<T: AsRef<[u8]>>(
        packet: &Icmpv4Packet<T>,
        caps: ChecksumCaps,
    ) -> Result<Icmpv4Repr> {
        packet.check_len()?;
        if caps == ChecksumCaps::Complete && !packet.verify_checksum() {
            return Err(Error::Malformed("icmpv4 checksum"));
        }
        let rest = packet.rest_of_header();
        let unused_zero = rest[..2] == [0, 0];
        Ok(match (packet.msg_type(), packet.msg_code()) {
            (msg_type::ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
            },
            (msg_type::ECHO_REPLY, 0) => Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
            },
            (msg_type::DST_UNREACHABLE, code) if unused_zero => Icmpv4Repr::DstUnreachable {
                code,
                next_hop_mtu: packet.next_hop_mtu(),
            },
            (msg_type::TIME_EXCEEDED, code) if rest == [0; 4] => Icmpv4Repr::TimeExceeded { code },
            (msg_type, code) => Icmpv4Repr::Other {
                msg_type,
                code,
                rest,
            },
        })
    }

    /// The type, code and rest-of-header bytes this emits.
    pub fn header_fields(&self) -> (u8, u8, [u8; 4]) {
        let pair = |a: u16, b: u16| {
            let (a, b) = (a.to_be_bytes(), b.to_be_bytes());
            [a[0], a[1], b[0], b[1]]
        };
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no } => {
                (msg_type::ECHO_REQUEST, 0, pair(ident, seq_no))
            }
            Icmpv4Repr::EchoReply { ident, seq_no } => {
                (msg_type::ECHO_REPLY, 0, pair(ident, seq_no))
            }
            Icmpv4Repr::DstUnreachable { code, next_hop_mtu } => {
                (msg_type::DST_UNREACHABLE, code, pair(0, next_hop_mtu))
            }
            Icmpv4Repr::TimeExceeded { code } => (msg_type::TIME_EXCEEDED, code, [0; 4]),
            Icmpv4Repr::Other {
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
    /// `|_| {}` if they are already in place), then the checksum over those
    /// `buffer_len(payload_len)` bytes (the buffer may be longer). With
    /// [`ChecksumCaps::Offloaded`] the checksum is left 0 (ICMP has no pseudo-header, so that
    /// is its partial sum).
    ///
    /// Panics only if `packet` is shorter than [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
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
        if caps == ChecksumCaps::Complete {
            let check = checksum::checksum(&packet.buffer.as_ref()[..end]);
            packet.set_checksum(check);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;

    /// `ping -p 61626364 -s 16 10.77.0.2` from a netns, captured with tcpdump (IP + ICMP).
    const ICMP_ECHO: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, 0x25, 0x22, 0x40, 0x00, 0x40, 0x01, 0x01, 0x13, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x08, 0x00, 0xff, 0x9b, 0x1e, 0x97, 0x00, 0x01, 0x7d, 0xa7,
        0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x4e, 0xb9, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    // Linux's answers, captured the same way: net unreachable (`ip route add unreachable` does
    // host unreachable, so this is a router without any route), fragmentation needed at a
    // 1280-byte link (first 56 bytes), and TTL exceeded for `ping -t 1`.
    const NET_UNREACH: [u8; 112] = [
        0x45, 0xc0, 0x00, 0x70, 0x1e, 0xf0, 0x00, 0x00, 0x40, 0x01, 0x46, 0x41, 0x0a, 0x4d, 0x00,
        0x02, 0x0a, 0x4d, 0x00, 0x01, 0x03, 0x00, 0xfc, 0xff, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00,
        0x00, 0x54, 0x5f, 0x3c, 0x40, 0x00, 0x40, 0x01, 0xc6, 0xe7, 0x0a, 0x4d, 0x00, 0x01, 0x0a,
        0x37, 0x00, 0x01, 0x08, 0x00, 0x7f, 0x49, 0x1e, 0xc8, 0x00, 0x01, 0x7e, 0xa7, 0x01, 0x6b,
        0x00, 0x00, 0x00, 0x00, 0x1b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12,
        0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
        0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30,
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    const FRAG_NEEDED_HEAD: [u8; 56] = [
        0x45, 0xc0, 0x02, 0x40, 0x1e, 0xed, 0x00, 0x00, 0x40, 0x01, 0x44, 0x74, 0x0a, 0x4d, 0x00,
        0x02, 0x0a, 0x4d, 0x00, 0x01, 0x03, 0x04, 0x0e, 0xc9, 0x00, 0x00, 0x05, 0x00, 0x45, 0x00,
        0x05, 0x94, 0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0x20, 0xc3, 0x0a, 0x4d, 0x00, 0x01, 0x0a,
        0x58, 0x00, 0x01, 0x08, 0x00, 0xac, 0x05, 0x1e, 0xc4, 0x00, 0x01,
    ];

    const TIME_EXCEEDED: [u8; 112] = [
        0x45, 0xc0, 0x00, 0x70, 0x1e, 0xef, 0x00, 0x00, 0x40, 0x01, 0x46, 0x42, 0x0a, 0x4d, 0x00,
        0x02, 0x0a, 0x4d, 0x00, 0x01, 0x0b, 0x00, 0xf4, 0xff, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00,
        0x00, 0x54, 0xc6, 0x86, 0x40, 0x00, 0x01, 0x01, 0x9e, 0x7c, 0x0a, 0x4d, 0x00, 0x01, 0x0a,
        0x58, 0x00, 0x01, 0x08, 0x00, 0xe7, 0x28, 0x1e, 0xc6, 0x00, 0x01, 0x7d, 0xa7, 0x01, 0x6b,
        0x00, 0x00, 0x00, 0x00, 0xa5, 0x2a, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12,
        0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
        0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30,
        0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
    ];

    fn icmp(ip: &[u8]) -> Icmpv4Packet<&[u8]> {
        let ip = Ipv4Packet::new_unchecked(ip);
        let hl = ip.header_len();
        Icmpv4Packet::new_checked(&ip.into_inner()[hl..]).expect("icmp")
    }

    #[test]
    fn error_types() {
        let errors: Vec<u8> = (0..=255u8).filter(|&t| msg_type::is_error(t)).collect();
        assert_eq!(errors, [3, 4, 5, 11, 12]);
    }

    #[test]
    fn parse_captured_echo() {
        let p = icmp(&ICMP_ECHO);
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0xff9b);
        assert_eq!(p.echo_ident(), 0x1e97);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.payload().len(), 16);
        assert!(p.verify_checksum());
        let repr = Icmpv4Repr::parse(&p, ChecksumCaps::Complete).expect("parse");
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest {
                ident: 0x1e97,
                seq_no: 1
            }
        );
        let mut buf = [0u8; 24];
        let payload = p.payload();
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
            payload.len(),
            |b| b.copy_from_slice(payload),
            ChecksumCaps::Complete,
        );
        assert_eq!(buf, ICMP_ECHO[20..]);
    }

    #[test]
    fn parse_captured_errors() {
        let p = icmp(&NET_UNREACH);
        assert!(p.verify_checksum());
        assert_eq!(
            Icmpv4Repr::parse(&p, ChecksumCaps::Complete),
            Ok(Icmpv4Repr::DstUnreachable {
                code: dst_unreachable::NET_UNREACHABLE,
                next_hop_mtu: 0
            })
        );
        // The quote is the offending datagram, from its IP header on.
        let quoted = Ipv4Packet::new_unchecked(p.payload());
        assert_eq!(quoted.dst(), [10, 55, 0, 1]);

        let p = icmp(&FRAG_NEEDED_HEAD);
        assert_eq!(p.msg_type(), msg_type::DST_UNREACHABLE);
        assert_eq!(p.msg_code(), dst_unreachable::FRAG_NEEDED);
        assert_eq!(p.checksum(), 0x0ec9);
        assert_eq!(p.next_hop_mtu(), 1280);
        assert_eq!(
            Icmpv4Repr::parse(&p, ChecksumCaps::Offloaded),
            Ok(Icmpv4Repr::DstUnreachable {
                code: dst_unreachable::FRAG_NEEDED,
                next_hop_mtu: 1280
            })
        );

        let p = icmp(&TIME_EXCEEDED);
        assert_eq!(
            Icmpv4Repr::parse(&p, ChecksumCaps::Complete),
            Ok(Icmpv4Repr::TimeExceeded {
                code: time_exceeded::TTL_EXCEEDED
            })
        );
    }

    #[test]
    fn emit_net_unreachable_like_linux() {
        let original = icmp(&NET_UNREACH);
        let quote = original.payload();
        let repr = Icmpv4Repr::DstUnreachable {
            code: dst_unreachable::NET_UNREACHABLE,
            next_hop_mtu: 0,
        };
        let mut buf = vec![0xffu8; repr.buffer_len(quote.len())];
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(&mut buf[..]),
            quote.len(),
            |b| b.copy_from_slice(quote),
            ChecksumCaps::Complete,
        );
        assert_eq!(buf, NET_UNREACH[20..]);
    }

    #[test]
    fn bad_checksum_and_truncated() {
        let mut b = [0u8; 24];
        b.copy_from_slice(&ICMP_ECHO[20..]);
        b[23] ^= 0x80;
        let p = Icmpv4Packet::new_checked(&b[..]).expect("len");
        assert!(!p.verify_checksum());
        assert_eq!(
            Icmpv4Repr::parse(&p, ChecksumCaps::Complete),
            Err(Error::Malformed("icmpv4 checksum"))
        );
        assert_eq!(
            Icmpv4Packet::new_checked(&b[..7]),
            Err(Error::Truncated { needed: 8 })
        );
        let p = Icmpv4Packet::new_checked(&b[..8]).expect("header only");
        assert!(p.payload().is_empty());
    }

    #[test]
    fn non_canonical_headers_stay_other() {
        // Echo with a non-zero code, unreachable with RFC 4884's length byte, time exceeded
        // with a non-zero unused field: all parse as Other and re-emit unchanged.
        for hdr in [
            [8u8, 1, 0, 0, 0, 1, 0, 2],
            [3, 1, 0, 0, 0, 32, 0, 0],
            [11, 0, 0, 0, 0, 0, 0, 1],
            [13, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef],
        ] {
            let mut b = hdr;
            Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
            let repr =
                Icmpv4Repr::parse(&Icmpv4Packet::new_unchecked(&b[..]), ChecksumCaps::Complete)
                    .expect("parse");
            assert!(matches!(repr, Icmpv4Repr::Other { .. }), "{repr:?}");
            let mut out = [0u8; 8];
            repr.emit(
                &mut Icmpv4Packet::new_unchecked(&mut out[..]),
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
            Icmpv4Repr::EchoRequest {
                ident: 7,
                seq_no: 65535,
            },
            Icmpv4Repr::EchoReply {
                ident: 1,
                seq_no: 2,
            },
            Icmpv4Repr::DstUnreachable {
                code: dst_unreachable::FRAG_NEEDED,
                next_hop_mtu: 1450,
            },
            Icmpv4Repr::DstUnreachable {
                code: dst_unreachable::PORT_UNREACHABLE,
                next_hop_mtu: 0,
            },
            Icmpv4Repr::TimeExceeded {
                code: time_exceeded::FRAG_REASSEMBLY,
            },
            Icmpv4Repr::Other {
                msg_type: 5,
                code: 1,
                rest: [10, 0, 0, 1],
            },
        ];
        for repr in reprs {
            let mut buf = vec![0u8; repr.buffer_len(5) + 3];
            let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
            repr.emit(
                &mut p,
                5,
                |b| b.copy_from_slice(b"quote"),
                ChecksumCaps::Complete,
            );
            let p = Icmpv4Packet::new_checked(&buf[..repr.buffer_len(5)]).expect("valid");
            assert!(p.verify_checksum());
            assert_eq!(p.payload(), b"quote");
            assert_eq!(Icmpv4Repr::parse(&p, ChecksumCaps::Complete), Ok(repr));
        }
        let mut buf = [0u8; 8];
        let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
        reprs[0].emit(&mut p, 0, |_| {}, ChecksumCaps::Offloaded);
        assert_eq!(p.checksum(), 0);
        p.set_next_hop_mtu(1280);
        assert_eq!(p.rest_of_header(), [0, 0, 0x05, 0x00]);
    }
}
