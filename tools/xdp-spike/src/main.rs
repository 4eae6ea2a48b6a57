//! `xdp-spike`: issue 14's AF_XDP spike. VXLAN (flannel.1's format) on the underlay through an
//! AF_XDP socket on a veth with native XDP; inner packets on a plain TUN. One thread,
//! busy-polling the rings and the TUN, falling back to poll(2) after `--spin-us` idle.
//!
//! Not part of weftd and not its design: one peer, one queue, no routing table, no offloads.
//! It exists to measure what AF_XDP buys against the UDP socket path (tools/xdp-spike/bench.sh).

mod bpf;
mod frame;
mod tun;
mod xsk;

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Descriptors handled per ring per turn of the loop (the kernel's copy-mode transmit also
/// stops at 32 per `sendto`: net/xdp/xsk.c `TX_BATCH_SIZE`).
const BATCH: u32 = 32;

#[derive(Parser, Debug)]
#[command(about = "AF_XDP spike: VXLAN over an AF_XDP socket, inner packets on a TUN")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Attach the XDP program, bind the socket, create the TUN and move packets until SIGTERM.
    Run(Run),
    /// Turn a device's transmit checksum offload on or off (ethtool -K DEV tx on|off).
    TxOffload {
        dev: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
}

#[derive(clap::Args, Debug)]
struct Run {
    /// The underlay device (a veth: native XDP).
    #[arg(long, default_value = "veth0")]
    dev: String,
    /// The receive queue to bind.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// The TUN device to create.
    #[arg(long, default_value = "xdp0")]
    tun: String,
    /// Our underlay IPv4 address.
    #[arg(long)]
    local_ip: Ipv4Addr,
    /// The peer's underlay IPv4 address.
    #[arg(long)]
    remote_ip: Ipv4Addr,
    /// Our underlay MAC (the device's).
    #[arg(long, value_parser = parse_mac)]
    local_mac: [u8; 6],
    /// The underlay neighbour's MAC (the peer's veth).
    #[arg(long, value_parser = parse_mac)]
    neigh_mac: [u8; 6],
    /// Our VtepMAC (inner source MAC).
    #[arg(long, value_parser = parse_mac)]
    vtep_mac: [u8; 6],
    /// The peer's VtepMAC (inner destination MAC; flannel.1's address on the peer).
    #[arg(long, value_parser = parse_mac)]
    peer_vtep_mac: [u8; 6],
    #[arg(long, default_value_t = 1)]
    vni: u32,
    #[arg(long, default_value_t = 8472)]
    port: u16,
    /// Microseconds of empty busy-polling before sleeping in poll(2).
    #[arg(long, default_value_t = 1000)]
    spin_us: u64,
    /// Generic (skb) XDP instead of native.
    #[arg(long)]
    skb_mode: bool,
    /// Do not try zero-copy first.
    #[arg(long)]
    copy: bool,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        let p = parts.next().ok_or("a MAC has six parts")?;
        *b = u8::from_str_radix(p, 16).map_err(|e| format!("{p}: {e}"))?;
    }
    if parts.next().is_some() {
        return Err("a MAC has six parts".into());
    }
    Ok(mac)
}

/// What the loop counted.
#[derive(Debug, Default)]
struct Counters {
    rx: u64,
    rx_dropped_frames: u64,
    rx_tun_errors: u64,
    tx: u64,
    tx_ring_full: u64,
    tx_tun_errors: u64,
    kick_errors: u64,
    sleeps: u64,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Run(run) => run_spike(&run),
        Cmd::TxOffload { dev, state } => engine::sys::ethtool::set_feature(
            &dev,
            engine::sys::ethtool::Feature::TxChecksum,
            state == "on",
        )
        .with_context(|| format!("{dev}: tx {state}")),
    }
}

