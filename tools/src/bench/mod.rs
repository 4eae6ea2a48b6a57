//! `weftctl bench`: kernel VXLAN, the raw veth (no overlay), the one-packet forwarder, weftd
//! (udp and vxlan, io_uring and poll, 1 and 2 pump threads) and weftd with DirectRouting
//! (lease mode: neighbours through kernel routes) measured in one run on the same kind of
//! testbed; and `wireguard-go`, a userspace peer that encrypts (its CPU per byte is not
//! comparable), when it is installed.
//!
//! Contract: for each repetition, every selected configuration in turn (A B C A B C ..., so
//! slow drifts of the machine spread over all of them) gets a fresh two-node testbed with that
//! overlay on both nodes, and runs the selected workloads on it, in this order: idle
//! ([`cpu::idle`]: the overlay processes' CPU and wake-ups while nothing is sent), ping and
//! TCP request/response latency ([`latency`]), TCP with 1 stream (with its CPU cost per GB,
//! [`cpu`]) and 4 streams ([`throughput`]), UDP at the highest rate with 1400- and 64-byte
//! datagrams ([`udp_rate`]). Each workload yields [`METRICS`]; [`report`] prints, per metric,
//! the median of the repetitions with (min..max) and the ratio to kernel VXLAN's median, and
//! writes the same as JSON. A configuration whose testbed cannot start (no weftd, weftd
//! fails) is reported with the reason and skipped for the remaining repetitions; a workload
//! that fails is reported with the reason and tried again in the next repetition; every other
//! figure is still measured. Testbeds are removed on every exit; the binary installs a SIGINT
//! / SIGTERM handler that calls [`weft_testkit::netns::cleanup_all`].

pub mod cpu;
pub mod latency;
pub mod lossy;
pub mod report;
pub mod throughput;
pub mod udp_rate;

use engine::config::DriverArg;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use crate::testbed::{traffic, Binaries, Options, Overlay, Testbed};
use engine::model::Backend;

/// Seconds per throughput measurement, full run.
pub const FULL_SECONDS: u32 = 10;
/// Seconds per throughput measurement with `--quick`.
pub const QUICK_SECONDS: u32 = 3;
/// Seconds of the idle measurement, full run.
pub const FULL_IDLE_SECONDS: u32 = 10;
/// Seconds of the idle measurement with `--quick`.
pub const QUICK_IDLE_SECONDS: u32 = 3;
/// TCP request/response exchanges per second of the throughput duration.
const RR_PER_SECOND: usize = 1000;
/// Pings per second of the throughput duration (at 100 pings a second).
const PINGS_PER_SECOND: u32 = 50;
/// Time the overlay gets to settle after start-up before the idle measurement.
const SETTLE: Duration = Duration::from_millis(500);
/// Why kernel VXLAN has no daemon figures.
const NO_PROCESS: &str = "no overlay process (the kernel moves the packets)";
/// The key of a configuration-wide error (the testbed did not start).
pub const SETUP: &str = "setup";

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// 3 s per measurement instead of 10 s.
    pub quick: bool,
    /// Seconds per throughput measurement, overriding `quick` (for the CI smoke test).
    pub seconds: Option<u32>,
    /// Seconds of the idle measurement, overriding `quick`.
    pub idle_seconds: Option<u32>,
    /// Measurements per configuration.
    pub reps: usize,
    /// Where to write the results as JSON.
    pub json: Option<PathBuf>,
    /// Only these configurations (labels as in the table; a weftd label without its `-<n>t`
    /// suffix picks both thread counts); all when empty.
    pub only: Vec<String>,
    /// Only these workloads; all when empty.
    pub workloads: Vec<Workload>,
    /// The programs to run.
    pub binaries: Binaries,
    /// How the testbed's veths are set up.
    pub options: Options,
}

