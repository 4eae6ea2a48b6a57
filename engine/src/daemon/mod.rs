//! The weftd daemon: start-up, the running node and shutdown, in static or lease mode.
//!
//! Contract: [`run`] takes resolved [`Settings`] (the `weftd` binary parses the flags, in
//! flanneld's syntax with bad values exiting 2, and sets up logging on stderr before calling
//! it) and returns weftd's exit status: 0 after SIGTERM / SIGINT, 1 when a pump thread failed
//! (in lease mode also when the TUN was deleted); an `Err` is a failed start-up. In order:
//!
//! 1. The SIGHUP / SIGTERM / SIGINT handlers, first, so that a SIGTERM during start-up ends in
//!    a clean exit: a thread reads the signals, requests the start-up [`Stop`] on SIGTERM and
//!    SIGINT (lease mode's waits for the network config and the lease end at once) and passes
//!    every signal on to the daemon's loop.
//! 2. With `--healthz-port`, the [`crate::http`] endpoint, from the start (`/readyz` is 200
//!    from `weftd: ready` on).
//! 3. Static mode (`--subnet` / `--subnet6` and `--peers`): the control socket (taken first: a
//!    second weftd for the same TUN in this network namespace exits before it makes
//!    anything), the route table from the peers file, the data path ([`Node::start`]).
//!
//!    Lease mode (neither given), flanneld's way: the lease store (etcd, or the directory of
//!    `--lease-dir`) -> the network config (waited for while missing or invalid) -> the
//!    backend, port, VNI and Network from it -> the control socket -> our lease
//!    (`SubnetManager::acquire`; the VtepMAC of our previous vxlan lease is kept) -> the data
//!    path ([`Node::start`]) with an empty route table -> `--subnet-file` -> the iptables
//!    rules (`--ip-masq`, `--iptables-forward-rules`; re-checked every `--iptables-resync`
//!    s) -> `--ip-blackhole-route` -> the first peer set in the route table (waited for at
//!    most 10 s). From then on a thread turns the manager's peer sets into route-table swaps
//!    and a new own lease into a new TUN address; the network config, the underlay interface
//!    and the TUN are watched (lease_mode.rs documents it all).
//! 4. `weftd: ready` on stderr and systemd `READY=1` (`$NOTIFY_SOCKET`).
//!
//! Running: SIGHUP reloads the peers file in static mode (a file that fails to load keeps the
//! current routes) and is logged and ignored in lease mode. An upgrade (`handover.rs`): a new
//! weftd started with the same flags and `--upgrade` asks on the control socket; the control
//! thread passes the request on and raises SIGUSR1, and the signal loop hands the data path
//! over and exits 0 without tearing anything down (or, if the handover fails, runs on).
//! SIGUSR2 starts such a successor from our own binary path and arguments (systemd's
//! `ExecReload`). With `--upgrade`, step 3 takes the running weftd's offer instead of
//! exiting on a control socket in use, and its data path instead of making one (lease mode:
//! after taking the same lease and the first peer list). SIGTERM / SIGINT: systemd is told
//! `STOPPING=1`; in lease mode the manager stops (the lease stays in the store, as flanneld's)
//! and the iptables rules and the blackhole route are removed; the pumps stop and the TUN goes
//! with them.
//!
//! [`Node::start`], in order: the I/O driver, the TUN (queues, MTU, address `<subnet>.0/32`
//! and `<subnet6>::/128`, up, routes for `--network` / `--network6`), one UDP socket per pump
//! thread, the pump threads, serving the control socket. Every resource is owned (the TUN is
//! not persistent, so it and its routes go when its queues close; the control socket file is
//! removed on drop), so a failed start leaves nothing behind.

mod direct;
mod handover;
mod lease_mode;
mod node;
mod systemd;

use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub use node::Node;

use crate::config::Settings;
use crate::control::ControlAddr;
use crate::http::Health;
use crate::route::{load_peers_file, swap_retiring, RouteTable, Routes};
use crate::Stop;
use handover::{Offered, Served, Start, TakeError, UPGRADE_SIGNAL};
use node::{local, HANDOVER_SIGNAL};
use systemd::{notify_ready, notify_systemd};