fn run_spike(a: &Run) -> anyhow::Result<()> {
    tun::catch_stop_signals();
    let ifindex = tun::ifindex(&a.dev).with_context(|| format!("device {}", a.dev))?;
    let map = bpf::XskMap::create(a.queue + 1).context("BPF_MAP_CREATE (XSKMAP)")?;
    let prog = bpf::load_xdp(&bpf::program(map.raw(), a.port))?;
    let mode = if a.skb_mode {
        bpf::XDP_FLAGS_SKB_MODE
    } else {
        bpf::XDP_FLAGS_DRV_MODE
    };
    let _link = bpf::attach_xdp(&prog, ifindex, mode)
        .with_context(|| format!("BPF_LINK_CREATE: XDP on {} (flags {mode:#x})", a.dev))?;
    let (mut xsk, report) = xsk::Xsk::open(ifindex, a.queue, a.copy)?;
    map.insert(a.queue, &xsk)
        .context("BPF_MAP_UPDATE_ELEM (the socket into the XSKMAP)")?;
    let tun = tun::Tun::open(&a.tun).with_context(|| format!("TUNSETIFF {}", a.tun))?;
    let headers = frame::Headers {
        src_mac: a.local_mac,
        dst_mac: a.neigh_mac,
        src_ip: a.local_ip,
        dst_ip: a.remote_ip,
        port: a.port,
        vni: a.vni,
        vtep_src: a.vtep_mac,
        vtep_dst: a.peer_vtep_mac,
    };
    let how = match (xsk.zero_copy(), &report.zero_copy_refused) {
        (true, _) => "zero-copy".to_owned(),
        (false, Some(e)) => format!("copy mode (zero-copy refused: {e})"),
        (false, None) => "copy mode (zero-copy not asked)".to_owned(),
    };
    println!(
        "xdp-spike: ready: {} XDP on {} queue {}, AF_XDP {how}, TUN {}",
        if a.skb_mode { "generic" } else { "native" },
        a.dev,
        a.queue,
        a.tun
    );
    let c = pump(&mut xsk, &tun, &headers, a)?;
    let s = xsk.statistics().context("XDP_STATISTICS")?;
    println!(
        "xdp-spike: stopped: {c:?}; kernel: rx_dropped {} rx_ring_full {} fill_empty {} tx_invalid {}",
        s.rx_dropped, s.rx_ring_full, s.rx_fill_ring_empty_descs, s.tx_invalid_descs
    );
    Ok(())
}

/// The loop: receive ring -> TUN, TUN -> transmit ring, until a stop signal.
fn pump(
    xsk: &mut xsk::Xsk,
    tun: &tun::Tun,
    h: &frame::Headers,
    a: &Run,
) -> anyhow::Result<Counters> {
    let mut c = Counters::default();
    let mut addrs = Vec::with_capacity(BATCH as usize);
    let mut ip_id: u16 = 0;
    let spin = Duration::from_micros(a.spin_us);
    let mut idle_since: Option<Instant> = None;
    while !tun::stopping() {
        // Receive: strip and write each inner packet to the TUN.
        let n = xsk.rx_ready(BATCH);
        addrs.clear();
        for k in 0..n {
            let (addr, len) = xsk.rx_peek(k);
            match frame::decap(xsk.frame(addr, len), a.vni) {
                Ok(inner) => match tun.write(inner) {
                    Ok(_) => c.rx += 1,
                    Err(_) => c.rx_tun_errors += 1,
                },
                Err(_) => c.rx_dropped_frames += 1,
            }
            addrs.push(addr);
        }
        if n > 0 {
            xsk.rx_release(n, &addrs);
            if xsk.fill_needs_wakeup() {
                xsk.wake_rx();
            }
        }
        // Send: read inner packets straight into transmit frames behind room for the headers.
        let mut queued = 0;
        while queued < BATCH {
            let Some(f) = xsk.tx_frame() else { break };
            let buf = xsk.frame_mut(f);
            match tun.read(&mut buf[frame::HEADERS_LEN..]) {
                Ok(len) => {
                    ip_id = ip_id.wrapping_add(1);
                    let total = h.write(buf, len, ip_id);
                    if xsk.tx_push(f, total as u32) {
                        queued += 1;
                    } else {
                        c.tx_ring_full += 1;
                        break;
                    }
                }
                Err(e) => {
                    xsk.tx_unused(f);
                    if e.kind() != std::io::ErrorKind::WouldBlock {
                        c.tx_tun_errors += 1;
                    }
                    break;
                }
            }
        }
        if queued > 0 {
            c.tx += u64::from(queued);
            if xsk.kick().is_err() {
                c.kick_errors += 1;
            }
        }
        if n > 0 || queued > 0 {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= spin {
            c.sleeps += 1;
            tun::wait_readable(&[tun.as_fd(), xsk.as_fd()], 1000);
            idle_since = None;
        } else {
            std::hint::spin_loop();
        }
    }
    Ok(c)
}
