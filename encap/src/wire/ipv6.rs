//! IPv6 header (RFC 8200): the zero-copy view [`Ipv6Packet`], its [`Ipv6Repr`], and the walk
//! over extension headers to the upper-layer header ([`Ipv6Packet::upper_layer`]).
//!
//! [`Ipv6Packet::check_len`] guarantees version 6 and `40 + payload_len <= buffer len`, after
//! which no accessor panics. [`Ipv6Packet::payload`] is bytes 40..40 + payload_len (trailing
//! padding is not part of the packet). Jumbograms (RFC 2675, payload length 0 with a
//! Hop-by-Hop Jumbo Payload option) are not supported: a payload length of 0 is an empty
//! payload.
//!
//! [`Ipv6Repr`] is the fixed header only; extension headers are payload to it.

use core::net::Ipv6Addr;

use super::{get_u16, get_u32, len16, put_u16, put_u32};
use crate::checksum::{self, Sum};
use crate::error::need;
use crate::{Error, Result};

/// The length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

/// The most extension headers [`Ipv6Packet::upper_layer`] walks before giving up with
/// [`Error::Unsupported`]. RFC 8200 §4.1 allows each header once (Destination Options twice),
/// so a legitimate chain is far shorter.
pub const MAX_EXT_HEADERS: usize = 16;

/// Next Header values of the extension headers the walk knows (IANA "IPv6 Extension Header
/// Types"), and the two that end it.
pub mod ext {
    /// Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// Fragment (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303): opaque, ends the walk.
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// No Next Header (RFC 8200 §4.7): ends the walk.
    pub const NO_NEXT_HEADER: u8 = 59;
    /// Destination Options (RFC 8200 §4.6).
    pub const DST_OPTIONS: u8 = 60;
}

mod field {
    use core::ops::Range;

    pub(super) const VER_TC_FLOW: Range<usize> = 0..4;
    pub(super) const LENGTH: Range<usize> = 4..6;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC_ADDR: Range<usize> = 8..24;
    pub(super) const DST_ADDR: Range<usize> = 24..40;
}

//= https://www.rfc-editor.org/rfc/rfc8200#section-3
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |Version| Traffic Class |           Flow Label                  |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |         Payload Length        |  Next Header  |   Hop Limit   |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                                                               |
//#   +                         Source Address                        +
//#   |                                                               |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//#   |                                                               |
//#   +                      Destination Address                      +
//#   |                                                               |
//#   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

/// What a Fragment extension header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Offset of this fragment's data in the original packet, in bytes (a multiple of 8).
    pub offset: u16,
    /// The M flag: more fragments follow.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Where the upper-layer header of an IPv6 packet starts, past the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpperLayer {
    /// The upper-layer protocol (TCP, UDP, ICMPv6, ... or [`ext::ESP`] /
    /// [`ext::NO_NEXT_HEADER`], which end the walk).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the packet.
    pub offset: usize,
    /// The Fragment header, if the packet has one. When its `offset` is not 0 the bytes at
    /// `offset` are fragment data, not an upper-layer header.
    pub fragment: Option<Fragment>,
}

