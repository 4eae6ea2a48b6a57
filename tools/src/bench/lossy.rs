//! TCP throughput over a lossy underlay ([`crate::testbed::impair`]): weftd against the
//! kernel's VXLAN under the same impairment, as a ratio.
//!
//! Contract: for each repetition, each overlay in turn (kernel VXLAN first, then the weftd
//! configurations) gets a fresh two-node testbed joined through a router with transmit
//! offloads off (a real wire carries datagrams, not GSO batches), and runs one verified TCP
//! stream of [`Config::seconds`] from node a's pod to node b's under no impairment and then
//! under each impairment of a lossy path ([`Impairment::lossy_path`]), the impairment
//! installed before and removed after each stream. A stream that fails (a byte wrong, a
//! stall) fails the run: the figures are only worth quoting if the bytes were right. The ratio
//! of a weftd configuration is taken within one repetition (weftd / kernel VXLAN under the same
//! impairment), and the table quotes the median of the repetitions' throughputs and of their
//! ratios, with the relay's queue losses (which must be 0: otherwise the impairment was not
//! what it says).

use std::time::Duration;

use anyhow::{bail, Context};

use crate::bench::median;
use crate::testbed::impair::{Impaired, Impairment};
use crate::testbed::{traffic, Binaries, Options, Overlay, Testbed, Underlay};
use engine::config::DriverArg;
use engine::model::Backend;

/// A stream that moves no byte for this long fails (a retransmission timeout under 1 %
/// loss is well below it).
const STALL: Duration = Duration::from_secs(20);

/// What to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// The programs.
    pub binaries: Binaries,
    /// Repetitions.
    pub runs: usize,
    /// Seconds per stream.
    pub seconds: u64,
    /// The weftd configurations compared with kernel VXLAN.
    pub overlays: Vec<Overlay>,
}

/// The testbed options of every lossy run: a router between the nodes, no transmit offload,
/// GRO on as on a real NIC.
pub const OPTIONS: Options = Options {
    veth_tx_offload: false,
    veth_gro: true,
    third_behind_router: false,
    router: true,
    underlay: Underlay::Ipv4,
};

/// The weftd configurations the table shows by default.
pub fn default_overlays() -> Vec<Overlay> {
    [Backend::Vxlan, Backend::Udp]
        .into_iter()
        .map(|backend| Overlay::Weftd {
            backend,
            driver: DriverArg::Poll,
        })
        .collect()
}

/// The measurements: `gbit[overlay][impairment][run]`, overlay 0 being kernel VXLAN.
#[derive(Debug, Clone)]
pub struct Table {
    /// Kernel VXLAN, then [`Config::overlays`].
    pub overlays: Vec<Overlay>,
    /// "none", then the lossy path's impairments.
    pub impairments: Vec<&'static str>,
    /// Gbit/s per overlay, impairment and run.
    pub gbit: Vec<Vec<Vec<f64>>>,
}

impl Table {
    /// The median over the runs of overlay `o` under impairment `i`, in Gbit/s.
    pub fn median(&self, o: usize, i: usize) -> Option<f64> {
        median(&self.gbit[o][i])
    }

    /// The median over the runs of overlay `o`'s throughput / kernel VXLAN's, under
    /// impairment `i`, each ratio taken within one run.
    pub fn ratio(&self, o: usize, i: usize) -> Option<f64> {
        let ratios: Vec<f64> = self.gbit[o][i]
            .iter()
            .zip(&self.gbit[0][i])
            .filter(|(_, k)| **k > 0.0)
            .map(|(w, k)| w / k)
            .collect();
        median(&ratios)
    }

    /// A Markdown table: one row per impairment, per overlay the median Gbit/s, and for
    /// weftd the median ratio to kernel VXLAN.
    pub fn render(&self) -> String {
        let mut out = String::from("| underlay |");
        for (o, overlay) in self.overlays.iter().enumerate() {
            out.push_str(&format!(" {} Gbit/s |", overlay.label()));
            if o > 0 {
                out.push_str(&format!(" {} / kernel |", overlay.label()));
            }
        }
        out.push_str("\n| --- |");
        for o in 0..self.overlays.len() {
            out.push_str(if o > 0 { " --- | --- |" } else { " --- |" });
        }
        out.push('\n');
        for (i, name) in self.impairments.iter().enumerate() {
            out.push_str(&format!("| {name} |"));
            for o in 0..self.overlays.len() {
                let cell =
                    |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
                out.push_str(&format!(" {} |", cell(self.median(o, i), 3)));
                if o > 0 {
                    out.push_str(&format!(" {} |", cell(self.ratio(o, i), 2)));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Runs the measurement (see the module documentation).
pub fn run(config: &Config) -> anyhow::Result<Table> {
    let mut impairments = vec![("none", Impairment::NONE)];
    impairments.extend(Impairment::lossy_path());
    let mut overlays = vec![Overlay::KernelVxlan];
    overlays.extend(config.overlays.iter().copied());
    let mut gbit = vec![vec![Vec::new(); impairments.len()]; overlays.len()];
    for run in 0..config.runs {
        for (o, overlay) in overlays.iter().enumerate() {
            let mut bed = Testbed::with_options(2, config.binaries.clone(), OPTIONS)?;
            bed.start(&[*overlay, *overlay])
                .with_context(|| format!("starting {}", overlay.label()))?;
            let backend = overlay
                .backend()
                .context("the lossy bench impairs an overlay's datagrams")?;
            for (i, (name, impairment)) in impairments.iter().enumerate() {
                let g = stream_under(&bed, backend, *impairment, config.seconds, run as u64)
                    .with_context(|| {
                        format!("{} under {name}, run {}", overlay.label(), run + 1)
                    })?;
                eprintln!(
                    "lossy bench: run {} {} under {name}: {g:.3} Gbit/s",
                    run + 1,
                    overlay.label()
                );
                gbit[o][i].push(g);
            }
            bed.check_alive()?;
        }
    }
    Ok(Table {
        overlays,
        impairments: impairments.iter().map(|(n, _)| *n).collect(),
        gbit,
    })
}

/// One verified stream a -> b under `impairment`; Gbit/s.
fn stream_under(
    bed: &Testbed,
    backend: Backend,
    impairment: Impairment,
    seconds: u64,
    seed: u64,
) -> anyhow::Result<f64> {
    let router = bed.router().context("the testbed has no router")?;
    let (a, b) = (bed.node(0), bed.node(1));
    let impaired = Impaired::install(
        router,
        a.underlay(),
        b.underlay(),
        backend.default_port(),
        impairment,
        seed,
    )?;
    let report = traffic::tcp_stream_for(
        a.pod(),
        b.pod(),
        Duration::from_secs(seconds),
        seed ^ 0x1055,
        STALL,
    )?;
    let relay = impaired.remove()?;
    if relay.kernel_queue_dropped + relay.kernel_user_dropped + relay.overruns > 0 {
        bail!("the impairment relay lost packets itself ({relay}): the figure is void");
    }
    Ok(report.gbit_per_s())
}
