//! The control socket: a unix stream socket answering one request line with one JSON reply.
//!
//! Contract (WEFTD_CLI.md): a client connects, writes `stats\n` or `routes\n`, reads one JSON
//! document and the connection is closed. `stats` gives the summed pump counters, the drops by
//! reason (every reason, zeros included), per-peer traffic, the driver, the thread count and
//! the TUN offloads; `routes` lists every route of the current table. Anything else gets
//! `{"error": "..."}`. Requests are served one at a time by one thread, each with a
//! [`CLIENT_TIMEOUT`] so a stuck client cannot block the next.
//!
//! [`ControlServer::bind`] refuses to replace a path that is not a socket or whose socket
//! still answers (another weftd); a stale socket file is removed. The socket file is removed
//! again when the server is dropped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::pump::{counters, IoDriver, PumpCounters};
use crate::route::{format_mac, Routes};
use crate::tun::Offloads;

/// How long one client may take to send its request and read the reply.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest request line read.
const MAX_REQUEST: u64 = 256;

/// What the control socket reports on.
#[derive(Debug, Clone)]
pub struct ControlState {
    /// The current route table.
    pub routes: Arc<Routes>,
    /// Every pump thread's counters.
    pub counters: Vec<Arc<PumpCounters>>,
    /// The pump driver.
    pub driver: IoDriver,
    /// What the TUN negotiated.
    pub offloads: Offloads,
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
    #[error("{path} is in use by a running process (another weftd on this TUN?); pass another --control path")]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// bind(2) or the stale-file removal failed.
    #[error("binding the control socket {path} failed: {source}")]
    Bind {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The server thread could not be spawned.
    #[error("spawning the control thread failed: {0}")]
    Spawn(#[source] io::Error),
}

/// The control socket and its serving thread.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path` and serves `state` on a new thread.
    pub fn bind(path: &Path, state: ControlState) -> Result<ControlServer, ControlError> {
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
                return Err(ControlError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(|source| ControlError::Bind {
                path: path.to_owned(),
                source,
            })?;
        }
        let listener = UnixListener::bind(path).map_err(|source| ControlError::Bind {
            path: path.to_owned(),
            source,
        })?;
        let server = ControlServer {
            path: path.to_owned(),
        };
        std::thread::Builder::new()
            .name("weft-control".to_owned())
            .spawn(move || serve(&listener, &state))
            .map_err(ControlError::Spawn)?;
        Ok(server)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // The serving thread keeps the listening fd until the process exits; the name goes now.
        let _ = std::fs::remove_file(&self.path);
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
    let mut line = String::new();
    BufReader::new(io::Read::take(&stream, MAX_REQUEST)).read_line(&mut line)?;
    let mut body = reply(line.trim(), state).to_string();
    body.push('\n');
    (&stream).write_all(body.as_bytes())?;
    Ok(())
}

/// The JSON reply to one request line (without its newline).
pub fn reply(request: &str, state: &ControlState) -> Value {
    match request {
        "stats" => stats(state),
        "routes" => routes(state),
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
    Value::Array(
        table
            .routes()
            .iter()
            .map(|r| {
                json!({
                    "subnet": r.subnet.to_string(),
                    "public_ip": r.peer.underlay().ip().to_string(),
                    "port": r.peer.underlay().port(),
                    "backend": r.peer.backend().as_str(),
                    "vtep_mac": r.peer.vtep_mac().map(|m| format_mac(&m)),
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
    use crate::route::{parse_peers, Backend, Local, RouteTable};
    use std::io::Read;

    fn state() -> ControlState {
        let local = Local {
            backend: Backend::Vxlan,
            port: 8472,
            vni: 1,
            vtep_mac: [0x0e, 0, 0, 0, 0, 1],
            public_ip: "192.168.250.1".parse().unwrap(),
            subnets: vec![],
        };
        let (entries, _) = parse_peers(
            "{\"subnet\": \"10.244.2.0/24\", \"public_ip\": \"192.168.250.2\", \"backend\": \"vxlan\", \"vtep_mac\": \"0e:00:00:00:00:02\"}\n\
             {\"subnet\": \"fd00:10:244:2::/64\", \"public_ip\": \"192.168.250.2\", \"backend\": \"vxlan\", \"vtep_mac\": \"0e:00:00:00:00:02\"}",
            "peers",
        );
        let (table, errors) = RouteTable::build(&local, &entries, None, "peers");
        assert!(errors.is_empty());
        table.peers()[0].counters().add_tx(2, 200);
        let a = Arc::new(PumpCounters::default());
        let b = Arc::new(PumpCounters::default());
        a.tun_rx_packets.add(1);
        b.tun_rx_packets.add(2);
        b.count_drop(DropReason::UnknownPeer);
        ControlState {
            routes: Arc::new(Routes::from_pointee(table)),
            counters: vec![a, b],
            driver: IoDriver::Poll,
            offloads: Offloads::ALL,
        }
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
        assert_eq!(v[1]["subnet"], "fd00:10:244:2::/64");
        assert!(reply("bogus", &state())["error"]
            .as_str()
            .unwrap()
            .contains("bogus"));
    }

    #[test]
    fn serves_over_a_unix_socket_and_refuses_a_live_one() {
        let dir = std::env::temp_dir().join(format!("wfp-control-{}", std::process::id()));
        let path = dir.join("sub").join("weft.sock");
        let server = ControlServer::bind(&path, state()).unwrap();
        let ask = |req: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            serde_json::from_str::<Value>(&out).unwrap()
        };
        assert_eq!(ask("stats\n")["threads"], 2);
        assert_eq!(ask("routes\n")[0]["public_ip"], "192.168.250.2");
        assert!(matches!(
            ControlServer::bind(&path, state()),
            Err(ControlError::InUse { .. })
        ));
        drop(server);
        assert!(!path.exists());
        // A stale socket file (nobody listening) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        let again = ControlServer::bind(&path, state()).unwrap();
        assert_eq!(ask("stats\n")["driver"], "poll");
        drop(again);
        // A regular file is never removed.
        std::fs::write(&path, b"x").unwrap();
        assert!(matches!(
            ControlServer::bind(&path, state()),
            Err(ControlError::NotASocket { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