/// A zero-copy view of an IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wraps `buffer` without any check; accessors may panic until [`Self::check_len`] passes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv6Packet<T> {
        Ipv6Packet { buffer }
    }

    /// Wraps `buffer` and runs [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv6Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks `len >= 40`, version 6 and `40 + payload_len <= len`.
    pub fn check_len(&self) -> Result<()> {
        let data = self.buffer.as_ref();
        need(data, HEADER_LEN)?;
        if self.version() != 6 {
            return Err(Error::Malformed("ipv6 version"));
        }
        //= https://www.rfc-editor.org/rfc/rfc8200#section-3
        //# Payload Length       16-bit unsigned integer.  Length of the IPv6
        //#                      payload, i.e., the rest of the packet following
        //#                      this IPv6 header, in octets.
        need(data, self.total_len())
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    fn first_word(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// The version nibble (6 after `check_len`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic Class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    /// Flow Label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.first_word() & 0x000f_ffff
    }

    /// Payload Length: everything after the fixed header, extension headers included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The length of the packet: 40 + payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next Header: the first extension header or the upper-layer protocol.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop Limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address as bytes.
    #[inline]
    pub fn src(&self) -> [u8; 16] {
        addr16(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address as bytes.
    #[inline]
    pub fn dst(&self) -> [u8; 16] {
        addr16(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src())
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst())
    }

    /// The IPv6 pseudo-header sum (RFC 8200 §8.1) for an upper-layer header of `protocol` and
    /// `l4_len` bytes. (With a Routing header the RFC wants the final destination; weft does
    /// not route by source routing and uses the header's destination.)
    pub fn pseudo_header(&self, protocol: u8, l4_len: u32) -> Sum {
        checksum::pseudo_header_v6(&self.src(), &self.dst(), protocol, l4_len)
    }

    /// Walks the extension headers (Hop-by-Hop, Routing, Fragment, Destination Options, AH) to
    /// the upper-layer header. Stops at anything else, including ESP and No Next Header, which
    /// are returned as the protocol; stops after a Fragment header with a non-zero offset.
    ///
    /// [`Error::Truncated`] if an extension header runs past the payload (`needed` is the packet
    /// length it would take); [`Error::Unsupported`] after [`MAX_EXT_HEADERS`] headers.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let data = self.buffer.as_ref();
        let end = self.total_len().min(data.len());
        let mut next = self.next_header();
        let mut at = HEADER_LEN;
        let mut fragment = None;
        for walked in 0..=MAX_EXT_HEADERS {
            let len = match next {
                //= https://www.rfc-editor.org/rfc/rfc8200#section-4.3
                //# Hdr Ext Len          8-bit unsigned integer.  Length of the
                //#                      Hop-by-Hop Options header in 8-octet units,
                //#                      not including the first 8 octets.
                ext::HOP_BY_HOP | ext::ROUTING | ext::DST_OPTIONS => {
                    (usize::from(ext_len_byte(data, at, end)?) + 1) * 8
                }
                //= https://www.rfc-editor.org/rfc/rfc4302#section-2.2
                //# This 8-bit field specifies the length of AH in 32-bit words (4-byte
                //# units), minus "2".
                ext::AH => (usize::from(ext_len_byte(data, at, end)?) + 2) * 4,
                ext::FRAGMENT => 8,
                _ => {
                    return Ok(UpperLayer {
                        protocol: next,
                        offset: at,
                        fragment,
                    })
                }
            };
            if walked == MAX_EXT_HEADERS {
                break;
            }
            if at + len > end {
                return Err(Error::Truncated { needed: at + len });
            }
            let header_next = data[at];
            if next == ext::FRAGMENT {
                //= https://www.rfc-editor.org/rfc/rfc8200#section-4.5
                //# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
                //# |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
                //# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
                //# |                         Identification                        |
                //# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
                let word = get_u16(data, at + 2);
                let frag = Fragment {
                    // The 13-bit offset counts 8-octet units and sits above three low bits.
                    offset: word & 0xfff8,
                    more: word & 1 != 0,
                    ident: get_u32(data, at + 4),
                };
                fragment = Some(frag);
                if frag.offset != 0 {
                    return Ok(UpperLayer {
                        protocol: header_next,
                        offset: at + len,
                        fragment,
                    });
                }
            }
            at += len;
            next = header_next;
        }
        Err(Error::Unsupported("ipv6 extension header chain"))
    }
}

/// The length byte (second byte) of the extension header at `at`, if it lies before `end`.
#[inline]
fn ext_len_byte(data: &[u8], at: usize, end: usize) -> Result<u8> {
    if at + 2 > end {
        return Err(Error::Truncated { needed: at + 2 });
    }
    Ok(data[at + 1])
}

