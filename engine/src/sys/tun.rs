//! `/dev/net/tun` and the TUN ioctls.
//!
//! Contract: a [`TunFd`] can only be made by opening `/dev/net/tun`, so every TUN ioctl issued
//! through it reaches the tun driver (drivers/net/tun.c) and nothing else. Flags and offload
//! bits are libc's `IFF_*` / `TUN_F_*` constants; this module adds no numbers of its own except
//! the virtio header length and the queue limit, each cited below.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::ioctl::{ifr_name, set_ifr_name, zeroed_ifreq, PtrIoctl, ValIoctl};

/// The clone device every TUN queue is opened from.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// `sizeof(struct virtio_net_hdr)` (include/uapi/linux/virtio_net.h): flags u8, gso_type u8,
/// hdr_len u16, gso_size u16, csum_start u16, csum_offset u16. The tun driver's default
/// `vnet_hdr_sz` (drivers/net/tun.c `tun_set_iff`: `tun->vnet_hdr_sz = sizeof(struct
/// virtio_net_hdr)`), so TUNSETVNETHDRSZ is not needed for it.
pub const VIRTIO_NET_HDR_LEN: usize = 10;

/// Most queues one multiqueue TUN device can have: `MAX_TAP_QUEUES` (include/linux/if_tap.h,
/// used by drivers/net/tun.c).
pub const MAX_QUEUES: usize = 256;

// SAFETY: drivers/net/tun.c `__tun_chr_ioctl` copies a `struct ifreq` in from the pointer for
// TUNSETIFF and back out after `tun_set_iff`; nothing is kept past the call.
const TUNSETIFF: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::TUNSETIFF) };
// SAFETY: `__tun_chr_ioctl` fills a `struct ifreq` via `tun_get_iff` and copies it out.
const TUNGETIFF: PtrIoctl<libc::ifreq> = unsafe { PtrIoctl::new(libc::TUNGETIFF) };
// SAFETY: `__tun_chr_ioctl` TUNGETFEATURES does `put_user(IFF_TUN | ..., (unsigned int __user *)argp)`.
const TUNGETFEATURES: PtrIoctl<libc::c_uint> = unsafe { PtrIoctl::new(libc::TUNGETFEATURES) };
// SAFETY: `__tun_chr_ioctl` TUNSETOFFLOAD calls `set_offload(tun, arg)` with the value itself.
const TUNSETOFFLOAD: ValIoctl = unsafe { ValIoctl::new(libc::TUNSETOFFLOAD) };
// SAFETY: `__tun_chr_ioctl` TUNSETVNETHDRSZ does `copy_from_user(&vnet_hdr_sz, argp, sizeof(vnet_hdr_sz))` of an int.
const TUNSETVNETHDRSZ: PtrIoctl<libc::c_int> = unsafe { PtrIoctl::new(libc::TUNSETVNETHDRSZ) };
// SAFETY: `__tun_chr_ioctl` TUNGETVNETHDRSZ does `copy_to_user(argp, &vnet_hdr_sz, sizeof(vnet_hdr_sz))` of an int.
const TUNGETVNETHDRSZ: PtrIoctl<libc::c_int> = unsafe { PtrIoctl::new(libc::TUNGETVNETHDRSZ) };

/// Converts libc's `c_int` IFF_* flags to the `c_short` the ifreq carries (all fit in 16 bits).
pub const fn iff(flags: libc::c_int) -> libc::c_short {
    flags as libc::c_short
}

/// One open file on `/dev/net/tun`: before TUNSETIFF a blank clone fd, after it one queue.
#[derive(Debug)]
pub struct TunFd {
    fd: OwnedFd,
}

