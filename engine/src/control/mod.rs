//! The control socket: a unix stream socket answering one request line with one JSON reply.
//!
//! Contract: a client connects, writes `stats\n` or `routes\n`, reads one JSON
//! document and the connection is closed. `stats` gives the summed pump counters, the drops by
//! reason (every reason, zeros included), per-peer traffic, the driver, the thread count and
//! the TUN offloads; `routes` lists every route of the current table. Anything else gets
//! `{"error": "..."}`. Requests are served one at a time by one thread, each with a
//! [`CLIENT_TIMEOUT`] so a stuck client cannot block the next.
//!
//! `handover <version>` is the one request answered elsewhere: from root or our own uid, at
//! the version this weftd speaks ([`HANDOVER_VERSION`]), the connection goes to the daemon
//! ([`HandoverSink`]), which hands the data path over to the asking weftd (an upgrade,
//! `daemon/handover.rs`); anything else about it is refused with `{"error": ...}` and the
//! connection closed. A data path that cannot hand over (no sink) refuses too.
//!
//! Where ([`ControlAddr`]): by default the abstract socket `@weft/<tun-name>`. Abstract names
//! belong to the network namespace, so any number of weftd nodes in separate namespaces of one
//! host use the default without colliding, nothing is left on disk, and `weftctl` run inside a
//! namespace finds that namespace's weftd ([`ControlAddr::discover`]). `--control PATH` binds a
//! file instead.
//!
//! [`ControlListener::bind`] takes the address before weftd leases a subnet or makes a TUN, so
//! a second weftd for the same TUN in the same namespace exits before touching anything. It
//! refuses an abstract name in use, a path that is not a socket or whose socket still answers
//! (another weftd); a stale socket file is removed. The socket file is removed again when the
//! server is dropped.

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::{json, Value};

use crate::model::{format_mac, Backend};
use crate::pump::{counters, IoDriver, PumpCounters};
use crate::route::{parse_peers, Local, RouteTable, Routes};
use crate::sys::fdpass::{effective_uid, peer_cred, PeerCred};
use crate::tun::Offloads;

/// The version of the upgrade handover protocol this weftd speaks (`daemon/handover.rs`). A
/// weftd refuses a handover asked at any other version, so an old and a new binary that do
/// not understand each other's messages never exchange descriptors.
pub const HANDOVER_VERSION: u32 = 1;

/// A handover asked on the control socket, checked (peer credentials, version) and passed to
/// the daemon with its connection.
#[derive(Debug)]
pub struct Handover {
    /// The connection to the asking weftd (blocking, no timeouts set).
    pub stream: UnixStream,
    /// Who asked.
    pub peer: PeerCred,
}

/// Where the control thread sends a checked handover request: a channel to the daemon and a
/// function that wakes it.
#[derive(Clone)]
pub struct HandoverSink {
    tx: mpsc::Sender<Handover>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl HandoverSink {
    /// A sink sending to `tx` and calling `wake` after each request.
    pub fn new(tx: mpsc::Sender<Handover>, wake: impl Fn() + Send + Sync + 'static) -> Self {
        HandoverSink {
            tx,
            wake: Arc::new(wake),
        }
    }
}

impl fmt::Debug for HandoverSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandoverSink").finish_non_exhaustive()
    }
}

/// The version asked by a `handover <version>` line; `None` when the line is not a handover
/// request at all, `Some(Err)` when it is one that cannot be read.
pub fn parse_handover(line: &str) -> Option<Result<u32, String>> {
    let rest = line.strip_prefix("handover")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(match rest.trim().parse::<u32>() {
        Ok(v) => Ok(v),
        Err(_) => Err(format!(
            "a handover request is \"handover <version>\" (this weftd speaks version {HANDOVER_VERSION})"
        )),
    })
}

/// How long one client may take to send its request and read the reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest request line read.
const MAX_REQUEST: u64 = 256;

/// The prefix of weftd's default abstract socket names.
pub const ABSTRACT_PREFIX: &str = "weft/";

/// The longest abstract name (`sun_path` holds 108 bytes, the first is the NUL).
const MAX_ABSTRACT: usize = 107;