impl Config {
    /// Seconds per throughput measurement.
    pub fn seconds(&self) -> u32 {
        self.seconds.unwrap_or(if self.quick {
            QUICK_SECONDS
        } else {
            FULL_SECONDS
        })
    }

    /// Whether `workload` runs: named in `--workloads`, or run by default when that is empty.
    pub fn selected(&self, workload: Workload) -> bool {
        if self.workloads.is_empty() {
            workload.by_default()
        } else {
            self.workloads.contains(&workload)
        }
    }

    /// Seconds of the idle measurement.
    pub fn idle_seconds(&self) -> u32 {
        self.idle_seconds.unwrap_or(if self.quick {
            QUICK_IDLE_SECONDS
        } else {
            FULL_IDLE_SECONDS
        })
    }
}

/// One configuration: an overlay on both nodes, and weftd's pump threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The overlay.
    pub overlay: Overlay,
    /// weftd's `--pump-threads` (None for the others).
    pub pump_threads: Option<u16>,
}

impl Setup {
    /// `kernel-vxlan`, `forwarder`, `weft-udp-uring-1t`, ...
    pub fn label(&self) -> String {
        match self.pump_threads {
            Some(n) => format!("{}-{n}t", self.overlay.label()),
            None => self.overlay.label(),
        }
    }

    /// Whether `--only` name `name` picks this configuration.
    fn matches(&self, name: &str) -> bool {
        name == self.label() || (self.pump_threads.is_some() && name == self.overlay.label())
    }
}

/// The configurations measured, in table order.
pub fn all_setups() -> Vec<Setup> {
    let mut v = vec![
        Setup {
            overlay: Overlay::KernelVxlan,
            pump_threads: None,
        },
        Setup {
            overlay: Overlay::RawVeth,
            pump_threads: None,
        },
        Setup {
            overlay: Overlay::Forwarder,
            pump_threads: None,
        },
    ];
    for backend in [Backend::Udp, Backend::Vxlan] {
        for driver in [DriverArg::Uring, DriverArg::Poll] {
            for threads in [1, 2] {
                v.push(Setup {
                    overlay: Overlay::Weftd { backend, driver },
                    pump_threads: Some(threads),
                });
            }
        }
    }
    v.push(Setup {
        overlay: Overlay::WeftdDirect {
            backend: Backend::Vxlan,
        },
        pump_threads: None,
    });
    v.push(Setup {
        overlay: Overlay::WireguardGo,
        pump_threads: None,
    });
    v
}

/// A family of measurements run on one testbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// No traffic: the overlay processes' CPU and wake-ups.
    Idle,
    /// ping round trips.
    Ping,
    /// TCP request/response round trips.
    Rr,
    /// One TCP stream, and its CPU cost per GB.
    Tcp1,
    /// Four parallel TCP streams.
    Tcp4,
    /// UDP, 1400-byte datagrams, highest rate.
    Udp1400,
    /// UDP, 64-byte datagrams, highest rate.
    Udp64,
    /// Throughput across inner packet sizes: TCP with small MSSs (the TUN still carries up to
    /// 64 KiB super-packets of those segments) and UDP datagrams of 256, 512 and 1024 bytes.
    /// Not in the default set (`--workloads sizes`).
    Sizes,
    /// The UDP no-drop rate: the highest offered rate of 1400-byte datagrams with at most
    /// 0.1 % loss, by binary search ([`udp_rate::no_drop`]). Not in the default set
    /// (`--workloads nodrop`).
    NoDrop,
}

impl Workload {
    /// All workloads, in the order they run.
    pub const ALL: [Workload; 9] = [
        Workload::Idle,
        Workload::Ping,
        Workload::Rr,
        Workload::Tcp1,
        Workload::Tcp4,
        Workload::Udp1400,
        Workload::Udp64,
        Workload::Sizes,
        Workload::NoDrop,
    ];

    /// Whether it runs when `--workloads` is not given.
    pub fn by_default(&self) -> bool {
        !matches!(self, Workload::Sizes | Workload::NoDrop)
    }

