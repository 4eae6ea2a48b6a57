//! UDP socket tests. The privileged ones run in a fresh network namespace on its `lo`.

use super::*;
use crate::sys::netif;
use crate::test_support::in_netns;
use std::time::Duration;

fn config(gro: bool) -> UdpConfig {
    UdpConfig {
        gro,
        ..UdpConfig::default()
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 253) as u8).collect()
}

/// Receives until `total` bytes came or a second passes; returns each receive.
fn recv_all(sock: &UdpSocket, total: usize) -> Vec<(Vec<u8>, Datagram)> {
    sock.set_nonblocking(true).expect("non-blocking");
    let mut out = Vec::new();
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while got < total && std::time::Instant::now() < deadline {
        if !sysio::wait_readable(sock.as_fd(), 50).expect("poll") {
            continue;
        }
        match sock.recv_gro(&mut buf) {
            Ok(d) => {
                got += d.len;
                out.push((buf[..d.len].to_vec(), d));
            }
            Err(e) if e.is_would_block() => {}
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// Checks that `received` are the segments of `sent` in order, one datagram each.
fn assert_segments(
    received: &[(Vec<u8>, Datagram)],
    sent: &[u8],
    segment: usize,
    from: SocketAddr,
) {
    let chunks: Vec<&[u8]> = sent.chunks(segment).collect();
    assert_eq!(received.len(), chunks.len(), "one datagram per segment");
    for ((bytes, d), chunk) in received.iter().zip(chunks) {
        assert_eq!(bytes.as_slice(), chunk);
        assert_eq!(d.segment_size, d.len, "a plain datagram is its own segment");
        assert_eq!(d.src, from);
    }
}

#[test]
fn segment_limits_are_checked_before_the_kernel() {
    // Loopback of the current namespace, no traffic sent.
    let sock = UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("bind");
    let dst = sock.local_addr();
    let buf = vec![0u8; 650];
    for (len, seg) in [(650, 0), (650, 65536), (650, 10)] {
        let err = sock.send_gso(dst, &buf[..len], seg).expect_err("refused");
        assert!(matches!(err, UdpError::BadSegments { .. }), "{err}");
    }
    // 64 segments is the limit, not an error.
    assert_eq!(
        sock.send_gso(dst, &buf[..640], 10).expect("64 segments"),
        640
    );
    assert_eq!(sock.gso_fallback_sends(), 0);
    let d = Datagram {
        len: 2500,
        segment_size: 1000,
        src: dst,
    };
    assert_eq!(d.segments(), 3);
}

#[test]
fn reuse_port_and_forced_buffers() {
    require_root!();
    in_netns(|| {
        let cfg = config(true);
        let a = UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &cfg).expect("bind a");
        let b =
            UdpSocket::bind(a.local_addr(), &cfg).expect("SO_REUSEPORT lets a second socket bind");
        assert_eq!(a.local_addr(), b.local_addr());
        let no_reuse = UdpConfig {
            reuse_port: false,
            ..cfg
        };
        let err = UdpSocket::bind(a.local_addr(), &no_reuse).expect_err("taken");
        assert!(
            matches!(&err, UdpError::Bind { source, .. } if source.raw_os_error() == Some(libc::EADDRINUSE)),
            "{err}"
        );
        let buffers = a.buffers();
        assert!(buffers.forced, "root may force buffers");
        // The kernel doubles the value set (socket(7)).
        assert_eq!(buffers.recv, 2 * cfg.recv_buffer);
        assert_eq!(buffers.send, 2 * cfg.send_buffer);
        assert!(a.gro_enabled() && a.gso_enabled());
        // IPv4 and IPv6 sockets share a port (the IPv6 one is V6ONLY).
        let v6 = UdpSocket::bind(
            SocketAddr::new("::1".parse().expect("v6"), a.local_addr().port()),
            &cfg,
        );
        assert!(v6.is_ok(), "{:?}", v6.err());
    });
}

fn gso_arrives_as_datagrams(local: &str) {
    in_netns(|| {
        let rx = UdpSocket::bind(local.parse().expect("addr"), &config(false)).expect("bind rx");
        let tx = UdpSocket::bind(local.parse().expect("addr"), &config(true)).expect("bind tx");
        let sent = pattern(9 * 1200 + 500);
        assert_eq!(
            tx.send_gso(rx.local_addr(), &sent, 1200).expect("GSO send"),
            sent.len()
        );
        assert!(tx.gso_enabled());
        assert_eq!(tx.gso_fallback_sends(), 0);
        let received = recv_all(&rx, sent.len());
        assert_segments(&received, &sent, 1200, tx.local_addr());
    });
}

#[test]
fn gso_send_arrives_as_datagrams_v4() {
    require_root!();
    gso_arrives_as_datagrams("127.0.0.1:0");
}

#[test]
fn gso_send_arrives_as_datagrams_v6() {
    require_root!();
    gso_arrives_as_datagrams("[::1]:0");
}

fn gso_arrives_as_gro_batches(local: &str) {
    in_netns(|| {
        let rx = UdpSocket::bind(local.parse().expect("addr"), &config(true)).expect("bind rx");
        let tx = UdpSocket::bind(local.parse().expect("addr"), &config(true)).expect("bind tx");
        let sent = pattern(UDP_MAX_SEGMENTS * 1000);
        assert_eq!(
            tx.send_gso(rx.local_addr(), &sent, 1000).expect("GSO send"),
            sent.len()
        );
        let received = recv_all(&rx, sent.len());
        eprintln!(
            "{local}: {} bytes in 64 segments received as {:?}",
            sent.len(),
            received
                .iter()
                .map(|(_, d)| (d.len, d.segment_size))
                .collect::<Vec<_>>()
        );
        let joined: Vec<u8> = received
            .iter()
            .flat_map(|(b, _)| b.iter().copied())
            .collect();
        assert_eq!(joined, sent);
        for (_, d) in &received {
            assert_eq!(d.src, tx.local_addr());
            assert!(d.segment_size == 1000 || d.segment_size == d.len, "{d:?}");
        }
        assert!(
            received.len() < UDP_MAX_SEGMENTS,
            "GRO coalesced at least some segments"
        );
        assert!(received
            .iter()
            .any(|(_, d)| d.segment_size == 1000 && d.len > 1000));
    });
}

#[test]
fn gso_send_arrives_as_gro_batches_v4() {
    require_root!();
    gso_arrives_as_gro_batches("127.0.0.1:0");
}

#[test]
fn gso_send_arrives_as_gro_batches_v6() {
    require_root!();
    gso_arrives_as_gro_batches("[::1]:0");
}

/// A dual-stack socket (`[::]`, IPV6_V6ONLY off) sends GSO batches to an IPv4 and an IPv6
/// peer, receives GRO batches from both, and names an IPv4 sender as IPv4 (not v4-mapped).
#[test]
fn a_dual_stack_socket_carries_both_families_with_gso_and_gro() {
    require_root!();
    in_netns(|| {
        let dual_config = UdpConfig {
            dual_stack: true,
            ..config(true)
        };
        let dual = UdpSocket::bind("[::]:0".parse().expect("addr"), &dual_config).expect("dual");
        let port = dual.local_addr().port();
        let v4 = UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("v4");
        let v6 = UdpSocket::bind("[::1]:0".parse().expect("addr"), &config(true)).expect("v6");
        assert!(dual.local_addr().is_ipv6());
        let dual_v4 = SocketAddr::new("127.0.0.1".parse().expect("ip"), port);
        let dual_v6 = SocketAddr::new("::1".parse().expect("ip"), port);
        assert_eq!(
            dual.wire_addr(v4.local_addr()).to_string(),
            format!("[::ffff:127.0.0.1]:{}", v4.local_addr().port())
        );
        assert_eq!(v4.wire_addr(dual_v4), dual_v4, "an IPv4 socket keeps IPv4");

        for (peer, us) in [(&v4, dual_v4), (&v6, dual_v6)] {
            let sent = pattern(20 * 1000 + 300);
            assert_eq!(
                dual.send_gso(peer.local_addr(), &sent, 1000)
                    .expect("GSO send"),
                sent.len()
            );
            let got = recv_all(peer, sent.len());
            let joined: Vec<u8> = got.iter().flat_map(|(b, _)| b.iter().copied()).collect();
            assert_eq!(joined, sent, "to {}", peer.local_addr());
            assert!(got.iter().all(|(_, d)| d.src == us), "{got:?}");

            let back = pattern(30 * 1000);
            assert_eq!(
                peer.send_gso(us, &back, 1000).expect("GSO send back"),
                back.len()
            );
            let got = recv_all(&dual, back.len());
            let joined: Vec<u8> = got.iter().flat_map(|(b, _)| b.iter().copied()).collect();
            assert_eq!(joined, back, "from {}", peer.local_addr());
            assert!(
                got.iter().all(|(_, d)| d.src == peer.local_addr()),
                "the sender as it is, IPv4 not v4-mapped: {got:?}"
            );
            assert!(
                got.iter()
                    .any(|(_, d)| d.segment_size == 1000 && d.len > 1000),
                "GRO batches over {}: {got:?}",
                peer.local_addr()
            );
        }
        assert!(dual.gso_enabled());
        assert_eq!(dual.gso_fallback_sends(), 0);
    });
}

#[test]
fn refused_gso_falls_back_to_one_datagram_per_segment() {
    require_root!();
    in_netns(|| {
        let rx =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(false)).expect("bind rx");
        let tx =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("bind tx");
        // SO_NO_CHECK: the kernel refuses GSO without UDP checksums (net/ipv4/udp.c
        // udp_send_skb returns EINVAL), but sends plain datagrams.
        sockopt::set_int(tx.as_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).expect("SO_NO_CHECK");
        let sent = pattern(5 * 1000 + 1);
        assert!(tx.gso_enabled());
        assert_eq!(
            tx.send_gso(rx.local_addr(), &sent, 1000)
                .expect("fallback send"),
            sent.len()
        );
        assert!(!tx.gso_enabled(), "GSO stays off after a refusal");
        assert_eq!(tx.gso_fallback_sends(), 1);
        assert_segments(&recv_all(&rx, sent.len()), &sent, 1000, tx.local_addr());
        // The next send goes straight to the fallback and is counted again.
        let again = pattern(3 * 700);
        assert_eq!(
            tx.send_gso(rx.local_addr(), &again, 700).expect("send"),
            again.len()
        );
        assert_eq!(tx.gso_fallback_sends(), 2);
        assert_segments(&recv_all(&rx, again.len()), &again, 700, tx.local_addr());
        // One segment needs no GSO and is not a fallback.
        tx.send_gso(rx.local_addr(), b"one", 1000).expect("send");
        assert_eq!(tx.gso_fallback_sends(), 2);
        assert_eq!(recv_all(&rx, 3).len(), 1);
    });
}

#[test]
fn disabled_gso_still_delivers_v6() {
    require_root!();
    in_netns(|| {
        let rx =
            UdpSocket::bind("[::1]:0".parse().expect("addr"), &config(false)).expect("bind rx");
        let tx = UdpSocket::bind("[::1]:0".parse().expect("addr"), &config(true)).expect("bind tx");
        tx.disable_gso();
        let sent = pattern(4 * 1400);
        assert_eq!(
            tx.send_gso(rx.local_addr(), &sent, 1400).expect("send"),
            sent.len()
        );
        assert_eq!(tx.gso_fallback_sends(), 1);
        assert_segments(&recv_all(&rx, sent.len()), &sent, 1400, tx.local_addr());
    });
}

#[test]
fn recvmmsg_batch_reads_gro_batches_and_datagrams() {
    require_root!();
    in_netns(|| {
        let rx =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("bind rx");
        let tx =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("bind tx");
        let first = pattern(8 * 1000);
        tx.send_gso(rx.local_addr(), &first, 1000).expect("send");
        tx.send_gso(rx.local_addr(), b"single", 1000).expect("send");
        let mut batch = RecvBatch::new(16, 65536);
        let mut seen: Vec<(Vec<u8>, Datagram)> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while seen.iter().map(|(b, _)| b.len()).sum::<usize>() < first.len() + 6
            && std::time::Instant::now() < deadline
        {
            rx.recv_gro_batch(&mut batch).expect("recvmmsg");
            for i in 0..batch.len() {
                let (bytes, d) = rx.batch_datagram(&batch, i).expect("entry").expect("valid");
                seen.push((bytes.to_vec(), d));
            }
        }
        let joined: Vec<u8> = seen.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let mut want = first.clone();
        want.extend_from_slice(b"single");
        assert_eq!(joined, want);
        let last = seen.last().expect("something").1;
        assert_eq!((last.len, last.segment_size), (6, 6));
        assert!(
            seen.iter()
                .any(|(_, d)| d.segment_size == 1000 && d.len > 1000),
            "a GRO batch"
        );
    });
}

#[test]
fn nonblocking_empty_and_truncated_receives() {
    require_root!();
    in_netns(|| {
        let cfg = UdpConfig {
            nonblocking: true,
            ..config(true)
        };
        let rx = UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &cfg).expect("bind rx");
        let tx = UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &cfg).expect("bind tx");
        let mut small = [0u8; 100];
        let err = rx.recv_gro(&mut small).expect_err("nothing yet");
        assert!(err.is_would_block(), "{err}");
        tx.send_gso(rx.local_addr(), &pattern(2000), 2000)
            .expect("send");
        assert!(sysio::wait_readable(rx.as_fd(), 1000).expect("poll"));
        let err = rx.recv_gro(&mut small).expect_err("too big for 100 bytes");
        assert!(
            matches!(err, UdpError::Truncated { capacity: 100, .. }),
            "{err}"
        );
    });
}

