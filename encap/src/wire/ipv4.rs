//! IPv4 header (RFC 791): the zero-copy view [`Ipv4Packet`] and its [`Ipv4Repr`].
//!
//! The view accepts options (`header_len() = ihl * 4`, [`Ipv4Packet::options`]) and any
//! fragment; [`Ipv4Packet::check_len`] guarantees `20 <= header_len <= total_len <= buffer len`
//! and version 4, after which no accessor panics. [`Ipv4Packet::payload`] is the bytes from
//! `header_len` to `total_len`: trailing bytes past `total_len` (Ethernet padding) are not part
//! of the packet.
//!
//! [`Ipv4Repr`] is a header without options that is not a fragment, which is every IPv4 header
//! weft builds. Parsing a header with options succeeds and drops the options (re-emitting it
//! gives the same packet without them); parsing a fragment is [`Error::Unsupported`], because a
//! `Repr` that forgot the offset would re-emit a fragment as a whole datagram.

use core::net::Ipv4Addr;

use super::{get_u16, len16, put_u16};
use crate::checksum::{self, Sum};
use crate::error::need;
use crate::{ChecksumCaps, Error, Result};

/// The length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The longest IPv4 header: IHL is 4 bits of 32-bit words.
pub const MAX_HEADER_LEN: usize = 15 * 4;

/// Don't Fragment, in the flags + fragment offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More Fragments, in the flags + fragment offset word.
pub const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

mod field {
    use core::ops::Range;

    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: Range<usize> = 2..4;
    pub(super) const IDENT: Range<usize> = 4..6;
    pub(super) const FLG_OFF: Range<usize> = 6..8;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: Range<usize> = 10..12;
    pub(super) const SRC_ADDR: Range<usize> = 12..16;
    pub(super) const DST_ADDR: Range<usize> = 16..20;
}

