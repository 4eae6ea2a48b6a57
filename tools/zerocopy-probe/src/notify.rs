//! Zero-copy completion notifications, pure: the `sock_extended_err` of a MSG_ZEROCOPY
//! notification, the `res` of an io_uring notification CQE, and the pool of buffers lent to
//! the kernel until their notification arrives.
//!
//! Contract: no syscalls. [`ZcRange::parse`] reads the bytes of an `IP_RECVERR` cmsg and
//! never panics; [`Lent`] frees a buffer only when a notification covers its send id.

/// `SO_EE_ORIGIN_ZEROCOPY`, linux/errqueue.h: `ee_origin` of a MSG_ZEROCOPY notification.
pub(crate) const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`, linux/errqueue.h: set in `ee_code` when the kernel copied
/// the data after all (net/core/skbuff.c `__msg_zerocopy_callback`).
pub(crate) const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;
/// `IORING_SEND_ZC_REPORT_USAGE`, linux/io_uring.h: in the SQE's `ioprio` of a SEND_ZC /
/// SENDMSG_ZC, asks the notification CQE to say whether the data was copied.
pub(crate) const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`, linux/io_uring.h: in a notification CQE's `res` when the
/// kernel copied (or could not use zero-copy at all; io_uring/notif.c `io_notif_tw_complete`).
pub(crate) const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

/// `sizeof(struct sock_extended_err)`, linux/errqueue.h.
const SOCK_EXTENDED_ERR_LEN: usize = 16;

/// Field offsets of `struct sock_extended_err`.
mod field {
    use std::ops::Range;
    pub(super) const EE_ERRNO: Range<usize> = 0..4;
    pub(super) const EE_ORIGIN: usize = 4;
    pub(super) const EE_CODE: usize = 6;
    pub(super) const EE_INFO: Range<usize> = 8..12;
    pub(super) const EE_DATA: Range<usize> = 12..16;
}

/// One MSG_ZEROCOPY notification: sends `first..=last` (ids counted per socket from 0, with
/// wrap-around) completed; `copied` when the kernel says it copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ZcRange {
    pub(crate) first: u32,
    pub(crate) last: u32,
    pub(crate) copied: bool,
}

/// What an `IP_RECVERR` cmsg held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrQueueEntry {
    /// A zero-copy notification.
    ZeroCopy(ZcRange),
    /// Another error (ICMP, local) with its errno: not ours to interpret.
    Other { errno: u32, origin: u8 },
}

impl ZcRange {
    /// Reads a `sock_extended_err` (the data of an `IP_RECVERR` / `IPV6_RECVERR` cmsg).
    pub(crate) fn parse(data: &[u8]) -> Result<ErrQueueEntry, &'static str> {
        if data.len() < SOCK_EXTENDED_ERR_LEN {
            return Err("IP_RECVERR cmsg shorter than struct sock_extended_err");
        }
        let u32_at = |r: std::ops::Range<usize>| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&data[r]);
            u32::from_ne_bytes(b)
        };
        let errno = u32_at(field::EE_ERRNO);
        let origin = data[field::EE_ORIGIN];
        if origin != SO_EE_ORIGIN_ZEROCOPY || errno != 0 {
            return Ok(ErrQueueEntry::Other { errno, origin });
        }
        Ok(ErrQueueEntry::ZeroCopy(ZcRange {
            first: u32_at(field::EE_INFO),
            last: u32_at(field::EE_DATA),
            copied: data[field::EE_CODE] & SO_EE_CODE_ZEROCOPY_COPIED != 0,
        }))
    }

    /// How many sends the range covers.
    pub(crate) fn len(&self) -> u64 {
        u64::from(self.last.wrapping_sub(self.first)) + 1
    }

    /// Whether send `id` is in the range (wrap-around aware).
    pub(crate) fn contains(&self, id: u32) -> bool {
        id.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }
}

/// Whether an io_uring notification CQE's `res` says the data was copied.
pub(crate) fn uring_notif_copied(res: i32) -> bool {
    res as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0
}

/// Buffers lent to the kernel: slot `i` holds the id of the send still using buffer `i`.
#[derive(Debug)]
pub(crate) struct Lent {
    slots: Vec<Option<u32>>,
    outstanding: usize,
}

impl Lent {
    /// `n` free buffers.
    pub(crate) fn new(n: usize) -> Lent {
        Lent {
            slots: vec![None; n],
            outstanding: 0,
        }
    }

    /// A buffer no send uses.
    pub(crate) fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// Buffer `slot` is used by send `id` until a notification covers it.
    pub(crate) fn lend(&mut self, slot: usize, id: u32) {
        debug_assert!(self.slots[slot].is_none());
        self.slots[slot] = Some(id);
        self.outstanding += 1;
    }

    /// Frees the buffers whose sends `r` covers; returns how many.
    pub(crate) fn complete(&mut self, r: &ZcRange) -> usize {
        let mut freed = 0;
        for s in &mut self.slots {
            if s.is_some_and(|id| r.contains(id)) {
                *s = None;
                freed += 1;
            }
        }
        self.outstanding -= freed;
        freed
    }

    /// Buffers still lent.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serr(errno: u32, origin: u8, code: u8, info: u32, data: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&errno.to_ne_bytes());
        b.extend_from_slice(&[origin, 0, code, 0]);
        b.extend_from_slice(&info.to_ne_bytes());
        b.extend_from_slice(&data.to_ne_bytes());
        // The offender address the kernel appends (an all-zero sockaddr_in).
        b.extend_from_slice(&[0; 16]);
        b
    }

    #[test]
    fn parses_a_zerocopy_range_and_its_copied_flag() {
        let r = ZcRange::parse(&serr(0, SO_EE_ORIGIN_ZEROCOPY, 0, 3, 7));
        assert_eq!(
            r,
            Ok(ErrQueueEntry::ZeroCopy(ZcRange {
                first: 3,
                last: 7,
                copied: false
            }))
        );
        let Ok(ErrQueueEntry::ZeroCopy(c)) = ZcRange::parse(&serr(
            0,
            SO_EE_ORIGIN_ZEROCOPY,
            SO_EE_CODE_ZEROCOPY_COPIED,
            9,
            9,
        )) else {
            panic!("not a zerocopy entry");
        };
        assert!(c.copied);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn other_errors_and_short_data() {
        assert_eq!(
            ZcRange::parse(&serr(111, 2, 3, 0, 0)),
            Ok(ErrQueueEntry::Other {
                errno: 111,
                origin: 2
            })
        );
        assert!(ZcRange::parse(&[0; 15]).is_err());
    }

    #[test]
    fn ranges_wrap_around() {
        let r = ZcRange {
            first: u32::MAX - 1,
            last: 1,
            copied: false,
        };
        assert_eq!(r.len(), 4);
        assert!(r.contains(u32::MAX) && r.contains(0) && r.contains(1));
        assert!(!r.contains(2) && !r.contains(u32::MAX - 2));
    }

    #[test]
    fn lent_buffers_come_back_by_range() {
        let mut l = Lent::new(3);
        for id in 0..3 {
            let s = l.free_slot().expect("a free slot");
            l.lend(s, id);
        }
        assert_eq!(l.free_slot(), None);
        let r = ZcRange {
            first: 0,
            last: 1,
            copied: true,
        };
        assert_eq!(l.complete(&r), 2);
        assert_eq!(l.outstanding(), 1);
        assert_eq!(l.free_slot(), Some(0));
    }

    #[test]
    fn uring_copied_bit() {
        assert!(uring_notif_copied(i32::MIN));
        assert!(!uring_notif_copied(0));
    }
}
