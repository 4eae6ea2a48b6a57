//! Test helpers: the privilege probe behind [`require_root!`] and private network namespaces.
//!
//! Contract: a test that needs root, `/dev/net/tun` or `unshare(CLONE_NEWNET)` starts with
//! `require_root!()`. When something is missing it prints why and returns, unless the
//! environment has `CI=true`, where the same lack fails the test: CI runs as root and must run
//! these. [`in_netns`] runs a closure on a fresh thread inside a new, anonymous network
//! namespace (only `lo`, brought up), which the kernel removes when the thread ends, so a
//! failing test leaves nothing behind on the host. Devices made inside are named `wfe-*`.

use std::path::Path;

use crate::sys::{netif, process, tun::TUN_DEVICE};

/// Why privileged network tests cannot run here, or `None` when they can.
pub(crate) fn missing_privileges() -> Option<String> {
    if !process::is_root() {
        return Some("not running as root (needs CAP_NET_ADMIN and CAP_SYS_ADMIN)".to_owned());
    }
    if !Path::new(TUN_DEVICE).exists() {
        return Some(format!("{TUN_DEVICE} does not exist (modprobe tun?)"));
    }
    let probe = std::thread::spawn(process::unshare_network_namespace).join();
    match probe {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("unshare(CLONE_NEWNET) failed: {e}")),
        Err(_) => Some("the unshare probe thread panicked".to_owned()),
    }
}

/// Whether the environment says this is CI (`CI=true`).
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Reports a test that cannot run: fails it under `CI=true`, else prints the reason.
pub(crate) fn skip(test: &str, reason: &str) {
    assert!(
        !in_ci(),
        "{test}: cannot run: {reason}; with CI=true this test must run (as root, with {TUN_DEVICE})"
    );
    eprintln!("skipping {test}: {reason}");
}

/// Returns early from a test (printing why) when it lacks root, `/dev/net/tun` or network
/// namespaces; fails instead when `CI=true`.
macro_rules! require_root {
    () => {
        if let Some(reason) = $crate::test_support::missing_privileges() {
            fn here() {}
            let name = ::std::any::type_name_of_val(&here);
            $crate::test_support::skip(name.strip_suffix("::here").unwrap_or(name), &reason);
            return;
        }
    };
}

/// Runs `f` on a new thread in a fresh network namespace whose `lo` is up; panics propagate.
pub(crate) fn in_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            process::unshare_network_namespace().expect("unshare(CLONE_NEWNET)");
            netif::set_up("lo").expect("bring lo up in the new namespace");
            f()
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_netns_is_isolated() {
        require_root!();
        let host_mtu = netif::mtu("lo").expect("host lo");
        let inside = in_netns(|| {
            netif::set_mtu("lo", 1300).expect("set lo MTU inside");
            (
                netif::mtu("lo").expect("lo inside"),
                netif::flags("lo").expect("flags"),
            )
        });
        assert_eq!(inside.0, 1300);
        assert!(inside.1 & libc::IFF_UP != 0);
        assert_eq!(
            netif::mtu("lo").expect("host lo"),
            host_mtu,
            "the host's lo was touched"
        );
    }
}

/// Hand-built packets and a virtio header reader for the TUN tests (encap's views are
/// another helper's work; these stay minimal and independent of them).
pub(crate) mod packet {
    use encap::checksum::{checksum, pseudo_header_v4, pseudo_header_v6, Sum};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM` (include/uapi/linux/virtio_net.h).
    pub(crate) const F_NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_NONE`.
    pub(crate) const GSO_NONE: u8 = 0;
    /// `VIRTIO_NET_HDR_GSO_TCPV4`.
    pub(crate) const GSO_TCPV4: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`.
    pub(crate) const GSO_UDP_L4: u8 = 5;

    /// `struct virtio_net_hdr`, native endian (the TUN default without TUNSETVNETLE/BE).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct VnetHdr {
        pub(crate) flags: u8,
        pub(crate) gso_type: u8,
        pub(crate) hdr_len: u16,
        pub(crate) gso_size: u16,
        pub(crate) csum_start: u16,
        pub(crate) csum_offset: u16,
    }

    impl VnetHdr {
        pub(crate) fn parse(b: &[u8]) -> VnetHdr {
            let word = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
            VnetHdr {
                flags: b[0],
                gso_type: b[1],
                hdr_len: word(2),
                gso_size: word(4),
                csum_start: word(6),
                csum_offset: word(8),
            }
        }
    }

    /// An IPv4 header (no options) for `payload_len` bytes of protocol `proto`.
    pub(crate) fn ipv4_header(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        payload_len: usize,
    ) -> Vec<u8> {
        let total = u16::try_from(20 + payload_len).expect("fits an IPv4 packet");
        let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    fn udp_datagram(sport: u16, dport: u16, payload: &[u8], pseudo: Sum) -> Vec<u8> {
        let len = u16::try_from(8 + payload.len()).expect("fits a UDP datagram");
        let mut u = Vec::with_capacity(8 + payload.len());
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&len.to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = pseudo.bytes(&u).finish();
        u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        u
    }

    /// A complete IPv4/UDP packet with both checksums.
    pub(crate) fn ipv4_udp(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4_len = 8 + payload.len();
        let pseudo = pseudo_header_v4(src.octets(), dst.octets(), 17, l4_len as u32);
        let mut p = ipv4_header(src, dst, 17, l4_len);
        p.extend_from_slice(&udp_datagram(sport, dport, payload, pseudo));
        p
    }

    /// A complete IPv6/UDP packet with its checksum.
    pub(crate) fn ipv6_udp(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let l4_len = 8 + payload.len();
        let pseudo = pseudo_header_v6(&src.octets(), &dst.octets(), 17, l4_len as u32);
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&u16::try_from(l4_len).expect("fits").to_be_bytes());
        p.extend_from_slice(&[17, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&udp_datagram(sport, dport, payload, pseudo));
        p
    }

    /// TCP header fields for [`ipv4_tcp`].
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Tcp {
        pub(crate) sport: u16,
        pub(crate) dport: u16,
        pub(crate) seq: u32,
        pub(crate) ack: u32,
        pub(crate) flags: u8,
        pub(crate) window: u16,
    }

    /// TCP flag bits.
    pub(crate) const TCP_SYN: u8 = 0x02;
    pub(crate) const TCP_ACK: u8 = 0x10;

    /// An IPv4/TCP segment with `options` (a multiple of 4 bytes) and full checksums.
    pub(crate) fn ipv4_tcp(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        t: Tcp,
        options: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let hlen = 20 + options.len();
        let l4_len = hlen + payload.len();
        let mut s = Vec::with_capacity(l4_len);
        s.extend_from_slice(&t.sport.to_be_bytes());
        s.extend_from_slice(&t.dport.to_be_bytes());
        s.extend_from_slice(&t.seq.to_be_bytes());
        s.extend_from_slice(&t.ack.to_be_bytes());
        s.push(u8::try_from(hlen / 4).expect("small") << 4);
        s.push(t.flags);
        s.extend_from_slice(&t.window.to_be_bytes());
        s.extend_from_slice(&[0, 0, 0, 0]);
        s.extend_from_slice(options);
        s.extend_from_slice(payload);
        let c = pseudo_header_v4(src.octets(), dst.octets(), 6, l4_len as u32)
            .bytes(&s)
            .finish();
        s[16..18].copy_from_slice(&c.to_be_bytes());
        let mut p = ipv4_header(src, dst, 6, l4_len);
        p.extend_from_slice(&s);
        p
    }
}
