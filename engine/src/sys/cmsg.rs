//! Control messages (cmsgs): the one place their bytes are laid out and read.
//!
//! Contract: a [`CmsgBuf`] is a control buffer aligned for `struct cmsghdr`. An [`Encoder`]
//! appends cmsgs to it with `CMSG_LEN`/`CMSG_SPACE` layout and, in [`Encoder::finish_into`],
//! points a `msghdr` at the bytes written and sets `msg_controllen` to exactly their length.
//! A [`Decoder`] refuses a control area the kernel flagged `MSG_CTRUNC` (a cmsg was lost, so
//! e.g. a GRO segment size could be missing) and then walks the cmsgs with bounds checks, never
//! trusting a `cmsg_len` past the bytes it was given.

use std::io;

/// `CMSG_LEN(data_len)`: header plus data, without trailing padding.
pub const fn cmsg_len(data_len: usize) -> usize {
    // SAFETY: CMSG_LEN is pure arithmetic on its argument (no pointer is read).
    unsafe { libc::CMSG_LEN(data_len as libc::c_uint) as usize }
}

/// `CMSG_SPACE(data_len)`: the bytes one cmsg with `data_len` bytes of data occupies.
pub const fn cmsg_space(data_len: usize) -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic on its argument (no pointer is read).
    unsafe { libc::CMSG_SPACE(data_len as libc::c_uint) as usize }
}

/// Control space for a send: one UDP_SEGMENT cmsg (a `u16`, net/ipv4/udp.c `udp_cmsg_send`
/// accepts only `CMSG_LEN(sizeof(__u16))`).
pub const SEND_CONTROL_LEN: usize = cmsg_space(size_of::<u16>());

/// Control space for a receive: a UDP_GRO cmsg (an `int`, net/ipv4/udp.c `udp_cmsg_recv`)
/// with room for three more int-sized cmsgs.
pub const RECV_CONTROL_LEN: usize = 4 * cmsg_space(size_of::<libc::c_int>());

/// A control-message buffer of `N` bytes, aligned like `struct cmsghdr`.
#[repr(C)]
pub struct CmsgBuf<const N: usize> {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; N],
}

impl<const N: usize> CmsgBuf<N> {
    /// A zeroed buffer.
    pub const fn new() -> Self {
        Self {
            _align: [],
            bytes: [0; N],
        }
    }

    /// An encoder writing from the start of the buffer.
    pub fn encoder(&mut self) -> Encoder<'_> {
        Encoder {
            buf: &mut self.bytes,
            len: 0,
        }
    }

    /// The whole buffer (a receive hands this to the kernel).
    pub fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The first `len` bytes (what the kernel reported in `msg_controllen`), clamped to `N`.
    pub fn filled(&self, len: usize) -> &[u8] {
        &self.bytes[..len.min(N)]
    }
}

impl<const N: usize> Default for CmsgBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for CmsgBuf<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsgBuf").field("len", &N).finish()
    }
}

/// Appends cmsgs to a control buffer.
#[derive(Debug)]
pub struct Encoder<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Encoder<'_> {
    /// Appends one cmsg (`level`, `ty`, `data`); fails with `InvalidInput` when it does not fit.
    pub fn push(&mut self, level: libc::c_int, ty: libc::c_int, data: &[u8]) -> io::Result<()> {
        let space = cmsg_space(data.len());
        let end = self
            .len
            .checked_add(space)
            .filter(|&end| end <= self.buf.len());
        let Some(end) = end else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "control buffer too small for the cmsg",
            ));
        };
        let slot = &mut self.buf[self.len..end];
        slot.fill(0);
        // SAFETY: all-zero is a valid cmsghdr (integers, and on some libcs private padding).
        let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
        hdr.cmsg_len = cmsg_len(data.len()) as _;
        hdr.cmsg_level = level;
        hdr.cmsg_type = ty;
        // SAFETY: `slot` is `cmsg_space(data.len())` >= size_of::<cmsghdr>() writable bytes;
        // write_unaligned has no alignment requirement.
        unsafe { std::ptr::write_unaligned(slot.as_mut_ptr().cast::<libc::cmsghdr>(), hdr) };
        let data_at = cmsg_len(0);
        slot[data_at..data_at + data.len()].copy_from_slice(data);
        self.len = end;
        Ok(())
    }

    /// Appends a UDP_SEGMENT cmsg: the kernel cuts the datagram into `segment_size` pieces.
    pub fn push_udp_segment(&mut self, segment_size: u16) -> io::Result<()> {
        self.push(
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            &segment_size.to_ne_bytes(),
        )
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Points `hdr` at the cmsgs written and sets `msg_controllen` to their exact length
    /// (no control area at all when none was written). The buffer must outlive the syscall
    /// that uses `hdr`: it is borrowed by this encoder's lifetime.
    pub fn finish_into(self, hdr: &mut libc::msghdr) {
        if self.len == 0 {
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
        } else {
            hdr.msg_control = self.buf.as_mut_ptr().cast();
            hdr.msg_controllen = self.len as _;
        }
    }
}

