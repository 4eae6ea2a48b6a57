//! The health and metrics endpoint (`--healthz-ip`, `--healthz-port`), flanneld's way.
//!
//! Contract: an accept thread on a `std::net::TcpListener` hands each HTTP/1.x connection to a
//! thread of its own, at most [`MAX_CLIENTS`] at once (a connection over the cap is closed at
//! once), and closes it after one response (`Connection: close`). So idle or slow clients
//! cannot keep a liveness probe waiting: each holds one slot for at most [`CLIENT_TIMEOUT`].
//! Only `GET` is answered:
//! - `/healthz`: 200 `ok` while the process runs;
//! - `/readyz`: 200 `ready` once [`Health::set_ready`] was called (the subnet file written or
//!   the routes loaded, and the pumps started), 503 before;
//! - `/metrics`: Prometheus text format 0.0.4: the summed pump counters
//!   (`weft_pump_<counter>_total`), drops by reason (`weft_drops_total{reason}`), GSO / GRO
//!   batch-size histograms (`weft_gso_batch_segments`, `weft_gro_batch_datagrams`), the route
//!   count (`weft_routes`), in lease mode the lease manager's counters (`weft_lease_*`), the
//!   standard `process_*` series and `weft_build_info`. Per-peer traffic
//!   (`weft_peer_{tx,rx}_{packets,bytes}_total{peer}`, 4 series per peer: millions in a large
//!   cluster) only with `--metrics-per-peer` ([`Health::set_per_peer_metrics`]).
//!
//! Any other path is 404, any other method 405, a malformed request 400, a request head over
//! [`MAX_HEAD`] bytes 431. A connection gets [`CLIENT_TIMEOUT`] in all to send its head and
//! read the reply (read and write timeouts), so a slow client cannot stall the server for long.
//! The data path is reported through the same [`ControlState`] and the same
//! [`counters::sum`] as the control socket.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::control::ControlState;
use crate::lease::manager::ManagerStats;
use crate::pump::counters;

mod process;

/// The longest request head (request line and headers) read.
pub const MAX_HEAD: usize = 8 * 1024;

/// How long one connection may take to send its request head and read the reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most connections served at once; one more is closed without a reply.
pub const MAX_CLIENTS: usize = 16;

/// The Prometheus text exposition format's content type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoint reports on; filled in as weftd starts.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    per_peer: AtomicBool,
    control: OnceLock<ControlState>,
    manager: OnceLock<Arc<ManagerStats>>,
}

impl Health {
    /// A state with nothing running yet (not ready, no metrics but the process).
    pub fn new() -> Health {
        Health::default()
    }

    /// The data path is up: its counters and routes become metrics.
    pub fn set_dataplane(&self, state: ControlState) {
        let _ = self.control.set(state);
    }

    /// Lease mode: the lease manager's counters become metrics.
    pub fn set_manager(&self, stats: Arc<ManagerStats>) {
        let _ = self.manager.set(stats);
    }

    /// Whether `/metrics` lists every peer's traffic (`--metrics-per-peer`).
    pub fn set_per_peer_metrics(&self, on: bool) {
        self.per_peer.store(on, Ordering::Relaxed);
    }

    /// `/readyz` answers 200 from now on.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Starting the endpoint failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// bind(2) failed.
    #[error("binding the healthz endpoint {addr} failed: {source}; pass another --healthz-ip / --healthz-port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server thread could not be spawned.
    #[error("spawning the healthz thread failed: {0}")]
    Spawn(#[source] io::Error),
}

/// Binds `addr` and serves `health` on a thread of its own for the rest of the process;
/// returns the bound address (the port is chosen by the kernel when `addr`'s is 0).
pub fn serve(addr: SocketAddr, health: Arc<Health>) -> Result<SocketAddr, HttpError> {
    let listener = TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("weft-healthz".to_owned())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if active.load(Ordering::Relaxed) >= MAX_CLIENTS {
                            // Busy: closing is the cheapest answer.
                            drop(stream);
                            continue;
                        }
                        let slot = Slot::take(&active);
                        let health = Arc::clone(&health);
                        let spawned = std::thread::Builder::new()
                            .name("weft-healthz-conn".to_owned())
                            .spawn(move || {
                                let mut stream = stream;
                                if let Err(e) = handle(&mut stream, &health) {
                                    tracing::debug!("healthz client: {e}");
                                }
                                // The slot is free before the client sees the close, so a
                                // client that got its answer can count on the slot.
                                drop(slot);
                                drop(stream);
                            });
                        if let Err(e) = spawned {
                            tracing::warn!("healthz: spawning a connection thread failed: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("healthz accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
        .map_err(HttpError::Spawn)?;
    Ok(bound)
}

/// One of the [`MAX_CLIENTS`] connection slots, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The content type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        }
    }

    /// The whole response as bytes (status line, headers, body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Reads the request head within the deadline and writes the response.
fn handle(stream: &mut TcpStream, health: &Health) -> io::Result<()> {
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buf = [0u8; MAX_HEAD];
    let mut len = 0;
    let response = loop {
        if head_end(&buf[..len]).is_some() {
            break respond(&buf[..len], health);
        }
        if len == buf.len() {
            break Response::text(431, "request head too large");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Response::text(408, "request timeout");
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[len..]) {
            Ok(0) => return Ok(()),
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                break Response::text(408, "request timeout");
            }
            Err(e) => return Err(e),
        }
    };
    stream.write_all(&response.to_bytes())?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// Where the head ends (after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
}

/// The endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/metrics`.
    Metrics,
}

