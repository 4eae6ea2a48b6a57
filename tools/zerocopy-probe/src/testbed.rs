//! The testbed: network namespaces and devices made with `ip` (iproute2), entered per thread
//! with setns(2), removed by name when dropped; and the SIGINT/SIGTERM flag.
//!
//! Contract: [`Testbed::create`] makes namespaces named `wzc<pid><letter>` and nothing outside
//! them; whatever it made is deleted by name in `Drop` (also when creation fails half-way, on
//! an error return or on a panic that unwinds). [`enter`] moves the calling thread into one of
//! its namespaces: sockets the thread creates afterwards live there. After [`catch_stop_signals`],
//! SIGINT/SIGTERM only set [`stopping`]: every loop polls it and the testbed is still dropped.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context};

/// The underlay the probe sends over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Underlay {
    /// A veth pair between two namespaces (weftd's test and bench underlay).
    Veth,
    /// Loopback inside one namespace (a control: local delivery copies too).
    Lo,
    /// The veth pair, but the sender's end drops every packet at its qdisc (`pfifo limit 0`,
    /// a permanent neighbour so no ARP is needed): the kernel frees each packet before the
    /// veth, never copying it, so nobody receives (zero-copy's positive control; this kernel
    /// has no dummy driver).
    VethDrop,
    /// The veth pair with the receiving end's MTU at 1000 (a permanent neighbour on the
    /// sender): with `--segments 1` (no GSO) each 1422-byte packet is too long for the peer, so
    /// the veth drops it in `__dev_forward_skb` (counted as the peer's rx_dropped), which
    /// calls `skb_orphan_frags` (copying MSG_ZEROCOPY frags, not io_uring's) in the same
    /// condition, before any delivery. Meant to show which copy is the veth's own; nobody
    /// receives. (A GSO packet is always forwardable.) See README.md for what it showed.
    VethPeerMtu,
}

impl Underlay {
    /// The name `--underlay` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Underlay::Veth => "veth",
            Underlay::Lo => "lo",
            Underlay::VethDrop => "veth-drop",
            Underlay::VethPeerMtu => "veth-peer-mtu",
        }
    }
}

/// Namespaces and addresses of one testbed.
#[derive(Debug)]
pub(crate) struct Testbed {
    /// Every namespace made so far, in order (deleted in reverse).
    namespaces: Vec<String>,
    /// Devices made so far, `(namespace, device)` (deleted before their namespace).
    devices: Vec<(String, String)>,
    /// The sender's namespace.
    pub(crate) tx_ns: String,
    /// The receiver's namespace (`None` on veth-drop and veth-peer-mtu: nobody receives).
    pub(crate) rx_ns: Option<String>,
    /// The sender's address.
    pub(crate) src: Ipv4Addr,
    /// The receiver's address (the datagrams' destination).
    pub(crate) dst: Ipv4Addr,
    /// A line saying what was built.
    pub(crate) description: String,
}

/// The sender's and the receiver's address on the veth underlays.
const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
const PREFIX_LEN: u8 = 24;
/// The neighbour entry of the drop control (any MAC: nothing leaves the qdisc).
const PEER_MAC: &str = "02:00:00:00:00:02";
/// The receiving end's MTU in the veth-peer-mtu control.
const PEER_MTU: u32 = 1000;
/// The underlay MTU weftd's VXLAN runs on in the benches.
const MTU: u32 = 1500;