    /// The name for `--workloads` and the JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Idle => "idle",
            Workload::Ping => "ping",
            Workload::Rr => "rr",
            Workload::Tcp1 => "tcp1",
            Workload::Tcp4 => "tcp4",
            Workload::Udp1400 => "udp1400",
            Workload::Udp64 => "udp64",
            Workload::Sizes => "sizes",
            Workload::NoDrop => "nodrop",
        }
    }

    /// The workload called `name`.
    pub fn parse(name: &str) -> Result<Workload, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown workload {name:?}: choose from {}",
                    Workload::ALL.map(|w| w.name()).join(", ")
                )
            })
    }
}

/// One figure in the table.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The JSON key.
    pub key: &'static str,
    /// The workload that yields it.
    pub workload: Workload,
    /// The table heading.
    pub title: &'static str,
    /// Whether a larger figure is better.
    pub higher_is_better: bool,
}

const fn metric(
    key: &'static str,
    workload: Workload,
    title: &'static str,
    higher_is_better: bool,
) -> Metric {
    Metric {
        key,
        workload,
        title,
        higher_is_better,
    }
}

/// TCP MSSs of the `sizes` workload.
pub const SIZES_TCP_MSS: [u32; 3] = [88, 536, 1024];
/// UDP payload lengths of the `sizes` workload (64 and 1400 are their own workloads).
pub const SIZES_UDP_LEN: [usize; 3] = [256, 512, 1024];

/// Every figure, in table order.
pub const METRICS: [Metric; 23] = [
    metric("tcp1_gbit_s", Workload::Tcp1, "TCP 1 stream, Gbit/s", true),
    metric(
        "tcp1_retransmits",
        Workload::Tcp1,
        "TCP 1 stream, retransmissions",
        false,
    ),
    metric("tcp4_gbit_s", Workload::Tcp4, "TCP 4 streams, Gbit/s", true),
    metric(
        "udp1400_rx_kpps",
        Workload::Udp1400,
        "UDP 1400 B at the highest rate, received kpps",
        true,
    ),
    metric(
        "udp1400_loss_pct",
        Workload::Udp1400,
        "UDP 1400 B at the highest rate, loss %",
        false,
    ),
    metric(
        "udp64_rx_kpps",
        Workload::Udp64,
        "UDP 64 B at the highest rate, received kpps",
        true,
    ),
    metric(
        "udp64_loss_pct",
        Workload::Udp64,
        "UDP 64 B at the highest rate, loss %",
        false,
    ),
    metric(
        "rr_median_us",
        Workload::Rr,
        "TCP request/response round trip, median us",
        false,
    ),
    metric(
        "rr_p99_us",
        Workload::Rr,
        "TCP request/response round trip, p99 us",
        false,
    ),
    metric("ping_median_us", Workload::Ping, "ping, median us", false),
    metric("ping_p99_us", Workload::Ping, "ping, p99 us", false),
    metric(
        "cpu_machine_s_per_gb",
        Workload::Tcp1,
        "CPU per GB moved (TCP 1 stream), whole machine, busy s/GB",
        false,
    ),
    metric(
        "cpu_daemon_s_per_gb",
        Workload::Tcp1,
        "CPU per GB moved (TCP 1 stream), both weftd / forwarder processes, s/GB",
        false,
    ),
    metric(
        "idle_pct_core",
        Workload::Idle,
        "idle, both weftd / forwarder processes, % of a core",
        false,
    ),
    metric(
        "idle_wakeups_per_s",
        Workload::Idle,
        "idle, both weftd / forwarder processes, wake-ups per second",
        false,
    ),
    metric(
        "tcp1_machine_busy_pct",
        Workload::Tcp1,
        "TCP 1 stream, whole machine busy, % of all cores",
        false,
    ),
    metric(
        "tcp_mss88_gbit_s",
        Workload::Sizes,
        "TCP 1 stream, MSS 88 B, Gbit/s",
        true,
    ),
    metric(
        "tcp_mss536_gbit_s",
        Workload::Sizes,
        "TCP 1 stream, MSS 536 B, Gbit/s",
        true,
    ),
    metric(
        "tcp_mss1024_gbit_s",
        Workload::Sizes,
        "TCP 1 stream, MSS 1024 B, Gbit/s",
        true,
    ),
    metric(
        "udp256_rx_kpps",
        Workload::Sizes,
        "UDP 256 B at the highest rate, received kpps",
        true,
    ),
    metric(
        "udp512_rx_kpps",
        Workload::Sizes,
        "UDP 512 B at the highest rate, received kpps",
        true,
    ),
    metric(
        "udp1024_rx_kpps",
        Workload::Sizes,
        "UDP 1024 B at the highest rate, received kpps",
        true,
    ),
    metric(
        "nodrop1400_kpps",
        Workload::NoDrop,
        "UDP 1400 B no-drop rate (loss <= 0.1 %), offered kpps",
        true,
    ),
];

