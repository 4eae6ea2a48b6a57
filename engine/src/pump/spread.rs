//! Spreading received flows over the pump threads by the inner flow.
//!
//! The pump sockets share one SO_REUSEPORT group. The kernel picks a socket by the outer
//! 4-tuple, but a weftd or flannel peer sends every flow from the same port, so all of a
//! peer's traffic would land on one thread. [`program`] is a classic BPF program that picks
//! the socket from the *inner* packet instead: source and destination addresses, plus the
//! TCP/UDP ports when the packet is not a fragment, mixed and taken modulo the thread count.
//! A flow therefore always reaches the same thread (no reordering), and different flows
//! spread. The inner packet starts at offset 0 of the UDP payload for the udp backend and at
//! [`encap::backend::VXLAN_HEADER_LEN`] for vxlan. Anything the program cannot read (too
//! short, not IP) goes to socket 0. [`attach`] installs it on a group of `threads` sockets.

use std::io;
use std::os::fd::AsFd;

use crate::model::Backend;
use crate::sys::reuseport;
use crate::underlay::UdpSocket;

const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const LD_W_IND: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_IND) as u16;
const LD_MEM: u16 = (libc::BPF_LD | libc::BPF_MEM) as u16;
const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const ST: u16 = libc::BPF_ST as u16;
const TAX: u16 = (libc::BPF_MISC | libc::BPF_TAX) as u16;
const RSH_K: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16;
const MUL_K: u16 = (libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const XOR_X: u16 = (libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// The golden-ratio multiplier that mixes the folded words.
const MIX: u32 = 0x9e37_79b1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Label(Label),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    V6,
    Ports4,
    Ports6,
    NoPorts,
    Mix,
    Drop0,
}

#[derive(Debug, Clone, Copy)]
enum Insn {
    Stmt(u16, u32),
    Jump(u16, u32, Target, Target),
    Goto(Label),
    Here(Label),
}

/// Resolves the labels (all jumps are forward, as classic BPF requires).
fn assemble(insns: &[Insn]) -> Vec<libc::sock_filter> {
    let mut positions = Vec::new();
    let mut pos = 0usize;
    for insn in insns {
        match insn {
            Insn::Here(label) => positions.push((*label, pos)),
            _ => pos += 1,
        }
    }
    let at = |label: Label| {
        positions
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, p)| *p)
    };
    let mut out = Vec::with_capacity(pos);
    for insn in insns {
        let here = out.len();
        let rel = |t: Target| match t {
            Target::Next => 0,
            // Forward and short: the program is about 60 instructions.
            Target::Label(l) => (at(l) - here - 1) as u8,
        };
        let f = match *insn {
            Insn::Stmt(code, k) => libc::sock_filter {
                code,
                jt: 0,
                jf: 0,
                k,
            },
            Insn::Jump(code, k, jt, jf) => libc::sock_filter {
                code,
                jt: rel(jt),
                jf: rel(jf),
                k,
            },
            Insn::Goto(l) => libc::sock_filter {
                code: JA,
                jt: 0,
                jf: 0,
                k: (at(l) - here - 1) as u32,
            },
            Insn::Here(_) => continue,
        };
        out.push(f);
    }
    out
}

