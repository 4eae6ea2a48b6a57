//! `poll(2)` over borrowed fds, and an `eventfd(2)` to wake or stop threads blocked in it.
//!
//! Contract: a [`PollFd`] borrows its fd for its lifetime, so a poll set cannot outlive the
//! descriptors it watches. [`poll`] retries EINTR (through [`super::io::retry_eintr`]) with the
//! same timeout. An [`EventFd`] is non-blocking and close-on-exec; [`EventFd::signal`] makes it
//! readable for every poller until someone [`EventFd::drain`]s it, so one eventfd that is
//! never drained works as a "stop" flag for any number of threads.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::io::{cvt, retry_eintr};

/// `POLLIN`: data to read.
pub const POLLIN: i16 = libc::POLLIN;
/// `POLLOUT`: room to write.
pub const POLLOUT: i16 = libc::POLLOUT;

/// One entry of a poll set: a borrowed fd and the events asked for.
#[derive(Debug)]
#[repr(transparent)]
pub struct PollFd<'fd> {
    raw: libc::pollfd,
    _fd: PhantomData<BorrowedFd<'fd>>,
}

impl<'fd> PollFd<'fd> {
    /// Watches `fd` for `events` (`POLLIN`, `POLLOUT`).
    pub fn new(fd: BorrowedFd<'fd>, events: i16) -> PollFd<'fd> {
        PollFd {
            raw: libc::pollfd {
                fd: fd.as_raw_fd(),
                events,
                revents: 0,
            },
            _fd: PhantomData,
        }
    }

    /// Changes the events asked for.
    pub fn set_events(&mut self, events: i16) {
        self.raw.events = events;
    }

    /// Whether the last [`poll`] found the fd readable (or in error / hung up, which a read
    /// then reports).
    pub fn readable(&self) -> bool {
        self.raw.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0
    }

    /// Whether the last [`poll`] found the fd writable (or in error).
    pub fn writable(&self) -> bool {
        self.raw.revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0
    }
}

/// Waits until one of `fds` is ready or `timeout_ms` passes (-1: no timeout). Returns how many
/// entries are ready.
pub fn poll(fds: &mut [PollFd<'_>], timeout_ms: i32) -> io::Result<usize> {
    let n = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many fds to poll"))?;
    let ret = retry_eintr(|| {
        // SAFETY: `PollFd` is `repr(transparent)` over `libc::pollfd`, so `fds` is `n` valid,
        // exclusive pollfds for the call; each fd is borrowed for the slice's lifetime.
        unsafe { libc::poll(fds.as_mut_ptr().cast::<libc::pollfd>(), n, timeout_ms) }
    })?;
    Ok(usize::try_from(ret).unwrap_or(0))
}

/// A non-blocking eventfd: a counter the kernel makes pollable.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes an initial value and flags by value and returns a new fd or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` was just returned by eventfd, is open, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter: the fd becomes readable.
    pub fn signal(&self) -> io::Result<()> {
        let one: u64 = 1;
        match super::io::write(self.fd.as_fd(), &one.to_ne_bytes()) {
            Ok(_) => Ok(()),
            // The counter is at its maximum: it is readable already.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads and resets the counter; 0 when it was not signalled.
    pub fn drain(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        match super::io::read(self.fd.as_fd(), &mut buf) {
            Ok(_) => Ok(u64::from_ne_bytes(buf)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Whether the counter is non-zero, without changing it.
    pub fn is_signalled(&self) -> io::Result<bool> {
        let mut p = [PollFd::new(self.fd.as_fd(), POLLIN)];
        poll(&mut p, 0)?;
        Ok(p[0].readable())
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_every_poller_until_drained() {
        let e = EventFd::new().unwrap();
        assert!(!e.is_signalled().unwrap());
        let mut set = [PollFd::new(e.as_fd(), POLLIN)];
        assert_eq!(poll(&mut set, 0).unwrap(), 0);
        e.signal().unwrap();
        e.signal().unwrap();
        assert_eq!(poll(&mut set, 0).unwrap(), 1);
        assert!(set[0].readable());
        assert!(e.is_signalled().unwrap(), "polling does not consume it");
        assert_eq!(e.drain().unwrap(), 2);
        assert_eq!(e.drain().unwrap(), 0);
        assert!(!e.is_signalled().unwrap());
    }

    #[test]
    fn poll_waits_for_a_socket() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut set = [
            PollFd::new(b.as_fd(), POLLIN),
            PollFd::new(a.as_fd(), POLLOUT),
        ];
        assert_eq!(poll(&mut set, 0).unwrap(), 1);
        assert!(!set[0].readable());
        assert!(set[1].writable());
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        set[1].set_events(0);
        assert_eq!(poll(&mut set, 1000).unwrap(), 1);
        assert!(set[0].readable());
    }
}
