//! The `struct virtio_net_hdr` that a TUN opened with `IFF_VNET_HDR` puts before every packet.
//!
//! This module owns the 10-byte header of `include/uapi/linux/virtio_net.h` (the legacy layout,
//! without `num_buffers`): a view [`VirtioNetHdr`] and a [`VirtioNetRepr`]. The fields are in the
//! byte order of the host (a TUN in its default, non-`TUNSETVNETLE`/`BE` mode on a
//! little-endian machine, which is the only case weft supports), so they are read and written
//! with `from_ne_bytes` / `to_ne_bytes`.
//!
//! Contract: [`VirtioNetRepr::parse`] accepts the GSO types weft can split (TCPv4, TCPv6, UDP_L4)
//! and rejects legacy UFO and unknown types as [`Error::Unsupported`]. The kernel's `hdr_len`
//! is a hint only (it may be zero or too small); [`VirtioNetRepr::derive_hdr_len`] computes the
//! real header length from `csum_start` and the transport header, checked against the packet.

use core::ops::Range;

use crate::error::need;
use crate::{Error, Result};

/// The length of `struct virtio_net_hdr` (`include/uapi/linux/virtio_net.h`).
pub const HEADER_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial (it holds
/// the pseudo-header sum) and must be completed over `csum_start..`.
pub const FLAG_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel already validated the checksum.
pub const FLAG_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: legacy UFO (IP fragmentation), not supported.
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation (USO), one datagram per segment.
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP super-packet carries CWR (on its first segment only).
pub const GSO_ECN: u8 = 0x80;

/// The offset of the TCP checksum in the TCP header (`offsetof(struct tcphdr, check)`).
pub const TCP_CSUM_OFFSET: u16 = 16;
/// The offset of the UDP checksum in the UDP header (`offsetof(struct udphdr, check)`).
pub const UDP_CSUM_OFFSET: u16 = 6;

const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

mod field {
    use core::ops::Range;

    pub(super) const FLAGS: usize = 0;
    pub(super) const GSO_TYPE: usize = 1;
    pub(super) const HDR_LEN: Range<usize> = 2..4;
    pub(super) const GSO_SIZE: Range<usize> = 4..6;
    pub(super) const CSUM_START: Range<usize> = 6..8;
    pub(super) const CSUM_OFFSET: Range<usize> = 8..10;
}

/// A view over a `virtio_net_hdr` (and whatever follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioNetHdr<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VirtioNetHdr<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Self {
        VirtioNetHdr { buffer }
    }

    /// Wraps `buffer` after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let hdr = Self::new_unchecked(buffer);
        hdr.check_len()?;
        Ok(hdr)
    }

    /// Fails with `Truncated` unless the buffer holds the 10-byte header.
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref(), HEADER_LEN)
    }

    /// Returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, r: Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_ne_bytes([b[0], b[1]])
    }

    /// The `flags` byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The `gso_type` byte (with the ECN bit).
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// `hdr_len`: the kernel's idea of the header length (do not trust it).
    pub fn hdr_len(&self) -> u16 {
        self.u16_at(field::HDR_LEN)
    }

    /// `gso_size`: the payload bytes per segment.
    pub fn gso_size(&self) -> u16 {
        self.u16_at(field::GSO_SIZE)
    }

    /// `csum_start`: where the checksummed region starts, from the start of the packet.
    pub fn csum_start(&self) -> u16 {
        self.u16_at(field::CSUM_START)
    }

    /// `csum_offset`: where the checksum field is, from `csum_start`.
    pub fn csum_offset(&self) -> u16 {
        self.u16_at(field::CSUM_OFFSET)
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> VirtioNetHdr<&'a T> {
    /// The packet after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VirtioNetHdr<T> {
    fn set_u16_at(&mut self, r: Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_ne_bytes());
    }

    /// Sets the `flags` byte.
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the `gso_type` byte.
    pub fn set_gso_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = v;
    }

    /// Sets `hdr_len`.
    pub fn set_hdr_len(&mut self, v: u16) {
        self.set_u16_at(field::HDR_LEN, v);
    }

    /// Sets `gso_size`.
    pub fn set_gso_size(&mut self, v: u16) {
        self.set_u16_at(field::GSO_SIZE, v);
    }

    /// Sets `csum_start`.
    pub fn set_csum_start(&mut self, v: u16) {
        self.set_u16_at(field::CSUM_START, v);
    }

    /// Sets `csum_offset`.
    pub fn set_csum_offset(&mut self, v: u16) {
        self.set_u16_at(field::CSUM_OFFSET, v);
    }

    /// The packet after the header, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The segmentation a super-packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum GsoType {
    /// One packet, no segmentation.
    #[default]
    None,
    /// TCP over IPv4 (TSO).
    TcpV4,
    /// TCP over IPv6 (TSO).
    TcpV6,
    /// UDP segmentation over IPv4 or IPv6 (USO): every segment is a whole datagram.
    UdpL4,
}