/// The steering program for `threads` sockets and inner packets at `offset` in the payload.
pub fn program(offset: u32, threads: u32) -> Vec<libc::sock_filter> {
    use Insn::{Goto, Here, Jump, Stmt};
    use Label::*;
    let o = offset;
    let mut p = vec![
        Stmt(LD_B_ABS, o),
        Stmt(RSH_K, 4),
        Jump(JEQ_K, 4, Target::Next, Target::Label(V6)),
        // IPv4: src ^ dst.
        Stmt(LD_W_ABS, o + 12),
        Stmt(TAX, 0),
        Stmt(LD_W_ABS, o + 16),
        Stmt(XOR_X, 0),
        Stmt(ST, 0),
        Stmt(LD_B_ABS, o + 9),
        Jump(JEQ_K, 6, Target::Label(Ports4), Target::Next),
        Jump(JEQ_K, 17, Target::Label(Ports4), Target::Label(NoPorts)),
        Here(Ports4),
        // Fragments (MF or an offset) have no ports in every piece.
        Stmt(LD_H_ABS, o + 6),
        Jump(JSET_K, 0x3fff, Target::Label(NoPorts), Target::Next),
        Stmt(LDX_B_MSH, o),
        Stmt(LD_W_IND, o),
        Stmt(TAX, 0),
        Stmt(LD_MEM, 0),
        Stmt(XOR_X, 0),
        Goto(Mix),
        Here(V6),
        Jump(JEQ_K, 6, Target::Next, Target::Label(Drop0)),
        Stmt(LD_W_ABS, o + 8),
    ];
    // IPv6: the xor of the eight address words.
    for word in 1..8 {
        p.push(Stmt(TAX, 0));
        p.push(Stmt(LD_W_ABS, o + 8 + 4 * word));
        p.push(Stmt(XOR_X, 0));
    }
    p.extend([
        Stmt(ST, 0),
        Stmt(LD_B_ABS, o + 6),
        Jump(JEQ_K, 6, Target::Label(Ports6), Target::Next),
        Jump(JEQ_K, 17, Target::Label(Ports6), Target::Label(NoPorts)),
        Here(Ports6),
        Stmt(LD_W_ABS, o + 40),
        Stmt(TAX, 0),
        Stmt(LD_MEM, 0),
        Stmt(XOR_X, 0),
        Goto(Mix),
        Here(NoPorts),
        Stmt(LD_MEM, 0),
        Here(Mix),
        // A ^= A >> 16; A *= MIX; A ^= A >> 16: every input bit reaches the low bits that
        // the modulo keeps (the ports sit in the high half of their word).
        Stmt(TAX, 0),
        Stmt(RSH_K, 16),
        Stmt(XOR_X, 0),
        Stmt(MUL_K, MIX),
        Stmt(TAX, 0),
        Stmt(RSH_K, 16),
        Stmt(XOR_X, 0),
        Stmt(MOD_K, threads.max(1)),
        Stmt(RET_A, 0),
        Here(Drop0),
        Stmt(RET_K, 0),
    ]);
    assemble(&p)
}

