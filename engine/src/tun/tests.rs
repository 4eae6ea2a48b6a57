//! TUN tests. The privileged ones run in a fresh network namespace (see `test_support`).

use super::*;
use crate::test_support::in_netns;
use crate::test_support::packet;
use encap::wire::virtio::{GsoType, VirtioNetHdr, VirtioNetRepr};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The virtio header the kernel put before a packet read from the TUN.
fn vnet_of(frame: &[u8]) -> VirtioNetRepr {
    VirtioNetRepr::parse(&VirtioNetHdr::new_unchecked(frame)).expect("the kernel's virtio header")
}

/// Reads packets from any queue until `want` accepts one (returns it, virtio header included)
/// or `timeout` passes.
fn read_until(
    tun: &Tun,
    timeout: Duration,
    mut want: impl FnMut(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536 + VIRTIO_NET_HDR_LEN];
    while Instant::now() < deadline {
        for q in tun.queues() {
            if !q.wait_readable(20).expect("poll") {
                continue;
            }
            let n = match q.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("TUN read: {e}"),
            };
            if want(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// The IP packet after the virtio header (if any).
fn ip_of(tun: &Tun, frame: &[u8]) -> Vec<u8> {
    frame[tun.offloads().header_len()..].to_vec()
}

/// Whether an IPv4 packet is UDP to `dst`.
fn is_udp4_to(ip: &[u8], dst: SocketAddr) -> bool {
    let SocketAddr::V4(dst) = dst else {
        return false;
    };
    ip.len() >= 28
        && ip[0] >> 4 == 4
        && ip[9] == 17
        && ip[16..20] == dst.ip().octets()
        && ip[22..24] == dst.port().to_be_bytes()
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (maj, min) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (maj, min) >= (major, minor)
}

/// A TUN with address `addr/24`, up, MTU 1500.
fn tun_with_addr(name: &str, queues: usize, wanted: Offloads, addr: Ipv4Addr) -> Tun {
    let tun = Tun::open_with(name, queues, wanted).expect("open TUN");
    tun.set_mtu(1500).expect("MTU");
    tun.set_ipv4_addr(addr, 24).expect("address");
    tun.set_up().expect("up");
    tun.set_nonblocking(true).expect("non-blocking");
    tun
}

#[test]
fn names_and_queue_counts_are_checked_first() {
    for bad in ["wfe-0123456789ab", "a/b", "a b", "a:b", ".", ".."] {
        let err = Tun::open(bad, 1).expect_err(bad);
        assert!(matches!(err, TunError::InvalidName { .. }), "{bad}: {err}");
    }
    assert!(matches!(
        Tun::open("wfe-x", 0),
        Err(TunError::InvalidQueueCount { queues: 0 })
    ));
    assert!(matches!(
        Tun::open("wfe-x", MAX_QUEUES + 1),
        Err(TunError::InvalidQueueCount { .. })
    ));
    let msg = TunError::SetIff {
        name: "wfe0".into(),
        source: io::Error::from_raw_os_error(libc::EPERM),
    }
    .to_string();
    assert!(
        msg.contains("TUNSETIFF on /dev/net/tun") && msg.contains("CAP_NET_ADMIN"),
        "{msg}"
    );
}

#[test]
fn offload_flags_and_candidates() {
    assert_eq!(
        Offloads::ALL.tun_flags(),
        libc::TUN_F_CSUM
            | libc::TUN_F_TSO4
            | libc::TUN_F_TSO6
            | libc::TUN_F_USO4
            | libc::TUN_F_USO6
    );
    assert_eq!(
        Offloads::TSO.tun_flags(),
        libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6
    );
    assert_eq!(Offloads::NONE.tun_flags(), 0);
    assert_eq!(
        Offloads::ALL.candidates().collect::<Vec<_>>(),
        vec![Offloads::ALL, Offloads::TSO]
    );
    assert_eq!(
        Offloads::TSO.candidates().collect::<Vec<_>>(),
        vec![Offloads::TSO]
    );
    assert_eq!(Offloads::NONE.candidates().count(), 0);
    assert_eq!(Offloads::ALL.header_len(), 10);
    assert_eq!(Offloads::NONE.header_len(), 0);
    assert_eq!(
        Offloads::TSO.to_string(),
        "virtio header, csum + tso4 + tso6"
    );
}

/// The transmit queue length reads back as set (the kernel resizes each queue's ring).
#[test]
fn txqueuelen_is_set_and_read_back() {
    require_root!();
    in_netns(|| {
        let tun = Tun::open("wfe-txq", 2).expect("open");
        assert_eq!(
            netif::txqueuelen("wfe-txq").expect("read"),
            500,
            "the kernel's default"
        );
        tun.set_txqueuelen(4096).expect("set");
        assert_eq!(netif::txqueuelen("wfe-txq").expect("read"), 4096);
        assert!(netif::set_txqueuelen("wfe-no-such", 1).is_err());
    });
}

#[test]
fn two_queues_with_offloads() {
    require_root!();
    in_netns(|| {
        let tun = Tun::open("wfe-mq0", 2).expect("open 2 queues");
        assert_eq!(tun.name(), "wfe-mq0");
        assert_eq!(tun.queues().len(), 2);
        let offloads = tun.offloads();
        eprintln!("kernel accepted: {offloads}");
        assert!(offloads.vnet_hdr && offloads.tso, "{offloads}");
        if kernel_at_least(6, 2) {
            assert!(offloads.uso, "USO exists since 6.2: {offloads}");
        }
        let want = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
        for (i, q) in tun.queues().iter().enumerate() {
            assert_eq!(q.index(), i);
            let flags = q.kernel_flags().expect("TUNGETIFF");
            assert_eq!(flags & want, want, "queue {i} flags {flags:#x}");
        }
        // A second opener attaches more queues to the same device with the same flags.
        let more = Tun::open("wfe-mq0", 1).expect("attach a third queue");
        assert_eq!(more.name(), "wfe-mq0");
        assert_eq!(more.offloads(), offloads);
        let index = netif::index("wfe-mq0").expect("device exists");
        drop(more);
        drop(tun);
        // Not persistent: the device goes with its last queue.
        let gone = netif::index("wfe-mq0").expect_err("device removed");
        assert_eq!(gone.raw_os_error(), Some(libc::ENODEV), "index was {index}");
    });
}

#[test]
fn refused_uso_falls_back_to_tso() {
    require_root!();
    in_netns(|| {
        REFUSE_OFFLOADS.set(libc::TUN_F_USO4 | libc::TUN_F_USO6);
        let tun = Tun::open("wfe-nouso", 2).expect("open");
        assert_eq!(tun.offloads(), Offloads::TSO);
        for q in tun.queues() {
            assert!(q.kernel_flags().expect("flags") & libc::IFF_VNET_HDR != 0);
        }
    });
}

#[test]
fn refused_offloads_fall_back_to_no_virtio_header() {
    require_root!();
    in_netns(|| {
        REFUSE_OFFLOADS.set(libc::TUN_F_TSO4);
        let tun = tun_with_addr("wfe-nooff", 2, Offloads::ALL, Ipv4Addr::new(10, 94, 0, 1));
        assert_eq!(tun.offloads(), Offloads::NONE);
        assert_eq!(tun.offloads().header_len(), 0);
        for q in tun.queues() {
            let flags = q.kernel_flags().expect("flags");
            assert_eq!(
                flags & libc::IFF_VNET_HDR,
                0,
                "the device was made again without the header"
            );
            assert!(flags & libc::IFF_MULTI_QUEUE != 0);
        }
        // And reads are plain IP packets.
        let dst: SocketAddr = "10.94.0.2:7000".parse().expect("addr");
        UdpSocket::bind("10.94.0.1:0")
            .expect("bind")
            .send_to(b"plain", dst)
            .expect("send");
        let ip =
            read_until(&tun, Duration::from_secs(2), |f| is_udp4_to(f, dst)).expect("datagram");
        assert_eq!(&ip[28..], b"plain");
    });
}

#[test]
fn kernel_picks_a_name_when_none_is_given() {
    require_root!();
    in_netns(|| {
        let tun = Tun::open("", 2).expect("open");
        assert!(tun.name().starts_with("tun"), "{}", tun.name());
        for q in tun.queues() {
            assert!(q.kernel_flags().expect("flags") & libc::IFF_MULTI_QUEUE != 0);
        }
    });
}

#[test]
fn without_vnet_header_reads_are_plain_ip() {
    require_root!();
    in_netns(|| {
        let tun = tun_with_addr("wfe-plain", 1, Offloads::NONE, Ipv4Addr::new(10, 98, 0, 1));
        assert_eq!(tun.offloads(), Offloads::NONE);
        let flags = tun.queues()[0].kernel_flags().expect("flags");
        assert_eq!(flags & libc::IFF_VNET_HDR, 0);
        let dst: SocketAddr = "10.98.0.2:7000".parse().expect("addr");
        let sock = UdpSocket::bind("10.98.0.1:0").expect("bind");
        sock.send_to(b"plain", dst).expect("send");
        let ip = read_until(&tun, Duration::from_secs(2), |f| is_udp4_to(f, dst))
            .expect("datagram in TUN");
        assert_eq!(&ip[28..], b"plain");
        // A plain packet has a full UDP checksum (no offload), so it verifies.
        let pseudo = encap::checksum::pseudo_header_v4(
            [10, 98, 0, 1],
            [10, 98, 0, 2],
            17,
            u32::try_from(ip.len() - 20).expect("small"),
        );
        assert!(encap::checksum::verifies(pseudo.bytes(&ip[20..])));
    });
}

#[test]
fn udp_datagram_routed_into_the_tun_has_a_virtio_header() {
    require_root!();
    in_netns(|| {
        let tun = tun_with_addr("wfe-rx0", 2, Offloads::ALL, Ipv4Addr::new(10, 99, 0, 1));
        let dst: SocketAddr = "10.99.0.2:7000".parse().expect("addr");
        let sock = UdpSocket::bind("10.99.0.1:0").expect("bind");
        sock.send_to(b"hello weft", dst).expect("send");
        let frame = read_until(&tun, Duration::from_secs(2), |f| {
            is_udp4_to(&f[VIRTIO_NET_HDR_LEN..], dst)
        })
        .expect("datagram in TUN");
        let hdr = vnet_of(&frame);
        eprintln!(
            "UDP datagram read from the TUN: {hdr:?}, {} bytes",
            frame.len()
        );
        let ip = ip_of(&tun, &frame);
        assert_eq!(&ip[28..], b"hello weft");
        assert_eq!(hdr.gso, GsoType::None);
        assert_eq!(hdr.gso_size, 0);
        // With TUN_F_CSUM the stack leaves the UDP checksum partial: csum_start is the UDP
        // header (after 20 bytes of IPv4), csum_offset the checksum field in it.
        assert!(hdr.needs_csum && !hdr.data_valid, "{hdr:?}");
        assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 6));
    });
}

#[test]
fn packets_written_into_the_tun_reach_sockets() {
    require_root!();
    in_netns(|| {
        let tun = tun_with_addr("wfe-tx0", 2, Offloads::ALL, Ipv4Addr::new(10, 97, 0, 1));
        tun.add_ipv6_addr("fd00:97::1".parse().expect("v6"), 64)
            .expect("IPv6 address");
        let v4 = UdpSocket::bind("10.97.0.1:5000").expect("bind v4");
        // The address is tentative until the kernel's DAD work runs (skipped for a NOARP
        // device like a TUN, but still asynchronous): binding it can be EADDRNOTAVAIL briefly.
        let deadline = Instant::now() + Duration::from_secs(3);
        let v6 = loop {
            match UdpSocket::bind("[fd00:97::1]:5000") {
                Ok(s) => break s,
                Err(e)
                    if e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("bind v6: {e}"),
            }
        };
        for s in [&v4, &v6] {
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        let no_offload = [0u8; VIRTIO_NET_HDR_LEN];

        let mut frame = no_offload.to_vec();
        frame.extend(packet::ipv4_udp(
            Ipv4Addr::new(10, 97, 0, 2),
            Ipv4Addr::new(10, 97, 0, 1),
            4000,
            5000,
            b"from the tun",
        ));
        assert_eq!(
            tun.queues()[1].write(&frame).expect("TUN write"),
            frame.len()
        );
        let mut buf = [0u8; 64];
        let (n, from) = v4.recv_from(&mut buf).expect("IPv4 datagram from the TUN");
        assert_eq!(&buf[..n], b"from the tun");
        assert_eq!(from, "10.97.0.2:4000".parse::<SocketAddr>().expect("addr"));

        let mut frame = no_offload.to_vec();
        frame.extend(packet::ipv6_udp(
            "fd00:97::2".parse().expect("v6"),
            "fd00:97::1".parse().expect("v6"),
            4001,
            5000,
            b"v6 from the tun",
        ));
        assert_eq!(
            tun.queues()[0].write(&frame).expect("TUN write"),
            frame.len()
        );
        let (n, from) = v6.recv_from(&mut buf).expect("IPv6 datagram from the TUN");
        assert_eq!(&buf[..n], b"v6 from the tun");
        assert_eq!(
            from,
            "[fd00:97::2]:4001".parse::<SocketAddr>().expect("addr")
        );

        // A packet too short to be IP is refused by the kernel, not silently taken.
        let err = tun.queues()[0]
            .write(&[0u8; VIRTIO_NET_HDR_LEN + 3])
            .expect_err("3 bytes");
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    });
}

#[test]
fn tcp_stream_is_read_as_tso_super_packets() {
    require_root!();
    in_netns(|| {
        let local = Ipv4Addr::new(10, 96, 0, 1);
        let peer = Ipv4Addr::new(10, 96, 0, 2);
        let tun = tun_with_addr("wfe-tso", 1, Offloads::ALL, local);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect_timeout(
                &SocketAddr::from((peer, 8080)),
                Duration::from_secs(3),
            )
            .expect("connect through the TUN");
            s.set_nonblocking(true).expect("non-blocking");
            let data = vec![0x5au8; 256 * 1024];
            let written = std::io::Write::write(&mut s, &data).expect("write");
            done_rx.recv_timeout(Duration::from_secs(5)).ok();
            written
        });
        // The SYN arrives in the TUN; answer it as the peer with MSS 1460 and window scaling.
        let syn = read_until(&tun, Duration::from_secs(3), |f| {
            let ip = &f[VIRTIO_NET_HDR_LEN..];
            ip.len() >= 40
                && ip[9] == 6
                && ip[16..20] == peer.octets()
                && ip[33] & packet::TCP_SYN != 0
        })
        .expect("SYN in the TUN");
        let ip = &syn[VIRTIO_NET_HDR_LEN..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tcp = &ip[ihl..];
        let client_port = u16::from_be_bytes([tcp[0], tcp[1]]);
        let client_isn = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let options = [2, 4, 0x05, 0xb4, 1, 3, 3, 7]; // MSS 1460, NOP, window scale 7
        let synack = packet::ipv4_tcp(
            peer,
            local,
            packet::Tcp {
                sport: 8080,
                dport: client_port,
                seq: 1_000,
                ack: client_isn.wrapping_add(1),
                flags: packet::TCP_SYN | packet::TCP_ACK,
                window: 65535,
            },
            &options,
            &[],
        );
        let mut frame = vec![0u8; VIRTIO_NET_HDR_LEN];
        frame.extend(synack);
        tun.queues()[0].write(&frame).expect("write SYN-ACK");

        // Collect the data the stack sends before it waits for our ACKs.
        let mut data_packets: Vec<(VirtioNetRepr, usize)> = Vec::new();
        let mut payload_total = 0usize;
        let _ = read_until(&tun, Duration::from_secs(2), |f| {
            let ip = &f[VIRTIO_NET_HDR_LEN..];
            if ip.len() < 40 || ip[9] != 6 || ip[16..20] != peer.octets() {
                return false;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let doff = usize::from(ip[ihl + 12] >> 4) * 4;
            let payload = ip.len() - ihl - doff;
            if payload > 0 {
                data_packets.push((vnet_of(f), payload));
                payload_total += payload;
            }
            payload_total >= 10 * 1460
        });
        done_tx.send(()).ok();
        let written = client.join().expect("client thread");
        eprintln!("client wrote {written} bytes; TUN reads with payload: {data_packets:?}");
        let super_packet = data_packets
            .iter()
            .find(|(h, len)| h.gso == GsoType::TcpV4 && *len > usize::from(h.gso_size))
            .copied();
        let (hdr, len) = super_packet.expect("at least one TSO super-packet");
        assert_eq!(hdr.gso_size, 1460, "gso_size is the MSS we advertised");
        assert!(hdr.needs_csum && !hdr.data_valid, "{hdr:?}");
        assert_eq!((hdr.csum_start, hdr.csum_offset), (20, 16));
        assert!(len > 1460, "{len}");
    });
}

#[test]
fn udp_gso_send_into_the_tun_is_one_uso_packet() {
    require_root!();
    in_netns(|| {
        let tun = tun_with_addr("wfe-uso", 1, Offloads::ALL, Ipv4Addr::new(10, 95, 0, 1));
        let cfg = crate::underlay::UdpConfig::default();
        let sock = crate::underlay::UdpSocket::bind("10.95.0.1:0".parse().expect("addr"), &cfg)
            .expect("bind");
        let dst: SocketAddr = "10.95.0.2:7000".parse().expect("addr");
        let payload: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        sock.send_gso(dst, &payload, 1000).expect("GSO send");
        let mut frames = Vec::new();
        let mut total = 0;
        let _ = read_until(&tun, Duration::from_secs(2), |f| {
            let ip = &f[VIRTIO_NET_HDR_LEN..];
            if is_udp4_to(ip, dst) {
                total += ip.len() - 28;
                frames.push((vnet_of(f), ip.len()));
            }
            total >= payload.len()
        });
        eprintln!("UDP GSO send of 4 x 1000 bytes read from the TUN as: {frames:?}");
        assert_eq!(total, payload.len());
        if tun.offloads().uso {
            assert_eq!(frames.len(), 1, "one USO super-packet");
            let (hdr, ip_len) = frames[0];
            assert_eq!(hdr.gso, GsoType::UdpL4);
            assert_eq!(hdr.gso_size, 1000);
            assert_eq!(ip_len, 20 + 8 + 4000);
        } else {
            assert_eq!(frames.len(), 4);
        }
    });
}