impl GsoType {
    /// The `gso_type` value, without the ECN bit.
    pub const fn to_raw(self) -> u8 {
        match self {
            GsoType::None => GSO_NONE,
            GsoType::TcpV4 => GSO_TCPV4,
            GsoType::TcpV6 => GSO_TCPV6,
            GsoType::UdpL4 => GSO_UDP_L4,
        }
    }

    /// Whether this is one of the TCP types.
    pub const fn is_tcp(self) -> bool {
        matches!(self, GsoType::TcpV4 | GsoType::TcpV6)
    }
}

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct VirtioNetRepr {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the L4 checksum is partial and must be completed.
    pub needs_csum: bool,
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel validated the checksum.
    pub data_valid: bool,
    /// The segmentation asked for.
    pub gso: GsoType,
    /// `VIRTIO_NET_HDR_GSO_ECN` (TCP only).
    pub ecn: bool,
    /// The header length the kernel claims (see [`VirtioNetRepr::derive_hdr_len`]).
    pub hdr_len: u16,
    /// Payload bytes per segment (0 without GSO).
    pub gso_size: u16,
    /// Start of the checksummed region, from the start of the packet.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start`.
    pub csum_offset: u16,
}

impl VirtioNetRepr {
    /// Parses a header. Legacy UFO, unknown GSO types and unknown flag bits are `Unsupported`;
    /// the ECN bit on a non-TCP type is `Malformed`.
    pub fn parse<T: AsRef<[u8]>>(hdr: &VirtioNetHdr<T>) -> Result<VirtioNetRepr> {
        hdr.check_len()?;
        let flags = hdr.flags();
        if flags & !(FLAG_NEEDS_CSUM | FLAG_DATA_VALID) != 0 {
            return Err(Error::Unsupported("virtio_net_hdr flag bits"));
        }
        let raw = hdr.gso_type();
        let gso = match raw & !GSO_ECN {
            GSO_NONE => GsoType::None,
            GSO_TCPV4 => GsoType::TcpV4,
            GSO_TCPV6 => GsoType::TcpV6,
            GSO_UDP_L4 => GsoType::UdpL4,
            GSO_UDP => return Err(Error::Unsupported("virtio_net_hdr legacy UFO")),
            _ => return Err(Error::Unsupported("virtio_net_hdr gso_type")),
        };
        let ecn = raw & GSO_ECN != 0;
        if ecn && !gso.is_tcp() {
            return Err(Error::Malformed("virtio_net_hdr ECN bit without TCP GSO"));
        }
        Ok(VirtioNetRepr {
            needs_csum: flags & FLAG_NEEDS_CSUM != 0,
            data_valid: flags & FLAG_DATA_VALID != 0,
            gso,
            ecn,
            hdr_len: hdr.hdr_len(),
            gso_size: hdr.gso_size(),
            csum_start: hdr.csum_start(),
            csum_offset: hdr.csum_offset(),
        })
    }