impl Testbed {
    /// Builds the testbed for `underlay`, names made unique with `pid`.
    pub(crate) fn create(underlay: Underlay, pid: u32) -> anyhow::Result<Testbed> {
        let p = format!("wzc{pid}");
        let mut bed = Testbed {
            namespaces: Vec::new(),
            devices: Vec::new(),
            tx_ns: String::new(),
            rx_ns: None,
            src: ADDR_A,
            dst: ADDR_B,
            description: String::new(),
        };
        match underlay {
            Underlay::Veth | Underlay::VethDrop | Underlay::VethPeerMtu => {
                let (a, b) = (format!("{p}a"), format!("{p}b"));
                bed.add_ns(&a)?;
                bed.add_ns(&b)?;
                // The veth ends carry their namespace's name: wzc<pid>a in wzc<pid>a.
                ip(&[
                    "link", "add", &a, "netns", &a, "type", "veth", "peer", "name", &b, "netns", &b,
                ])?;
                bed.devices.push((a.clone(), a.clone()));
                for (ns, addr) in [(&a, ADDR_A), (&b, ADDR_B)] {
                    ip_in(
                        ns,
                        &["addr", "add", &format!("{addr}/{PREFIX_LEN}"), "dev", ns],
                    )?;
                    ip_in(ns, &["link", "set", ns, "mtu", &MTU.to_string(), "up"])?;
                }
                bed.description = format!(
                    "veth {a} ({ADDR_A}, netns {a}) <-> {b} ({ADDR_B}, netns {b}), MTU {MTU}, default offloads"
                );
                if underlay != Underlay::Veth {
                    // Nothing reaches b: no ARP either.
                    let b_addr = ADDR_B.to_string();
                    ip_in(
                        &a,
                        &[
                            "neigh",
                            "replace",
                            &b_addr,
                            "lladdr",
                            PEER_MAC,
                            "dev",
                            &a,
                            "nud",
                            "permanent",
                        ],
                    )?;
                }
                match underlay {
                    Underlay::VethDrop => {
                        tc_in(
                            &a,
                            &["qdisc", "add", "dev", &a, "root", "pfifo", "limit", "0"],
                        )?;
                        bed.description += &format!(
                            "; {a} drops everything at its qdisc (pfifo limit 0): nobody receives"
                        );
                    }
                    Underlay::VethPeerMtu => {
                        // Not `link set down`: a peer down takes the carrier, and with it the
                        // qdisc (noop), so packets would never reach the veth.
                        ip_in(&b, &["link", "set", &b, "mtu", &PEER_MTU.to_string()])?;
                        bed.description += &format!(
                            "; {b} has MTU {PEER_MTU}: non-GSO packets longer than that are \
                             dropped by the veth in __dev_forward_skb, nobody receives"
                        );
                    }
                    Underlay::Veth | Underlay::Lo => bed.rx_ns = Some(b),
                }
                bed.tx_ns = a;
            }
            Underlay::Lo => {
                let l = format!("{p}l");
                bed.add_ns(&l)?;
                bed.src = Ipv4Addr::LOCALHOST;
                bed.dst = Ipv4Addr::LOCALHOST;
                bed.description = format!("loopback in netns {l} (MTU 65536)");
                bed.tx_ns = l.clone();
                bed.rx_ns = Some(l);
            }
        }
        Ok(bed)
    }

    /// Makes namespace `name` (remembered for `Drop` first) with its loopback up.
    fn add_ns(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        ip_in(name, &["link", "set", "lo", "up"])
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for (ns, dev) in self.devices.drain(..).rev() {
            if let Err(e) = ip_in(&ns, &["link", "del", &dev]) {
                eprintln!("zerocopy-probe: cleanup: {e:#}");
            }
        }
        for ns in self.namespaces.drain(..).rev() {
            if let Err(e) = ip(&["netns", "del", &ns]) {
                eprintln!("zerocopy-probe: cleanup: {e:#}");
            }
        }
    }
}

/// Runs `ip ARGS`; fails with its stderr when it exits non-zero.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

/// Runs `prog ARGS`; fails with its stderr when it exits non-zero.
fn run(prog: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running {prog} (iproute2)"))?;
    if !out.status.success() {
        bail!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `tc -n NS ARGS` (iproute2's tc).
fn tc_in(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("tc", &all)
}

/// Runs `ip -n NS ARGS`.
fn ip_in(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Moves the calling thread into network namespace `name` (`/run/netns/<name>`).
pub(crate) fn enter(name: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).with_context(|| format!("open {path}"))?;
    // SAFETY: setns(2) on an fd that stays open across the call; it changes only this thread's
    // network namespace.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {path}"));
    }
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT and SIGTERM set the stop flag instead of killing the process (so `Drop` runs).
pub(crate) fn catch_stop_signals() -> anyhow::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: an all-zero sigaction is valid (no flags, empty mask); the handler only
        // stores to an atomic, which is async-signal-safe.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: sa is a valid sigaction that lives across the call; no old action is asked.
        if unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error()).context("sigaction");
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM arrived.
pub(crate) fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}
