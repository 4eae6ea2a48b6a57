//! weftctl: inspect and drive weft; the udp forwarder; the bench harness.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use engine::control::ControlAddr;
use engine::model::Cidr;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use weftctl::testbed::{self, Binaries};
use weftctl::{bench, control, forward};

#[derive(Debug, Parser)]
#[command(
    name = "weftctl",
    version,
    about = "Inspect and drive weft; testbed and bench harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// flannel's udp data path, one packet per system call (interop peer and bench floor).
    ForwardUdp {
        /// TUN device name.
        #[arg(long, default_value = "flannel0")]
        tun: String,
        /// Our IPv4 subnet (the TUN gets <subnet>.0/32).
        #[arg(long, value_parser = Cidr::parse_masked)]
        subnet: Cidr,
        /// Our IPv6 subnet (the TUN gets <subnet6>::/128); flannel itself is IPv4 only.
        #[arg(long, value_parser = Cidr::parse_masked)]
        subnet6: Option<Cidr>,
        /// The overlay Network, routed through the TUN.
        #[arg(long, value_parser = Cidr::parse_masked)]
        network: Cidr,
        /// The IPv6 overlay Network, routed through the TUN.
        #[arg(long, value_parser = Cidr::parse_masked)]
        network6: Option<Cidr>,
        /// Underlay address to bind.
        #[arg(long)]
        public_ip: IpAddr,
        /// UDP port to bind, and the peers' default port.
        #[arg(long, default_value_t = encap::backend::FLANNEL_UDP_PORT)]
        port: u16,
        /// Peers file: JSON lines {"subnet", "public_ip", "backend", "vtep_mac", "port"}.
        #[arg(long)]
        peers: PathBuf,
        /// TUN MTU (default: the underlay interface's MTU - 28).
        #[arg(long)]
        mtu: Option<u32>,
    },
    /// Kernel VXLAN, the forwarder and weftd (udp / vxlan, uring / poll, 1 / 2 pump threads)
    /// on a two-node testbed: TCP 1 and 4 streams, UDP rate, latency, CPU per GB, idle CPU.
    Bench {
        /// 3 s per throughput measurement (and 3 s idle) instead of 10 s.
        #[arg(long)]
        quick: bool,
        /// Measurements per configuration.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Only these configurations (comma separated): kernel-vxlan, raw-veth, forwarder,
        /// weft-{udp,vxlan}-{uring,poll}-{1,2}t (without -<n>t: both thread counts),
        /// weft-vxlan-direct (lease mode with DirectRouting), wireguard-go-encrypts.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Only these workloads (comma separated): idle, ping, rr, tcp1, tcp4, udp1400, udp64
        /// (the default set), sizes (TCP at MSS 88/536/1024 B, UDP at 256/512/1024 B) and
        /// nodrop (the highest UDP 1400 B rate with at most 0.1 % loss, by binary search).
        #[arg(long, value_delimiter = ',', value_parser = bench::Workload::parse)]
        workloads: Vec<bench::Workload>,
        /// Seconds per throughput measurement (overrides --quick; for the CI smoke test).
        #[arg(long, hide = true)]
        seconds: Option<u32>,
        /// Seconds of the idle measurement (overrides --quick; for the CI smoke test).
        #[arg(long, hide = true)]
        idle_seconds: Option<u32>,
        /// The weftd binary (default: next to weftctl).
        #[arg(long)]
        weftd: Option<PathBuf>,
        /// The veths' tx checksum offload (and TSO / UDP GSO across them): on (the veth's
        /// default, as in kind / k3d / DinD clusters) or off (checksums and segmentation done
        /// before the veth, as with a real NIC).
        #[arg(
            long,
            value_name = "on|off",
            default_value = "on",
            action = clap::ArgAction::Set,
            value_parser = parse_on_off
        )]
        veth_tx_offload: bool,
        /// Leave GRO off on the veths.
        #[arg(long)]
        no_veth_gro: bool,
    },
    /// Print weftd's counters (the control socket's `stats`).
    Stats {
        /// weftd's control socket (`@NAME` abstract, or a path) [default: the weftd of this
        /// network namespace].
        #[arg(long)]
        control: Option<ControlAddr>,
    },
    /// Print weftd's routes (the control socket's `routes`).
    Routes {
        /// weftd's control socket (`@NAME` abstract, or a path) [default: the weftd of this
        /// network namespace].
        #[arg(long)]
        control: Option<ControlAddr>,
    },
    /// Two nodes in network namespaces talking through weftd (as root): leases, ping,
    /// throughput, then everything is torn down.
    Demo {
        /// Keep the leases in a real etcd (started inside node a) instead of a directory.
        #[arg(long)]
        etcd: bool,
        /// The backend in the network config: udp or vxlan.
        #[arg(long, default_value = "udp", value_parser = overlay_backend)]
        backend: engine::model::Backend,
        /// The weftd binary (default: next to weftctl, built with cargo when missing).
        #[arg(long)]
        weftd: Option<PathBuf>,
    },
    /// Fire malformed and hostile VXLAN / flannel udp datagrams at a running weftd (only at
    /// addresses you own: a testbed node).
    Attack(AttackArgs),
    /// weftd with N leases in a store (as root): time from start to all routes, RSS.
    ScaleLeases {
        /// How many leases (peers) to write.
        #[arg(long, default_value_t = 10_000)]
        leases: usize,
        /// The lease store: etcd (started inside the testbed) or dir.
        #[arg(long, default_value = "etcd")]
        store: weftctl::scale::Store,
        /// Give up when the routes are not all there after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The weftd binary (default: next to weftctl, built with cargo when missing).
        #[arg(long)]
        weftd: Option<PathBuf>,
    },
    /// Three weftd nodes on etcd with TCP and UDP across every pair while leases churn
    /// (as root): RSS / fds every 10 s, counters checked; prints a table and a verdict, exits
    /// 1 on failure.
    Soak {
        /// Minutes of traffic.
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Seconds between resource samples.
        #[arg(long, default_value_t = 10)]
        sample_secs: u64,
        /// Datagrams/s of each of the six UDP flows.
        #[arg(long, default_value_t = 200)]
        udp_rate: u32,
        /// The weftd binary (default: next to weftctl, built with cargo when missing).
        #[arg(long)]
        weftd: Option<PathBuf>,
    },
    /// Print the network config and the leases of a lease store.
    Leases {
        /// The local directory store (weftd --lease-dir).
        #[arg(long)]
        lease_dir: Option<PathBuf>,
        /// etcd endpoints, comma separated (when no --lease-dir).
        #[arg(long, default_value = "http://127.0.0.1:4001,http://127.0.0.1:2379")]
        etcd_endpoints: String,
        /// etcd prefix.
        #[arg(long, default_value = engine::lease::DEFAULT_PREFIX)]
        etcd_prefix: String,
    },
    /// Print shell completions for weftd or weftctl (e.g. `weftctl completions bash weftd >
    /// /etc/bash_completion.d/weftd`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
        /// The program.
        #[arg(value_enum, default_value = "weftd")]
        program: Program,
    },
    /// Print the man page of weftd or weftctl, in roff (`weftctl man weftd > weftd.8`).
    Man {
        /// The program.
        #[arg(value_enum, default_value = "weftd")]
        program: Program,
    },
}