/// Runs weftd with `settings` until SIGTERM / SIGINT (see the module documentation); the exit
/// status, or the error that ended start-up.
pub fn run(settings: &Settings) -> Result<ExitCode> {
    // Signals first, so that a SIGTERM during start-up ends in a clean exit below.
    let stop = Stop::new().context("creating the start-up stop eventfd")?;
    let signals = SignalThread::start(stop.clone())?;
    let health = Arc::new(Health::new());
    health.set_per_peer_metrics(settings.metrics_per_peer);
    if let Some(addr) = settings.healthz {
        match crate::http::serve(addr, Arc::clone(&health)) {
            Ok(bound) => tracing::info!("healthz http://{bound}/healthz, /readyz, /metrics"),
            Err(crate::http::HttpError::Bind { source, .. })
                if settings.upgrade && source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                serve_health_when_free(addr, Arc::clone(&health))?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match &settings.lease {
        None => run_static(settings, signals.received(), &health),
        Some(lease) => lease_mode::run(settings, lease, signals.received(), &stop, &health),
    }
}

/// The signals weftd handles, read on their own thread: SIGTERM and SIGINT request the
/// start-up [`Stop`] there (a signal handler cannot: [`Stop::request`] is not
/// async-signal-safe) and every signal is passed on, in order, to the daemon's loop. The
/// thread sleeps until a signal comes; dropping this closes it and waits for it.
struct SignalThread {
    received: Receiver<libc::c_int>,
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalThread {
    fn start(stop: Stop) -> Result<SignalThread> {
        let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, HANDOVER_SIGNAL, UPGRADE_SIGNAL])
            .context("installing signal handlers")?;
        let handle = signals.handle();
        let (tx, received) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("weft-signals".to_owned())
            .spawn(move || {
                // Ends when the handle is closed (on drop).
                for signal in signals.forever() {
                    if signal == SIGTERM || signal == SIGINT {
                        stop.request();
                    }
                    if tx.send(signal).is_err() {
                        return;
                    }
                }
            })
            .context("starting the signal thread")?;
        Ok(SignalThread {
            received,
            handle,
            thread: Some(thread),
        })
    }

    /// The signals, as they arrive.
    fn received(&self) -> &Receiver<libc::c_int> {
        &self.received
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// With `--upgrade`, the health port is the running weftd's until it hands over and exits:
/// a thread binds it as soon as it is free (for at most [`HEALTH_PORT_WAIT`]).
fn serve_health_when_free(addr: std::net::SocketAddr, health: Arc<Health>) -> Result<()> {
    tracing::info!(
        "healthz {addr} is in use (by the weftd we take over from?): serving it once free"
    );
    std::thread::Builder::new()
        .name("weft-healthz-wait".to_owned())
        .spawn(move || {
            let deadline = std::time::Instant::now() + HEALTH_PORT_WAIT;
            loop {
                match crate::http::serve(addr, Arc::clone(&health)) {
                    Ok(bound) => {
                        tracing::info!("healthz http://{bound}/healthz, /readyz, /metrics");
                        return;
                    }
                    Err(e) if std::time::Instant::now() >= deadline => {
                        tracing::error!("healthz: {e}; serving no health endpoint");
                        return;
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        })
        .context("starting the healthz thread")?;
    Ok(())
}

/// How long a weftd started with `--upgrade` waits for the health port to come free.
const HEALTH_PORT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Static mode: the routes come from the peers file, reloaded on SIGHUP.
fn run_static(s: &Settings, signals: &Receiver<libc::c_int>, health: &Health) -> Result<ExitCode> {
    let start = handover::bind_or_ask(&s.control, s.upgrade)?;
    let routes = Arc::new(Routes::from_pointee(load_routes(s, None)?));
    let mut node = match start {
        Start::Fresh(control) => Node::start(s, &routes, health, control)?,
        Start::Upgrade(offered) => take_over(s, &s.control, &routes, health, offered)?,
    };
    health.set_ready();
    eprintln!("weftd: ready");
    notify_ready();
    let mut retired = Vec::new();
    let mut successor = None;
    for signal in signals {
        match signal {
            SIGHUP => reload(s, &routes, &mut retired),
            UPGRADE_SIGNAL => handover::spawn_successor(),
            HANDOVER_SIGNAL => {
                successor = serve_handovers(&mut node, s);
                if successor.is_some() {
                    break;
                }
            }
            _ => {
                tracing::info!("signal {signal}: stopping");
                break;
            }
        }
    }
    if let Some(pid) = successor {
        node.leave();
        tracing::info!("stopped: pid {pid} runs the data path");
        return Ok(ExitCode::SUCCESS);
    }
    notify_systemd("STOPPING=1");
    let failed = node.stop();
    tracing::info!("stopped");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Serves the handover requests that wait; the successor's pid once one took over.
fn serve_handovers(node: &mut Node, s: &Settings) -> Option<u32> {
    while let Some(request) = node.next_handover() {
        if let Served::HandedOver { pid } = handover::serve(node, s, request) {
            return Some(pid);
        }
    }
    None
}

/// The new weftd's side of an upgrade: checks the offer against `s`, takes the descriptors
/// and starts the pumps on them, then lets the old weftd go. If the old one went away before
/// the descriptors came, a normal start once `control` is free.
fn take_over(
    s: &Settings,
    control: &ControlAddr,
    routes: &Arc<Routes>,
    health: &Health,
    offered: Offered,
) -> Result<Node> {
    if let Some(reason) = offered.offer().mismatch(s) {
        return Err(offered.abort(reason));
    }
    let threads = offered.offer().threads;
    if threads != s.pump_threads {
        tracing::warn!(
            "{threads} pump thread(s) as the running weftd has, not {}: a running TUN keeps its \
             queues (a full restart changes the count)",
            s.pump_threads
        );
    }
    match offered.take(s, control) {
        Ok((handed, committer)) => {
            // On an error here the descriptors close with `handed` and the old weftd, which
            // still holds its own, sees the connection close and runs on.
            let node = Node::adopt(s, routes, health, handed)?;
            committer.commit();
            notify_systemd(&format!("MAINPID={}", std::process::id()));
            Ok(node)
        }
        Err(gone @ TakeError::Gone(_)) => {
            tracing::warn!("{gone}: starting normally");
            let listener = handover::bind_when_free(control)?;
            Node::start(s, routes, health, listener)
        }
        Err(TakeError::Failed(e)) => Err(e.context("taking over from the running weftd")),
    }
}

/// Loads the peers file (an empty table without one), logging each line left out.
fn load_routes(s: &Settings, previous: Option<&RouteTable>) -> Result<RouteTable> {
    let Some(path) = &s.peers else {
        return Ok(RouteTable::empty());
    };
    let (table, errors) = load_peers_file(path, &local(s), previous)?;
    for e in &errors {
        tracing::warn!("peers file: {e} (line skipped)");
    }
    tracing::info!(
        "peers file {}: {} route(s) to {} peer(s), {} line(s) skipped",
        path.display(),
        table.len(),
        table.peers().len(),
        errors.len()
    );
    Ok(table)
}

/// SIGHUP in static mode: the peers file again, swapped in whole; the current routes stay
/// when it fails to load.
fn reload(s: &Settings, routes: &Routes, retired: &mut Vec<Arc<RouteTable>>) {
    let Some(path) = &s.peers else {
        tracing::info!("SIGHUP: no --peers file to reload");
        return;
    };
    let current = routes.load_full();
    match load_routes(s, Some(&current)) {
        Ok(table) => {
            swap_retiring(routes, table, retired);
            tracing::info!("SIGHUP: reloaded {}", path.display());
        }
        Err(e) => tracing::error!("SIGHUP: keeping the current routes: {e:#}"),
    }
}