#[inline]
fn addr16(s: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(s);
    a
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv6Packet<&'a T> {
    /// The payload: bytes 40..40 + payload_len (extension headers included).
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_first_word(&mut self, word: u32) {
        put_u32(self.buffer.as_mut(), field::VER_TC_FLOW.start, word);
    }

    /// Sets the version nibble.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let w = (self.first_word() & 0x0fff_ffff) | (u32::from(version) << 28);
        self.set_first_word(w);
    }

    /// Sets Traffic Class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.first_word() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_first_word(w);
    }

    /// Sets Flow Label (the low 20 bits of `label`).
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let w = (self.first_word() & 0xfff0_0000) | (label & 0x000f_ffff);
        self.set_first_word(w);
    }

    /// Sets Payload Length.
    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        put_u16(self.buffer.as_mut(), field::LENGTH.start, len);
    }

    /// Sets Next Header.
    #[inline]
    pub fn set_next_header(&mut self, next: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = next;
    }

    /// Sets Hop Limit.
    #[inline]
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = hop_limit;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, addr: &[u8; 16]) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(addr);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, addr: &[u8; 16]) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(addr);
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A high-level IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Next Header.
    pub next_header: u8,
    /// Payload length in bytes (extension headers included).
    pub payload_len: usize,
    /// Hop Limit.
    pub hop_limit: u8,
    /// Traffic Class.
    pub traffic_class: u8,
    /// Flow Label (20 bits).
    pub flow_label: u32,
}

