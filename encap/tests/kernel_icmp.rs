//! The Linux kernel accepts the ICMP errors `encap::icmp` builds.
//!
//! In a network namespace of its own (`wfb-icmp-<pid>`), `fixtures/tun_icmp.py` opens a TUN
//! with the overlay addresses and sends UDP from a connected socket with IP_RECVERR; the test
//! reads the packet off the TUN, builds the error with `encap::icmp`, writes it back into the
//! TUN, and checks what the socket saw: the errno of a net unreachable, the path MTU after a
//! frag needed / packet too big. The kernel checks every checksum and matches the quote against
//! the socket, so a wrong byte shows up as a timeout. Needs root, `ip`, `python3` and
//! /dev/net/tun; skips with a printed reason otherwise.

#![allow(clippy::unwrap_used)]

use encap::icmp::{frag_needed, net_unreachable, packet_too_big, MAX_ERROR_LEN};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

const ENETUNREACH: i32 = 101;
const EMSGSIZE: i32 = 90;

struct Testbed {
    netns: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Outside CI a missing prerequisite skips the test with the reason; in CI (`CI=true`), where
/// the tests run as root with every tool installed, the same lack is a failure.
fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("kernel_icmp: {reason} (required in CI)");
    }
    eprintln!("skipped: {reason}");
    None
}

impl Testbed {
    fn start() -> Option<Testbed> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        if !root || !std::path::Path::new("/dev/net/tun").exists() {
            return skip("needs root and /dev/net/tun");
        }
        let netns = format!("wfb-icmp-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return skip("cannot create a network namespace");
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tun_icmp.py");
        let child = Command::new("ip")
            .args(["netns", "exec", &netns, "python3", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &netns]).status();
                return skip(&format!("cannot run python3: {e}"));
            }
        };
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut bed = Testbed {
            netns,
            child,
            stdin,
            stdout,
        };
        assert_eq!(bed.line(), "ready");
        Some(bed)
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).unwrap();
        s.trim_end().to_owned()
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.line()
    }

    /// Sends `size` bytes of UDP from `src` to `dst` and returns the packet the TUN got.
    fn send(&mut self, src: &str, dst: &str, size: usize, pmtu: bool) -> Vec<u8> {
        let v = if src.contains(':') { 6 } else { 4 };
        let reply = self.ask(&format!("send{v} {src} {dst} {size} {}", u8::from(pmtu)));
        let hex = reply.strip_prefix("pkt ").unwrap();
        assert_ne!(hex, "none", "no packet on the TUN");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Writes `error` into the TUN; returns (errno, path MTU) as the socket sees them.
    fn inject(&mut self, error: &[u8]) -> (i32, i32) {
        let hex: String = error.iter().map(|b| format!("{b:02x}")).collect();
        let reply = self.ask(&format!("inject {hex}"));
        let mut it = reply
            .strip_prefix("result ")
            .unwrap()
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    }
}

#[test]
fn kernel_accepts_our_icmp_errors() {
    let Some(mut bed) = Testbed::start() else {
        return;
    };
    let mut out = [0u8; MAX_ERROR_LEN];

    // Net unreachable, sourced from an overlay address the host does not own.
    let router: IpAddr = "10.244.0.1".parse().unwrap();
    let pkt = bed.send("10.244.1.5", "10.244.9.7", 100, false);
    let n = net_unreachable(&pkt, router, &mut out).unwrap();
    assert_eq!(bed.inject(&out[..n]).0, ENETUNREACH, "ipv4 net unreachable");

    // flannel's choice, the TUN's own address as the source, is dropped by Linux as a martian
    // (a received packet whose source is a local address, `fib_validate_source`, unless
    // accept_local=1): the socket sees nothing. The bytes are right (with accept_local=1 the
    // same error gives ENETUNREACH); the engine must pick a source the host does not own.
    let tun_addr: IpAddr = "10.244.1.0".parse().unwrap();
    let pkt = bed.send("10.244.1.5", "10.244.9.7", 100, false);
    let n = net_unreachable(&pkt, tun_addr, &mut out).unwrap();
    assert_eq!(
        bed.inject(&out[..n]).0,
        0,
        "local source: dropped as martian"
    );

    let router6: IpAddr = "fd00:10:244::1".parse().unwrap();
    let pkt = bed.send("fd00:10:244:1::5", "fd00:10:244:9::7", 100, false);
    let n = net_unreachable(&pkt, router6, &mut out).unwrap();
    assert_eq!(bed.inject(&out[..n]).0, ENETUNREACH, "ipv6 no route");

    let pkt = bed.send("10.244.1.5", "10.244.9.7", 1400, true);
    assert_eq!(pkt[6] & 0x40, 0x40, "DF set");
    let n = frag_needed(&pkt, [10, 244, 0, 1], 1300, &mut out).unwrap();
    assert_eq!(bed.inject(&out[..n]), (EMSGSIZE, 1300), "ipv4 frag needed");

    let pkt = bed.send("fd00:10:244:1::5", "fd00:10:244:9::7", 1400, true);
    let mut router6_octets = [0u8; 16];
    router6_octets[..6].copy_from_slice(&[0xfd, 0, 0, 0x10, 0x02, 0x44]);
    router6_octets[15] = 1;
    let n = packet_too_big(&pkt, router6_octets, 1300, &mut out).unwrap();
    assert_eq!(
        bed.inject(&out[..n]),
        (EMSGSIZE, 1300),
        "ipv6 packet too big"
    );
}