/// A program of weft, for `completions` and `man`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Program {
    /// The daemon.
    Weftd,
    /// This tool.
    Weftctl,
}

impl Program {
    /// The program's clap definition and its man section (8: a daemon, 1: a command).
    fn command(self) -> (clap::Command, &'static str) {
        use clap::CommandFactory;
        match self {
            Program::Weftd => (engine::config::Cli::command(), "8"),
            Program::Weftctl => (Cli::command(), "1"),
        }
    }
}

/// `weftctl attack`.
#[derive(Debug, clap::Args)]
struct AttackArgs {
    /// weftd's underlay address and port (e.g. 192.168.250.2:8472).
    #[arg(long)]
    target: std::net::SocketAddr,
    /// The target's backend: udp or vxlan.
    #[arg(long, value_parser = overlay_backend)]
    backend: engine::model::Backend,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seed of the generator (the same seed sends the same datagrams).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Datagrams per second (0: as fast as possible).
    #[arg(long, default_value_t = 2000)]
    rate: u32,
    /// Source address to send from (repeat for several: a peer's and strangers').
    #[arg(long)]
    from: Vec<IpAddr>,
    /// The target's IPv4 subnet (inner destinations).
    #[arg(long, value_parser = Cidr::parse_masked)]
    target_subnet: Cidr,
    /// The target's IPv6 subnet.
    #[arg(long, value_parser = Cidr::parse_masked)]
    target_subnet6: Option<Cidr>,
    /// The subnet of the peer the attack poses as (inner sources a peer may use).
    #[arg(long, value_parser = Cidr::parse_masked)]
    own_subnet: Cidr,
    /// Its IPv6 subnet.
    #[arg(long, value_parser = Cidr::parse_masked)]
    own_subnet6: Option<Cidr>,
    /// A third node's subnet (spoofed inner sources).
    #[arg(long, value_parser = Cidr::parse_masked)]
    spoof_subnet: Cidr,
    /// Its IPv6 subnet.
    #[arg(long, value_parser = Cidr::parse_masked)]
    spoof_subnet6: Option<Cidr>,
    /// The target's VNI (vxlan).
    #[arg(long, default_value_t = 1)]
    vni: u32,
    /// The target's VtepMAC (vxlan).
    #[arg(long, default_value = "0e:00:00:00:00:02", value_parser = engine::model::parse_mac)]
    target_mac: engine::model::Mac,
    /// The VtepMAC of the peer the attack poses as (vxlan).
    #[arg(long, default_value = "0e:00:00:00:00:03", value_parser = engine::model::parse_mac)]
    own_mac: engine::model::Mac,
    /// The target's TUN MTU (inner packets longer than this are "oversized").
    #[arg(long, default_value_t = 1450)]
    mtu: usize,
    /// The UDP port inner packets go to (a sink in the target's pod).
    #[arg(long, default_value_t = 9999)]
    sink_port: u16,
    /// Also print the report as one JSON line (prefixed "attack-report: ").
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weftctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::ForwardUdp {
            tun,
            subnet,
            subnet6,
            network,
            network6,
            public_ip,
            port,
            peers,
            mtu,
        } => {
            let stop = Arc::new(AtomicBool::new(false));
            for sig in [SIGINT, SIGTERM] {
                signal_hook::flag::register(sig, Arc::clone(&stop))
                    .context("installing the signal handler")?;
            }
            let config = forward::Config {
                tun,
                subnet,
                subnet6,
                network,
                network6,
                public_ip,
                port,
                peers,
                mtu,
            };
            let c = forward::run(&config, &stop)?;
            eprintln!(
                "forward-udp: stopped: {} tun->udp, {} udp->tun, {} net unreachable, {} dropped",
                c.tun_to_udp, c.udp_to_tun, c.net_unreachable, c.dropped
            );
            Ok(())
        }
        Cmd::Bench {
            quick,
            reps,
            json,
            only,
            workloads,
            seconds,
            idle_seconds,
            weftd,
            veth_tx_offload,
            no_veth_gro,
        } => {
            let exe = std::env::current_exe().context("finding weftctl's own path")?;
            let weftd = weftd.or_else(|| Binaries::weftd_near(&exe));
            cleanup_on_signals()?;
            let config = bench::Config {
                quick,
                seconds,
                idle_seconds,
                reps,
                json,
                only,
                workloads,
                binaries: Binaries {
                    weftctl: exe,
                    weftd,
                },
                options: testbed::Options {
                    veth_tx_offload,
                    veth_gro: !no_veth_gro,
                    ..testbed::Options::default()
                },
            };
            bench::run(&config).map(drop)
        }
        Cmd::Stats { control } => print_json(&control::request(&control::find(control)?, "stats")?),
        Cmd::Routes { control } => {
            print_json(&control::request(&control::find(control)?, "routes")?)
        }
        Cmd::Demo {
            etcd,
            backend,
            weftd,
        } => {
            let (exe, weftd) = weftctl_and_weftd(weftd)?;
            cleanup_on_signals()?;
            weftctl::demo::run(&weftctl::demo::Config {
                etcd,
                backend,
                binaries: Binaries {
                    weftctl: exe,
                    weftd: Some(weftd),
                },
            })
        }
        Cmd::Attack(a) => attack(a),
        Cmd::ScaleLeases {
            leases,
            store,
            timeout,
            weftd,
        } => {
            let (exe, weftd) = weftctl_and_weftd(weftd)?;
            cleanup_on_signals()?;
            let report = weftctl::scale::run(&weftctl::scale::Config {
                leases,
                store,
                weftd,
                weftctl: exe,
                timeout: std::time::Duration::from_secs(timeout),
            })?;
            print!("{}", report.render());
            Ok(())
        }
        Cmd::Soak {
            minutes,
            sample_secs,
            udp_rate,
            weftd,
        } => {
            if !(minutes.is_finite() && minutes > 0.0 && minutes <= 24.0 * 60.0) {
                anyhow::bail!("--minutes {minutes}: must be more than 0 and at most 1440");
            }
            if sample_secs == 0 || udp_rate == 0 {
                anyhow::bail!("--sample-secs and --udp-rate must be at least 1");
            }
            let (exe, weftd) = weftctl_and_weftd(weftd)?;
            cleanup_on_signals()?;
            let report = weftctl::soak::run(&weftctl::soak::Config {
                duration: std::time::Duration::from_secs_f64(minutes * 60.0),
                sample_every: std::time::Duration::from_secs(sample_secs),
                udp_rate,
                binaries: Binaries {
                    weftctl: exe,
                    weftd: Some(weftd),
                },
            })?;
            print!("{}", report.render());
            if !report.passed() {
                anyhow::bail!("soak failed: {} problem(s)", report.failures.len());
            }
            Ok(())
        }
        Cmd::Completions { shell, program } => {
            let (mut command, _) = program.command();
            let name = command.get_name().to_owned();
            clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
            Ok(())
        }
        Cmd::Man { program } => {
            let (command, section) = program.command();
            clap_mangen::Man::new(command)
                .section(section)
                .render(&mut std::io::stdout())
                .context("writing the man page")
        }
        Cmd::Leases {
            lease_dir,
            etcd_endpoints,
            etcd_prefix,
        } => {
            let store: Box<dyn engine::lease::LeaseStore> = match lease_dir {
                Some(dir) => Box::new(engine::lease::DirStore::open(dir)?),
                None => Box::new(engine::lease::EtcdStore::connect(
                    engine::lease::EtcdOptions {
                        endpoints: etcd_endpoints
                            .split(',')
                            .map(str::trim)
                            .filter(|e| !e.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        prefix: etcd_prefix.trim_end_matches('/').to_owned(),
                        ..engine::lease::EtcdOptions::default()
                    },
                )?),
            };
            print!("{}", weftctl::leases::render(&*store)?);
            Ok(())
        }
    }
}

