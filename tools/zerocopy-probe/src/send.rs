//! The sender: GSO sends of `segments x seg_size` bytes for a while, in one of four ways.
//!
//! Contract: [`run`] is called on the sender's thread (already in its namespace), makes its own
//! connected socket, sends until the deadline or a stop signal, and returns what it counted
//! with its own thread's CPU time. Buffers lent to the kernel (zero-copy) are not touched
//! until their notification arrives; the payload is never rewritten anyway.

use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::notify::{ErrQueueEntry, Lent};
use crate::sock::{self, SendControl};
use crate::{cpu, testbed, uring};

/// How a burst goes to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// sendmsg with a UDP_SEGMENT cmsg from one reused buffer (what weftd does).
    Copy,
    /// SO_ZEROCOPY + sendmsg(MSG_ZEROCOPY), buffers held until the error-queue notification.
    MsgZerocopy,
    /// io_uring SENDMSG with the UDP_SEGMENT cmsg (copying), a few in flight.
    UringSend,
    /// io_uring SENDMSG_ZC with IORING_SEND_ZC_REPORT_USAGE, buffers held until the
    /// notification CQE.
    UringSendZc,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::MsgZerocopy => "msg-zerocopy",
            Mode::UringSend => "uring-send",
            Mode::UringSendZc => "uring-send-zc",
        }
    }
}

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct SendConfig {
    pub(crate) mode: Mode,
    pub(crate) src: SocketAddrV4,
    pub(crate) dst: SocketAddrV4,
    pub(crate) segments: u16,
    pub(crate) seg_size: u16,
    /// Buffers lent at once in the zero-copy modes.
    pub(crate) pool: usize,
    /// io_uring sends submitted and not yet completed.
    pub(crate) inflight: usize,
    pub(crate) sock_buf: usize,
    pub(crate) duration: Duration,
}

impl SendConfig {
    pub(crate) fn burst_len(&self) -> usize {
        usize::from(self.segments) * usize::from(self.seg_size)
    }
}

/// What the sender counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct TxReport {
    /// Bytes the kernel accepted (UDP payload).
    pub(crate) bytes: u64,
    /// Successful sends (bursts).
    pub(crate) sends: u64,
    /// The sending loop's time (to the deadline; collecting the last notifications after it
    /// is not counted).
    pub(crate) elapsed: Duration,
    /// The thread's user + system CPU time over the run.
    pub(crate) cpu: Duration,
    /// Zero-copy notifications read (error-queue entries, or notification CQEs).
    pub(crate) notifications: u64,
    /// Sends those notifications covered.
    pub(crate) notified_sends: u64,
    /// Sends covered by notifications that said "copied".
    pub(crate) copied_sends: u64,
    /// Sends refused with ENOBUFS / EAGAIN and tried again (or, io_uring, dropped).
    pub(crate) retries: u64,
}

/// Runs one sender on the calling thread.
pub(crate) fn run(cfg: &SendConfig) -> anyhow::Result<TxReport> {
    let fd = sock::udp_socket().context("socket")?;
    sock::set_buffers(fd.as_fd(), cfg.sock_buf).context("SO_SNDBUFFORCE/SO_RCVBUFFORCE")?;
    sock::set_timeouts(fd.as_fd(), Duration::from_millis(100)).context("SO_SNDTIMEO")?;
    sock::bind(fd.as_fd(), cfg.src).with_context(|| format!("bind {}", cfg.src))?;
    sock::connect(fd.as_fd(), cfg.dst).with_context(|| format!("connect {}", cfg.dst))?;
    if cfg.mode == Mode::MsgZerocopy {
        sock::set_zerocopy(fd.as_fd()).context("SO_ZEROCOPY")?;
    }
    let cpu0 = cpu::thread_time()?;
    let mut r = match cfg.mode {
        Mode::Copy => copy(fd.as_fd(), cfg)?,
        Mode::MsgZerocopy => msg_zerocopy(fd.as_fd(), cfg)?,
        Mode::UringSend => uring::send(fd.as_fd(), cfg, false)?,
        Mode::UringSendZc => uring::send(fd.as_fd(), cfg, true)?,
    };
    r.cpu = cpu::thread_time()? - cpu0;
    Ok(r)
}

/// A burst's payload (its content does not matter; a pattern makes captures readable).
pub(crate) fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Whether a send error means "try again later" (socket memory, send timeout).
pub(crate) fn is_transient(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN))
}

