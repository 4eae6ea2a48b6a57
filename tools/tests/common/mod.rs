//! Shared by the testbed tests: the binaries, and the traffic checks every node pair must pass.
//!
//! `WEFTD_BIN=/path/to/weftd` runs another weftd than target/<profile>/weftd. Stream sizes: `WEFT_TEST_STREAM_MIB` (default 1024: 1 GiB) sets the
//! size of each verified TCP stream, so a developer can iterate with a smaller one.
#![allow(dead_code, unreachable_pub)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use weftctl::testbed::traffic::{self, End};
use weftctl::testbed::{Binaries, Testbed};

pub mod store;

/// A stream that moves no byte for this long fails.
pub const STALL: Duration = Duration::from_secs(20);
/// No stream may take longer than this (1 GiB at 100 Mbit/s would take 86 s).
pub const STREAM_LIMIT: Duration = Duration::from_secs(240);

/// weftctl (this crate's binary) and, when built, weftd: `$WEFTD_BIN` if set, else
/// target/<profile>/weftd beside this test.
pub fn binaries() -> Binaries {
    let exe = std::env::current_exe().expect("the test's own path");
    let weftd = match std::env::var_os("WEFTD_BIN") {
        Some(path) => Some(PathBuf::from(path)),
        None => Binaries::weftd_near(&exe),
    };
    Binaries {
        weftctl: PathBuf::from(env!("CARGO_BIN_EXE_weftctl")),
        weftd,
    }
}

/// Like [`binaries`], but fails (never skips) when weftd is not built.
pub fn binaries_with_weftd() -> Binaries {
    let b = binaries();
    assert!(
        b.weftd.is_some(),
        "no weftd next to {:?}: run `cargo build -p engine` (the tests run target/<profile>/weftd)",
        std::env::current_exe().ok()
    );
    b
}

/// Bytes in each verified TCP stream.
pub fn stream_bytes() -> u64 {
    let mib: u64 = std::env::var("WEFT_TEST_STREAM_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    mib << 20
}

/// A seed that differs between runs (so a lucky pattern cannot hide a bug twice).
pub fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// Ping from `from` to `to`: 3 default-size echoes, then 3 that fill the overlay MTU with DF.
pub fn ping_both_sizes(from: End<'_>, to: IpAddr, mtu: u32) {
    traffic::ping(from, to, 3, None).unwrap_or_else(|e| panic!("{e:#}"));
    let header = if to.is_ipv4() { 20 + 8 } else { 40 + 8 };
    traffic::ping(from, to, 3, Some(mtu as usize - header)).unwrap_or_else(|e| panic!("{e:#}"));
}

/// UDP datagram payload sizes up to the largest that fits the overlay MTU unfragmented.
pub fn udp_sizes(mtu: u32, ipv4: bool) -> Vec<usize> {
    let max = mtu as usize - if ipv4 { 20 + 8 } else { 40 + 8 };
    let mut sizes = vec![0, 1, 7, 8, 64, 200, 512, 1000, 1280];
    sizes.retain(|s| *s < max);
    sizes.extend([max - 1, max]);
    sizes
}

/// A verified TCP stream; returns Gbit/s.
pub fn stream(from: End<'_>, to: End<'_>, bytes: u64) -> f64 {
    let report = traffic::tcp_stream(from, to, bytes, seed(), STALL, STREAM_LIMIT)
        .unwrap_or_else(|e| panic!("{e:#}"));
    let gbit = report.gbit_per_s();
    eprintln!(
        "stream {} -> {}: {} bytes in {:.2?} ({gbit:.2} Gbit/s)",
        from.ip, to.ip, report.bytes, report.elapsed
    );
    gbit
}

/// The full check of a started two-node testbed: ping both ways over IPv4
/// and IPv6 (default size and full MTU), UDP datagrams of assorted sizes both ways on both
/// families, and a verified TCP stream each way (IPv4 a -> b, IPv6 b -> a).
pub fn full_check(bed: &mut Testbed) {
    let mtu = bed.overlay_mtu();
    let (a, b) = (bed.node(0), bed.node(1));
    ping_both_sizes(a.pod(), b.pod_ip(), mtu);
    ping_both_sizes(b.pod(), a.pod_ip(), mtu);
    ping_both_sizes(a.pod6(), b.pod_ip6(), mtu);
    ping_both_sizes(b.pod6(), a.pod_ip6(), mtu);
    for (from, to, v4) in [
        (a.pod(), b.pod(), true),
        (b.pod(), a.pod(), true),
        (a.pod6(), b.pod6(), false),
        (b.pod6(), a.pod6(), false),
    ] {
        traffic::udp_echo(from, to, &udp_sizes(mtu, v4)).unwrap_or_else(|e| panic!("{e:#}"));
    }
    let bytes = stream_bytes();
    stream(a.pod(), b.pod(), bytes);
    stream(b.pod6(), a.pod6(), bytes);
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}

/// The interop check: IPv4 ping and a verified TCP stream both ways.
pub fn interop_check(bed: &mut Testbed) {
    let mtu = bed.overlay_mtu();
    let (a, b) = (bed.node(0), bed.node(1));
    ping_both_sizes(a.pod(), b.pod_ip(), mtu);
    ping_both_sizes(b.pod(), a.pod_ip(), mtu);
    let bytes = stream_bytes();
    stream(a.pod(), b.pod(), bytes);
    stream(b.pod(), a.pod(), bytes);
    bed.check_alive().unwrap_or_else(|e| panic!("{e:#}"));
}