//= https://www.rfc-editor.org/rfc/rfc791#section-3.1
//#   0                   1                   2                   3
//#   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |Version|  IHL  |Type of Service|          Total Length         |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |         Identification        |Flags|      Fragment Offset    |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |  Time to Live |    Protocol   |         Header Checksum       |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                       Source Address                          |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                    Destination Address                        |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#  |                    Options                    |    Padding    |
//#  +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without any check; accessors may panic until [`Self::check_len`] passes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` and runs [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header is IPv4 and that every accessor stays inside the buffer:
    /// `len >= 20`, version 4, IHL >= 5, `header_len <= total_len <= len`.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        need(data, HEADER_LEN)?;
        if self.version() != 4 {
            return Err(Error::Malformed("ipv4 version"));
        }
        //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
        //# Internet Header Length is the length of the internet header in 32
        //# bit words, and thus points to the beginning of the data.  Note that
        //# the minimum value for a correct header is 5.
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed("ipv4 ihl"));
        }
        need(data, header_len)?;
        //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
        //# Total Length is the length of the datagram, measured in octets,
        //# including internet header and data.
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed("ipv4 total length"));
        }
        need(data, total_len)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version nibble (4 after `check_len`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes: IHL * 4, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The Type of Service byte (DSCP << 2 | ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// Differentiated Services Code Point: the upper six bits of the TOS byte (RFC 2474).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// Explicit Congestion Notification: the lower two bits of the TOS byte (RFC 3168).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total Length: header plus data, in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The raw flags + fragment offset word.
    #[inline]
    pub fn flags_frag_word(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    /// Don't Fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag_word() & FLAG_DF != 0
    }

    /// More Fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag_word() & FLAG_MF != 0
    }

    /// The fragment offset in bytes (the 13-bit field times 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
        //# The fragment offset is measured in units of 8 octets (64 bits).
        (self.flags_frag_word() & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is a fragment of a larger datagram (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag_word() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Whether this packet starts at offset 0, so it carries the upper-layer header (true for an
    /// unfragmented packet too).
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.flags_frag_word() & FRAG_OFFSET_MASK == 0
    }

    /// Time to Live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol (see [`super::proto`]).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The source address as bytes.
    #[inline]
    pub fn src(&self) -> [u8; 4] {
        let d = self.buffer.as_ref();
        [d[12], d[13], d[14], d[15]]
    }

    /// The destination address as bytes.
    #[inline]
    pub fn dst(&self) -> [u8; 4] {
        let d = self.buffer.as_ref();
        [d[16], d[17], d[18], d[19]]
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src())
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst())
    }

    /// The options and padding: bytes 20..header_len (empty without options).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// Whether the header checksum verifies.
    pub fn verify_checksum(&self) -> bool {
        //= https://www.rfc-editor.org/rfc/rfc791#section-3.1
        //# The checksum field is the 16 bit one's complement of the one's
        //# complement sum of all 16 bit words in the header.
        checksum::verifies(Sum::ZERO.bytes(&self.buffer.as_ref()[..self.header_len()]))
    }

    /// The sum of the IPv4 pseudo-header (RFC 793 §3.1) for this packet's upper layer: source,
    /// destination, protocol and payload length. Pass it to the TCP and UDP views.
    pub fn pseudo_header(&self) -> Sum {
        let l4_len = usize::from(self.total_len()).saturating_sub(self.header_len());
        checksum::pseudo_header_v4(self.src(), self.dst(), self.protocol(), l4_len as u32)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload: bytes header_len..total_len.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the TOS byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the DSCP, keeping the ECN bits.
    #[inline]
    pub fn set_dscp(&mut self, dscp: u8) {
        let tos = (dscp << 2) | self.ecn();
        self.set_tos(tos);
    }

    /// Sets the ECN bits, keeping the DSCP.
    #[inline]
    pub fn set_ecn(&mut self, ecn: u8) {
        let tos = (self.tos() & !0x03) | (ecn & 0x03);
        self.set_tos(tos);
    }

    /// Sets Total Length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets Identification.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        put_u16(self.buffer.as_mut(), field::IDENT.start, ident);
    }

    /// Sets the raw flags + fragment offset word.
    #[inline]
    pub fn set_flags_frag_word(&mut self, word: u16) {
        put_u16(self.buffer.as_mut(), field::FLG_OFF.start, word);
    }

    /// Sets or clears Don't Fragment.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let w = self.flags_frag_word();
        self.set_flags_frag_word(if value { w | FLAG_DF } else { w & !FLAG_DF });
    }

    /// Sets or clears More Fragments.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let w = self.flags_frag_word();
        self.set_flags_frag_word(if value { w | FLAG_MF } else { w & !FLAG_MF });
    }

    /// Sets the fragment offset in bytes (a multiple of 8; the low three bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let w = self.flags_frag_word();
        self.set_flags_frag_word((w & !FRAG_OFFSET_MASK) | (offset >> 3));
    }

    /// Sets Time to Live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets Protocol.
    #[inline]
    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    /// Sets Header Checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, check);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, addr: [u8; 4]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr);
    }

    /// Computes the header checksum and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let check = checksum::checksum(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(check);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload (header_len..total_len), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A high-level IPv4 header: no options, not a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Protocol of the payload (see [`super::proto`]).
    pub protocol: u8,
    /// Payload length in bytes (total length minus the header).
    pub payload_len: usize,
    /// Time to Live.
    pub ttl: u8,
    /// Type of Service byte (DSCP << 2 | ECN).
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Parses and validates a packet: lengths, version, the header checksum (unless `caps` is
    /// [`ChecksumCaps::Offloaded`]). Options and the reserved flag bit are accepted and
    /// dropped; fragments are
    /// [`Error::Unsupported`] (see the module doc).
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, caps: ChecksumCaps) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if caps == ChecksumCaps::Complete && !packet.verify_checksum() {
            return Err(Error::Malformed("ipv4 checksum"));
        }
        if packet.is_fragment() {
            return Err(Error::Unsupported("ipv4 fragment"));
        }
        Ok(Ipv4Repr {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// The length of the header this emits: [`HEADER_LEN`].
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the whole packet: header plus `payload_len`.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// The IPv4 pseudo-header sum for this packet's upper layer.
    #[inline]
    pub fn pseudo_header(&self) -> Sum {
        checksum::pseudo_header_v4(self.src, self.dst, self.protocol, self.payload_len as u32)
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `packet` (the payload is not
    /// touched). With [`ChecksumCaps::Complete`] the header checksum is computed; with
    /// [`ChecksumCaps::Offloaded`] it is left 0 for a NIC to fill. Neither TUN nor a UDP socket
    /// fills an IPv4 header checksum, so packets for them need `Complete`.
    ///
    /// `payload_len` must be at most 65515. Panics only if `packet` is shorter than
    /// [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        caps: ChecksumCaps,
    ) {
        packet.buffer.as_mut()[field::VER_IHL] = 0x45;
        packet.set_tos(self.tos);
        packet.set_total_len(len16(self.buffer_len()));
        packet.set_ident(self.ident);
        packet.set_flags_frag_word(if self.dont_frag { FLAG_DF } else { 0 });
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src(self.src);
        packet.set_dst(self.dst);
        match caps {
            ChecksumCaps::Complete => packet.fill_checksum(),
            ChecksumCaps::Offloaded => packet.set_checksum(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    /// `ping -p 61626364 -s 16 10.77.0.2` from a netns, captured with tcpdump: ICMP echo request.
    const ICMP_ECHO: [u8; 44] = [
        0x45, 0x00, 0x00, 0x2c, 0x25, 0x22, 0x40, 0x00, 0x40, 0x01, 0x01, 0x13, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x08, 0x00, 0xff, 0x9b, 0x1e, 0x97, 0x00, 0x01, 0x7d, 0xa7,
        0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x4e, 0xb9, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];

    /// `ping -M dont -s 1600`: the first 48 bytes of the first fragment (MF, offset 0).
    const FRAG_FIRST_HEAD: [u8; 48] = [
        0x45, 0x00, 0x05, 0xdc, 0x25, 0x41, 0x20, 0x00, 0x40, 0x01, 0x1b, 0x44, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x08, 0x00, 0xb5, 0xc8, 0x1e, 0xc9, 0x00, 0x01, 0x7e, 0xa7,
        0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x76, 0x18, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
        0x11, 0x12, 0x13,
    ];

    /// The same datagram's last fragment: offset 1480, MF clear, 128 bytes of data.
    const FRAG_LAST: [u8; 148] = [
        0x45, 0x00, 0x00, 0x94, 0x25, 0x41, 0x00, 0xb9, 0x40, 0x01, 0x3f, 0xd3, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9,
        0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8,
        0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7,
        0xe8, 0xe9, 0xea, 0xeb, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6,
        0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05,
        0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14,
        0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23,
        0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32,
        0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    ];

    #[test]
    fn parse_captured_echo_request() {
        let p = Ipv4Packet::new_checked(&ICMP_ECHO[..]).expect("valid");
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 0);
        assert_eq!(p.total_len(), 44);
        assert_eq!(p.ident(), 0x2522);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert!(p.is_first_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), proto::ICMP);
        assert_eq!(p.checksum(), 0x0113);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(p.dst(), [10, 77, 0, 2]);
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &ICMP_ECHO[20..]);
        let repr = Ipv4Repr::parse(&p, ChecksumCaps::Complete).expect("parse");
        assert_eq!(
            repr,
            Ipv4Repr {
                src: [10, 77, 0, 1],
                dst: [10, 77, 0, 2],
                protocol: proto::ICMP,
                payload_len: 24,
                ttl: 64,
                tos: 0,
                ident: 0x2522,
                dont_frag: true,
            }
        );
        // Re-emitting gives back the captured header byte for byte.
        let mut buf = ICMP_ECHO;
        buf[..20].fill(0xa5);
        repr.emit(
            &mut Ipv4Packet::new_unchecked(&mut buf[..]),
            ChecksumCaps::Complete,
        );
        assert_eq!(buf, ICMP_ECHO);
    }

    #[test]
    fn captured_fragments() {
        let first = Ipv4Packet::new_unchecked(&FRAG_FIRST_HEAD[..]);
        assert_eq!(first.total_len(), 1500);
        assert_eq!(first.check_len(), Err(Error::Truncated { needed: 1500 }));
        assert!(first.more_frags());
        assert!(!first.dont_frag());
        assert_eq!(first.frag_offset(), 0);
        assert!(first.is_fragment());
        assert!(first.is_first_fragment());
        assert!(first.verify_checksum());

        let last = Ipv4Packet::new_checked(&FRAG_LAST[..]).expect("valid");
        assert!(!last.more_frags());
        assert_eq!(last.frag_offset(), 1480);
        assert_eq!(last.ident(), first.ident());
        assert!(last.is_fragment());
        assert!(!last.is_first_fragment());
        assert!(last.verify_checksum());
        assert_eq!(last.payload().len(), 128);
        assert_eq!(
            Ipv4Repr::parse(&last, ChecksumCaps::Complete),
            Err(Error::Unsupported("ipv4 fragment"))
        );
    }

    #[test]
    fn rfc791_options_header() {
        // A header with a 4-byte option (Router Alert, RFC 2113: 94 04 00 00), as IGMP uses.
        let mut buf = [0u8; 28];
        buf[0] = 0x46;
        buf[1] = 0xc0;
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf[8] = 1;
        buf[9] = 2;
        buf[12..16].copy_from_slice(&[192, 168, 1, 1]);
        buf[16..20].copy_from_slice(&[224, 0, 0, 22]);
        buf[20..24].copy_from_slice(&[0x94, 0x04, 0x00, 0x00]);
        buf[24..28].copy_from_slice(&[0x22, 0x00, 0xfa, 0x02]);
        let mut p = Ipv4Packet::new_checked(&mut buf[..]).expect("valid");
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &[0x22, 0x00, 0xfa, 0x02]);
        assert_eq!(p.dscp(), 0x30);
        assert_eq!(p.ecn(), 0);
        assert!(p.verify_checksum());
        let repr = Ipv4Repr::parse(&p, ChecksumCaps::Complete).expect("parse");
        assert_eq!(repr.payload_len, 4);
        assert_eq!(repr.tos, 0xc0);
    }

    #[test]
    fn padding_after_total_len_is_not_payload() {
        let mut buf = [0u8; 64];
        buf[..44].copy_from_slice(&ICMP_ECHO);
        let p = Ipv4Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.payload().len(), 24);
    }

    #[test]
    fn malformed_and_truncated() {
        let check = |b: &[u8]| Ipv4Packet::new_unchecked(b).check_len();
        assert_eq!(
            check(&ICMP_ECHO[..19]),
            Err(Error::Truncated { needed: 20 })
        );
        assert_eq!(check(&[]), Err(Error::Truncated { needed: 20 }));
        assert_eq!(
            check(&ICMP_ECHO[..43]),
            Err(Error::Truncated { needed: 44 })
        );
        let mut b = ICMP_ECHO;
        b[0] = 0x65;
        assert_eq!(check(&b), Err(Error::Malformed("ipv4 version")));
        b[0] = 0x44;
        assert_eq!(check(&b), Err(Error::Malformed("ipv4 ihl")));
        b[0] = 0x4f;
        assert_eq!(check(&b), Err(Error::Truncated { needed: 60 }));
        b[0] = 0x46;
        b[2..4].copy_from_slice(&23u16.to_be_bytes());
        assert_eq!(check(&b), Err(Error::Malformed("ipv4 total length")));
        let mut b = ICMP_ECHO;
        b[10] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).expect("lengths fine");
        assert!(!p.verify_checksum());
        assert_eq!(
            Ipv4Repr::parse(&p, ChecksumCaps::Complete),
            Err(Error::Malformed("ipv4 checksum"))
        );
        assert!(Ipv4Repr::parse(&p, ChecksumCaps::Offloaded).is_ok());
    }

    #[test]
    fn setters() {
        let mut buf = ICMP_ECHO;
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_dscp(46);
        p.set_ecn(3);
        p.set_more_frags(true);
        p.set_frag_offset(2960);
        p.set_dont_frag(false);
        p.set_ttl(7);
        p.set_src([1, 2, 3, 4]);
        p.fill_checksum();
        assert_eq!(p.tos(), (46 << 2) | 3);
        assert_eq!(p.frag_offset(), 2960);
        assert!(p.more_frags() && !p.dont_frag());
        assert_eq!(p.flags_frag_word(), 0x2000 | 370);
        assert_eq!(p.src(), [1, 2, 3, 4]);
        assert!(p.verify_checksum());
        p.payload_mut()[0] = 0;
        assert_eq!(buf[20], 0);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Ipv4Repr {
            src: [10, 244, 1, 0],
            dst: [10, 244, 2, 9],
            protocol: proto::UDP,
            payload_len: 11,
            ttl: 8,
            tos: 0xb8,
            ident: 0xbeef,
            dont_frag: false,
        };
        let mut buf = vec![0xffu8; repr.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p, ChecksumCaps::Complete);
        let p = Ipv4Packet::new_checked(&buf[..]).expect("valid");
        assert!(p.verify_checksum());
        assert_eq!(p.total_len(), 31);
        assert_eq!(Ipv4Repr::parse(&p, ChecksumCaps::Complete), Ok(repr));

        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p, ChecksumCaps::Offloaded);
        assert_eq!(p.checksum(), 0);
    }

    #[test]
    fn pseudo_header_matches_repr() {
        let p = Ipv4Packet::new_checked(&ICMP_ECHO[..]).expect("valid");
        let repr = Ipv4Repr::parse(&p, ChecksumCaps::Complete).expect("parse");
        assert_eq!(p.pseudo_header(), repr.pseudo_header());
        assert_eq!(
            p.pseudo_header().fold(),
            Sum::ZERO
                .bytes(&[10, 77, 0, 1, 10, 77, 0, 2, 0, 1, 0, 24])
                .fold()
        );
    }
}
