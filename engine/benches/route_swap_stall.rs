//! Lookups never stall while the control plane swaps route tables.
//!
//! A reader thread does what a pump does: `arc_swap::Cache::load` of the current table, then
//! one lookup, in a loop, timing each (load + lookup) with `Instant::now()` into a histogram,
//! for [`PHASE`] each: first with nothing else running, then while a second thread builds a
//! fresh 10 000-route table and swaps it in, back to back: once letting go of the old table
//! (so whoever holds it last frees it, often the reader), once keeping it and freeing it on
//! the swapping thread when nobody else holds it. It prints the lookups done, the
//! p50, p99, p99.99 and worst lookup time of each phase, and the swaps done. Times include the
//! ~20 ns of reading the clock; the last column is the lookups that were the first on a new
//! table (the `Cache` reloaded, and freed the old table when it held the last reference); the worst case on a shared 2-core machine includes being
//! preempted by other work, which the no-swap phase shows as well.
//!
//! `cargo bench -p engine --bench route_swap_stall` (`harness = false`; `WEFT_STALL_SECS=n`
//! sets the phase length, default 3 s).
#![allow(missing_docs, clippy::unwrap_used)]

mod routes;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::route::{swap_retiring, RouteTable, Routes};

const ROUTES: u32 = 10_000;
const PHASE: Duration = Duration::from_secs(3);

/// Nanosecond histogram: exact below 4096 ns, then 64 buckets per power of two.
struct Histogram {
    exact: Vec<u64>,
    log: Vec<u64>,
    count: u64,
    max: u64,
    over_10us: u64,
}

const EXACT: u64 = 4096;
const SUB: u64 = 64;

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            exact: vec![0; EXACT as usize],
            log: vec![0; (64 * SUB) as usize],
            count: 0,
            max: 0,
            over_10us: 0,
        }
    }

    #[inline]
    fn record(&mut self, ns: u64) {
        self.count += 1;
        self.max = self.max.max(ns);
        if ns < EXACT {
            self.exact[ns as usize] += 1;
        } else {
            if ns > 10_000 {
                self.over_10us += 1;
            }
            let octave = 63 - u64::from(ns.leading_zeros());
            let sub = (ns >> (octave - 6)) & (SUB - 1);
            self.log[(octave * SUB + sub) as usize] += 1;
        }
    }

    /// The smallest value at or above the `q` quantile (a bucket's lower bound above 4 us).
    fn quantile(&self, q: f64) -> u64 {
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (ns, &c) in self.exact.iter().enumerate() {
            seen += c;
            if seen >= want {
                return ns as u64;
            }
        }
        for (i, &c) in self.log.iter().enumerate() {
            seen += c;
            if seen >= want {
                let (octave, sub) = (i as u64 / SUB, i as u64 % SUB);
                return (1 << octave) + (sub << (octave - 6));
            }
        }
        self.max
    }
}

/// All lookups, and those that were the first on a new table (the `Cache` reloaded).
fn reader(routes: &Arc<Routes>, stop: &AtomicBool) -> (Histogram, Histogram) {
    let dsts = routes::hits(ROUTES, false);
    let mut cache = arc_swap::Cache::new(Arc::clone(routes));
    let mut h = Histogram::new();
    let mut first = Histogram::new();
    let mut last: *const RouteTable = std::ptr::null();
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..1024 {
            let d = dsts[k & 1023];
            k += 1;
            let t0 = Instant::now();
            let table = cache.load();
            black_box(table.lookup(black_box(d)));
            let ns = t0.elapsed().as_nanos() as u64;
            h.record(ns);
            let now: *const RouteTable = &**table;
            if now != last {
                first.record(ns);
                last = now;
            }
        }
    }
    (h, first)
}

/// What runs beside the reader.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Swapper {
    /// Nothing.
    None,
    /// Build, `store`, let go of the old table: whoever holds the last reference to the old
    /// table frees it, and that is often the reader's `Cache`.
    Plain,
    /// Build, [`swap_retiring`]: the old table is kept and freed on the swapper's thread
    /// once nobody else holds it (checked at each swap).
    Retire,
}

fn phase(routes: &Arc<Routes>, swapping: Swapper, secs: Duration) -> (Histogram, Histogram, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let swapper = (swapping != Swapper::None).then(|| {
        let routes = Arc::clone(routes);
        let stop = Arc::clone(&stop);
        let swaps = Arc::clone(&swaps);
        std::thread::spawn(move || {
            let local = routes::local();
            let entries = routes::entries(ROUTES, false);
            let mut retired: Vec<Arc<RouteTable>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let previous = routes.load();
                let (t, _) = RouteTable::build(&local, &entries, Some(&previous), "bench");
                drop(previous);
                if swapping == Swapper::Retire {
                    swap_retiring(&routes, t, &mut retired);
                } else {
                    routes.store(Arc::new(t));
                }
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let r = {
        let routes = Arc::clone(routes);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || reader(&routes, &stop))
    };
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    let (h, first) = r.join().unwrap();
    if let Some(s) = swapper {
        s.join().unwrap();
    }
    (h, first, swaps.load(Ordering::Relaxed))
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it short then.
    let args: Vec<String> = std::env::args().collect();
    let secs = if args.iter().any(|a| a == "--bench") {
        std::env::var("WEFT_STALL_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(PHASE, Duration::from_secs)
    } else {
        Duration::from_millis(200)
    };
    let routes = Arc::new(Routes::from_pointee(routes::table(ROUTES, false)));
    println!(
        "route_swap_stall: {ROUTES} IPv4 routes, {:.1} s per phase; lookup = Cache::load + lookup, timed with Instant",
        secs.as_secs_f64()
    );
    println!(
        "{:<26} {:>10} {:>7} {:>7} {:>10} {:>10} {:>7} {:>6} {:>18}",
        "phase",
        "lookups",
        "p50 ns",
        "p99 ns",
        "p99.99 ns",
        "worst ns",
        ">10 us",
        "swaps",
        "1st on new: p50/max"
    );
    for (name, swapping) in [
        ("no swaps", Swapper::None),
        ("swaps, old freed by last", Swapper::Plain),
        ("swaps, swapper frees old", Swapper::Retire),
    ] {
        let (h, first, swaps) = phase(&routes, swapping, secs);
        println!(
            "{:<26} {:>10} {:>7} {:>7} {:>10} {:>10} {:>7} {:>6} {:>18}",
            name,
            h.count,
            h.quantile(0.5),
            h.quantile(0.99),
            h.quantile(0.9999),
            h.max,
            h.over_10us,
            swaps,
            format!("{}/{}", first.quantile(0.5), first.max)
        );
    }
}