/// Where the control socket is: an abstract name (per network namespace) or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    /// An abstract socket name, written `@name`.
    Abstract(String),
    /// A socket file.
    Path(PathBuf),
}

impl ControlAddr {
    /// weftd's default for a TUN: `@weft/<tun>`.
    pub fn default_for(tun: &str) -> ControlAddr {
        ControlAddr::Abstract(format!("{ABSTRACT_PREFIX}{tun}"))
    }

    /// `@NAME` is an abstract socket, anything else a path.
    pub fn parse(s: &str) -> Result<ControlAddr, String> {
        match s.strip_prefix('@') {
            Some("") => Err("'@' needs a name after it (an abstract socket)".to_owned()),
            Some(name) if name.len() > MAX_ABSTRACT => Err(format!(
                "an abstract socket name has at most {MAX_ABSTRACT} bytes"
            )),
            Some(name) if name.contains('\0') => {
                Err("an abstract socket name has no NUL byte".to_owned())
            }
            Some(name) => Ok(ControlAddr::Abstract(name.to_owned())),
            None if s.is_empty() => Err("an empty path".to_owned()),
            None => Ok(ControlAddr::Path(PathBuf::from(s))),
        }
    }

    fn socket_addr(&self) -> io::Result<SocketAddr> {
        match self {
            ControlAddr::Abstract(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            ControlAddr::Path(path) => SocketAddr::from_pathname(path),
        }
    }

    /// Connects to the socket (from the caller's network namespace, for an abstract name).
    pub fn connect(&self) -> io::Result<UnixStream> {
        UnixStream::connect_addr(&self.socket_addr()?)
    }

    /// The listening abstract sockets named `@weft/...` in the calling thread's network
    /// namespace (from `/proc/thread-self/net/unix`), sorted.
    pub fn discover() -> io::Result<Vec<ControlAddr>> {
        let text = std::fs::read_to_string("/proc/thread-self/net/unix")?;
        Ok(listening_weft_sockets(&text))
    }
}

/// The `@weft/...` listeners in a `/proc/net/unix` listing.
fn listening_weft_sockets(text: &str) -> Vec<ControlAddr> {
    /// `__SO_ACCEPTCON` in the Flags column: a listening socket.
    const ACCEPTCON: u32 = 0x0001_0000;
    let mut found: Vec<ControlAddr> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let name = fields.get(7)?.strip_prefix('@')?;
            (flags & ACCEPTCON != 0 && name.starts_with(ABSTRACT_PREFIX))
                .then(|| ControlAddr::Abstract(name.to_owned()))
        })
        .collect();
    found.sort_by_key(ToString::to_string);
    found.dedup();
    found
}

impl fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAddr::Abstract(name) => write!(f, "@{name}"),
            ControlAddr::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl std::str::FromStr for ControlAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<ControlAddr, String> {
        ControlAddr::parse(s)
    }
}

/// What the control socket reports on.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// This node's backend, which is every peer's (the route table holds no other).
    pub backend: Backend,
    /// The current route table.
    pub routes: Arc<Routes>,
    /// Every pump thread's counters.
    pub counters: Vec<Arc<PumpCounters>>,
    /// The pump driver.
    pub driver: IoDriver,
    /// What the TUN negotiated.
    pub offloads: Offloads,
    /// Where upgrade handover requests go (`None`: refused).
    pub handover: Option<HandoverSink>,
}

