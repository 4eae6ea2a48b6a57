//! `weftctl demo`: two nodes talking through weft, on this machine, in under a minute.
//!
//! Contract ([`run`], as root): builds a two-node testbed (network namespaces
//! `wft-<pid>-<k>-a|b` joined by a veth), a lease store (the local directory store in the
//! testbed's scratch directory by default; with [`Config::etcd`] a real etcd started inside
//! node a's namespace on its underlay address), writes flannel's network config
//! (`10.244.0.0/16`, leases from `10.244.100.0`, the chosen backend), starts weftd in lease
//! mode on each node, prints the leases (`weftctl leases` run inside node a), pings node b's
//! overlay address from node a ([`PINGS`] ICMP echo requests by weftctl's own client,
//! [`crate::testbed::ping`]) and prints the summary, measures TCP throughput a -> b for
//! [`THROUGHPUT_SECONDS`] with weftctl's own verified TCP stream and prints it, then tears
//! everything down: weftd and etcd are stopped by PID, the namespaces and files removed (also
//! on a failure; `weftctl` removes them on Ctrl-C). Each printed result line starts with
//! `ping:` or `throughput:`. Beyond etcd for `--etcd`, it runs no program but iproute2's,
//! weftd and weftctl.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::testbed::{ping, traffic, Binaries, Testbed};
use engine::model::Backend;
use weft_testkit::etcd::Etcd;
use weft_testkit::privileges;

/// Seconds of the throughput test.
pub const THROUGHPUT_SECONDS: u32 = 3;
/// Echo requests sent from node a to node b.
pub const PINGS: u16 = 3;
/// The demo's network config (flannel's format); `{backend}` is replaced.
const CONFIG: &str = r#"{"Network": "10.244.0.0/16", "SubnetMin": "10.244.100.0", "Backend": {"Type": "{backend}"}}"#;
/// How long weftd gets to become ready.
const READY: Duration = Duration::from_secs(20);

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Use a real etcd instead of the directory store.
    pub etcd: bool,
    /// The backend in the network config.
    pub backend: Backend,
    /// weftctl (for `leases`) and weftd.
    pub binaries: Binaries,
}

/// A wait for another testbed longer than this is reported apart from the demo's time.
const WAIT_WORTH_SAYING: Duration = Duration::from_secs(1);

