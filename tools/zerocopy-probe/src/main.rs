//! `zerocopy-probe`: issue 14's question about the send copy. weftd sends each encapsulated
//! burst as one UDP GSO `sendmsg` from a reused buffer; would MSG_ZEROCOPY or io_uring
//! SENDMSG_ZC save that copy on the underlay weft runs on (a veth pair between namespaces)?
//!
//! It builds its own namespaces (`testbed`), runs a receiver thread (UDP_GRO) and a sender
//! thread (copy, MSG_ZEROCOPY, io_uring SENDMSG, io_uring SENDMSG_ZC) in turns, and reports
//! throughput, CPU per GB and what the kernel's zero-copy notifications said. Not part of
//! weftd; it changes nothing in it.

mod cpu;
mod notify;
mod receive;
mod send;
mod sock;
mod testbed;
mod uring;

use std::io::Write;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use receive::RxReport;
use send::{Mode, SendConfig, TxReport};
use testbed::{Testbed, Underlay};

/// The largest UDP payload of one IPv4 datagram (65535 - 20 - 8): a GSO send's limit.
const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// How long the receiver keeps reading after the sender stopped (datagrams in flight).
const RECEIVE_GRACE: Duration = Duration::from_millis(100);

#[derive(Parser, Debug)]
#[command(
    about = "Does MSG_ZEROCOPY or io_uring SENDMSG_ZC save the copy of a UDP GSO send? (root)"
)]
struct Cli {
    /// Modes, run in turns within each round.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "copy,msg-zerocopy,uring-send,uring-send-zc"
    )]
    modes: Vec<Mode>,
    /// Rounds (each runs every mode once).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Seconds each mode sends per round.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Segments per GSO send.
    #[arg(long, default_value_t = 45)]
    segments: u16,
    /// Bytes per segment (1422: VXLAN's outer UDP payload on a 1500-byte underlay).
    #[arg(long, default_value_t = 1422)]
    seg_size: u16,
    /// veth: two namespaces joined by a veth pair; lo: loopback in one namespace; veth-drop:
    /// the veth pair with every packet dropped at the sender's qdisc (zero-copy's positive
    /// control: nothing is delivered, so nothing is copied); veth-peer-mtu (with --segments
    /// 1): the receiving end's MTU at 1000, so the veth drops every packet in __dev_forward_skb
    /// (which copy is the veth's).
    #[arg(long, value_enum, default_value = "veth")]
    underlay: Underlay,
    /// Buffers lent to the kernel at once in the zero-copy modes.
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// io_uring sends in flight (submitted, not completed).
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// SO_SNDBUFFORCE / SO_RCVBUFFORCE of both sockets (weftd's default: 8 MiB).
    #[arg(long, default_value_t = 8 << 20)]
    sock_buf: usize,
    /// UDP port of the receiver.
    #[arg(long, default_value_t = 8472)]
    port: u16,
    /// Append one TSV line per run to this file (header when the file is new).
    #[arg(long)]
    tsv: Option<PathBuf>,
}

/// One mode's run in one round.
#[derive(Debug)]
struct Run {
    round: u32,
    mode: Mode,
    tx: TxReport,
    /// `None` when nobody receives (veth-drop, veth-peer-mtu).
    rx: Option<RxReport>,
    /// Busy CPU time of the whole machine while the sender ran.
    machine: Duration,
}

impl Run {
    fn secs(&self) -> f64 {
        self.tx.elapsed.as_secs_f64().max(1e-9)
    }
    fn rx_gbps(&self) -> f64 {
        self.rx.as_ref().map_or(0.0, |r| r.bytes as f64 * 8.0) / self.secs() / 1e9
    }
    fn tx_gbps(&self) -> f64 {
        self.tx.bytes as f64 * 8.0 / self.secs() / 1e9
    }
    fn rx_datagrams(&self) -> f64 {
        self.rx.as_ref().map_or(0.0, |r| r.datagrams as f64)
    }
    fn rcvbuf_errors(&self) -> f64 {
        self.rx.as_ref().map_or(0.0, |r| r.rcvbuf_errors as f64)
    }
    fn segments_per_receive(&self) -> f64 {
        self.rx
            .as_ref()
            .map_or(0.0, |r| r.datagrams as f64 / r.receives.max(1) as f64)
    }
    /// GB the CPU figures are per: received bytes (sent bytes when nobody receives).
    fn gb(&self) -> f64 {
        let bytes = self.rx.as_ref().map_or(self.tx.bytes, |r| r.bytes);
        (bytes as f64 / 1e9).max(1e-12)
    }
    fn tx_cpu_per_gb(&self) -> f64 {
        self.tx.cpu.as_secs_f64() / self.gb()
    }
    fn rx_cpu_per_gb(&self) -> f64 {
        self.rx
            .as_ref()
            .map_or(0.0, |r| r.cpu.as_secs_f64() / self.gb())
    }
    fn machine_per_gb(&self) -> f64 {
        self.machine.as_secs_f64() / self.gb()
    }

