//! The VXLAN frame around an inner IP packet, at fixed offsets: what the spike strips on
//! receive and writes on send. Pure: no I/O.
//!
//! Contract: a frame is Ethernet (14) + IPv4 without options (20) + UDP (8) + VXLAN (8) +
//! inner Ethernet (14) = [`HEADERS_LEN`] (64) bytes, then the inner IP packet. [`Headers::write`]
//! fills exactly those 64 bytes in front of an inner packet already in place (outer UDP
//! checksum 0, legal over IPv4: RFC 768, RFC 7348 section 5); [`decap`] returns the inner
//! packet of a frame for our VNI, bounded by the outer IPv4 total length, or why not.
//! weftd's own VXLAN code is `encap::vxlan`; this is the spike's minimum, not a second one.

use std::net::Ipv4Addr;

/// Bytes in front of the inner IP packet.
pub(crate) const HEADERS_LEN: usize = 64;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_AT: usize = ETH_LEN + IP_LEN;
const VXLAN_AT: usize = UDP_AT + 8;
const INNER_ETH_AT: usize = VXLAN_AT + 8;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];
//= https://www.rfc-editor.org/rfc/rfc7348#section-5
//# Flags (8 bits): where the I flag MUST be set to 1 for a valid VXLAN Network ID (VNI).
const VXLAN_FLAG_I: u8 = 0x08;

/// Everything the outer headers need; fixed for one peer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Headers {
    /// Our underlay MAC and the underlay neighbour's.
    pub(crate) src_mac: [u8; 6],
    pub(crate) dst_mac: [u8; 6],
    /// Underlay addresses.
    pub(crate) src_ip: Ipv4Addr,
    pub(crate) dst_ip: Ipv4Addr,
    /// VXLAN destination port.
    pub(crate) port: u16,
    pub(crate) vni: u32,
    /// Our VtepMAC and the peer's (the inner Ethernet header).
    pub(crate) vtep_src: [u8; 6],
    pub(crate) vtep_dst: [u8; 6],
}

/// Why a received frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejected {
    /// Shorter than the headers or than its IPv4 total length says.
    Truncated,
    /// Not VXLAN with the I flag and our VNI.
    NotOurs,
}

impl Headers {
    /// Writes the 64 header bytes in `frame[..HEADERS_LEN]` for the inner packet of
    /// `inner_len` bytes that follows them. Returns the frame length. `frame` must be at
    /// least `HEADERS_LEN` long and the inner packet at most 65,485 bytes.
    pub(crate) fn write(&self, frame: &mut [u8], inner_len: usize, ip_id: u16) -> usize {
        let inner_version = frame.get(HEADERS_LEN).map_or(4, |b| b >> 4);
        let h = &mut frame[..HEADERS_LEN];
        h[0..6].copy_from_slice(&self.dst_mac);
        h[6..12].copy_from_slice(&self.src_mac);
        h[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip_total = (IP_LEN + 8 + 8 + ETH_LEN + inner_len) as u16;
        let ip = &mut h[ETH_LEN..UDP_AT];
        ip[0] = 0x45;
        ip[1] = 0;
        ip[2..4].copy_from_slice(&ip_total.to_be_bytes());
        ip[4..6].copy_from_slice(&ip_id.to_be_bytes());
        ip[6..8].copy_from_slice(&[0, 0]);
        ip[8] = 64;
        ip[9] = 17;
        ip[10..12].copy_from_slice(&[0, 0]);
        ip[12..16].copy_from_slice(&self.src_ip.octets());
        ip[16..20].copy_from_slice(&self.dst_ip.octets());
        let sum = checksum(ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let udp = &mut h[UDP_AT..VXLAN_AT];
        udp[0..2].copy_from_slice(&self.src_port().to_be_bytes());
        udp[2..4].copy_from_slice(&self.port.to_be_bytes());
        udp[4..6].copy_from_slice(&(ip_total - IP_LEN as u16).to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]);
        let vx = &mut h[VXLAN_AT..INNER_ETH_AT];
        vx[0..4].copy_from_slice(&[VXLAN_FLAG_I, 0, 0, 0]);
        vx[4..8].copy_from_slice(&(self.vni << 8).to_be_bytes());
        let eth = &mut h[INNER_ETH_AT..HEADERS_LEN];
        eth[0..6].copy_from_slice(&self.vtep_dst);
        eth[6..12].copy_from_slice(&self.vtep_src);
        eth[12..14].copy_from_slice(if inner_version == 6 {
            &ETHERTYPE_IPV6
        } else {
            &ETHERTYPE_IPV4
        });
        HEADERS_LEN + inner_len
    }

    /// A fixed source port per peer (the spike does not spread flows; weftd hashes them).
    fn src_port(&self) -> u16 {
        // RFC 7348 section 5: the dynamic/private range is recommended.
        49152 + (u16::from(self.vtep_src[5]) & 0xff)
    }
}

/// The inner IP packet of a received VXLAN frame for `vni`.
pub(crate) fn decap(frame: &[u8], vni: u32) -> Result<&[u8], Rejected> {
    if frame.len() < HEADERS_LEN {
        return Err(Rejected::Truncated);
    }
    let ip_total = usize::from(u16::from_be_bytes([frame[ETH_LEN + 2], frame[ETH_LEN + 3]]));
    let end = ETH_LEN + ip_total;
    if end > frame.len() || end < HEADERS_LEN {
        return Err(Rejected::Truncated);
    }
    let vx = &frame[VXLAN_AT..INNER_ETH_AT];
    let got_vni = u32::from_be_bytes([vx[4], vx[5], vx[6], vx[7]]) >> 8;
    if vx[0] & VXLAN_FLAG_I == 0 || got_vni != vni {
        return Err(Rejected::NotOurs);
    }
    Ok(&frame[HEADERS_LEN..end])
}

/// The Internet checksum (RFC 1071) of `bytes`, folded and complemented.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Headers {
        Headers {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip: Ipv4Addr::new(192, 168, 250, 1),
            dst_ip: Ipv4Addr::new(192, 168, 250, 2),
            port: 8472,
            vni: 1,
            vtep_src: [0x0e, 0, 0, 0, 0, 1],
            vtep_dst: [0x0e, 0, 0, 0, 0, 2],
        }
    }

    #[test]
    fn write_then_decap_gives_the_inner_packet_back() {
        let inner = [
            0x45u8, 0, 0, 20, 1, 2, 3, 4, 64, 1, 0, 0, 10, 244, 1, 0, 10, 244, 2, 0,
        ];
        let mut frame = vec![0u8; HEADERS_LEN + inner.len()];
        frame[HEADERS_LEN..].copy_from_slice(&inner);
        let len = headers().write(&mut frame, inner.len(), 7);
        assert_eq!(len, frame.len());
        assert_eq!(
            checksum(&frame[14..34]),
            0,
            "the IPv4 header checksum verifies"
        );
        assert_eq!(&frame[36..38], &8472u16.to_be_bytes());
        assert_eq!(&frame[42..50], &[8, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(decap(&frame, 1), Ok(&inner[..]));
        assert_eq!(decap(&frame, 2), Err(Rejected::NotOurs));
        assert_eq!(decap(&frame[..49], 1), Err(Rejected::Truncated));
    }

    #[test]
    fn decap_cuts_ethernet_padding() {
        let mut frame = vec![0u8; HEADERS_LEN + 30];
        let len = headers().write(&mut frame, 20, 0);
        assert_eq!(decap(&frame, 1).map(<[u8]>::len), Ok(len - HEADERS_LEN));
    }
}