fn copy(fd: BorrowedFd<'_>, cfg: &SendConfig) -> anyhow::Result<TxReport> {
    let buf = payload(cfg.burst_len());
    let mut control = SendControl::udp_segment(cfg.seg_size);
    let mut r = TxReport::default();
    let start = Instant::now();
    while start.elapsed() < cfg.duration && !testbed::stopping() {
        match sock::send_gso(fd, &buf, &mut control, 0) {
            Ok(n) => {
                r.bytes += n as u64;
                r.sends += 1;
            }
            Err(e) if is_transient(&e) => r.retries += 1,
            Err(e) => return Err(e).context("sendmsg (UDP_SEGMENT)"),
        }
    }
    r.elapsed = start.elapsed();
    Ok(r)
}

/// How long the zero-copy sender waits for a notification before giving up on the kernel.
const NOTIFICATION_TIMEOUT: Duration = Duration::from_secs(5);

fn msg_zerocopy(fd: BorrowedFd<'_>, cfg: &SendConfig) -> anyhow::Result<TxReport> {
    let bufs: Vec<Vec<u8>> = (0..cfg.pool).map(|_| payload(cfg.burst_len())).collect();
    let mut control = SendControl::udp_segment(cfg.seg_size);
    let mut lent = Lent::new(cfg.pool);
    let mut r = TxReport::default();
    // The kernel numbers each successful MSG_ZEROCOPY send on a socket from 0 (sk_zckey); a
    // failed send takes no number (net/core/skbuff.c msg_zerocopy_put_abort).
    let mut next_id: u32 = 0;
    let mut other_errors = 0u64;
    let mut reap = |lent: &mut Lent, r: &mut TxReport| {
        sock::drain_error_queue(fd, |e| match e {
            ErrQueueEntry::ZeroCopy(z) => {
                r.notifications += 1;
                r.notified_sends += z.len();
                if z.copied {
                    r.copied_sends += z.len();
                }
                lent.complete(&z);
            }
            ErrQueueEntry::Other { .. } => other_errors += 1,
        })
        .context("recvmsg(MSG_ERRQUEUE)")
    };
    let start = Instant::now();
    let mut waited_since: Option<Instant> = None;
    while start.elapsed() < cfg.duration && !testbed::stopping() {
        reap(&mut lent, &mut r)?;
        let Some(slot) = lent.free_slot() else {
            let since = *waited_since.get_or_insert_with(Instant::now);
            if since.elapsed() > NOTIFICATION_TIMEOUT {
                bail!(
                    "no MSG_ZEROCOPY notification for {NOTIFICATION_TIMEOUT:?} with {} buffers lent",
                    lent.outstanding()
                );
            }
            sock::wait_error_queue(fd, Duration::from_millis(100)).context("poll(POLLERR)")?;
            continue;
        };
        waited_since = None;
        match sock::send_gso(fd, &bufs[slot], &mut control, libc::MSG_ZEROCOPY) {
            Ok(n) => {
                lent.lend(slot, next_id);
                next_id = next_id.wrapping_add(1);
                r.bytes += n as u64;
                r.sends += 1;
            }
            Err(e) if is_transient(&e) => {
                // Socket option memory (optmem_max) or send buffer exhausted: let
                // notifications free some, then try again.
                r.retries += 1;
                if lent.outstanding() > 0 {
                    sock::wait_error_queue(fd, Duration::from_millis(10))
                        .context("poll(POLLERR)")?;
                } else {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            Err(e) => return Err(e).context("sendmsg (UDP_SEGMENT, MSG_ZEROCOPY)"),
        }
    }
    r.elapsed = start.elapsed();
    // Collect the outstanding notifications (the buffers must outlive the kernel's use).
    let drain_start = Instant::now();
    while lent.outstanding() > 0 {
        if drain_start.elapsed() > NOTIFICATION_TIMEOUT {
            // Leak the buffers rather than free pages the kernel may still read.
            std::mem::forget(bufs);
            bail!(
                "{} MSG_ZEROCOPY notifications missing after {NOTIFICATION_TIMEOUT:?}",
                lent.outstanding()
            );
        }
        sock::wait_error_queue(fd, Duration::from_millis(100)).context("poll(POLLERR)")?;
        reap(&mut lent, &mut r)?;
    }
    if other_errors > 0 {
        eprintln!("zerocopy-probe: {other_errors} non-zerocopy entries on the error queue");
    }
    Ok(r)
}