fn attack(a: AttackArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing the signal handler")?;
    }
    let config = weftctl::attack::Config {
        target: a.target,
        info: weftctl::attack::Target {
            backend: a.backend,
            vni: a.vni,
            target_mac: a.target_mac,
            own_mac: a.own_mac,
            target_subnet: a.target_subnet,
            target_subnet6: a.target_subnet6,
            own_subnet: a.own_subnet,
            own_subnet6: a.own_subnet6,
            spoof_subnet: a.spoof_subnet,
            spoof_subnet6: a.spoof_subnet6,
            sink_port: a.sink_port,
            mtu: a.mtu,
        },
        duration: std::time::Duration::from_secs(a.seconds),
        seed: a.seed,
        rate: a.rate,
        from: a.from,
    };
    eprintln!(
        "attack: {} {} for {} s at {} datagrams/s, seed {}",
        a.backend.as_str(),
        a.target,
        a.seconds,
        a.rate,
        a.seed
    );
    let report = weftctl::attack::run(&config, &stop)?;
    print!("{}", report.table());
    if a.json {
        println!(
            "{}{}",
            weftctl::attack::REPORT_PREFIX,
            serde_json::to_string(&report)?
        );
    }
    Ok(())
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?}: on or off")),
    }
}

/// A backend whose traffic goes through weftd's overlay (`udp` or `vxlan`): what the demo
/// and the attack drive. host-gw has no TUN and no port (see tools/tests/routing_modes.rs).
fn overlay_backend(s: &str) -> Result<engine::model::Backend, String> {
    match s.parse::<engine::model::Backend>()? {
        b if b.has_data_path() => Ok(b),
        b => Err(format!(
            "{b} has no overlay to drive (no TUN, no UDP port): use udp or vxlan"
        )),
    }
}

