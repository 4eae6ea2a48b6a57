//! TCP header (RFC 9293): the zero-copy view [`TcpPacket`] and its [`TcpRepr`].
//!
//! The view wraps exactly one TCP segment (the IP payload: TCP has no length field, so the
//! buffer's end is the segment's end, and the checksum covers the whole buffer).
//! [`TcpPacket::check_len`] guarantees `20 <= header_len (data offset * 4) <= buffer len`,
//! after which no accessor panics. Options are kept as bytes ([`TcpPacket::options`]); weft
//! never interprets them, it only copies them (GSO split, GRO coalesce).
//!
//! [`TcpRepr`] is `Copy`: its options live in a fixed 40-byte array ([`TcpOptions`]). It keeps
//! the eight flag bits of byte 13; the four bits below the data offset (reserved, and the
//! AccECN AE bit) are written as zero.

use super::{get_u16, get_u32, put_u16, put_u32};
use crate::checksum::{self, Sum};
use crate::error::need;
use crate::{ChecksumCaps, Error, Result};

/// The length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// The most option bytes a header can carry: data offset is 4 bits of 32-bit words (60 - 20).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The flag bits of byte 13 of the header.
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

mod field {
    use core::ops::Range;

    pub(super) const SRC_PORT: Range<usize> = 0..2;
    pub(super) const DST_PORT: Range<usize> = 2..4;
    pub(super) const SEQ_NUM: Range<usize> = 4..8;
    pub(super) const ACK_NUM: Range<usize> = 8..12;
    pub(super) const DATA_OFFSET: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: Range<usize> = 14..16;
    pub(super) const CHECKSUM: Range<usize> = 16..18;
    pub(super) const URGENT: Range<usize> = 18..20;
}

//= https://www.rfc-editor.org/rfc/rfc9293#section-3.1
//#  0                   1                   2                   3
//#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |          Source Port          |       Destination Port        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                        Sequence Number                        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                    Acknowledgment Number                      |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |  Data |       |C|E|U|A|P|R|S|F|                               |
//# | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//# |       |       |R|E|G|K|H|T|N|N|                               |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |           Checksum            |         Urgent Pointer        |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//# |                           [Options]                           |
//# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// A zero-copy view of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

macro_rules! flag_accessors {
    ($($get:ident $set:ident $bit:path;)*) => {
        impl<T: AsRef<[u8]>> TcpPacket<T> {
            $(
                #[doc = concat!("Whether the ", stringify!($bit), " flag is set.")]
                #[inline]
                pub fn $get(&self) -> bool {
                    self.flags() & $bit != 0
                }
            )*
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
            $(
                #[doc = concat!("Sets or clears the ", stringify!($bit), " flag.")]
                #[inline]
                pub fn $set(&mut self, value: bool) {
                    let f = self.flags();
                    self.set_flags(if value { f | $bit } else { f & !$bit });
                }
            )*
        }
    };
}