/// The metric keys of the `sizes` workload, in [`SIZES_TCP_MSS`] then [`SIZES_UDP_LEN`] order.
const SIZES_KEYS: [&str; 6] = [
    "tcp_mss88_gbit_s",
    "tcp_mss536_gbit_s",
    "tcp_mss1024_gbit_s",
    "udp256_rx_kpps",
    "udp512_rx_kpps",
    "udp1024_rx_kpps",
];

/// The results of one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The configuration's label.
    pub path: String,
    /// Every measurement of each metric (by key), in the order taken.
    pub samples: BTreeMap<String, Vec<f64>>,
    /// Why something could not be measured: by workload name, metric key, or [`SETUP`].
    pub errors: BTreeMap<String, String>,
}

impl Row {
    fn new(path: String) -> Row {
        Row {
            path,
            samples: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    /// The samples of `key` (empty when none).
    pub fn values(&self, key: &str) -> &[f64] {
        self.samples.get(key).map_or(&[], Vec::as_slice)
    }

    /// The median of `key`'s samples.
    pub fn median(&self, key: &str) -> Option<f64> {
        median(self.values(key))
    }

    /// Why `metric` has no figure (or why some of its repetitions failed).
    pub fn reason(&self, metric: &Metric) -> Option<&str> {
        self.errors
            .get(metric.key)
            .or_else(|| self.errors.get(metric.workload.name()))
            .or_else(|| self.errors.get(SETUP))
            .map(String::as_str)
    }

    fn push(&mut self, key: &str, value: f64) {
        self.samples.entry(key.to_owned()).or_default().push(value);
    }
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    })
}

