//! One HTTP exchange with a test's server (weftd's `/healthz`, `/readyz`, `/metrics`).
//!
//! Contract: [`exchange`] connects to `addr` from the calling thread's network namespace (run it
//! through [`crate::netns::Netns::run_inside`] for a server in a namespace), writes `request`
//! as given, and returns everything the server sent until it closed the connection, within
//! [`TIMEOUT`] per read; [`get`] is a `GET` of one path.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a connect or a read may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Writes `request` to `addr` and reads the response to the end.
pub fn exchange(addr: SocketAddr, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// `GET <path> HTTP/1.1` from `addr`: the raw response (status line, headers, body).
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: weft-test\r\n\r\n"),
    )
}