flag_accessors! {
    fin set_fin flags::FIN;
    syn set_syn flags::SYN;
    rst set_rst flags::RST;
    psh set_psh flags::PSH;
    ack set_ack flags::ACK;
    urg set_urg flags::URG;
    ece set_ece flags::ECE;
    cwr set_cwr flags::CWR;
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without any check; accessors may panic until [`Self::check_len`] passes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` and runs [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks `len >= 20` and `20 <= data offset * 4 <= len`.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        need(data, HEADER_LEN)?;
        //= https://www.rfc-editor.org/rfc/rfc9293#section-3.1
        //# The number of 32-bit words in the TCP header.  This indicates where
        //# the data begins.
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed("tcp data offset"));
        }
        need(data, header_len)
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

    /// Sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_num(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// The header length in bytes: data offset * 4, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The flag byte (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Window.
    #[inline]
    pub fn window(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// Checksum.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The options: bytes 20..header_len.
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The segment length (header plus payload): the buffer length.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Whether the checksum over `pseudo` (the whole pseudo-header, length = the buffer
    /// length) and the segment verifies.
    pub fn verify_checksum(&self, pseudo: Sum) -> bool {
        checksum::verifies(pseudo.bytes(self.buffer.as_ref()))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// The payload: bytes header_len.. to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, seq: u32) {
        put_u32(self.buffer.as_mut(), field::SEQ_NUM.start, seq);
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_num(&mut self, ack: u32) {
        put_u32(self.buffer.as_mut(), field::ACK_NUM.start, ack);
    }

    /// Sets the header length in bytes (a multiple of 4, 20..=60), keeping the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFFSET];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    /// Sets the flag byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the window.
    #[inline]
    pub fn set_window(&mut self, window: u16) {
        put_u16(self.buffer.as_mut(), field::WIN_SIZE.start, window);
    }

    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, check: u16) {
        put_u16(self.buffer.as_mut(), field::CHECKSUM.start, check);
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, urgent: u16) {
        put_u16(self.buffer.as_mut(), field::URGENT.start, urgent);
    }

    /// Computes the checksum over `pseudo` and the whole buffer and writes it.
    pub fn fill_checksum(&mut self, pseudo: Sum) {
        self.set_checksum(0);
        let check = pseudo.bytes(self.buffer.as_ref()).finish();
        self.set_checksum(check);
    }

    /// The options, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// TCP options as raw bytes, padded with zeros to a multiple of 4, at most 40: `Copy`, so a
/// [`TcpRepr`] is too.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpOptions {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl TcpOptions {
    /// No options.
    pub const EMPTY: TcpOptions = TcpOptions {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// Copies `options`, padding with zero bytes (End of Option List) to a multiple of 4.
    /// [`Error::Malformed`] if longer than [`MAX_OPTIONS_LEN`].
    pub fn new(options: &[u8]) -> Result<TcpOptions> {
        let mut bytes = [0u8; MAX_OPTIONS_LEN];
        bytes
            .get_mut(..options.len())
            .ok_or(Error::Malformed("tcp options longer than 40 bytes"))?
            .copy_from_slice(options);
        Ok(TcpOptions {
            bytes,
            len: options.len().next_multiple_of(4) as u8,
        })
    }

    /// The option bytes, padding included.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The number of option bytes, padding included (a multiple of 4).
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are no options.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions::EMPTY
    }
}

impl core::fmt::Debug for TcpOptions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("TcpOptions").field(&self.as_slice()).finish()
    }
}

/// A high-level TCP header. The payload length is given to [`TcpRepr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful when `flags` has ACK).
    pub ack: u32,
    /// The flag byte (see [`flags`]).
    pub flags: u8,
    /// Window.
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Parses a segment; with [`ChecksumCaps::Complete`] the checksum must verify against
    /// `pseudo` (the whole pseudo-header, length = the segment length).
    pub fn parse<T: AsRef<[u8]>>(
        packet: &TcpPacket<T>,
        pseudo: Sum,
        caps: ChecksumCaps,
    ) -> Result<TcpRepr> {
        packet.check_len()?;
        if caps == ChecksumCaps::Complete && !packet.verify_checksum(pseudo) {
            return Err(Error::Malformed("tcp checksum"));
        }
        Ok(TcpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq: packet.seq(),
            ack: packet.ack_num(),
            flags: packet.flags(),
            window: packet.window(),
            urgent: packet.urgent(),
            options: TcpOptions::new(packet.options())?,
        })
    }

    /// The length of the header: 20 plus the options.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// The length of the segment for `payload_len` bytes of payload.
    #[inline]
    pub fn buffer_len(&self, payload_len: usize) -> usize {
        self.header_len() + payload_len
    }

    /// Writes the header with a zero checksum.
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq(self.seq);
        packet.set_ack_num(self.ack);
        packet.buffer.as_mut()[field::DATA_OFFSET] = ((self.header_len() / 4) as u8) << 4;
        packet.set_flags(self.flags);
        packet.set_window(self.window);
        packet.set_checksum(0);
        packet.set_urgent(self.urgent);
        packet
            .options_mut()
            .copy_from_slice(self.options.as_slice());
    }

    /// Writes the header, lets `emit_payload` fill the `payload_len` bytes after it (pass
    /// `|_| {}` if they are already in place), then the checksum over the segment
    /// (`buffer_len(payload_len)` bytes; the buffer may be longer): computed over `pseudo` with
    /// [`ChecksumCaps::Complete`], or the folded pseudo-header sum (a partial checksum the
    /// kernel completes) with [`ChecksumCaps::Offloaded`].
    ///
    /// Panics only if `packet` is shorter than [`Self::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        pseudo: Sum,
        payload_len: usize,
        emit_payload: impl FnOnce(&mut [u8]),
        caps: ChecksumCaps,
    ) {
        self.emit_header(packet);
        let header_len = self.header_len();
        let end = header_len + payload_len;
        emit_payload(&mut packet.buffer.as_mut()[header_len..end]);
        let check = match caps {
            ChecksumCaps::Complete => pseudo.bytes(&packet.buffer.as_ref()[..end]).finish(),
            ChecksumCaps::Offloaded => pseudo.fold(),
        };
        packet.set_checksum(check);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::proto;

    /// A Linux SYN (MSS, SACK permitted, timestamps, window scale) to 10.77.0.2:8080, captured
    /// in a netns with tcpdump.
    const TCP_SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x9c, 0x76, 0x40, 0x00, 0x40, 0x06, 0x89, 0xa9, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x81, 0xd2, 0x1f, 0x90, 0x26, 0x67, 0x71, 0xe0, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x36, 0xc4, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0xda, 0xb1, 0xed, 0x4f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    /// The first data segment of the same connection: PSH|ACK with b"ping".
    const TCP_DATA: [u8; 56] = [
        0x45, 0x00, 0x00, 0x38, 0x9c, 0x78, 0x40, 0x00, 0x40, 0x06, 0x89, 0xab, 0x0a, 0x4d, 0x00,
        0x01, 0x0a, 0x4d, 0x00, 0x02, 0x81, 0xd2, 0x1f, 0x90, 0x26, 0x67, 0x71, 0xe1, 0x9a, 0xf2,
        0xb4, 0x4b, 0x80, 0x18, 0x00, 0x3f, 0x23, 0x2f, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0xda,
        0xb1, 0xed, 0x4f, 0xef, 0x43, 0x1f, 0xa7, 0x70, 0x69, 0x6e, 0x67,
    ];

    #[test]
    fn parse_captured_syn() {
        let ip = Ipv4Packet::new_checked(&TCP_SYN[..]).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert_eq!(tcp.src_port(), 33234);
        assert_eq!(tcp.dst_port(), 8080);
        assert_eq!(tcp.seq(), 0x266771e0);
        assert_eq!(tcp.ack_num(), 0);
        assert_eq!(tcp.header_len(), 40);
        assert_eq!(tcp.flags(), flags::SYN);
        assert!(tcp.syn() && !tcp.ack() && !tcp.fin() && !tcp.rst());
        assert_eq!(tcp.window(), 64240);
        assert_eq!(tcp.checksum(), 0x36c4);
        assert_eq!(tcp.urgent(), 0);
        assert_eq!(&tcp.options()[..4], &[0x02, 0x04, 0x05, 0xb4], "MSS 1460");
        assert_eq!(
            &tcp.options()[16..],
            &[0x01, 0x03, 0x03, 0x0a],
            "NOP, WS 10"
        );
        assert!(tcp.payload().is_empty());
        assert!(tcp.verify_checksum(ip.pseudo_header()));
        let repr = TcpRepr::parse(&tcp, ip.pseudo_header(), ChecksumCaps::Complete).expect("parse");
        assert_eq!(repr.options.as_slice(), tcp.options());
        let mut seg = [0u8; 40];
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut seg[..]),
            ip.pseudo_header(),
            0,
            |_| {},
            ChecksumCaps::Complete,
        );
        assert_eq!(seg, TCP_SYN[20..]);
    }

    #[test]
    fn parse_captured_data() {
        let ip = Ipv4Packet::new_checked(&TCP_DATA[..]).expect("ip");
        let tcp = TcpPacket::new_checked(ip.payload()).expect("tcp");
        assert_eq!(tcp.flags(), flags::PSH | flags::ACK);
        assert!(tcp.psh() && tcp.ack() && !tcp.syn() && !tcp.urg() && !tcp.ece() && !tcp.cwr());
        assert_eq!(tcp.ack_num(), 0x9af2b44b);
        assert_eq!(tcp.header_len(), 32);
        assert_eq!(tcp.payload(), b"ping");
        assert!(tcp.verify_checksum(ip.pseudo_header()));
        let mut bad = [0u8; 36];
        bad.copy_from_slice(ip.payload());
        bad[35] ^= 1;
        let tcp = TcpPacket::new_checked(&bad[..]).expect("tcp");
        assert!(!tcp.verify_checksum(ip.pseudo_header()));
        assert_eq!(
            TcpRepr::parse(&tcp, ip.pseudo_header(), ChecksumCaps::Complete),
            Err(Error::Malformed("tcp checksum"))
        );
        assert!(TcpRepr::parse(&tcp, ip.pseudo_header(), ChecksumCaps::Offloaded).is_ok());
    }

    #[test]
    fn flag_setters() {
        let mut seg = [0u8; 20];
        let mut tcp = TcpPacket::new_unchecked(&mut seg[..]);
        tcp.set_fin(true);
        tcp.set_cwr(true);
        tcp.set_ece(true);
        tcp.set_urg(true);
        tcp.set_ece(false);
        tcp.set_rst(true);
        tcp.set_syn(true);
        tcp.set_psh(true);
        tcp.set_ack(true);
        tcp.set_syn(false);
        assert_eq!(
            tcp.flags(),
            flags::FIN | flags::CWR | flags::URG | flags::RST | flags::PSH | flags::ACK
        );
        tcp.set_header_len(24);
        assert_eq!(seg[12], 0x60);
    }

    #[test]
    fn truncated_and_malformed() {
        let check = |b: &[u8]| TcpPacket::new_unchecked(b).check_len();
        assert_eq!(
            check(&TCP_SYN[20..39]),
            Err(Error::Truncated { needed: 20 })
        );
        assert_eq!(
            check(&TCP_SYN[20..59]),
            Err(Error::Truncated { needed: 40 })
        );
        let mut b = [0u8; 40];
        b.copy_from_slice(&TCP_SYN[20..]);
        b[12] = 0x40;
        assert_eq!(check(&b), Err(Error::Malformed("tcp data offset")));
        b[12] = 0xf0;
        assert_eq!(check(&b), Err(Error::Truncated { needed: 60 }));
    }

    #[test]
    fn options_are_padded() {
        assert_eq!(
            TcpOptions::new(&[2, 4, 5, 0xb4, 1, 1, 4, 2, 8]).map(|o| o.len()),
            Ok(12)
        );
        assert_eq!(TcpOptions::new(&[0; 40]).map(|o| o.len()), Ok(40));
        assert_eq!(
            TcpOptions::new(&[0; 41]),
            Err(Error::Malformed("tcp options longer than 40 bytes"))
        );
        assert!(TcpOptions::EMPTY.is_empty());
    }

    #[test]
    fn repr_round_trip_and_offload() {
        let repr = TcpRepr {
            src_port: 443,
            dst_port: 51000,
            seq: 0xfedc_ba98,
            ack: 0x0123_4567,
            flags: flags::ACK | flags::PSH | flags::ECE,
            window: 501,
            urgent: 0,
            options: TcpOptions::new(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]).expect("opts"),
        };
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        let pseudo = checksum::pseudo_header_v4(
            [10, 1, 1, 1],
            [10, 2, 2, 2],
            proto::TCP,
            repr.buffer_len(payload.len()) as u32,
        );
        // A longer buffer: emit only covers buffer_len bytes.
        let mut buf = vec![0xeeu8; repr.buffer_len(payload.len()) + 5];
        let mut tcp = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit(
            &mut tcp,
            pseudo,
            payload.len(),
            |p| p.copy_from_slice(payload),
            ChecksumCaps::Complete,
        );
        let seg = &buf[..repr.buffer_len(payload.len())];
        let tcp = TcpPacket::new_checked(seg).expect("valid");
        assert_eq!(tcp.header_len(), 32);
        assert_eq!(tcp.payload(), payload);
        assert!(tcp.verify_checksum(pseudo));
        assert_eq!(
            TcpRepr::parse(&tcp, pseudo, ChecksumCaps::Complete),
            Ok(repr)
        );

        let n = repr.buffer_len(payload.len());
        let mut tcp = TcpPacket::new_unchecked(&mut buf[..n]);
        repr.emit(
            &mut tcp,
            pseudo,
            payload.len(),
            |_| {},
            ChecksumCaps::Offloaded,
        );
        assert_eq!(tcp.checksum(), pseudo.fold());
        tcp.set_checksum(Sum::ZERO.bytes(tcp.as_ref()).finish());
        assert!(tcp.verify_checksum(pseudo));
        tcp.fill_checksum(pseudo);
        assert!(tcp.verify_checksum(pseudo));
    }
}
