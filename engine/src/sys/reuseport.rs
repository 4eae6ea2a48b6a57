//! Steering datagrams inside a SO_REUSEPORT group with a classic BPF program.
//!
//! Contract: [`attach_cbpf`] sets `SO_ATTACH_REUSEPORT_CBPF` on one socket of a reuseport
//! group; the kernel then runs `program` for each datagram the group receives, with the packet
//! data starting at the UDP payload (net/core/sock_reuseport.c `run_bpf_filter` pulls the UDP
//! header first), and delivers it to the socket whose index in the group the program returns
//! (an index past the group, or a load outside the packet, falls back to / returns 0). The
//! kernel validates the program (`bpf_check_classic`); an invalid one is `EINVAL`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::io::cvt;

/// `SO_ATTACH_REUSEPORT_CBPF` (include/uapi/asm-generic/socket.h; libc exports it for
/// Android only). Architectures with their own socket.h numbering are not supported.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x",
    target_arch = "powerpc64"
))]
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Attaches `program` to the reuseport group of `fd`.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x",
    target_arch = "powerpc64"
))]
pub fn attach_cbpf(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "BPF program too long"))?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` valid sock_filter entries borrowed for the call, and its
    // size is passed exactly; the kernel copies the program in (sk_reuseport_attach_filter
    // via sk_attach_filter's copy) and keeps no pointer to it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&prog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    cvt(ret).map(drop)
}

/// Attaching is not supported on this architecture.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x",
    target_arch = "powerpc64"
)))]
pub fn attach_cbpf(_fd: BorrowedFd<'_>, _program: &[libc::sock_filter]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SO_ATTACH_REUSEPORT_CBPF is not wired for this architecture",
    ))
}
