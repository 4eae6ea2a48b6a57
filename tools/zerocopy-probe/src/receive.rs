//! The receiver: one UDP socket with UDP_GRO, counting what arrives until told to stop.
//!
//! Contract: [`run`] is called on the receiver's thread (already in its namespace); it binds,
//! reports readiness through `ready`, receives into one 64 KiB buffer until `stop` is set, and
//! returns its counts with its own thread's CPU time.

use std::net::SocketAddrV4;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;

use crate::{cpu, sock};

/// The largest UDP datagram (a GRO super-datagram is no larger).
const MAX_DATAGRAM: usize = 65_536;

/// What the receiver counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct RxReport {
    /// UDP payload bytes.
    pub(crate) bytes: u64,
    /// Datagrams on the wire (segments: a GRO receive of n bytes with segment size s is
    /// ceil(n / s) of them).
    pub(crate) datagrams: u64,
    /// recvmsg calls that returned data.
    pub(crate) receives: u64,
    /// The thread's user + system CPU time from bind to stop.
    pub(crate) cpu: std::time::Duration,
    /// Datagrams the receiver's namespace dropped for a full socket buffer meanwhile
    /// (`Udp: RcvbufErrors` of its /proc/net/snmp; counts GRO super-datagrams as they were
    /// queued, not wire datagrams).
    pub(crate) rcvbuf_errors: u64,
}

/// `Udp: RcvbufErrors` of the calling thread's network namespace.
fn rcvbuf_errors() -> anyhow::Result<u64> {
    let path = "/proc/thread-self/net/snmp";
    let text = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    snmp_counter(&text, "Udp", "RcvbufErrors")
        .with_context(|| format!("{path}: no Udp RcvbufErrors"))
}

/// Counter `name` of protocol `proto` in /proc/net/snmp text (a header line of names, then a
/// line of values, both starting with `proto:`).
pub(crate) fn snmp_counter(text: &str, proto: &str, name: &str) -> Option<u64> {
    let tag = format!("{proto}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&tag));
    let names = lines.next()?;
    let values = lines.next()?;
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Receives on `addr` until `stop`.
pub(crate) fn run(
    addr: SocketAddrV4,
    sock_buf: usize,
    stop: &AtomicBool,
    ready: mpsc::Sender<()>,
) -> anyhow::Result<RxReport> {
    let fd = sock::udp_socket().context("socket")?;
    sock::set_buffers(fd.as_fd(), sock_buf).context("SO_RCVBUFFORCE/SO_SNDBUFFORCE")?;
    sock::set_int(fd.as_fd(), libc::SOL_UDP, libc::UDP_GRO, 1).context("UDP_GRO")?;
    sock::set_timeouts(fd.as_fd(), Duration::from_millis(50)).context("SO_RCVTIMEO")?;
    sock::bind(fd.as_fd(), addr).with_context(|| format!("bind {addr}"))?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut control = sock::RecvControl::new();
    let mut r = RxReport::default();
    let cpu0 = cpu::thread_time()?;
    let drops0 = rcvbuf_errors()?;
    // The main thread may have given up waiting; then nobody sends and stop comes next.
    let _ = ready.send(());
    while !stop.load(Ordering::Relaxed) {
        match sock::recv_gro(fd.as_fd(), &mut buf, &mut control) {
            Ok((n, seg)) => {
                r.bytes += n as u64;
                r.receives += 1;
                r.datagrams += match seg {
                    Some(s) if s > 0 => n.div_ceil(s) as u64,
                    _ => 1,
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("recvmsg (UDP_GRO)"),
        }
    }
    r.cpu = cpu::thread_time()? - cpu0;
    r.rcvbuf_errors = rcvbuf_errors()?.saturating_sub(drops0);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_udp_counter() {
        let s = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                 Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                 Udp: 2718 0 111382 115061 111380 0\n\
                 UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                 UdpLite: 0 0 0 0 0 0\n";
        assert_eq!(snmp_counter(s, "Udp", "RcvbufErrors"), Some(111380));
        assert_eq!(snmp_counter(s, "Udp", "Nope"), None);
        assert_eq!(snmp_counter(s, "Tcp", "RcvbufErrors"), None);
    }
}
