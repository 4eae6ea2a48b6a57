//! The underlay UDP socket of one pump thread: SO_REUSEPORT, large buffers, GSO send, GRO
//! receive.
//!
//! Contract: [`UdpSocket::bind`] makes an IPv4 or IPv6 socket (IPv6 ones are `IPV6_V6ONLY`,
//! so a v4 and a v6 socket can share a port, unless [`UdpConfig::dual_stack`]: then one IPv6
//! socket bound to `[::]` carries both families, IPv4 peers as v4-mapped addresses, which
//! [`UdpSocket::send_gso`] and [`UdpSocket::wire_addr`] make and receives turn back into
//! IPv4) with `SO_REUSEPORT` (N pump threads bind the same
//! address and the kernel spreads flows over them), buffers forced to the size asked for
//! (`SO_RCVBUFFORCE` / `SO_SNDBUFFORCE`, falling back to the capped `SO_RCVBUF` / `SO_SNDBUF`
//! without CAP_NET_ADMIN), and `UDP_GRO` on.
//!
//! [`UdpSocket::send_gso`] sends up to [`UDP_MAX_SEGMENTS`] equal segments (the last may be
//! shorter) with one `sendmsg` carrying a UDP_SEGMENT cmsg. When the kernel refuses a GSO send
//! with `EIO` (no checksum offload on the route's device) or `EINVAL`, the socket logs once,
//! counts it, stays in fallback mode for good and sends one datagram per segment; a kernel
//! without UDP_SEGMENT starts in fallback mode. [`UdpSocket::recv_gro`] returns a datagram or
//! a GRO batch and its segment size (the whole length when no UDP_GRO cmsg came). Counters are
//! atomics so the control plane can read them while the pump runs.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::sys::msg::{self, RecvBatch};
use crate::sys::{io as sysio, sockopt};

pub use crate::sys::sockopt::UDP_MAX_SEGMENTS;

use crate::model::{MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};

/// How many segments of `segment_size` bytes one GSO send may carry: at most
/// [`UDP_MAX_SEGMENTS`], and no more than fit one datagram's length field (46 of 1400 bytes
/// over IPv4). 0 when `segment_size` is 0 or above 65535.
pub fn max_segments(segment_size: usize, ipv4: bool) -> usize {
    if segment_size == 0 || segment_size > usize::from(u16::MAX) {
        return 0;
    }
    let payload = if ipv4 {
        MAX_UDP_PAYLOAD_V4
    } else {
        MAX_UDP_PAYLOAD_V6
    };
    (payload / segment_size).min(UDP_MAX_SEGMENTS)
}

#[cfg(test)]
mod tests;

/// How to set a socket up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpConfig {
    /// Receive buffer to ask for, in bytes.
    pub recv_buffer: usize,
    /// Send buffer to ask for, in bytes.
    pub send_buffer: usize,
    /// Set `SO_REUSEPORT` (one socket per pump thread on the same address).
    pub reuse_port: bool,
    /// Turn `UDP_GRO` on.
    pub gro: bool,
    /// Make the socket non-blocking.
    pub nonblocking: bool,
    /// An IPv6 socket that carries IPv4 too (`IPV6_V6ONLY` off; bind it to `[::]`): the
    /// underlay of a dual-stack node.
    pub dual_stack: bool,
}

impl Default for UdpConfig {
    /// 8 MiB buffers (wireguard-go uses 7 MiB), SO_REUSEPORT, GRO on, blocking.
    fn default() -> Self {
        UdpConfig {
            recv_buffer: 8 << 20,
            send_buffer: 8 << 20,
            reuse_port: true,
            gro: true,
            nonblocking: false,
            dual_stack: false,
        }
    }
}