/// Installs the program on the reuseport group of `sockets` (one per thread); nothing to do
/// for one socket.
pub fn attach(sockets: &[UdpSocket], backend: Backend) -> io::Result<()> {
    let Some(first) = sockets.first() else {
        return Ok(());
    };
    if sockets.len() < 2 {
        return Ok(());
    }
    let offset = match backend {
        Backend::Udp | Backend::HostGw => 0,
        Backend::Vxlan => encap::backend::VXLAN_HEADER_LEN as u32,
    };
    let threads = u32::try_from(sockets.len()).unwrap_or(u32::MAX);
    reuseport::attach_cbpf(first.as_fd(), &program(offset, threads))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_support::packet::{ipv4_tcp, ipv4_udp, ipv6_udp, Tcp, TCP_ACK};
    use crate::underlay::UdpConfig;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    #[test]
    fn jumps_resolve_forward() {
        let prog = program(22, 4);
        assert!(prog.len() > 40 && prog.len() < 80, "{}", prog.len());
        for (i, f) in prog.iter().enumerate() {
            if f.code == JA {
                assert!(i + 1 + (f.k as usize) < prog.len());
            } else if f.code & 0x07 == libc::BPF_JMP as u16 {
                assert!(i + 1 + usize::from(f.jt.max(f.jf)) < prog.len());
            }
        }
        assert_eq!(prog.last().map(|f| f.code), Some(RET_K));
    }

    /// Which of `socks` receives each payload: a flow always lands on the same socket, and
    /// several flows use every socket.
    fn spread(backend: Backend, payloads: &[(usize, Vec<u8>)]) -> Vec<(usize, usize)> {
        let config = UdpConfig {
            gro: false,
            ..UdpConfig::default()
        };
        let first = UdpSocket::bind("127.0.0.1:0".parse().unwrap(), &config).unwrap();
        let addr = first.local_addr();
        let socks = vec![first, UdpSocket::bind(addr, &config).unwrap()];
        attach(&socks, backend).unwrap();
        for s in &socks {
            s.set_nonblocking(true).unwrap();
        }
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for (_, p) in payloads {
            client.send_to(p, addr).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        for (i, s) in socks.iter().enumerate() {
            while let Ok(d) = s.recv_gro(&mut buf) {
                let flow = payloads
                    .iter()
                    .find(|(_, p)| p[..] == buf[..d.len])
                    .map(|(f, _)| *f)
                    .unwrap();
                got.push((flow, i));
            }
        }
        assert_eq!(got.len(), payloads.len());
        got
    }

    fn check(got: &[(usize, usize)], flows: usize) {
        for flow in 0..flows {
            let socks: std::collections::HashSet<usize> = got
                .iter()
                .filter(|(f, _)| *f == flow)
                .map(|(_, s)| *s)
                .collect();
            assert_eq!(socks.len(), 1, "flow {flow} landed on {socks:?}");
        }
        let used: std::collections::HashSet<usize> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(used.len(), 2, "{got:?}");
    }

    #[test]
    fn udp_backend_flows_stick_and_spread() {
        let mut payloads = Vec::new();
        for flow in 0..16usize {
            let src = Ipv4Addr::new(10, 244, 2, 1 + flow as u8);
            for seq in 0..4u8 {
                let p = if flow % 2 == 0 {
                    ipv4_udp(src, Ipv4Addr::new(10, 244, 1, 5), 4000, 5000, &[seq; 64])
                } else {
                    let t = Tcp {
                        sport: 4000 + flow as u16,
                        dport: 80,
                        seq: u32::from(seq) * 100,
                        ack: 1,
                        flags: TCP_ACK,
                        window: 1000,
                    };
                    ipv4_tcp(src, Ipv4Addr::new(10, 244, 1, 5), t, &[], &[seq; 100])
                };
                payloads.push((flow, p));
            }
        }
        check(&spread(Backend::Udp, &payloads), 16);
    }

    #[test]
    fn flows_differing_only_in_the_source_port_spread() {
        let mut payloads = Vec::new();
        for flow in 0..16usize {
            for seq in 0..3u8 {
                let t = Tcp {
                    sport: 45_678 + 2 * flow as u16,
                    dport: 5201,
                    seq: u32::from(seq) * 100,
                    ack: 1,
                    flags: TCP_ACK,
                    window: 1000,
                };
                let (a, b) = (Ipv4Addr::new(10, 244, 1, 0), Ipv4Addr::new(10, 244, 2, 0));
                payloads.push((flow, ipv4_tcp(a, b, t, &[], &[seq; 100])));
            }
        }
        check(&spread(Backend::Udp, &payloads), 16);
    }

    #[test]
    fn vxlan_backend_v6_inner_flows_stick_and_spread() {
        let mut payloads = Vec::new();
        for flow in 0..16usize {
            let src: Ipv6Addr = format!("fd00:10:244:2::{}", flow + 1).parse().unwrap();
            let dst: Ipv6Addr = "fd00:10:244:1::5".parse().unwrap();
            for seq in 0..4u8 {
                let mut p = vec![0u8; encap::backend::VXLAN_HEADER_LEN];
                p.extend(ipv6_udp(src, dst, 4000, 5000, &[seq; 64]));
                payloads.push((flow, p));
            }
        }
        // Short junk goes to socket 0 and still arrives.
        payloads.push((16, vec![1, 2, 3]));
        let got = spread(Backend::Vxlan, &payloads);
        assert_eq!(got.iter().find(|(f, _)| *f == 16).map(|(_, s)| *s), Some(0));
        check(&got, 16);
    }
}