#[test]
fn segments_larger_than_the_mtu_are_emsgsize_not_a_fallback() {
    require_root!();
    in_netns(|| {
        netif::set_mtu("lo", 1500).expect("lo MTU");
        let rx =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(false)).expect("bind rx");
        let tx =
            UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("bind tx");
        // 1472 = 1500 - 20 (IPv4) - 8 (UDP) fits; one byte more does not.
        let sent = pattern(3 * 1472);
        assert_eq!(
            tx.send_gso(rx.local_addr(), &sent, 1472)
                .expect("fits the MTU"),
            sent.len()
        );
        assert_segments(&recv_all(&rx, sent.len()), &sent, 1472, tx.local_addr());
        let err = tx
            .send_gso(rx.local_addr(), &pattern(3 * 1473), 1473)
            .expect_err("over the MTU");
        assert!(
            matches!(&err, UdpError::Send { source, .. } if source.raw_os_error() == Some(libc::EMSGSIZE)),
            "{err}"
        );
        assert!(
            tx.gso_enabled(),
            "EMSGSIZE is the caller's mistake, not a missing offload"
        );
        assert_eq!(tx.gso_fallback_sends(), 0);
    });
}

#[test]
fn total_size_is_capped_by_the_ip_length_field() {
    assert_eq!(max_segments(1000, true), 64);
    assert_eq!(max_segments(1400, true), 65507 / 1400);
    assert_eq!(max_segments(1400, false), 65527 / 1400);
    assert_eq!(max_segments(0, true), 0);
    assert_eq!(max_segments(70000, true), 0);
    let sock = UdpSocket::bind("127.0.0.1:0".parse().expect("addr"), &config(true)).expect("bind");
    let err = sock
        .send_gso(sock.local_addr(), &vec![0u8; 65508], 1400)
        .expect_err("over 65507");
    assert!(matches!(err, UdpError::BadSegments { .. }), "{err}");
}