impl ControlState {
    /// A data path that does not run, for tests and the fuzz targets: the routes of `peers`
    /// (peers-file lines) as a node at 192.168.250.1 with `backend`'s default port, VNI 1 and
    /// VtepMAC `0e:00:00:00:00:01` sees them, `pumps` pump threads' counters (all zero), the
    /// poll driver and every offload.
    ///
    /// # Panics
    /// When `peers` has a line the route table does not take.
    #[doc(hidden)]
    pub fn detached(backend: Backend, peers: &str, pumps: usize) -> ControlState {
        let local = Local {
            backend,
            port: backend.default_port(),
            vni: 1,
            vtep_mac: [0x0e, 0, 0, 0, 0, 1],
            public_ip: IpAddr::V4(Ipv4Addr::new(192, 168, 250, 1)),
            public_ip6: None,
            subnets: vec![],
        };
        let (entries, errors) = parse_peers(peers, "peers");
        assert!(errors.is_empty(), "{errors:?}");
        let (table, errors) = RouteTable::build(&local, &entries, None, "peers");
        assert!(errors.is_empty(), "{errors:?}");
        ControlState {
            backend,
            routes: Arc::new(Routes::from_pointee(table)),
            counters: (0..pumps).map(|_| Arc::default()).collect(),
            driver: IoDriver::Poll,
            offloads: Offloads::ALL,
            handover: None,
        }
    }
}

/// Setting the control socket up failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The directory for the socket could not be created.
    #[error("creating the control socket directory {dir} failed: {source}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Something that is not a socket is in the way.
    #[error("{path} exists and is not a socket; remove it or pass another --control path")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another process answers on the socket.
    #[error("the control socket {addr} is in use by a running process (another weftd for this TUN in this network namespace?); stop it, or pass another --tun-name or --control")]
    InUse {
        /// The address.
        addr: ControlAddr,
    },
    /// bind(2) or the stale-file removal failed.
    #[error("binding the control socket {addr} failed: {source}")]
    Bind {
        /// The address.
        addr: ControlAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A listening socket passed by another weftd (an upgrade) is not the one expected.
    #[error("taking over the control socket {addr} failed: {reason}")]
    Adopt {
        /// The address expected.
        addr: ControlAddr,
        /// What is wrong with it.
        reason: String,
    },
    /// The server thread could not be spawned.
    #[error("spawning the control thread failed: {0}")]
    Spawn(#[source] io::Error),
}

/// The control socket, bound but not yet served: taken at start-up, before anything else is set
/// up, so that a second weftd for the same TUN fails first.
#[derive(Debug)]
pub struct ControlListener {
    addr: ControlAddr,
    listener: UnixListener,
}

impl ControlListener {
    /// Binds `addr` (see the module documentation for what is refused).
    pub fn bind(addr: &ControlAddr) -> Result<ControlListener, ControlError> {
        let bind_err = |source| ControlError::Bind {
            addr: addr.clone(),
            source,
        };
        if let ControlAddr::Path(path) = addr {
            prepare_path(addr, path)?;
        }
        let listener = addr
            .socket_addr()
            .and_then(|a| UnixListener::bind_addr(&a))
            .map_err(|source| match source.kind() {
                io::ErrorKind::AddrInUse => ControlError::InUse { addr: addr.clone() },
                _ => bind_err(source),
            })?;
        Ok(ControlListener {
            addr: addr.clone(),
            listener,
        })
    }

    /// Takes over the listening socket another weftd passed us (an upgrade handover):
    /// refused unless it is a unix socket bound to `addr`.
    pub fn adopt(addr: &ControlAddr, fd: OwnedFd) -> Result<ControlListener, ControlError> {
        let adopt_err = |reason: String| ControlError::Adopt {
            addr: addr.clone(),
            reason,
        };
        let listener = UnixListener::from(fd);
        let local = listener
            .local_addr()
            .map_err(|e| adopt_err(format!("not a unix socket ({e})")))?;
        let matches = match addr {
            ControlAddr::Abstract(name) => local.as_abstract_name() == Some(name.as_bytes()),
            ControlAddr::Path(path) => local.as_pathname() == Some(path.as_path()),
        };
        if !matches {
            return Err(adopt_err(format!("bound to {local:?}")));
        }
        listener
            .set_nonblocking(false)
            .map_err(|e| adopt_err(format!("clearing O_NONBLOCK: {e}")))?;
        Ok(ControlListener {
            addr: addr.clone(),
            listener,
        })
    }

    /// The address.
    pub fn addr(&self) -> &ControlAddr {
        &self.addr
    }

    /// Serves `state` on a new thread.
    pub fn serve(self, state: ControlState) -> Result<ControlServer, ControlError> {
        let ControlListener { addr, listener } = self;
        let shared = listener
            .try_clone()
            .map(OwnedFd::from)
            .map_err(ControlError::Spawn)?;
        let server = ControlServer {
            addr,
            listener: shared,
            handed_over: false,
        };
        std::thread::Builder::new()
            .name("weft-control".to_owned())
            .spawn(move || serve(&listener, &state))
            .map_err(ControlError::Spawn)?;
        Ok(server)
    }
}

/// Makes the socket file's directory and removes a stale socket file; refuses anything else in
/// the way.
fn prepare_path(addr: &ControlAddr, path: &Path) -> Result<(), ControlError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ControlError::NotASocket {
                path: path.to_owned(),
            });
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::InUse { addr: addr.clone() });
        }
        std::fs::remove_file(path).map_err(|source| ControlError::Bind {
            addr: addr.clone(),
            source,
        })?;
    }
    Ok(())
}