/// The kernel dropped control messages because the buffer was too small (`MSG_CTRUNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("control messages truncated (MSG_CTRUNC): the receive control buffer is too small")]
pub struct ControlTruncated;

/// One received control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmsg<'a> {
    /// `cmsg_level` (e.g. `SOL_UDP`).
    pub level: libc::c_int,
    /// `cmsg_type` (e.g. `UDP_GRO`).
    pub ty: libc::c_int,
    /// The data after the header, without padding.
    pub data: &'a [u8],
}

impl Cmsg<'_> {
    /// The GRO segment size if this is a UDP_GRO cmsg (an `int` in net/ipv4/udp.c
    /// `udp_cmsg_recv`).
    pub fn udp_gro_segment_size(&self) -> Option<u16> {
        if self.level != libc::SOL_UDP || self.ty != libc::UDP_GRO {
            return None;
        }
        let bytes: [u8; 4] = self.data.get(..4)?.try_into().ok()?;
        u16::try_from(libc::c_int::from_ne_bytes(bytes)).ok()
    }
}

/// Walks the cmsgs of a received control area.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    offset: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `control` (the first `msg_controllen` bytes); fails when `msg_flags`
    /// has `MSG_CTRUNC`.
    pub fn new(control: &'a [u8], msg_flags: libc::c_int) -> Result<Self, ControlTruncated> {
        if msg_flags & libc::MSG_CTRUNC != 0 {
            return Err(ControlTruncated);
        }
        Ok(Self {
            buf: control,
            offset: 0,
        })
    }

    /// The segment size from a UDP_GRO cmsg, if one came.
    pub fn udp_gro_segment_size(self) -> Option<u16> {
        self.into_iter().find_map(|c| c.udp_gro_segment_size())
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Cmsg<'a>;

    fn next(&mut self) -> Option<Cmsg<'a>> {
        let rest = self.buf.get(self.offset..)?;
        if rest.len() < size_of::<libc::cmsghdr>() {
            return None;
        }
        // SAFETY: `rest` has at least size_of::<cmsghdr>() readable bytes; read_unaligned has
        // no alignment requirement and cmsghdr is plain data valid for any bit pattern.
        let hdr: libc::cmsghdr = unsafe { std::ptr::read_unaligned(rest.as_ptr().cast()) };
        let total = hdr.cmsg_len as usize;
        let header = cmsg_len(0);
        if total < header || total > rest.len() {
            // A malformed length: stop rather than read past the control area.
            self.offset = self.buf.len();
            return None;
        }
        let data = &rest[header..total];
        self.offset += cmsg_space(total - header).min(rest.len());
        Some(Cmsg {
            level: hdr.cmsg_level,
            ty: hdr.cmsg_type,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_linux_x86_64() {
        // struct cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; } on 64-bit glibc.
        if size_of::<usize>() == 8 {
            assert_eq!(cmsg_len(0), 16);
            assert_eq!(cmsg_len(2), 18);
            assert_eq!(cmsg_space(2), 24);
            assert_eq!(SEND_CONTROL_LEN, 24);
            assert_eq!(RECV_CONTROL_LEN, 96);
        }
        assert_eq!(
            std::mem::align_of::<CmsgBuf<24>>(),
            std::mem::align_of::<libc::cmsghdr>()
        );
    }

    #[test]
    fn encode_then_decode_round_trip() {
        let mut buf = CmsgBuf::<64>::new();
        let mut enc = buf.encoder();
        enc.push_udp_segment(1400).expect("fits");
        enc.push(libc::SOL_UDP, libc::UDP_GRO, &1200i32.to_ne_bytes())
            .expect("fits");
        let used = enc.len();
        assert_eq!(used, cmsg_space(2) + cmsg_space(4));
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        enc.finish_into(&mut hdr);
        assert_eq!(hdr.msg_controllen as usize, used);
        assert!(!hdr.msg_control.is_null());

        let cmsgs: Vec<Cmsg<'_>> = Decoder::new(buf.filled(used), 0)
            .expect("not truncated")
            .collect();
        assert_eq!(cmsgs.len(), 2);
        assert_eq!(
            (cmsgs[0].level, cmsgs[0].ty),
            (libc::SOL_UDP, libc::UDP_SEGMENT)
        );
        assert_eq!(cmsgs[0].data, &1400u16.to_ne_bytes());
        assert_eq!(cmsgs[0].udp_gro_segment_size(), None);
        assert_eq!(cmsgs[1].udp_gro_segment_size(), Some(1200));
        assert_eq!(
            Decoder::new(buf.filled(used), 0)
                .expect("ok")
                .udp_gro_segment_size(),
            Some(1200)
        );
    }

    #[test]
    fn empty_encoder_clears_the_control_area() {
        let mut buf = CmsgBuf::<SEND_CONTROL_LEN>::new();
        let enc = buf.encoder();
        assert!(enc.is_empty());
        // SAFETY: all-zero is a valid msghdr.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_controllen = 99;
        enc.finish_into(&mut hdr);
        assert!(hdr.msg_control.is_null());
        assert_eq!(hdr.msg_controllen, 0);
    }

    #[test]
    fn push_refuses_what_does_not_fit() {
        let mut buf = CmsgBuf::<SEND_CONTROL_LEN>::new();
        let mut enc = buf.encoder();
        enc.push_udp_segment(1).expect("exactly fits");
        let err = enc.push_udp_segment(2).expect_err("full");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(enc.len(), SEND_CONTROL_LEN);
    }

    #[test]
    fn ctrunc_is_refused() {
        assert_eq!(
            Decoder::new(&[], libc::MSG_CTRUNC).err(),
            Some(ControlTruncated)
        );
    }

    #[test]
    fn malformed_lengths_stop_the_walk() {
        let mut buf = CmsgBuf::<64>::new();
        let mut enc = buf.encoder();
        enc.push(libc::SOL_UDP, libc::UDP_GRO, &1000i32.to_ne_bytes())
            .expect("fits");
        let used = enc.len();
        // cmsg_len larger than the area: nothing is yielded, no panic.
        let bytes = buf.as_mut_bytes();
        bytes[..size_of::<usize>()].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(Decoder::new(buf.filled(used), 0).expect("ok").count(), 0);
        // Shorter than a header, and a zero length: nothing either.
        assert_eq!(Decoder::new(&[1, 2, 3], 0).expect("ok").count(), 0);
        assert_eq!(Decoder::new(&[0u8; 32], 0).expect("ok").count(), 0);
        // An int-sized UDP_GRO cmsg whose value does not fit a u16 gives no segment size.
        let mut buf = CmsgBuf::<64>::new();
        let mut enc = buf.encoder();
        enc.push(libc::SOL_UDP, libc::UDP_GRO, &70000i32.to_ne_bytes())
            .expect("fits");
        let used = enc.len();
        assert_eq!(
            Decoder::new(buf.filled(used), 0)
                .expect("ok")
                .udp_gro_segment_size(),
            None
        );
    }
}