/// A UDP set-up step or I/O call that failed.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    /// socket(2) failed.
    #[error("creating a UDP socket for {addr} failed: {source}")]
    Socket {
        /// The address it was for.
        addr: SocketAddr,
        /// The error from socket(2).
        #[source]
        source: io::Error,
    },
    /// A socket option could not be set.
    #[error("setting {option} on the UDP socket for {addr} failed: {source}")]
    SetOption {
        /// The option, e.g. "SO_REUSEPORT".
        option: &'static str,
        /// The address the socket is for.
        addr: SocketAddr,
        /// The error from setsockopt.
        #[source]
        source: io::Error,
    },
    /// A socket passed by another process (an upgrade) is not the one expected.
    #[error("taking over the UDP socket for {addr} failed: {reason}")]
    Adopt {
        /// The address it should be bound to.
        addr: SocketAddr,
        /// What is wrong with it.
        reason: String,
    },
    /// bind(2) failed.
    #[error(
        "binding UDP {addr} failed: {source} (is the port taken by a socket without SO_REUSEPORT, \
         or the address not on this host?)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error from bind(2).
        #[source]
        source: io::Error,
    },
    /// The segment size or count is not one UDP_SEGMENT can carry.
    #[error(
        "GSO send of {len} bytes in segments of {segment_size}: needs 1..=65535 bytes per segment, \
         at most {UDP_MAX_SEGMENTS} segments and at most {MAX_UDP_PAYLOAD_V4} bytes over IPv4 \
         ({MAX_UDP_PAYLOAD_V6} over IPv6); see max_segments"
    )]
    BadSegments {
        /// Bytes to send.
        len: usize,
        /// The segment size asked for.
        segment_size: usize,
    },
    /// sendmsg failed (not an offload refusal: those fall back instead).
    #[error("UDP send to {dst} failed: {source}")]
    Send {
        /// The destination.
        dst: SocketAddr,
        /// The error from sendmsg.
        #[source]
        source: io::Error,
    },
    /// recvmsg / recvmmsg failed.
    #[error("UDP receive on {local} failed: {source}")]
    Recv {
        /// The local address.
        local: SocketAddr,
        /// The error from the syscall.
        #[source]
        source: io::Error,
    },
    /// The datagram was larger than the buffer and was cut (`MSG_TRUNC`).
    #[error(
        "UDP datagram from {src:?} truncated to the {capacity}-byte buffer (use 64 KiB with GRO)"
    )]
    Truncated {
        /// The sender, if known.
        src: Option<SocketAddr>,
        /// The buffer size.
        capacity: usize,
    },
    /// The control messages were cut (`MSG_CTRUNC`), so the GRO segment size is unknown.
    #[error(
        "UDP receive on {local}: control messages truncated (MSG_CTRUNC), segment size unknown"
    )]
    ControlTruncated {
        /// The local address.
        local: SocketAddr,
    },
    /// The kernel gave a sender address that is neither IPv4 nor IPv6.
    #[error("UDP receive on {local}: the sender address is not IPv4 or IPv6")]
    NoSource {
        /// The local address.
        local: SocketAddr,
    },
}

impl UdpError {
    /// Whether this is a non-blocking socket having nothing to do (`EAGAIN`).
    pub fn is_would_block(&self) -> bool {
        match self {
            UdpError::Send { source, .. } | UdpError::Recv { source, .. } => {
                source.kind() == io::ErrorKind::WouldBlock
            }
            _ => false,
        }
    }
}

/// What a receive got: `len` bytes from `src`, made of segments of `segment_size` bytes (the
/// last may be shorter). A plain datagram has `segment_size == len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes in the buffer.
    pub len: usize,
    /// The GRO segment size (the whole length when there was no UDP_GRO cmsg).
    pub segment_size: usize,
    /// The sender.
    pub src: SocketAddr,
}

impl Datagram {
    /// How many segments the buffer holds.
    pub fn segments(&self) -> usize {
        if self.segment_size == 0 {
            1
        } else {
            self.len.div_ceil(self.segment_size).max(1)
        }
    }
}

/// Buffer sizes the kernel granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF` as read back (the kernel doubles what was set, for its bookkeeping).
    pub recv: usize,
    /// `SO_SNDBUF` as read back.
    pub send: usize,
    /// Whether the FORCE options worked (else the values are capped by `net.core.*mem_max`).
    pub forced: bool,
}

/// One pump thread's UDP socket.
#[derive(Debug)]
pub struct UdpSocket {
    socket: Socket,
    local: SocketAddr,
    buffers: BufferSizes,
    gro: bool,
    gso: AtomicBool,
    gso_fallback_sends: AtomicU64,
}