/// The control socket and its serving thread.
#[derive(Debug)]
pub struct ControlServer {
    addr: ControlAddr,
    /// The listening socket (a second descriptor of the one the thread serves), to hand over.
    listener: OwnedFd,
    /// Handed to a successor: its socket file must stay.
    handed_over: bool,
}

impl ControlServer {
    /// Binds `addr` and serves `state` on a new thread.
    pub fn bind(addr: &ControlAddr, state: ControlState) -> Result<ControlServer, ControlError> {
        ControlListener::bind(addr)?.serve(state)
    }

    /// The socket's address.
    pub fn addr(&self) -> &ControlAddr {
        &self.addr
    }

    /// The listening socket, to pass to a successor.
    pub fn listener(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Marks the socket as handed to a successor: dropping the server leaves its file.
    pub fn set_handed_over(&mut self) {
        self.handed_over = true;
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // The serving thread keeps the listening fd until the process exits; a file name goes
        // now (an abstract name goes with the fd), unless a successor serves it.
        if let (ControlAddr::Path(path), false) = (&self.addr, self.handed_over) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn serve(listener: &UnixListener, state: &ControlState) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = handle(stream, state) {
                    tracing::debug!("control client: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn handle(stream: UnixStream, state: &ControlState) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut request = Vec::new();
    // Byte by byte up to the newline (no read-ahead), so nothing a handover client sends
    // after its request line is swallowed here.
    let mut byte = [0u8; 1];
    while request.len() < MAX_REQUEST as usize {
        match io::Read::read(&mut &stream, &mut byte) {
            Ok(0) => break,
            Ok(_) => {
                request.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let line = String::from_utf8_lossy(request.split(|&b| b == b'\n').next().unwrap_or_default())
        .trim()
        .to_owned();
    if let Some(version) = parse_handover(&line) {
        return match check_handover(version, &stream, state) {
            Ok((sink, peer)) => {
                stream.set_read_timeout(None)?;
                stream.set_write_timeout(None)?;
                tracing::info!("handover asked by pid {} (uid {})", peer.pid, peer.uid);
                if sink.tx.send(Handover { stream, peer }).is_ok() {
                    (sink.wake)();
                }
                Ok(())
            }
            Err(refusal) => {
                tracing::warn!("handover refused: {refusal}");
                let mut body = json!({
                    "error": refusal,
                    "handover_version": HANDOVER_VERSION,
                })
                .to_string();
                body.push('\n');
                (&stream).write_all(body.as_bytes())
            }
        };
    }
    (&stream).write_all(answer(&request, state).as_bytes())?;
    Ok(())
}

/// Whether a handover at `version` may go ahead on `stream`: the sink to pass it to and who
/// asked, or why not.
fn check_handover(
    version: Result<u32, String>,
    stream: &UnixStream,
    state: &ControlState,
) -> Result<(HandoverSink, PeerCred), String> {
    let version = version?;
    let peer = peer_cred(stream.as_fd()).map_err(|e| format!("reading SO_PEERCRED: {e}"))?;
    let ours = effective_uid();
    if peer.uid != 0 && peer.uid != ours {
        return Err(format!(
            "handover refused: uid {} may not ask (only root or uid {ours})",
            peer.uid
        ));
    }
    if version != HANDOVER_VERSION {
        return Err(format!(
            "handover version {version} refused: this weftd speaks version {HANDOVER_VERSION}"
        ));
    }
    let Some(sink) = state.handover.clone() else {
        return Err("this weftd has no data path to hand over".to_owned());
    };
    Ok((sink, peer))
}

/// The bytes written back for the bytes a client sent: the [`reply`] to its first line, trimmed
/// of surrounding whitespace, as one line of JSON ending in `\n`. A request that is not UTF-8
/// is answered too (`{"error": ...}`, naming it with its bad bytes replaced), never with silence.
pub fn answer(request: &[u8], state: &ControlState) -> String {
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut body = reply(line.trim(), state).to_string();
    body.push('\n');
    body
}

/// The JSON reply to one request line (without its newline).
pub fn reply(request: &str, state: &ControlState) -> Value {
    match request {
        "stats" => stats(state),
        "routes" => routes(state),
        other if parse_handover(other).is_some() => json!({
            "error": format!(
                "a handover (version {HANDOVER_VERSION}) is only served on weftd's control socket"
            ),
        }),
        other => json!({
            "error": format!("unknown request {other:?}: expected \"stats\" or \"routes\"")
        }),
    }
}

fn stats(state: &ControlState) -> Value {
    let (totals, drops) = counters::sum(state.counters.iter().map(|c| &**c));
    let drops: serde_json::Map<String, Value> = drops
        .into_iter()
        .map(|(reason, n)| (reason.as_str().to_owned(), json!(n)))
        .collect();
    let table = state.routes.load();
    let peers: Vec<Value> = table
        .peers()
        .iter()
        .map(|p| {
            let (tx_packets, tx_bytes, rx_packets, rx_bytes) = p.counters().get();
            json!({
                "public_ip": p.underlay().ip().to_string(),
                "port": p.underlay().port(),
                "subnets": p.subnets().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "tx_packets": tx_packets,
                "tx_bytes": tx_bytes,
                "rx_packets": rx_packets,
                "rx_bytes": rx_bytes,
            })
        })
        .collect();
    json!({
        "pump": totals,
        "drops": drops,
        "peers": peers,
        "driver": state.driver.as_str(),
        "threads": state.counters.len(),
        "offloads": state.offloads.to_string(),
    })
}

fn routes(state: &ControlState) -> Value {
    let table = state.routes.load();
    let backend = state.backend.as_str();
    Value::Array(
        table
            .routes()
            .iter()
            .map(|r| {
                json!({
                    "subnet": r.subnet.to_string(),
                    "public_ip": r.peer.underlay().ip().to_string(),
                    "port": r.peer.underlay().port(),
                    "backend": backend,
                    "vtep_mac": r.peer.vtep_mac().map(|m| format_mac(&m)),
                    // DirectRouting: the kernel routes the subnet straight to public_ip.
                    "path": if r.direct { "direct" } else { "overlay" },
                })
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pump::DropReason;
    use std::io::Read;

    fn state() -> ControlState {
        let state = ControlState::detached(
            Backend::Vxlan,
            "{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"vxlan\", \"vtep_mac\": \"0e:00:00:00:00:02\"}\n\
             {\"subnet\": \"fd00:10:244:2::/64\", \"public_ip\": \"192.168.250.2\", \"backend\": \"vxlan\", \"vtep_mac\": \"0e:00:00:00:00:02\"}",
            2,
        );
        state.routes.load().peers()[0].counters().add_tx(2, 200);
        state.counters[0].tun_rx_packets.add(1);
        state.counters[1].tun_rx_packets.add(2);
        state.counters[1].count_drop(DropReason::UnknownPeer);
        state
    }

    #[test]
    fn stats_reply_has_the_contract_fields() {
        let v = reply("stats", &state());
        for key in [
            "tun_rx_packets",
            "tun_rx_bytes",
            "udp_tx_datagrams",
            "udp_tx_bytes",
            "udp_rx_datagrams",
            "udp_rx_bytes",
            "tun_tx_packets",
            "tun_tx_bytes",
            "gso_sends",
            "gso_fallback_sends",
            "gro_merged",
            "rx_csum_partial",
            "icmp_sent",
        ] {
            assert!(v["pump"][key].is_u64(), "{key}");
        }
        assert_eq!(v["pump"]["tun_rx_packets"], 3);
        assert_eq!(v["drops"]["unknown_peer"], 1);
        assert_eq!(v["drops"]["spoofed"], 0);
        assert_eq!(v["drops"]["wrong_vni"], 0);
        assert_eq!(v["peers"][0]["public_ip"], "192.168.250.2");
        assert_eq!(v["peers"][0]["subnets"][1], "fd00:10:244:2::/64");
        assert_eq!(v["peers"][0]["tx_packets"], 2);
        assert_eq!(v["peers"][0]["tx_bytes"], 200);
        assert_eq!(v["driver"], "poll");
        assert_eq!(v["threads"], 2);
        assert!(v["offloads"].as_str().unwrap().contains("tso4"));
    }

    #[test]
    fn routes_reply_and_errors() {
        let v = reply("routes", &state());
        assert_eq!(v[0]["subnet"], "10.244.2.0/24");
        assert_eq!(v[0]["backend"], "vxlan");
        assert_eq!(v[0]["vtep_mac"], "0e:00:00:00:00:02");
        assert_eq!(v[0]["path"], "overlay");
        assert_eq!(v[1]["subnet"], "fd00:10:244:2::/64");
        assert!(reply("bogus", &state())["error"]
            .as_str()
            .unwrap()
            .contains("bogus"));
    }

    #[test]
    fn answers_every_request_with_one_json_line() {
        let st = state();
        assert_eq!(
            answer(b"stats\n", &st),
            format!("{}\n", reply("stats", &st))
        );
        assert_eq!(
            answer(b" routes \r\nignored", &st),
            format!("{}\n", reply("routes", &st))
        );
        for bad in [
            &b""[..],
            b"\n",
            b"\xff\xfestats\n",
            b"stats\xe2\x82",
            b"stat",
        ] {
            let out = answer(bad, &st);
            assert!(
                out.ends_with('\n') && !out[..out.len() - 1].contains('\n'),
                "{out:?}"
            );
            let v: Value = serde_json::from_str(&out).unwrap();
            assert!(v["error"].is_string(), "{bad:?}: {v}");
        }
    }

    #[test]
    fn serves_over_a_unix_socket_and_refuses_a_live_one() {
        let dir = std::env::temp_dir().join(format!("wfp-control-{}", std::process::id()));
        let path = dir.join("sub").join("weft.sock");
        let addr = ControlAddr::Path(path.clone());
        let server = ControlServer::bind(&addr, state()).unwrap();
        let ask = |req: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            serde_json::from_str::<Value>(&out).unwrap()
        };
        assert_eq!(ask("stats\n")["threads"], 2);
        assert_eq!(ask("routes\n")[0]["public_ip"], "192.168.250.2");
        // Not UTF-8: answered too (read_line made this an error, and the client got nothing).
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"st\xffats\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(serde_json::from_str::<Value>(&out).unwrap()["error"].is_string());
        assert!(matches!(
            ControlServer::bind(&addr, state()),
            Err(ControlError::InUse { .. })
        ));
        drop(server);
        assert!(!path.exists());
        // A stale socket file (nobody listening) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let again = ControlServer::bind(&addr, state()).unwrap();
        assert_eq!(ask("stats\n")["driver"], "poll");
        drop(again);
        // A regular file is never removed.
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(
            ControlServer::bind(&addr, state()),
            Err(ControlError::NotASocket { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn abstract_sockets_are_found_and_refused_twice() {
        let addr = ControlAddr::default_for(&format!("wfp-test-{}", std::process::id()));
        let listener = ControlListener::bind(&addr).unwrap();
        assert!(matches!(
            ControlListener::bind(&addr),
            Err(ControlError::InUse { .. })
        ));
        assert!(ControlAddr::discover().unwrap().contains(&addr));
        let _server = listener.serve(state()).unwrap();
        let mut s = addr.connect().unwrap();
        s.write_all(b"stats\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["threads"], 2);
    }

    #[test]
    fn handover_requests_are_parsed_strictly() {
        assert_eq!(parse_handover("stats"), None);
        assert_eq!(parse_handover("handovers"), None);
        assert_eq!(parse_handover("handover 1"), Some(Ok(1)));
        assert_eq!(parse_handover("handover   7"), Some(Ok(7)));
        for bad in [
            "handover",
            "handover x",
            "handover -1",
            "handover 1 2",
            "handover 99999999999",
        ] {
            assert!(matches!(parse_handover(bad), Some(Err(_))), "{bad:?}");
        }
        // Without the socket (the fuzz targets' entry point): an error, never a panic.
        let v = reply("handover 1", &state());
        assert!(v["error"].is_string(), "{v}");
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(1), "{v}");
    }

    #[test]
    fn handovers_go_to_the_sink_only_at_our_version() {
        let ask = |addr: &ControlAddr, req: &[u8]| {
            let mut s = addr.connect().unwrap();
            s.write_all(req).unwrap();
            s
        };
        let answer_of = |mut s: UnixStream| {
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            serde_json::from_str::<Value>(&out).unwrap()
        };
        // No sink: refused.
        let addr = ControlAddr::default_for(&format!("wfp-hand-{}", std::process::id()));
        let _plain = ControlServer::bind(&addr, state()).unwrap();
        let v = answer_of(ask(&addr, b"handover 1\n"));
        assert!(v["error"].as_str().unwrap().contains("no data path"), "{v}");

        let (tx, rx) = mpsc::channel();
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&woken);
        let mut with_sink = state();
        with_sink.handover = Some(HandoverSink::new(tx, move || {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
        let addr = ControlAddr::default_for(&format!("wfp-hand2-{}", std::process::id()));
        let _server = ControlServer::bind(&addr, with_sink).unwrap();
        for bad in [&b"handover 2\n"[..], b"handover\n", b"handover \xff\n"] {
            let v = answer_of(ask(&addr, bad));
            assert!(v["error"].is_string(), "{bad:?}: {v}");
            assert_eq!(v["handover_version"], HANDOVER_VERSION);
        }
        assert!(rx.try_recv().is_err());
        // Our version, our uid: the connection goes to the sink, with what followed the line
        // left unread for the daemon.
        let client = ask(&addr, b"handover 1\ngo\n");
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got.peer.pid, std::process::id());
        // The wake-up follows the send.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while woken.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never woken");
            std::thread::yield_now();
        }
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1);
        let mut rest = [0u8; 3];
        (&got.stream).read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"go\n");
        drop(client);
        // Still serving.
        assert_eq!(answer_of(ask(&addr, b"stats\n"))["threads"], 2);
    }

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(
            ControlAddr::parse("@weft/flannel.1"),
            Ok(ControlAddr::Abstract("weft/flannel.1".to_owned()))
        );
        assert_eq!(
            ControlAddr::parse("/run/weft.sock"),
            Ok(ControlAddr::Path(PathBuf::from("/run/weft.sock")))
        );
        for bad in ["", "@", &format!("@{}", "x".repeat(108))] {
            assert!(ControlAddr::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ControlAddr::default_for("flannel0").to_string(),
            "@weft/flannel0"
        );
    }

    #[test]
    fn only_listening_weft_names_are_discovered() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 1001 @weft/flannel.1
0000000000000000: 00000003 00000000 00000000 0001 03 1002 @weft/flannel.1
0000000000000000: 00000002 00000000 00010000 0001 01 1003 @other
0000000000000000: 00000002 00000000 00010000 0001 01 1004 /run/x.sock
0000000000000000: 00000002 00000000 00010000 0001 01 1005 @weft/flannel0
0000000000000000: 00000002 00000000 00000000 0002 01 1006
";
        assert_eq!(
            listening_weft_sockets(text),
            [
                ControlAddr::Abstract("weft/flannel.1".to_owned()),
                ControlAddr::Abstract("weft/flannel0".to_owned())
            ]
        );
    }
}