/// weftctl's own path and the weftd to run: `asked`, else the one next to weftctl, else one
/// built there ([`build_weftd`]).
fn weftctl_and_weftd(asked: Option<PathBuf>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("finding weftctl's own path")?;
    let weftd = match asked.or_else(|| Binaries::weftd_near(&exe)) {
        Some(w) => w,
        None => build_weftd(&exe)?,
    };
    Ok((exe, weftd))
}

/// `cargo run -p weftctl -- demo` builds weftctl only: build weftd beside it (same profile),
/// from the workspace that holds weftctl's target directory.
fn build_weftd(exe: &std::path::Path) -> anyhow::Result<PathBuf> {
    let profile_dir = exe.parent().context("weftctl's directory")?;
    let workspace = profile_dir
        .parent()
        .and_then(std::path::Path::parent)
        .context("weftctl is not in <workspace>/target/<profile>/")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "-p", "engine", "--bin", "weftd"]);
    if release {
        cmd.arg("--release");
    }
    eprintln!(
        "weftctl: no weftd next to {}: building it (cargo build -p engine{})",
        exe.display(),
        if release { " --release" } else { "" }
    );
    let status = cmd.status().context("running cargo to build weftd")?;
    if !status.success() {
        anyhow::bail!("building weftd failed ({status})");
    }
    Binaries::weftd_near(exe).context("cargo built weftd, but it is not next to weftctl")
}

/// On SIGINT / SIGTERM / SIGHUP: kill the testbed's processes, delete its namespaces, exit.
fn cleanup_on_signals() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handlers")?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("\nweftctl: signal {sig}: removing the testbed");
            weft_testkit::netns::cleanup_all();
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth_tx_offload(args: &[&str]) -> Result<bool, clap::Error> {
        let cli = Cli::try_parse_from([&["weftctl", "bench"][..], args].concat())?;
        match cli.command {
            Cmd::Bench {
                veth_tx_offload, ..
            } => Ok(veth_tx_offload),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn bench_veth_tx_offload_is_on_unless_turned_off() {
        assert!(veth_tx_offload(&[]).expect("default"));
        assert!(veth_tx_offload(&["--veth-tx-offload", "on"]).expect("on"));
        assert!(!veth_tx_offload(&["--veth-tx-offload", "off"]).expect("off"));
        assert!(!veth_tx_offload(&["--veth-tx-offload=off"]).expect("=off"));
        assert!(veth_tx_offload(&["--veth-tx-offload", "maybe"]).is_err());
        assert!(veth_tx_offload(&["--veth-tx-offload"]).is_err());
    }
}