/// Runs the benchmark, prints the table and returns the rows.
pub fn run(config: &Config) -> anyhow::Result<Vec<Row>> {
    if config.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if config.seconds() == 0 {
        bail!("--seconds must be at least 1");
    }
    if let Some(reason) = weft_testkit::privileges::missing() {
        bail!("cannot build a testbed: {reason}");
    }
    if !weft_testkit::privileges::on_path("iperf3") {
        bail!("iperf3 is not installed (apt-get install iperf3)");
    }
    let setups: Vec<Setup> = all_setups()
        .into_iter()
        .filter(|s| config.only.is_empty() || config.only.iter().any(|o| s.matches(o)))
        .collect();
    if setups.is_empty() {
        bail!(
            "--only matches no configuration; choose from: {}",
            all_setups()
                .iter()
                .map(Setup::label)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let workloads: Vec<Workload> = Workload::ALL
        .into_iter()
        .filter(|&w| config.selected(w))
        .collect();
    let mut rows: Vec<Row> = setups.iter().map(|s| Row::new(s.label())).collect();
    for rep in 1..=config.reps {
        for (setup, row) in setups.iter().zip(rows.iter_mut()) {
            if row.errors.contains_key(SETUP) {
                continue;
            }
            eprintln!("bench: rep {rep}/{}: {}", config.reps, row.path);
            measure(config, *setup, &workloads, row);
        }
    }
    let text = report::table(&rows, config);
    println!("{text}");
    if let Some(path) = &config.json {
        report::write_json(path, &rows, config)?;
        eprintln!("bench: results written to {}", path.display());
    }
    Ok(rows)
}

/// One repetition of `setup`: a fresh testbed, every workload on it.
fn measure(config: &Config, setup: Setup, workloads: &[Workload], row: &mut Row) {
    let mut bed = match start(config, setup) {
        Ok(bed) => bed,
        Err(e) => {
            eprintln!("bench:   the testbed did not start: {e:#}");
            row.errors.insert(SETUP.to_owned(), format!("{e:#}"));
            return;
        }
    };
    let pids: Vec<u32> = (0..2)
        .filter_map(|i| bed.overlay_process(i).and_then(|p| p.pid()))
        .collect();
    for &workload in workloads {
        let result = run_workload(config, &mut bed, workload, &pids, row);
        let result = result.and_then(|()| bed.check_alive());
        match result {
            Ok(()) => {}
            Err(e) => {
                eprintln!("bench:   {:<8} failed: {e:#}", workload.name());
                row.errors
                    .insert(workload.name().to_owned(), format!("{e:#}"));
            }
        }
    }
}

/// A two-node testbed running `setup`, with a path that has carried a ping.
fn start(config: &Config, setup: Setup) -> anyhow::Result<Testbed> {
    let mut bed = Testbed::with_options(2, config.binaries.clone(), config.options)?;
    bed.set_pump_threads(setup.pump_threads);
    bed.start(&[setup.overlay, setup.overlay])?;
    // Neighbours resolved and the path known to work before anything is timed.
    traffic::ping(bed.node(0).pod(), bed.node(1).pod_ip(), 2, None)?;
    Ok(bed)
}

/// Runs `workload` and adds its figures to `row`.
fn run_workload(
    config: &Config,
    bed: &mut Testbed,
    workload: Workload,
    pids: &[u32],
    row: &mut Row,
) -> anyhow::Result<()> {
    let seconds = config.seconds();
    let mut figures: Vec<(&str, f64)> = Vec::new();
    match workload {
        Workload::Idle => {
            if pids.is_empty() {
                row.errors
                    .insert(Workload::Idle.name().to_owned(), NO_PROCESS.to_owned());
                eprintln!("bench:   idle     n/a: {NO_PROCESS}");
                return Ok(());
            }
            std::thread::sleep(SETTLE);
            let idle = cpu::idle(pids, Duration::from_secs(config.idle_seconds().into()))?;
            figures.push(("idle_pct_core", idle.pct_core));
            figures.push(("idle_wakeups_per_s", idle.wakeups_per_s));
        }
        Workload::Ping => {
            let count = u16::try_from((PINGS_PER_SECOND * seconds).max(20)).unwrap_or(u16::MAX);
            let rtt = latency::ping(bed, count)?;
            figures.push(("ping_median_us", rtt.median_us));
            figures.push(("ping_p99_us", rtt.p99_us));
        }
        Workload::Rr => {
            let rtt = latency::tcp_rr(bed, RR_PER_SECOND * seconds as usize)?;
            figures.push(("rr_median_us", rtt.median_us));
            figures.push(("rr_p99_us", rtt.p99_us));
        }
        Workload::Tcp1 | Workload::Tcp4 => {
            let one = workload == Workload::Tcp1;
            let tcp = throughput::tcp(bed, if one { 1 } else { 4 }, seconds, one, pids)?;
            if one {
                figures.push(("tcp1_gbit_s", tcp.gbit_s));
                figures.push(("tcp1_retransmits", tcp.retransmits as f64));
                if let Some(s) = tcp.machine_s_per_gb {
                    figures.push(("cpu_machine_s_per_gb", s));
                }
                if let Some(busy) = tcp.machine_busy_pct {
                    figures.push(("tcp1_machine_busy_pct", busy));
                }
                match tcp.daemon_s_per_gb {
                    Some(s) => figures.push(("cpu_daemon_s_per_gb", s)),
                    None => {
                        row.errors
                            .insert("cpu_daemon_s_per_gb".to_owned(), NO_PROCESS.to_owned());
                    }
                }
            } else {
                figures.push(("tcp4_gbit_s", tcp.gbit_s));
            }
        }
        Workload::Udp1400 | Workload::Udp64 => {
            let len = if workload == Workload::Udp1400 {
                1400
            } else {
                64
            };
            let udp = udp_rate::udp(bed, len, seconds)?;
            let (pps, loss) = if len == 1400 {
                ("udp1400_rx_kpps", "udp1400_loss_pct")
            } else {
                ("udp64_rx_kpps", "udp64_loss_pct")
            };
            figures.push((pps, udp.rx_pps / 1e3));
            figures.push((loss, udp.loss_pct));
        }
        Workload::Sizes => {
            let (tcp_keys, udp_keys) = SIZES_KEYS.split_at(SIZES_TCP_MSS.len());
            for (mss, key) in SIZES_TCP_MSS.into_iter().zip(tcp_keys) {
                let report = throughput::iperf(
                    bed,
                    &format!("mss{mss}"),
                    seconds,
                    &["-M", &mss.to_string()],
                )?;
                figures.push((key, throughput::received_gbit_s(&report)?));
            }
            for (len, key) in SIZES_UDP_LEN.into_iter().zip(udp_keys) {
                figures.push((key, udp_rate::udp(bed, len, seconds)?.rx_pps / 1e3));
            }
        }
        Workload::NoDrop => {
            let pps = udp_rate::no_drop(bed, 1400, seconds)?;
            figures.push(("nodrop1400_kpps", pps / 1e3));
        }
    }
    let shown: Vec<String> = figures.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    eprintln!("bench:   {:<8} {}", workload.name(), shown.join(", "));
    for (key, value) in figures {
        row.push(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn setups_labels_and_selection() {
        let labels: Vec<String> = all_setups().iter().map(Setup::label).collect();
        assert_eq!(labels.len(), 13);
        assert_eq!(labels[0], "kernel-vxlan");
        assert_eq!(labels[1], "raw-veth");
        assert_eq!(labels[2], "forwarder");
        assert_eq!(labels[11], "weft-vxlan-direct");
        assert_eq!(labels[12], "wireguard-go-encrypts");
        assert!(
            labels.contains(&"weft-vxlan-poll-2t".to_owned()),
            "{labels:?}"
        );
        let picked: Vec<String> = all_setups()
            .into_iter()
            .filter(|s| s.matches("weft-udp-uring"))
            .map(|s| s.label())
            .collect();
        assert_eq!(picked, ["weft-udp-uring-1t", "weft-udp-uring-2t"]);
        assert!(!all_setups()[0].matches("kernel"));
        let mut keys: Vec<&str> = METRICS.iter().map(|m| m.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), METRICS.len(), "metric keys are unique");
    }

    #[test]
    fn workloads_parse_by_name() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Ok(w));
        }
        assert!(Workload::ALL
            .iter()
            .all(|w| w.by_default() != matches!(w, Workload::Sizes | Workload::NoDrop)));
        let sizes: Vec<&str> = METRICS
            .iter()
            .filter(|m| m.workload == Workload::Sizes)
            .map(|m| m.key)
            .collect();
        assert_eq!(
            sizes, SIZES_KEYS,
            "every sizes figure has a metric, in order"
        );
        let e = Workload::parse("tcp9").expect_err("no such workload");
        assert!(e.contains("tcp1, tcp4"), "{e}");
    }
}