/// Parses a complete request head into the endpoint asked for, or the error status
/// (400 malformed, 404 unknown path, 405 not GET).
pub fn route(head: &[u8]) -> Result<Endpoint, u16> {
    let line_end = head.iter().position(|&b| b == b'\n').ok_or(400u16)?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| 400u16)?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !version.starts_with("HTTP/1.")
    {
        return Err(400);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let endpoint = match path {
        "/healthz" => Endpoint::Healthz,
        "/readyz" => Endpoint::Readyz,
        "/metrics" => Endpoint::Metrics,
        _ => return Err(404),
    };
    if method != "GET" {
        return Err(405);
    }
    Ok(endpoint)
}

/// The response to a complete request head.
pub fn respond(head: &[u8], health: &Health) -> Response {
    match route(head) {
        Ok(Endpoint::Healthz) => Response::text(200, "ok"),
        Ok(Endpoint::Readyz) if health.is_ready() => Response::text(200, "ready"),
        Ok(Endpoint::Readyz) => Response::text(503, "not ready"),
        Ok(Endpoint::Metrics) => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: metrics(health),
        },
        Err(404) => Response::text(404, "not found: /healthz, /readyz and /metrics are served"),
        Err(405) => Response::text(405, "method not allowed: only GET"),
        Err(status) => Response::text(status, "bad request"),
    }
}

/// The `/metrics` body.
pub fn metrics(health: &Health) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP weft_up 1 while weftd runs.\n# TYPE weft_up gauge\nweft_up 1"
    );
    let _ = writeln!(
        out,
        "# HELP weft_ready 1 once the subnet file is written or the routes loaded and the pumps run.\n# TYPE weft_ready gauge\nweft_ready {}",
        u8::from(health.is_ready())
    );
    if let Some(state) = health.control.get() {
        dataplane_metrics(&mut out, state, health.per_peer.load(Ordering::Relaxed));
    }
    if let Some(stats) = health.manager.get() {
        for (name, help, value) in [
            (
                "weft_lease_renewals_total",
                "Successful lease renewals.",
                &stats.renewals,
            ),
            (
                "weft_lease_renew_failures_total",
                "Failed lease renewal attempts.",
                &stats.renew_failures,
            ),
            (
                "weft_lease_reacquisitions_total",
                "Times our lease was lost and acquired again.",
                &stats.reacquisitions,
            ),
            (
                "weft_lease_watch_reconnects_total",
                "Watch reconnects and re-lists.",
                &stats.watch_reconnects,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP weft_lease_peers Peers in the last lease set.\n# TYPE weft_lease_peers gauge\nweft_lease_peers {}",
            stats.peers.load(Ordering::Relaxed)
        );
    }
    process::write(&mut out);
    out
}

fn dataplane_metrics(out: &mut String, state: &ControlState, per_peer: bool) {
    let (totals, drops) = counters::sum(state.counters.iter().map(|c| &**c));
    // Every counter of `Totals`, by its field name, so a new counter shows up here too.
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&totals) {
        for (field, value) in fields {
            let name = format!("weft_pump_{field}_total");
            let _ = writeln!(
                out,
                "# HELP {name} Pump counter {field}, summed over the pump threads.\n# TYPE {name} counter\n{name} {}",
                value.as_u64().unwrap_or(0)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weft_drops_total Packets and datagrams dropped, by reason.\n# TYPE weft_drops_total counter"
    );
    for (reason, n) in drops {
        let _ = writeln!(
            out,
            "weft_drops_total{{reason=\"{}\"}} {n}",
            reason.as_str()
        );
    }
    let (gso, gro) = counters::sum_batches(state.counters.iter().map(|c| &**c));
    for (name, help, h) in [
        (
            "weft_gso_batch_segments",
            "Segments per UDP send (UDP_SEGMENT batch size).",
            gso,
        ),
        (
            "weft_gro_batch_datagrams",
            "Datagrams per UDP receive (UDP_GRO batch size).",
            gro,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in counters::BATCH_BOUNDS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            h.count(),
            h.sum,
            h.count()
        );
    }
    let table = state.routes.load();
    let peers = table.peers();
    for (i, (name, help)) in [
        ("weft_peer_tx_packets_total", "Packets sent to the peer."),
        ("weft_peer_tx_bytes_total", "Bytes sent to the peer."),
        (
            "weft_peer_rx_packets_total",
            "Packets received from the peer.",
        ),
        ("weft_peer_rx_bytes_total", "Bytes received from the peer."),
    ]
    .into_iter()
    .enumerate()
    .filter(|_| per_peer)
    {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for p in peers {
            let (tx_packets, tx_bytes, rx_packets, rx_bytes) = p.counters().get();
            let value = [tx_packets, tx_bytes, rx_packets, rx_bytes][i];
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {value}", p.underlay().ip());
        }
    }
    let _ = writeln!(
        out,
        "# HELP weft_routes Routes in the current table.\n# TYPE weft_routes gauge\nweft_routes {}",
        table.len()
    );
    let _ = writeln!(
        out,
        "# HELP weft_direct_routes Routes the kernel takes straight to the peer (DirectRouting), of weft_routes.\n# TYPE weft_direct_routes gauge\nweft_direct_routes {}",
        table.routes().iter().filter(|r| r.direct).count()
    );
    let _ = writeln!(
        out,
        "# HELP weft_pump_threads Pump threads.\n# TYPE weft_pump_threads gauge\nweft_pump_threads {}",
        state.counters.len()
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
