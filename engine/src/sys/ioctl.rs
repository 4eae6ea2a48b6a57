//! Typed ioctl requests: the opcode and its argument type travel together.
//!
//! Contract: an ioctl is declared once as a constant, `PtrIoctl<P>` (the argument is a pointer
//! to one `P`), `IfreqDataIoctl<D>` (a pointer to an `ifreq` whose `ifr_data` points to one
//! `D`) or `ValIoctl` (the argument is an integer passed by value), and the constant's
//! `// SAFETY:` line cites the kernel code that fixes the argument's type. Calls go through the
//! one `unsafe fn exec` of each type, whose contract is only that the fd is the kind of file the
//! opcode was declared for (ioctl numbers are per driver).

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::io::cvt;

/// An ioctl whose argument is a pointer to one `P` that the kernel reads and/or writes during
/// the call and does not keep.
#[derive(Debug)]
pub(crate) struct PtrIoctl<P> {
    opcode: libc::Ioctl,
    _arg: PhantomData<fn(&mut P)>,
}

impl<P> PtrIoctl<P> {
    /// Declares `opcode` as taking a `*mut P`.
    ///
    /// # Safety
    ///
    /// On the files it is later `exec`uted on, `opcode` must read and write at most
    /// `size_of::<P>()` bytes through its pointer argument, only during the call, and must leave
    /// a valid `P` behind (all plain-data `repr(C)` kernel structs qualify).
    pub(crate) const unsafe fn new(opcode: libc::Ioctl) -> Self {
        Self {
            opcode,
            _arg: PhantomData,
        }
    }

    /// Runs the ioctl on `fd` with a pointer to `arg`. Not retried on EINTR: the ioctls used
    /// here do not sleep interruptibly.
    ///
    /// # Safety
    ///
    /// `fd` must be a file of the kind this request was declared for (see the constant's
    /// `SAFETY` line), so that the kernel gives the opcode the declared meaning.
    pub(crate) unsafe fn exec(&self, fd: BorrowedFd<'_>, arg: &mut P) -> io::Result<libc::c_int> {
        // SAFETY: `arg` is a valid, exclusive `P` for the whole call, and by `new`'s contract
        // and the caller's choice of fd the kernel accesses at most one `P` through it.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), self.opcode, std::ptr::from_mut(arg)) };
        cvt(ret)
    }
}

/// An ioctl whose argument is an integer passed by value (`unsigned long arg` in the driver).
#[derive(Debug)]
pub(crate) struct ValIoctl {
    opcode: libc::Ioctl,
}

impl ValIoctl {
    /// Declares `opcode` as taking its argument by value.
    ///
    /// # Safety
    ///
    /// On the files it is later `exec`uted on, `opcode` must treat its argument as a number and
    /// never dereference it.
    pub(crate) const unsafe fn new(opcode: libc::Ioctl) -> Self {
        Self { opcode }
    }

    /// Runs the ioctl on `fd` with `value`.
    ///
    /// # Safety
    ///
    /// `fd` must be a file of the kind this request was declared for.
    pub(crate) unsafe fn exec(
        &self,
        fd: BorrowedFd<'_>,
        value: libc::c_ulong,
    ) -> io::Result<libc::c_int> {
        // SAFETY: by `new`'s contract the kernel does not dereference `value` for this opcode on
        // this kind of file.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), self.opcode, value) };
        cvt(ret)
    }
}

/// An ioctl whose argument is a `struct ifreq` whose `ifr_data` points to one `D` (an
/// interface's private request, like `SIOCETHTOOL`'s command structs). The kernel reads the
/// `ifreq` and reads and/or writes the `D` during the call; [`IfreqDataIoctl::exec`] sets the
/// pointer itself, so it always points to a live, exclusive `D`.
#[derive(Debug)]
pub(crate) struct IfreqDataIoctl<D> {
    opcode: libc::Ioctl,
    _arg: PhantomData<fn(&mut D)>,
}

impl<D> IfreqDataIoctl<D> {
    /// Declares `opcode` as taking a `*mut ifreq` whose `ifr_data` points to a `D`.
    ///
    /// # Safety
    ///
    /// On the files it is later `exec`uted on, `opcode` must access at most one `ifreq` through
    /// its argument and at most `size_of::<D>()` bytes through `ifr_data`, only during the
    /// call, and leave a valid `D` behind (plain-data `repr(C)` structs qualify). For commands
    /// that carry their own length (variable-size ethtool structs) `D` must hold the largest
    /// the command may touch.
    pub(crate) const unsafe fn new(opcode: libc::Ioctl) -> Self {
        Self {
            opcode,
            _arg: PhantomData,
        }
    }

    /// Runs the ioctl on `fd` with `ifr` (its name set by the caller), pointing its `ifr_data`
    /// at `data`. Not retried on EINTR: the ioctls used here do not sleep interruptibly.
    ///
    /// # Safety
    ///
    /// `fd` must be a file of the kind this request was declared for (see the constant's
    /// `SAFETY` line), so that the kernel gives the opcode the declared meaning.
    pub(crate) unsafe fn exec(
        &self,
        fd: BorrowedFd<'_>,
        ifr: &mut libc::ifreq,
        data: &mut D,
    ) -> io::Result<libc::c_int> {
        ifr.ifr_ifru.ifru_data = std::ptr::from_mut(data).cast();
        // SAFETY: `ifr` is a valid, exclusive `ifreq` and its `ifr_data` points to `data`, a
        // valid, exclusive `D`, both for the whole call; by `new`'s contract and the caller's
        // choice of fd the kernel accesses no more than these two.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), self.opcode, std::ptr::from_mut(ifr)) };
        cvt(ret)
    }
}

/// An all-zero `ifreq`: an empty name and a zero union, valid for every ifreq ioctl.
pub(crate) fn zeroed_ifreq() -> libc::ifreq {
    // SAFETY: `ifreq` is a plain-data repr(C) struct (a char array and a union of integers,
    // sockaddrs, char arrays and a raw pointer); all-zero bytes are a valid value of each.
    unsafe { std::mem::zeroed() }
}

/// Writes `name` into an `ifreq` name field; fails on names of IFNAMSIZ bytes or more, empty
/// names (unless `allow_empty`), and names with a NUL byte.
pub(crate) fn set_ifr_name(ifr: &mut libc::ifreq, name: &str, allow_empty: bool) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) || (bytes.is_empty() && !allow_empty) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?}: 1 to {} bytes, no NUL",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    Ok(())
}

/// Reads the NUL-terminated name out of an `ifreq`.
pub(crate) fn ifr_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .map(|c| c.to_ne_bytes()[0])
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