impl UdpSocket {
    /// Creates a socket for `addr`'s family and binds it, set up as `config` says.
    pub fn bind(addr: SocketAddr, config: &UdpConfig) -> Result<UdpSocket, UdpError> {
        let domain = Domain::for_address(addr);
        let socket = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))
            .map_err(|source| UdpError::Socket { addr, source })?;
        let opt = |option: &'static str| {
            move |source| UdpError::SetOption {
                option,
                addr,
                source,
            }
        };
        if addr.is_ipv6() {
            socket
                .set_only_v6(!config.dual_stack)
                .map_err(opt("IPV6_V6ONLY"))?;
        }
        if config.reuse_port {
            socket.set_reuse_port(true).map_err(opt("SO_REUSEPORT"))?;
        }
        let forced_recv = set_buffer(&socket, libc::SO_RCVBUFFORCE, config.recv_buffer)
            .or_else(|_| {
                socket
                    .set_recv_buffer_size(config.recv_buffer)
                    .map(|()| false)
            })
            .map_err(opt("SO_RCVBUF"))?;
        let forced_send = set_buffer(&socket, libc::SO_SNDBUFFORCE, config.send_buffer)
            .or_else(|_| {
                socket
                    .set_send_buffer_size(config.send_buffer)
                    .map(|()| false)
            })
            .map_err(opt("SO_SNDBUF"))?;
        let buffers = BufferSizes {
            recv: socket
                .recv_buffer_size()
                .map_err(opt("SO_RCVBUF (read back)"))?,
            send: socket
                .send_buffer_size()
                .map_err(opt("SO_SNDBUF (read back)"))?,
            forced: forced_recv && forced_send,
        };
        let gro =
            config.gro && sockopt::set_int(socket.as_fd(), libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        if config.gro && !gro {
            tracing::warn!(%addr, "UDP_GRO refused by the kernel: receiving one datagram per call");
        }
        // The kernel knows UDP_SEGMENT when it can read the option back (Linux 4.18+).
        let gso = sockopt::get_int(socket.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT).is_ok();
        if !gso {
            tracing::warn!(%addr, "UDP_SEGMENT unknown to the kernel: sending one datagram per segment");
        }
        socket
            .bind(&SockAddr::from(addr))
            .map_err(|source| UdpError::Bind { addr, source })?;
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(addr);
        if config.nonblocking {
            socket.set_nonblocking(true).map_err(opt("O_NONBLOCK"))?;
        }
        Ok(UdpSocket {
            socket,
            local,
            buffers,
            gro,
            gso: AtomicBool::new(gso),
            gso_fallback_sends: AtomicU64::new(0),
        })
    }

    /// Takes over a socket another process passed us (an upgrade handover): refused unless
    /// it is a UDP socket bound to `addr`. UDP_GRO and UDP_SEGMENT are read back from it, so
    /// it runs as its previous owner set it up (buffers, SO_REUSEPORT group and its BPF
    /// program, GRO all stay with the socket).
    pub fn adopt(fd: std::os::fd::OwnedFd, addr: SocketAddr) -> Result<UdpSocket, UdpError> {
        let adopt_err = |reason: String| UdpError::Adopt { addr, reason };
        let socket = Socket::from(fd);
        match socket.r#type() {
            Ok(t) if t == Type::DGRAM => {}
            Ok(_) => return Err(adopt_err("not a datagram socket".to_owned())),
            Err(e) => return Err(adopt_err(format!("not a socket ({e})"))),
        }
        match socket.protocol() {
            Ok(Some(p)) if p == Protocol::UDP => {}
            Ok(_) => return Err(adopt_err("not a UDP socket".to_owned())),
            Err(e) => return Err(adopt_err(format!("reading SO_PROTOCOL: {e}"))),
        }
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| adopt_err("not bound to an IP address".to_owned()))?;
        if local != addr {
            return Err(adopt_err(format!("bound to {local}")));
        }
        let opt = |option: &'static str| {
            move |source| UdpError::SetOption {
                option,
                addr,
                source,
            }
        };
        let buffers = BufferSizes {
            recv: socket
                .recv_buffer_size()
                .map_err(opt("SO_RCVBUF (read back)"))?,
            send: socket
                .send_buffer_size()
                .map_err(opt("SO_SNDBUF (read back)"))?,
            forced: false,
        };
        let gro =
            sockopt::get_int(socket.as_fd(), libc::SOL_UDP, libc::UDP_GRO).is_ok_and(|v| v != 0);
        let gso = sockopt::get_int(socket.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT).is_ok();
        Ok(UdpSocket {
            socket,
            local,
            buffers,
            gro,
            gso: AtomicBool::new(gso),
            gso_fallback_sends: AtomicU64::new(0),
        })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// `dst` as this socket must be given it: an IPv4 address as v4-mapped IPv6 on an IPv6
    /// socket (a dual-stack one; an `IPV6_V6ONLY` socket refuses it with `ENETUNREACH`).
    pub fn wire_addr(&self, dst: SocketAddr) -> SocketAddr {
        match dst {
            SocketAddr::V4(v4) if self.local.is_ipv6() => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }

    /// The buffer sizes the kernel granted.
    pub fn buffers(&self) -> BufferSizes {
        self.buffers
    }

    /// Whether UDP_GRO is on.
    pub fn gro_enabled(&self) -> bool {
        self.gro
    }

    /// Whether sends still use UDP_SEGMENT (false after a fallback, or if never supported).
    pub fn gso_enabled(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Multi-segment sends done one datagram per segment because GSO was off or refused.
    pub fn gso_fallback_sends(&self) -> u64 {
        self.gso_fallback_sends.load(Ordering::Relaxed)
    }

    /// Turns GSO off for good (e.g. an operator's switch), as a refused send would.
    pub fn disable_gso(&self) {
        self.gso.store(false, Ordering::Relaxed);
    }

    /// Makes the socket non-blocking (or blocking again).
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), UdpError> {
        sysio::set_nonblocking(self.socket.as_fd(), nonblocking).map_err(|source| {
            UdpError::SetOption {
                option: "O_NONBLOCK",
                addr: self.local,
                source,
            }
        })
    }

    /// Sends `buf` to `dst` as datagrams of `segment_size` bytes (the last may be shorter): one
    /// `sendmsg` with UDP_SEGMENT when GSO works, else one `sendmsg` per segment. Returns the
    /// bytes sent. `buf` may hold at most [`max_segments`] segments; a segment larger than the
    /// path MTU allows is `EMSGSIZE` (a [`UdpError::Send`], not a fallback). In per-segment mode an error after the first segment ends the send early and
    /// returns the bytes sent so far (UDP may drop anyway); an error on the first is returned.
    pub fn send_gso(
        &self,
        dst: SocketAddr,
        buf: &[u8],
        segment_size: usize,
    ) -> Result<usize, UdpError> {
        let bad = || UdpError::BadSegments {
            len: buf.len(),
            segment_size,
        };
        let size = u16::try_from(segment_size).map_err(|_| bad())?;
        let max_payload = if dst.is_ipv4() {
            MAX_UDP_PAYLOAD_V4
        } else {
            MAX_UDP_PAYLOAD_V6
        };
        if size == 0
            || buf.len().div_ceil(segment_size) > UDP_MAX_SEGMENTS
            || buf.len() > max_payload
        {
            return Err(bad());
        }
        let fd = self.socket.as_fd();
        let to = self.wire_addr(dst);
        if buf.len() <= segment_size {
            return msg::send_to(fd, buf, to, None)
                .map_err(|source| UdpError::Send { dst, source });
        }
        if self.gso_enabled() {
            match msg::send_to(fd, buf, to, Some(size)) {
                Ok(n) => return Ok(n),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    if self.gso.swap(false, Ordering::Relaxed) {
                        tracing::warn!(
                            local = %self.local,
                            %dst,
                            error = %e,
                            "UDP GSO send refused; sending one datagram per segment from now on"
                        );
                    }
                }
                Err(source) => return Err(UdpError::Send { dst, source }),
            }
        }
        self.gso_fallback_sends.fetch_add(1, Ordering::Relaxed);
        let mut sent = 0;
        for segment in buf.chunks(segment_size) {
            match msg::send_to(fd, segment, to, None) {
                Ok(n) => sent += n,
                Err(_) if sent > 0 => break,
                Err(source) => return Err(UdpError::Send { dst, source }),
            }
        }
        Ok(sent)
    }

    /// Receives one datagram or GRO batch into `buf` (give 64 KiB with GRO on).
    pub fn recv_gro(&self, buf: &mut [u8]) -> Result<Datagram, UdpError> {
        let local = self.local;
        let meta = msg::recv_from(self.socket.as_fd(), buf)
            .map_err(|source| UdpError::Recv { local, source })?;
        self.datagram(&meta, buf.len())
    }

    /// Receives up to `batch.capacity()` datagrams or GRO batches with one `recvmmsg`; read
    /// them with [`UdpSocket::batch_datagram`]. Returns how many came.
    pub fn recv_gro_batch(&self, batch: &mut RecvBatch) -> Result<usize, UdpError> {
        batch
            .recv(self.socket.as_fd())
            .map_err(|source| UdpError::Recv {
                local: self.local,
                source,
            })
    }

    /// The `i`th entry of a batch filled by [`UdpSocket::recv_gro_batch`], checked as
    /// `recv_gro` checks: its bytes and what they are.
    pub fn batch_datagram<'b>(
        &self,
        batch: &'b RecvBatch,
        i: usize,
    ) -> Option<Result<(&'b [u8], Datagram), UdpError>> {
        let (bytes, meta) = batch.get(i)?;
        Some(self.datagram(meta, batch.slot_len()).map(|d| (bytes, d)))
    }

    fn datagram(&self, meta: &msg::RecvMeta, capacity: usize) -> Result<Datagram, UdpError> {
        let local = self.local;
        if meta.truncated {
            return Err(UdpError::Truncated {
                src: meta.src,
                capacity,
            });
        }
        if meta.control_truncated {
            return Err(UdpError::ControlTruncated { local });
        }
        let src = meta.src.ok_or(UdpError::NoSource { local })?;
        let segment_size = meta.gro_segment_size.map_or(meta.len, usize::from);
        Ok(Datagram {
            len: meta.len,
            segment_size: if segment_size == 0 {
                meta.len
            } else {
                segment_size
            },
            src,
        })
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Sets a FORCE buffer option (needs CAP_NET_ADMIN); `Ok(true)` when it took.
fn set_buffer(socket: &Socket, option: libc::c_int, size: usize) -> io::Result<bool> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    sockopt::set_int(socket.as_fd(), libc::SOL_SOCKET, option, size).map(|()| true)
}