/// Runs the demo (see the module documentation).
pub fn run(config: &Config) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(why) = privileges::missing() {
        bail!("the demo builds network namespaces: {why}; run it as root");
    }
    if config.etcd {
        if let Some(why) = privileges::missing_programs(&["etcd", "etcdctl"]) {
            bail!("--etcd: {why} (apt-get install etcd-server etcd-client)");
        }
    }
    let weftd = config
        .binaries
        .weftd
        .clone()
        .context("no weftd next to weftctl: build it with `cargo build --release -p engine`")?;
    println!(
        "demo: two nodes in network namespaces, weftd in lease mode ({} backend)",
        config.backend.as_str()
    );
    // Testbeds on one machine run one at a time: the demo may first wait for another.
    let waiting = Instant::now();
    let mut bed = Testbed::new(2, config.binaries.clone())?;
    let waited = waiting.elapsed();
    let dir = bed.dir().to_owned();
    // Declared after the testbed: dropped (killed by PID) before its namespace goes.
    let etcd = if config.etcd {
        let etcd = Etcd::start(bed.node(0).ns(), bed.node(0).underlay(), &dir)
            .context("starting etcd inside node a")?;
        Some(etcd)
    } else {
        None
    };
    let (store_args, leases_args) = if let Some(etcd) = &etcd {
        etcd.put("config", &network_config(config.backend))
            .context("writing the network config into etcd")?;
        let endpoint = etcd.endpoint().to_owned();
        println!("demo: lease store: etcd {endpoint} (inside node a)");
        (
            vec!["--etcd-endpoints".to_owned(), endpoint.clone()],
            vec!["--etcd-endpoints".to_owned(), endpoint],
        )
    } else {
        let leases = dir.join("leases");
        std::fs::create_dir_all(&leases).context("creating the lease directory")?;
        std::fs::write(leases.join("config"), network_config(config.backend))
            .context("writing the network config")?;
        println!("demo: lease store: directory {}", leases.display());
        let arg = vec!["--lease-dir".to_owned(), leases.display().to_string()];
        (arg.clone(), arg)
    };

    let mut subnets = Vec::new();
    for (i, role) in ["a", "b"].iter().enumerate() {
        let subnet_file = dir.join(format!("subnet-{role}.env"));
        let mut args = vec![
            "--public-ip".to_owned(),
            bed.node(i).underlay().to_string(),
            "--subnet-file".to_owned(),
            subnet_file.display().to_string(),
        ];
        args.extend(store_args.iter().cloned());
        let h = bed.spawn(i, &format!("weftd-{role}"), &weftd, &args)?;
        bed.process(h)
            .wait_for_line("weftd: ready", READY)
            .with_context(|| format!("starting weftd on node {role}"))?;
        let subnet = leased_subnet(&subnet_file)?;
        println!(
            "demo: node {role} ({}) leased {subnet}",
            bed.node(i).underlay()
        );
        subnets.push(subnet);
    }

    println!("\n$ weftctl leases {}", leases_args.join(" "));
    let mut leases_cmd_args = vec!["leases"];
    leases_cmd_args.extend(leases_args.iter().map(String::as_str));
    let weftctl = config.binaries.weftctl.display().to_string();
    let listing = bed.node(0).ns().exec_checked(&weftctl, &leases_cmd_args)?;
    println!("{listing}");

    let b_addr = subnets[1].split('/').next().unwrap_or_default().to_owned();
    let b_ip: IpAddr = b_addr.parse().context("node b's overlay address")?;
    let from_a = traffic::End {
        ns: bed.node(0).ns(),
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let echo = ping::Echo {
        count: PINGS,
        ..ping::Echo::default()
    };
    let report =
        ping::echo(from_a, b_ip, &echo).context("ping from node a to node b across the overlay")?;
    println!("ping: node a -> node b ({b_addr}): {report}");
    if report.received() == 0 {
        bail!("no echo reply from node b ({b_addr}) across the overlay");
    }

    let line = throughput(&bed, b_ip)?;
    println!("throughput: node a -> node b: {line}");
    drop(bed);
    println!(
        "demo: done in {:.1} s; namespaces, processes and files removed",
        started.elapsed().as_secs_f64()
    );
    if waited > WAIT_WORTH_SAYING {
        println!(
            "demo: {:.1} s of that waiting for another testbed on this machine",
            waited.as_secs_f64()
        );
    }
    Ok(())
}

fn network_config(backend: Backend) -> String {
    CONFIG.replace("{backend}", backend.as_str())
}

/// FLANNEL_SUBNET of a subnet file as the subnet's network (`10.244.105.0/24`).
fn leased_subnet(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("FLANNEL_SUBNET="))
        .with_context(|| format!("no FLANNEL_SUBNET in {}", path.display()))?;
    let (ip, len) = value
        .split_once('/')
        .context("FLANNEL_SUBNET without a length")?;
    let ip: std::net::Ipv4Addr = ip.parse().context("FLANNEL_SUBNET's address")?;
    let network = std::net::Ipv4Addr::from(u32::from(ip) & !0xff);
    Ok(format!("{network}/{len}"))
}

/// weftctl's verified TCP stream from node a to node b for [`THROUGHPUT_SECONDS`]; the
/// result line.
fn throughput(bed: &Testbed, b_ip: IpAddr) -> anyhow::Result<String> {
    let from = traffic::End {
        ns: bed.node(0).ns(),
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let to = traffic::End {
        ns: bed.node(1).ns(),
        ip: b_ip,
    };
    let time = Duration::from_secs(THROUGHPUT_SECONDS.into());
    let report = traffic::tcp_stream_for(from, to, time, 1, Duration::from_secs(10))
        .context("TCP stream from node a to node b across the overlay")?;
    Ok(format!(
        "{:.2} Gbit/s (one TCP stream for {THROUGHPUT_SECONDS} s: {} MiB, every byte verified)",
        report.gbit_per_s(),
        report.bytes >> 20
    ))
}