    /// The emitted length: always [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `hdr`.
    ///
    /// # Panics
    /// If the buffer is shorter than [`HEADER_LEN`] (the view contract: emit into a buffer of at
    /// least `buffer_len()` bytes).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, hdr: &mut VirtioNetHdr<T>) {
        let mut flags = 0;
        if self.needs_csum {
            flags |= FLAG_NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= FLAG_DATA_VALID;
        }
        hdr.set_flags(flags);
        hdr.set_gso_type(self.gso.to_raw() | if self.ecn { GSO_ECN } else { 0 });
        hdr.set_hdr_len(self.hdr_len);
        hdr.set_gso_size(self.gso_size);
        hdr.set_csum_start(self.csum_start);
        hdr.set_csum_offset(self.csum_offset);
    }

    /// The 10 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.emit(&mut VirtioNetHdr::new_unchecked(&mut b[..]));
        b
    }

    /// The real header length of a GSO super-packet: `csum_start` plus the TCP header length
    /// (data offset * 4) or plus 8 for UDP, checked against `packet` (the bytes after the
    /// virtio header). The kernel's `hdr_len` is ignored.
    pub fn derive_hdr_len(&self, packet: &[u8]) -> Result<usize> {
        let start = usize::from(self.csum_start);
        let l4_len = match self.gso {
            GsoType::None => return Err(Error::Unsupported("hdr_len of a packet without GSO")),
            GsoType::TcpV4 | GsoType::TcpV6 => {
                need(packet, start + TCP_MIN_HEADER_LEN)?;
                let len = usize::from(packet[start + 12] >> 4) * 4;
                if len < TCP_MIN_HEADER_LEN {
                    return Err(Error::Malformed("TCP data offset"));
                }
                len
            }
            GsoType::UdpL4 => UDP_HEADER_LEN,
        };
        need(packet, start + l4_len)?;
        Ok(start + l4_len)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // A header as a TUN delivers it for a TSO super-packet: NEEDS_CSUM, TCPV4, hdr_len 66,
    // gso_size 1448, csum_start 20, csum_offset 16 (little-endian host).
    const TSO4: [u8; 10] = [0x01, 0x01, 66, 0, 0xa8, 0x05, 20, 0, 16, 0];

    #[test]
    #[cfg(target_endian = "little")]
    fn parse_tso4() {
        let repr = VirtioNetRepr::parse(&VirtioNetHdr::new_checked(&TSO4[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            VirtioNetRepr {
                needs_csum: true,
                data_valid: false,
                gso: GsoType::TcpV4,
                ecn: false,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        assert_eq!(repr.to_bytes(), TSO4);
    }

    #[test]
    fn round_trip_every_type() {
        for (gso, ecn) in [
            (GsoType::None, false),
            (GsoType::TcpV4, false),
            (GsoType::TcpV4, true),
            (GsoType::TcpV6, true),
            (GsoType::UdpL4, false),
        ] {
            let repr = VirtioNetRepr {
                needs_csum: gso != GsoType::None,
                data_valid: gso == GsoType::None,
                gso,
                ecn,
                hdr_len: 0x1234,
                gso_size: 0xfedc,
                csum_start: 40,
                csum_offset: 6,
            };
            let mut buf = [0xaau8; HEADER_LEN + 3];
            let mut view = VirtioNetHdr::new_unchecked(&mut buf[..]);
            repr.emit(&mut view);
            assert_eq!(view.gso_size(), 0xfedc);
            assert_eq!(buf[HEADER_LEN..], [0xaa; 3]);
            let view = VirtioNetHdr::new_checked(&buf[..]).unwrap();
            assert_eq!(view.payload(), &[0xaa; 3]);
            assert_eq!(VirtioNetRepr::parse(&view).unwrap(), repr);
            assert_eq!(repr.buffer_len(), HEADER_LEN);
        }
    }

    #[test]
    fn native_endian_fields() {
        let mut buf = [0u8; HEADER_LEN];
        let mut view = VirtioNetHdr::new_unchecked(&mut buf[..]);
        view.set_csum_offset(0x0102);
        assert_eq!(buf[8..10], 0x0102u16.to_ne_bytes());
    }

    #[test]
    fn rejects() {
        let parse = |b: &[u8]| VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(b));
        assert_eq!(parse(&TSO4[..9]), Err(Error::Truncated { needed: 10 }));
        let mut b = TSO4;
        b[1] = GSO_UDP;
        assert!(matches!(parse(&b), Err(Error::Unsupported(_))));
        b[1] = 2;
        assert!(matches!(parse(&b), Err(Error::Unsupported(_))));
        b[1] = GSO_UDP_L4 | GSO_ECN;
        assert!(matches!(parse(&b), Err(Error::Malformed(_))));
        b[1] = GSO_TCPV6 | GSO_ECN;
        assert_eq!(parse(&b).unwrap().gso, GsoType::TcpV6);
        b[0] = 4;
        assert!(matches!(parse(&b), Err(Error::Unsupported(_))));
    }

    #[test]
    fn derive_hdr_len_ignores_kernel_value() {
        let mut repr = VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(&TSO4[..])).unwrap();
        repr.hdr_len = 0;
        // 20-byte IPv4 header, TCP data offset 8 (32 bytes with options), 4 payload bytes.
        let mut pkt = vec![0u8; 20 + 32 + 4];
        pkt[20 + 12] = 8 << 4;
        assert_eq!(repr.derive_hdr_len(&pkt), Ok(52));
        assert_eq!(
            repr.derive_hdr_len(&pkt[..40]),
            Err(Error::Truncated { needed: 52 })
        );
        pkt[20 + 12] = 4 << 4;
        assert!(matches!(
            repr.derive_hdr_len(&pkt),
            Err(Error::Malformed(_))
        ));
        assert_eq!(
            repr.derive_hdr_len(&pkt[..30]),
            Err(Error::Truncated { needed: 40 })
        );
        repr.gso = GsoType::UdpL4;
        repr.csum_start = 40;
        assert_eq!(repr.derive_hdr_len(&pkt), Ok(48));
        repr.csum_start = 50;
        assert_eq!(
            repr.derive_hdr_len(&pkt),
            Err(Error::Truncated { needed: 58 })
        );
        repr.gso = GsoType::None;
        assert!(repr.derive_hdr_len(&pkt).is_err());
    }
}