    fn line(&self) -> String {
        format!(
            "round {} {:<13} rx {:6.2} Gbit/s {:>9} dgrams ({:4.1} seg/recv, {} rcvbuf drops)  \
             tx {:6.2} Gbit/s  \
             cpu s/GB: sender {:.3} receiver {:.3} machine {:.3}  notifications {} for {} sends, \
             {} copied  retries {}",
            self.round,
            self.mode.name(),
            self.rx_gbps(),
            self.rx_datagrams(),
            self.segments_per_receive(),
            self.rcvbuf_errors(),
            self.tx_gbps(),
            self.tx_cpu_per_gb(),
            self.rx_cpu_per_gb(),
            self.machine_per_gb(),
            self.tx.notifications,
            self.tx.notified_sends,
            self.tx.copied_sends,
            self.tx.retries,
        )
    }
}

/// The figures of the summary: name, value, whether a ratio to `copy` means something.
type Figure = (&'static str, fn(&Run) -> f64, bool);
const FIGURES: &[Figure] = &[
    ("rx Gbit/s", Run::rx_gbps, true),
    ("tx Gbit/s", Run::tx_gbps, true),
    ("rx datagrams", Run::rx_datagrams, true),
    ("rx rcvbuf drops", Run::rcvbuf_errors, false),
    ("sender cpu s/GB", Run::tx_cpu_per_gb, true),
    ("receiver cpu s/GB", Run::rx_cpu_per_gb, true),
    ("machine cpu s/GB", Run::machine_per_gb, true),
    ("notified sends", |r| r.tx.notified_sends as f64, false),
    ("copied sends", |r| r.tx.copied_sends as f64, false),
    ("retries", |r| r.tx.retries as f64, false),
];

const TSV_HEADER: &str =
    "underlay\tround\tmode\tsecs\ttx_bytes\ttx_sends\trx_bytes\trx_datagrams\t\
rx_receives\tsender_cpu_s\treceiver_cpu_s\tmachine_busy_s\tnotifications\tnotified_sends\t\
copied_sends\tretries\trx_rcvbuf_errors";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let burst = usize::from(cli.segments) * usize::from(cli.seg_size);
    if burst == 0 || burst > MAX_UDP_PAYLOAD_V4 {
        bail!("--segments x --seg-size = {burst} bytes: one GSO send carries 1..={MAX_UDP_PAYLOAD_V4}");
    }
    if cli.pool == 0 || cli.inflight == 0 || cli.modes.is_empty() {
        bail!("--pool, --inflight and --modes must not be empty");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root: the probe makes network namespaces and a veth pair");
    }
    testbed::catch_stop_signals()?;
    let bed = Testbed::create(cli.underlay, std::process::id()).context("testbed")?;
    println!(
        "zerocopy-probe: {}; kernel {}; {} x {} bytes per send, {} s per mode, {} round(s); one testbed for all rounds",
        bed.description,
        kernel_release(),
        cli.segments,
        cli.seg_size,
        cli.secs,
        cli.rounds
    );
    let mut runs = Vec::new();
    for round in 1..=cli.rounds {
        for &mode in &cli.modes {
            if testbed::stopping() {
                bail!("interrupted");
            }
            let run = run_one(&cli, &bed, round, mode)
                .with_context(|| format!("round {round} {}", mode.name()))?;
            println!("{}", run.line());
            if let Some(path) = &cli.tsv {
                append_tsv(path, cli.underlay, &run)
                    .with_context(|| format!("append to {}", path.display()))?;
            }
            runs.push(run);
        }
    }
    print!("{}", summary(&cli.modes, &runs));
    drop(bed);
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

/// One mode: receiver up, sender for `--secs`, receiver stopped after a grace period.
fn run_one(cli: &Cli, bed: &Testbed, round: u32, mode: Mode) -> anyhow::Result<Run> {
    let dst = SocketAddrV4::new(bed.dst, cli.port);
    let cfg = SendConfig {
        mode,
        src: SocketAddrV4::new(bed.src, 0),
        dst,
        segments: cli.segments,
        seg_size: cli.seg_size,
        pool: cli.pool,
        inflight: cli.inflight,
        sock_buf: cli.sock_buf,
        duration: Duration::from_secs_f64(cli.secs),
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let receiver = bed.rx_ns.as_deref().map(|ns| {
            let (ready_tx, ready_rx) = mpsc::channel();
            let stop = &stop;
            let h = s.spawn(move || {
                testbed::enter(ns)?;
                receive::run(dst, cli.sock_buf, stop, ready_tx)
            });
            (h, ready_rx)
        });
        let mut receiver_ready = true;
        if let Some((_, ready)) = &receiver {
            receiver_ready = ready.recv_timeout(Duration::from_secs(5)).is_ok();
        }
        let (tx, machine) = if receiver_ready {
            let machine0 = cpu::machine_busy()?;
            let tx_ns = bed.tx_ns.as_str();
            let cfg = &cfg;
            let sender = s.spawn(move || {
                testbed::enter(tx_ns)?;
                send::run(cfg)
            });
            let tx = sender
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("sender thread panicked")));
            (tx, cpu::machine_busy()? - machine0)
        } else {
            (Err(anyhow::anyhow!("receiver not ready")), Duration::ZERO)
        };
        std::thread::sleep(RECEIVE_GRACE);
        stop.store(true, Ordering::Relaxed);
        let rx = match receiver {
            Some((h, _)) => Some(
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("receiver thread panicked")))
                    .context("receiver")?,
            ),
            None => None,
        };
        Ok(Run {
            round,
            mode,
            tx: tx.context("sender")?,
            rx,
            machine,
        })
    })
}

