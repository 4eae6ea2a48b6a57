//! The io_uring driver (not built yet).

use std::io;
use std::sync::Arc;

use super::dataplane::Dataplane;
use super::Stop;
use crate::route::Routes;
use crate::tun::TunQueue;
use crate::udp::UdpSocket;

/// Runs one pump thread on an io_uring until `stop` is requested.
pub fn run(
    _dp: Dataplane,
    _tun: &TunQueue,
    _udp: &UdpSocket,
    _routes: &Arc<Routes>,
    _stop: &Stop,
) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the io_uring driver is not built yet",
    ))
}

/// Whether the io_uring driver can run here.
pub fn probe() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the io_uring driver is not built yet",
    ))
}