impl Ipv6Repr {
    /// Parses the fixed header after [`Ipv6Packet::check_len`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv6Packet<T>) -> Result<Ipv6Repr> {
        packet.check_len()?;
        Ok(Ipv6Repr {
            src: packet.src(),
            dst: packet.dst(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
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

    /// The pseudo-header sum for an upper layer directly after this header (no extension
    /// headers): protocol `next_header`, length `payload_len`.
    #[inline]
    pub fn pseudo_header(&self) -> Sum {
        checksum::pseudo_header_v6(
            &self.src,
            &self.dst,
            self.next_header,
            self.payload_len as u32,
        )
    }

    /// Writes the fixed header into the first [`HEADER_LEN`] bytes of `packet`; the payload is
    /// not touched. `payload_len` must be at most 65535. Panics only if `packet` is shorter
    /// than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Ipv6Packet<T>) {
        packet.set_first_word(
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff),
        );
        packet.set_payload_len(len16(self.payload_len));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src(&self.src);
        packet.set_dst(&self.dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::proto;

    const A1: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const A2: [u8; 16] = [0xfd, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// `ping -6 -s 16 fd00:77::2` from a netns, captured with tcpdump.
    const ICMP6_ECHO: [u8; 64] = [
        0x60, 0x0d, 0x7c, 0xbc, 0x00, 0x18, 0x3a, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0xa4, 0x42, 0x1e,
        0x98, 0x00, 0x01, 0x7d, 0xa7, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0x36, 0xcc, 0x0c, 0x00,
        0x00, 0x00, 0x00, 0x00,
    ];

    /// An MLDv2 report the kernel sent on link-up: a Hop-by-Hop header (Router Alert) before
    /// ICMPv6.
    const MLD: [u8; 96] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x38, 0x00, 0x01, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x70, 0x83, 0x83, 0xff, 0xfe, 0x6e, 0x2f, 0x2b, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x16, 0x3a, 0x00, 0x05, 0x02, 0x00,
        0x00, 0x01, 0x00, 0x8f, 0x00, 0x1d, 0x38, 0x00, 0x00, 0x00, 0x02, 0x04, 0x00, 0x00, 0x00,
        0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x6e, 0x2f,
        0x2b, 0x04, 0x00, 0x00, 0x00, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0xff, 0x00, 0x00, 0x01,
    ];

    /// `ping -6 -s 1600`: the first 64 bytes of the first fragment (offset 0, M set).
    const FRAG6_FIRST_HEAD: [u8; 64] = [
        0x60, 0x0d, 0x7c, 0xbc, 0x05, 0xb0, 0x2c, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3a, 0x00, 0x00, 0x01, 0x35,
        0x53, 0x96, 0xeb, 0x80, 0x00, 0x76, 0x41, 0x1e, 0xca, 0x00, 0x01, 0x7e, 0xa7, 0x01, 0x6b,
        0x00, 0x00, 0x00, 0x00,
    ];

    /// The same packet's last fragment: offset 1448, M clear, 160 bytes of data.
    const FRAG6_LAST: [u8; 208] = [
        0x60, 0x0d, 0x7c, 0xbc, 0x00, 0xa8, 0x2c, 0x40, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x00, 0x77, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x3a, 0x00, 0x05, 0xa8, 0x35,
        0x53, 0x96, 0xeb, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab,
        0xac, 0xad, 0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
        0xbb, 0xbc, 0xbd, 0xbe, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9,
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
        let p = Ipv6Packet::new_checked(&ICMP6_ECHO[..]).expect("valid");
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0xd7cbc);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), proto::ICMPV6);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), A1);
        assert_eq!(
            p.dst_addr(),
            "fd00:77::2".parse::<Ipv6Addr>().expect("addr")
        );
        assert_eq!(p.payload(), &ICMP6_ECHO[40..]);
        assert_eq!(
            p.upper_layer(),
            Ok(UpperLayer {
                protocol: proto::ICMPV6,
                offset: 40,
                fragment: None
            })
        );
        let repr = Ipv6Repr::parse(&p).expect("parse");
        let mut buf = ICMP6_ECHO;
        buf[..40].fill(0x5a);
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, ICMP6_ECHO);
    }

    #[test]
    fn hop_by_hop_is_skipped() {
        let p = Ipv6Packet::new_checked(&MLD[..]).expect("valid");
        assert_eq!(p.next_header(), ext::HOP_BY_HOP);
        let ul = p.upper_layer().expect("walk");
        assert_eq!(ul.protocol, proto::ICMPV6);
        assert_eq!(ul.offset, 48);
        assert_eq!(MLD[ul.offset], 143, "MLDv2 report type");
        assert_eq!(ul.fragment, None);
    }

    #[test]
    fn captured_fragments() {
        let first = Ipv6Packet::new_unchecked(&FRAG6_FIRST_HEAD[..]);
        assert_eq!(first.check_len(), Err(Error::Truncated { needed: 1496 }));
        // The walk only needs the bytes up to the upper-layer header.
        assert_eq!(
            first.upper_layer(),
            Ok(UpperLayer {
                protocol: proto::ICMPV6,
                offset: 48,
                fragment: Some(Fragment {
                    offset: 0,
                    more: true,
                    ident: 0x3553_96eb
                }),
            })
        );
        let last = Ipv6Packet::new_checked(&FRAG6_LAST[..]).expect("valid");
        assert_eq!(
            last.upper_layer(),
            Ok(UpperLayer {
                protocol: proto::ICMPV6,
                offset: 48,
                fragment: Some(Fragment {
                    offset: 1448,
                    more: false,
                    ident: 0x3553_96eb
                }),
            })
        );
    }

    /// Builds a packet with the given chain of (type, header bytes) then `upper`.
    fn chain(headers: &[(u8, Vec<u8>)], upper: u8) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (_, h)) in headers.iter().enumerate() {
            let next = headers.get(i + 1).map_or(upper, |n| n.0);
            let mut h = h.clone();
            h[0] = next;
            body.extend_from_slice(&h);
        }
        body.extend_from_slice(&[0u8; 8]);
        let repr = Ipv6Repr {
            src: A1,
            dst: A2,
            next_header: headers.first().map_or(upper, |h| h.0),
            payload_len: body.len(),
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        buf[40..].copy_from_slice(&body);
        buf
    }

    #[test]
    fn every_extension_header_kind() {
        let hbh = vec![0, 0, 1, 4, 0, 0, 0, 0];
        // Routing type 4 (SRH) with one segment: Hdr Ext Len 2 -> 24 bytes.
        let mut rh = vec![0u8; 24];
        rh[1] = 2;
        rh[2] = 4;
        let frag = vec![0, 0, 0, 0, 0, 0, 0, 9];
        // AH with a 12-byte ICV: Payload Len 4 -> (4 + 2) * 4 = 24 bytes.
        let mut ah = vec![0u8; 24];
        ah[1] = 4;
        let dst = vec![0, 0, 1, 4, 0, 0, 0, 0];
        let buf = chain(
            &[
                (ext::HOP_BY_HOP, hbh),
                (ext::DST_OPTIONS, dst.clone()),
                (ext::ROUTING, rh),
                (ext::FRAGMENT, frag),
                (ext::AH, ah),
                (ext::DST_OPTIONS, dst),
            ],
            proto::TCP,
        );
        let p = Ipv6Packet::new_checked(&buf[..]).expect("valid");
        let ul = p.upper_layer().expect("walk");
        assert_eq!(ul.protocol, proto::TCP);
        assert_eq!(ul.offset, 40 + 8 + 8 + 24 + 8 + 24 + 8);
        assert_eq!(
            ul.fragment,
            Some(Fragment {
                offset: 0,
                more: false,
                ident: 9
            })
        );
    }

    #[test]
    fn esp_and_no_next_header_end_the_walk() {
        for stop in [ext::ESP, ext::NO_NEXT_HEADER] {
            let buf = chain(&[(ext::DST_OPTIONS, vec![0, 0, 1, 4, 0, 0, 0, 0])], stop);
            let p = Ipv6Packet::new_checked(&buf[..]).expect("valid");
            let ul = p.upper_layer().expect("walk");
            assert_eq!((ul.protocol, ul.offset), (stop, 48));
        }
    }

    #[test]
    fn truncated_and_malformed() {
        let check = |b: &[u8]| Ipv6Packet::new_unchecked(b).check_len();
        assert_eq!(
            check(&ICMP6_ECHO[..39]),
            Err(Error::Truncated { needed: 40 })
        );
        assert_eq!(
            check(&ICMP6_ECHO[..63]),
            Err(Error::Truncated { needed: 64 })
        );
        let mut b = ICMP6_ECHO;
        b[0] = 0x40;
        assert_eq!(check(&b), Err(Error::Malformed("ipv6 version")));

        // An extension header longer than the payload.
        let mut b = chain(
            &[(ext::HOP_BY_HOP, vec![0, 0, 1, 4, 0, 0, 0, 0])],
            proto::UDP,
        );
        b[41] = 3; // 32 bytes, but only 16 in the payload
        let p = Ipv6Packet::new_checked(&b[..]).expect("lengths fine");
        assert_eq!(p.upper_layer(), Err(Error::Truncated { needed: 72 }));
        // A payload that ends inside the first two bytes of an extension header.
        let mut b = chain(&[], ext::ROUTING);
        b[4..6].copy_from_slice(&1u16.to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).expect("lengths fine");
        assert_eq!(p.upper_layer(), Err(Error::Truncated { needed: 42 }));
        // A fragment header cut short.
        let mut b = chain(&[], ext::FRAGMENT);
        b[4..6].copy_from_slice(&4u16.to_be_bytes());
        let p = Ipv6Packet::new_checked(&b[..]).expect("lengths fine");
        assert_eq!(p.upper_layer(), Err(Error::Truncated { needed: 48 }));
    }

    #[test]
    fn overlong_chain_is_unsupported() {
        let hdrs: Vec<(u8, Vec<u8>)> = (0..MAX_EXT_HEADERS + 1)
            .map(|_| (ext::DST_OPTIONS, vec![0, 0, 1, 4, 0, 0, 0, 0]))
            .collect();
        let buf = chain(&hdrs, proto::UDP);
        let p = Ipv6Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(
            p.upper_layer(),
            Err(Error::Unsupported("ipv6 extension header chain"))
        );
        let buf = chain(&hdrs[..MAX_EXT_HEADERS], proto::UDP);
        let p = Ipv6Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.upper_layer().map(|u| u.protocol), Ok(proto::UDP));
    }

    #[test]
    fn setters_keep_neighbouring_bits() {
        let mut buf = ICMP6_ECHO;
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_traffic_class(0xb9);
        assert_eq!(p.flow_label(), 0xd7cbc);
        p.set_flow_label(0xfff_ffff);
        assert_eq!(p.traffic_class(), 0xb9);
        assert_eq!(p.flow_label(), 0xfffff);
        assert_eq!(p.version(), 6);
        p.set_hop_limit(1);
        p.set_src(&A2);
        p.payload_mut()[0] = 129;
        assert_eq!(buf[0..4], [0x6b, 0x9f, 0xff, 0xff]);
        assert_eq!(buf[7], 1);
        assert_eq!(buf[8..24], A2);
        assert_eq!(buf[40], 129);
    }

    #[test]
    fn repr_round_trip() {
        let repr = Ipv6Repr {
            src: A2,
            dst: A1,
            next_header: proto::UDP,
            payload_len: 13,
            hop_limit: 255,
            traffic_class: 0x2e,
            flow_label: 0x12345,
        };
        let mut buf = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        let p = Ipv6Packet::new_checked(&buf[..]).expect("valid");
        assert_eq!(p.payload_len(), 13);
        assert_eq!(Ipv6Repr::parse(&p), Ok(repr));
        assert_eq!(p.pseudo_header(proto::UDP, 13), repr.pseudo_header());
    }
}