fn append_tsv(path: &std::path::Path, underlay: Underlay, r: &Run) -> anyhow::Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        writeln!(f, "{TSV_HEADER}")?;
    }
    let rx = r.rx.clone().unwrap_or_default();
    writeln!(
        f,
        "{}\t{}\t{}\t{:.3}\t{}\t{}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{:.3}\t{}\t{}\t{}\t{}\t{}",
        underlay.name(),
        r.round,
        r.mode.name(),
        r.secs(),
        r.tx.bytes,
        r.tx.sends,
        rx.bytes,
        rx.datagrams,
        rx.receives,
        r.tx.cpu.as_secs_f64(),
        rx.cpu.as_secs_f64(),
        r.machine.as_secs_f64(),
        r.tx.notifications,
        r.tx.notified_sends,
        r.tx.copied_sends,
        r.tx.retries,
        rx.rcvbuf_errors,
    )?;
    Ok(())
}

/// The median of `xs` (the mean of the middle two for an even count); NaN when empty.
fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Per figure, per mode: the median over rounds and (where it means something) its ratio to
/// the median of `copy`.
fn summary(modes: &[Mode], runs: &[Run]) -> String {
    let rounds = runs.iter().map(|r| r.round).max().unwrap_or(0);
    let med = |mode: Mode, f: fn(&Run) -> f64| {
        let xs: Vec<f64> = runs.iter().filter(|r| r.mode == mode).map(f).collect();
        median(&xs)
    };
    let mut out = format!(
        "summary: median of {rounds} round(s){}\n",
        if modes.contains(&Mode::Copy) {
            "; (xR) = ratio to copy"
        } else {
            ""
        }
    );
    out += &format!("{:<18}", "figure");
    for m in modes {
        out += &format!(" {:>22}", m.name());
    }
    out.push('\n');
    for &(name, f, ratio) in FIGURES {
        out += &format!("{name:<18}");
        let base = modes.contains(&Mode::Copy).then(|| med(Mode::Copy, f));
        for &m in modes {
            let v = med(m, f);
            let cell = match base {
                Some(b) if ratio && m != Mode::Copy && b != 0.0 => {
                    format!("{} (x{:.2})", fmt_figure(v), v / b)
                }
                _ => fmt_figure(v),
            };
            out += &format!(" {cell:>22}");
        }
        out.push('\n');
    }
    out
}

fn fmt_figure(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty_nan() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    fn run(mode: Mode, round: u32, rx_bytes: u64, cpu_ms: u64) -> Run {
        Run {
            round,
            mode,
            tx: TxReport {
                bytes: rx_bytes,
                sends: 1,
                elapsed: Duration::from_secs(1),
                cpu: Duration::from_millis(cpu_ms),
                ..TxReport::default()
            },
            rx: Some(RxReport {
                bytes: rx_bytes,
                datagrams: 1,
                receives: 1,
                cpu: Duration::from_millis(cpu_ms),
                rcvbuf_errors: 0,
            }),
            machine: Duration::from_millis(2 * cpu_ms),
        }
    }

    #[test]
    fn summary_has_ratios_to_copy() {
        let runs = [
            run(Mode::Copy, 1, 1_000_000_000, 500),
            run(Mode::MsgZerocopy, 1, 500_000_000, 500),
        ];
        let s = summary(&[Mode::Copy, Mode::MsgZerocopy], &runs);
        assert!(s.contains("4 (x0.50)"), "{s}");
        // Half the bytes for the same CPU time: twice the CPU per GB.
        assert!(s.contains("1 (x2.00)"), "{s}");
    }
}
