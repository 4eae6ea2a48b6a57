//! The io_uring sender: `SENDMSG` (copying) or `SENDMSG_ZC` with
//! `IORING_SEND_ZC_REPORT_USAGE`, each with the UDP_SEGMENT cmsg.
//!
//! Contract: every message (buffer, iovec, msghdr, control area) lives in one slot of a boxed
//! slice allocated before the first submission, so its address never changes. A slot is the
//! kernel's from its submission until its send CQE has arrived and, for `SENDMSG_ZC`, its
//! notification CQE (`IORING_CQE_F_NOTIF`) too; only then is it submitted again. If the
//! kernel does not give every slot back after the run, the slots and the ring are leaked,
//! never freed under it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use io_uring::{cqueue, opcode, types, IoUring};

use crate::notify::{uring_notif_copied, IORING_SEND_ZC_REPORT_USAGE};
use crate::send::{payload, SendConfig, TxReport};
use crate::sock::{self, SendControl};
use crate::testbed;

/// Submission queue entries (more than any pool or in-flight setting needs).
const RING_ENTRIES: u32 = 256;
/// How long the sender waits for the kernel to give every slot back after the run.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One message and what the kernel still owes for it.
#[derive(Debug)]
struct Slot {
    buf: Vec<u8>,
    iov: libc::iovec,
    hdr: libc::msghdr,
    control: SendControl,
    /// Submitted, send CQE not yet seen.
    send_pending: bool,
    /// A notification CQE is still to come (SENDMSG_ZC).
    notif_pending: bool,
}

impl Slot {
    fn busy(&self) -> bool {
        self.send_pending || self.notif_pending
    }
}

/// Sends through io_uring until the deadline; `zc` selects `SENDMSG_ZC`.
pub(crate) fn send(fd: BorrowedFd<'_>, cfg: &SendConfig, zc: bool) -> anyhow::Result<TxReport> {
    let mut ring = IoUring::new(RING_ENTRIES).context("io_uring_setup")?;
    let n_slots = if zc { cfg.pool } else { cfg.inflight };
    let mut slots: Box<[Slot]> = (0..n_slots)
        .map(|_| Slot {
            buf: payload(cfg.burst_len()),
            iov: libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
            // SAFETY: all-zero is a valid msghdr; it is filled in below.
            hdr: unsafe { std::mem::zeroed() },
            control: SendControl::udp_segment(cfg.seg_size),
            send_pending: false,
            notif_pending: false,
        })
        .collect();
    // The slice never moves from here on: point each header at its own slot.
    for s in slots.iter_mut() {
        s.iov.iov_base = s.buf.as_mut_ptr().cast();
        s.iov.iov_len = s.buf.len();
        // SAFETY: iov and control are fields of the same boxed slot, which lives (and stays
        // put) as long as `slots`; the header is only used while a slot is submitted.
        s.hdr = unsafe { sock::msghdr(&mut s.iov, &mut s.control.bytes) };
    }
    let target = types::Fd(fd.as_raw_fd());
    let mut r = TxReport::default();
    let mut sending = 0usize;
    let mut first_error: Option<io::Error> = None;
    let start = Instant::now();
    let mut drain_start: Option<Instant> = None;
    loop {
        let running =
            start.elapsed() < cfg.duration && !testbed::stopping() && first_error.is_none();
        if running {
            for (i, s) in slots.iter_mut().enumerate() {
                if sending >= cfg.inflight {
                    break;
                }
                if s.busy() {
                    continue;
                }
                let entry = if zc {
                    opcode::SendMsgZc::new(target, &s.hdr)
                        .ioprio(IORING_SEND_ZC_REPORT_USAGE)
                        .build()
                } else {
                    opcode::SendMsg::new(target, &s.hdr).build()
                }
                .user_data(i as u64);
                // SAFETY: the entry points at s.hdr, which points into the same slot; the
                // slot is marked busy and neither moved nor reused until the kernel's
                // completions for it (send CQE, and notification CQE for SENDMSG_ZC) arrive.
                if unsafe { ring.submission().push(&entry) }.is_err() {
                    break;
                }
                s.send_pending = true;
                s.notif_pending = zc;
                sending += 1;
            }
        } else {
            if r.elapsed.is_zero() {
                r.elapsed = start.elapsed();
            }
            if !slots.iter().any(Slot::busy) {
                break;
            }
            let since = *drain_start.get_or_insert_with(Instant::now);
            if since.elapsed() > DRAIN_TIMEOUT {
                let owed = slots.iter().filter(|s| s.busy()).count();
                // Leak the ring and the slots rather than free memory the kernel may use.
                std::mem::forget(slots);
                std::mem::forget(ring);
                bail!("io_uring: {owed} sends not given back after {DRAIN_TIMEOUT:?}");
            }
        }
        let ts = types::Timespec::from(Duration::from_millis(100));
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => {
                // Submitted slots may still be the kernel's: leak them with the ring.
                std::mem::forget(slots);
                std::mem::forget(ring);
                return Err(e).context("io_uring_enter");
            }
        }
        for cqe in ring.completion() {
            let Some(s) = usize::try_from(cqe.user_data())
                .ok()
                .and_then(|i| slots.get_mut(i))
            else {
                continue;
            };
            let (res, flags) = (cqe.result(), cqe.flags());
            if cqueue::notif(flags) {
                s.notif_pending = false;
                r.notifications += 1;
                r.notified_sends += 1;
                if uring_notif_copied(res) {
                    r.copied_sends += 1;
                }
                continue;
            }
            s.send_pending = false;
            sending -= 1;
            if !cqueue::more(flags) {
                // No notification follows (a failed SENDMSG_ZC, or SENDMSG).
                s.notif_pending = false;
            }
            if res >= 0 {
                r.bytes += res as u64;
                r.sends += 1;
            } else {
                let e = io::Error::from_raw_os_error(-res);
                if crate::send::is_transient(&e) {
                    r.retries += 1;
                } else if first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        let op = if zc { "SENDMSG_ZC" } else { "SENDMSG" };
        return Err(e).with_context(|| format!("io_uring {op} (UDP_SEGMENT)"));
    }
    Ok(r)
}