impl TunFd {
    /// Opens `/dev/net/tun` read-write with close-on-exec.
    pub fn open() -> io::Result<TunFd> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(TUN_DEVICE)?;
        Ok(TunFd { fd: file.into() })
    }

    /// TUNSETIFF: creates (or attaches to) the device `name` with `flags` (`IFF_TUN | ...`).
    /// An empty name lets the kernel pick `tun%d`. Returns the device's name.
    pub fn set_iff(&self, name: &str, flags: libc::c_short) -> io::Result<String> {
        let mut ifr = zeroed_ifreq();
        set_ifr_name(&mut ifr, name, true)?;
        ifr.ifr_ifru.ifru_flags = flags;
        // SAFETY: `self.fd` is a /dev/net/tun file (only `open` makes a TunFd), the file kind
        // TUNSETIFF was declared for.
        unsafe { TUNSETIFF.exec(self.fd.as_fd(), &mut ifr) }?;
        Ok(ifr_name(&ifr))
    }

    /// TUNGETIFF: the device name and its flags (`IFF_TUN`, `IFF_NO_PI`, `IFF_VNET_HDR`,
    /// `IFF_MULTI_QUEUE`, ...) as the kernel holds them.
    pub fn iff(&self) -> io::Result<(String, libc::c_short)> {
        let mut ifr = zeroed_ifreq();
        // SAFETY: `self.fd` is a /dev/net/tun file, the file kind TUNGETIFF was declared for.
        unsafe { TUNGETIFF.exec(self.fd.as_fd(), &mut ifr) }?;
        // SAFETY: TUNGETIFF wrote `ifru_flags` (tun_get_iff sets `ifr->ifr_flags`); every bit
        // pattern is a valid c_short.
        let flags = unsafe { ifr.ifr_ifru.ifru_flags };
        Ok((ifr_name(&ifr), flags))
    }

    /// TUNGETFEATURES: the `IFF_*` flags this kernel's tun driver accepts in TUNSETIFF.
    pub fn features(&self) -> io::Result<libc::c_uint> {
        let mut features: libc::c_uint = 0;
        // SAFETY: `self.fd` is a /dev/net/tun file, the file kind TUNGETFEATURES was declared for.
        unsafe { TUNGETFEATURES.exec(self.fd.as_fd(), &mut features) }?;
        Ok(features)
    }

    /// TUNSETOFFLOAD: what the device may hand us (`TUN_F_CSUM | TUN_F_TSO4 | ...`). The
    /// kernel fails with EINVAL when any bit is unknown to it; it applies to the whole device.
    pub fn set_offload(&self, flags: libc::c_uint) -> io::Result<()> {
        // SAFETY: `self.fd` is a /dev/net/tun file, the file kind TUNSETOFFLOAD was declared for.
        unsafe { TUNSETOFFLOAD.exec(self.fd.as_fd(), libc::c_ulong::from(flags)) }?;
        Ok(())
    }

    /// TUNSETVNETHDRSZ: the virtio header length prepended to each packet (default 10).
    pub fn set_vnet_hdr_size(&self, size: libc::c_int) -> io::Result<()> {
        let mut size = size;
        // SAFETY: `self.fd` is a /dev/net/tun file, the file kind TUNSETVNETHDRSZ was declared for.
        unsafe { TUNSETVNETHDRSZ.exec(self.fd.as_fd(), &mut size) }?;
        Ok(())
    }

    /// TUNGETVNETHDRSZ: the virtio header length in use.
    pub fn vnet_hdr_size(&self) -> io::Result<libc::c_int> {
        let mut size: libc::c_int = 0;
        // SAFETY: `self.fd` is a /dev/net/tun file, the file kind TUNGETVNETHDRSZ was declared for.
        unsafe { TUNGETVNETHDRSZ.exec(self.fd.as_fd(), &mut size) }?;
        Ok(size)
    }

    /// Takes `fd` (received from another process) as a TUN queue after checking that it is an
    /// open file of the TUN clone device (a character device `10:200`, drivers/net/tun.c
    /// `TUN_MINOR` on `MISC_MAJOR`), so the TUN ioctls issued through it reach the tun driver
    /// as this type promises; anything else is `InvalidData`.
    pub fn from_passed(fd: OwnedFd) -> io::Result<TunFd> {
        /// `MISC_MAJOR` (include/uapi/linux/major.h) and `TUN_MINOR` (include/linux/miscdevice.h).
        const TUN_RDEV: (u32, u32) = (10, 200);
        // SAFETY: all-zero is a valid `struct stat` (integers only).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open for the call and `st` is a writable stat buffer.
        super::io::cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
        let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
        let rdev = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
        if !is_chr || rdev != TUN_RDEV {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the descriptor is not a /dev/net/tun file",
            ));
        }
        Ok(TunFd { fd })
    }

    /// The fd, for reads, writes and polling.
    pub fn into_owned(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for TunFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_fit_in_an_ifreq_short() {
        let all = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
        assert_eq!(libc::c_int::from(iff(all)), all);
    }

    #[test]
    fn set_iff_rejects_long_names_before_the_kernel() {
        // Only opens the clone device when it is there; the name check happens first anyway.
        let Ok(fd) = TunFd::open() else { return };
        let err = fd
            .set_iff("wfe-a-name-much-too-long", iff(libc::IFF_TUN))
            .expect_err("too long");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
