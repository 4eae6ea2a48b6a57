//! A multiqueue TUN device with the virtio header and the offloads the kernel accepts.
//!
//! Contract: [`Tun::open`] creates (or attaches to) one `IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE`
//! device and opens `queues` queues of it, one per pump thread. It asks for `IFF_VNET_HDR` and
//! probes TUNSETOFFLOAD from the most to the least it can use, in this order:
//!
//! 1. `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6` (USO needs Linux 6.2;
//!    the two USO bits go together),
//! 2. `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6` (USO refused),
//! 3. no virtio header at all (offloads refused, or the driver lacks `IFF_VNET_HDR`): the
//!    device is reopened without it and every read is one plain IP packet.
//!
//! One log line says what was chosen; [`Tun::offloads`] tells the pump, which must then read
//! and write [`Offloads::header_len`] bytes of `virtio_net_hdr` before each packet. Reads and
//! writes return [`std::io::Error`] directly (the pump checks `WouldBlock`); set-up errors are
//! [`TunError`]s naming the step that failed.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

use crate::sys::tun::{iff, TunFd, MAX_QUEUES, TUN_DEVICE, VIRTIO_NET_HDR_LEN};
use crate::sys::{io as sysio, netif};

#[cfg(test)]
mod tests;

/// What the TUN device hands us and accepts from us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Offloads {
    /// Every packet read or written is preceded by a 10-byte `virtio_net_hdr`; implies
    /// checksum offload (`TUN_F_CSUM`): packets may carry a partial checksum.
    pub vnet_hdr: bool,
    /// TCP segmentation offload (`TUN_F_TSO4 | TUN_F_TSO6`): reads may be TCP super-packets
    /// of up to 64 KiB, and writes may be.
    pub tso: bool,
    /// UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`, Linux 6.2+): the same for UDP.
    pub uso: bool,
}

impl Offloads {
    /// Everything: the header, TSO and USO (what [`Tun::open`] asks for).
    pub const ALL: Offloads = Offloads {
        vnet_hdr: true,
        tso: true,
        uso: true,
    };
    /// The header with TSO but no USO (what a kernel before 6.2 gives).
    pub const TSO: Offloads = Offloads {
        vnet_hdr: true,
        tso: true,
        uso: false,
    };
    /// No header, no offloads: one plain IP packet per read or write.
    pub const NONE: Offloads = Offloads {
        vnet_hdr: false,
        tso: false,
        uso: false,
    };

    /// The bytes of `virtio_net_hdr` before each packet: 10, or 0 without the header.
    pub fn header_len(&self) -> usize {
        if self.vnet_hdr {
            VIRTIO_NET_HDR_LEN
        } else {
            0
        }
    }

    /// The TUNSETOFFLOAD bits for these offloads.
    pub fn tun_flags(&self) -> libc::c_uint {
        let mut flags = 0;
        if self.vnet_hdr {
            flags |= libc::TUN_F_CSUM;
            if self.tso {
                flags |= libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
                if self.uso {
                    flags |= libc::TUN_F_USO4 | libc::TUN_F_USO6;
                }
            }
        }
        flags
    }

    /// The candidates to probe, best first, none better than `self`.
    fn candidates(self) -> impl Iterator<Item = Offloads> {
        [Offloads::ALL, Offloads::TSO]
            .into_iter()
            .filter(move |c| self.vnet_hdr && (!c.tso || self.tso) && (!c.uso || self.uso))
    }
}

impl fmt::Display for Offloads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.vnet_hdr {
            return f.write_str("no virtio header, no offloads");
        }
        f.write_str("virtio header, csum")?;
        if self.tso {
            f.write_str(" + tso4 + tso6")?;
        }
        if self.uso {
            f.write_str(" + uso4 + uso6")?;
        }
        Ok(())
    }
}

/// A TUN set-up step that failed, with the kernel's error.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The name cannot be an interface name.
    #[error("invalid TUN device name {name:?}: {reason}")]
    InvalidName {
        /// The name asked for.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Zero queues, or more than the driver allows.
    #[error("invalid TUN queue count {queues}: a TUN device has 1 to {MAX_QUEUES} queues")]
    InvalidQueueCount {
        /// The count asked for.
        queues: usize,
    },
    /// `/dev/net/tun` could not be opened.
    #[error("opening {TUN_DEVICE} failed: {source} (is the tun module loaded, and are you root / CAP_NET_ADMIN?)")]
    Open {
        /// The error from `open(2)`.
        #[source]
        source: io::Error,
    },
    /// TUNGETFEATURES failed.
    #[error("TUNGETFEATURES on {TUN_DEVICE} failed: {source}")]
    Features {
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// More than one queue was asked for but the driver has no `IFF_MULTI_QUEUE`.
    #[error("this kernel's TUN driver has no IFF_MULTI_QUEUE, but {queues} queues were asked for (use 1)")]
    NoMultiQueue {
        /// The count asked for.
        queues: usize,
    },
    /// TUNSETIFF (creating or attaching the first queue) failed.
    #[error(
        "TUNSETIFF on {TUN_DEVICE} for {name:?} failed: {source} (are you root / CAP_NET_ADMIN? \
         is there already a non-TUN or single-queue device of that name?)"
    )]
    SetIff {
        /// The device name.
        name: String,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// Attaching queue `index` (TUNSETIFF on a new fd) failed.
    #[error("attaching queue {index} to TUN {name} (TUNSETIFF) failed: {source} (too many queues or open files?)")]
    AttachQueue {
        /// The device name.
        name: String,
        /// The queue number (0-based).
        index: usize,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// TUNGETIFF failed.
    #[error("TUNGETIFF on queue {index} of TUN {name} failed: {source}")]
    GetIff {
        /// The device name.
        name: String,
        /// The queue number.
        index: usize,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// A queue passed by another process (an upgrade) is not one of ours.
    #[error("taking over queue {index} of TUN {name} failed: {source}")]
    Adopt {
        /// The device name expected.
        name: String,
        /// The queue number.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: io::Error,
    },
    /// Setting or clearing `O_NONBLOCK` on a queue failed.
    #[error("setting O_NONBLOCK on queue {index} of TUN {name} failed: {source}")]
    Nonblocking {
        /// The device name.
        name: String,
        /// The queue number.
        index: usize,
        /// The error from fcntl.
        #[source]
        source: io::Error,
    },
    /// Bringing the device up failed.
    #[error("bringing {name} up (SIOCSIFFLAGS) failed: {source} (are you root / CAP_NET_ADMIN?)")]
    SetUp {
        /// The device name.
        name: String,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// Reading the MTU failed.
    #[error("reading the MTU of {name} (SIOCGIFMTU) failed: {source}")]
    Mtu {
        /// The device name.
        name: String,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// Setting the MTU failed.
    #[error("setting the MTU of {name} to {mtu} (SIOCSIFMTU) failed: {source} (a TUN takes 68..=65535; are you root?)")]
    SetMtu {
        /// The device name.
        name: String,
        /// The MTU asked for.
        mtu: u32,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// Setting the transmit queue length failed.
    #[error("setting the txqueuelen of {name} to {len} (SIOCSIFTXQLEN) failed: {source}")]
    SetTxQueueLen {
        /// The device name.
        name: String,
        /// The length asked for.
        len: u32,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
    /// Setting an address failed.
    #[error("setting address {addr}/{prefix_len} on {name} failed: {source} (are you root / CAP_NET_ADMIN? is IPv6 disabled?)")]
    SetAddress {
        /// The device name.
        name: String,
        /// The address asked for.
        addr: std::net::IpAddr,
        /// Its prefix length.
        prefix_len: u8,
        /// The error from the ioctl.
        #[source]
        source: io::Error,
    },
}

/// One queue of a TUN device: one fd, read and written by one pump thread.
#[derive(Debug)]
pub struct TunQueue {
    fd: TunFd,
    index: usize,
    name: String,
}

impl TunQueue {
    /// Reads one packet (with its virtio header when [`Offloads::vnet_hdr`]). Give a buffer of
    /// at least 64 KiB + 10 when TSO/USO are on, or super-packets are cut. `WouldBlock` when
    /// non-blocking and empty.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        sysio::read(self.fd.as_fd(), buf)
    }

    /// Writes one packet (with its virtio header when [`Offloads::vnet_hdr`]) into the kernel.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        sysio::write(self.fd.as_fd(), buf)
    }

    /// Makes reads and writes on this queue non-blocking (or blocking again).
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), TunError> {
        sysio::set_nonblocking(self.fd.as_fd(), nonblocking).map_err(|source| {
            TunError::Nonblocking {
                name: self.name.clone(),
                index: self.index,
                source,
            }
        })
    }

    /// Waits up to `timeout_ms` for a packet to read; returns whether one is there.
    pub fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        sysio::wait_readable(self.fd.as_fd(), timeout_ms)
    }

    /// The device flags the kernel holds for this queue's device (TUNGETIFF): `IFF_TUN`,
    /// `IFF_NO_PI`, `IFF_VNET_HDR`, `IFF_MULTI_QUEUE`, ... as a `c_int`.
    pub fn kernel_flags(&self) -> Result<libc::c_int, TunError> {
        self.fd
            .iff()
            .map(|(_, flags)| libc::c_int::from(flags as u16))
            .map_err(|source| TunError::GetIff {
                name: self.name.clone(),
                index: self.index,
                source,
            })
    }

    /// This queue's number (0-based) in the device.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl TunQueue {
    /// Takes over queue `index` of the TUN `name` from a descriptor another process passed us
    /// (an upgrade handover): refused unless it is a TUN file attached to the device `name`.
    /// Returns the queue and the device flags the kernel holds for it (`IFF_VNET_HDR`, ...).
    pub fn adopt(
        fd: std::os::fd::OwnedFd,
        name: &str,
        index: usize,
    ) -> Result<(TunQueue, libc::c_int), TunError> {
        let adopt_err = |source| TunError::Adopt {
            name: name.to_owned(),
            index,
            source,
        };
        let fd = TunFd::from_passed(fd).map_err(adopt_err)?;
        let (dev, flags) = fd.iff().map_err(|source| TunError::GetIff {
            name: name.to_owned(),
            index,
            source,
        })?;
        if dev != name {
            return Err(adopt_err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the descriptor is a queue of {dev:?}"),
            )));
        }
        let queue = TunQueue {
            fd,
            index,
            name: dev,
        };
        Ok((queue, libc::c_int::from(flags as u16)))
    }
}

/// A TUN device and its queues.
#[derive(Debug)]
pub struct Tun {
    name: String,
    queues: Vec<TunQueue>,
    offloads: Offloads,
}

impl Tun {
    /// Opens `queues` queues of the multiqueue TUN device `name` (created if absent; an empty
    /// name lets the kernel pick `tunN`) with the best offloads the kernel accepts.
    pub fn open(name: &str, queues: usize) -> Result<Tun, TunError> {
        Tun::open_with(name, queues, Offloads::ALL)
    }

    /// Like [`Tun::open`], asking for no more than `wanted` (e.g. [`Offloads::NONE`] for plain
    /// packets, [`Offloads::TSO`] to leave USO off). A request with the header but without
    /// TSO gets no header: checksum offload alone is not worth a header on every packet.
    pub fn open_with(name: &str, queues: usize, wanted: Offloads) -> Result<Tun, TunError> {
        check_name(name)?;
        if queues == 0 || queues > MAX_QUEUES {
            return Err(TunError::InvalidQueueCount { queues });
        }
        let first = TunFd::open().map_err(|source| TunError::Open { source })?;
        let features = first
            .features()
            .map_err(|source| TunError::Features { source })?;
        let has = |flag: libc::c_int| features & (flag as libc::c_uint) != 0;
        if queues > 1 && !has(libc::IFF_MULTI_QUEUE) {
            return Err(TunError::NoMultiQueue { queues });
        }
        let mut base = libc::IFF_TUN | libc::IFF_NO_PI;
        if has(libc::IFF_MULTI_QUEUE) {
            base |= libc::IFF_MULTI_QUEUE;
        }

        let mut refused: Vec<String> = Vec::new();
        let (fd0, dev, flags, offloads) = if wanted.vnet_hdr && has(libc::IFF_VNET_HDR) {
            let with_hdr = base | libc::IFF_VNET_HDR;
            match probe_offloads(first, name, with_hdr, wanted, &mut refused)? {
                Some((fd, dev, offloads)) => (fd, dev, with_hdr, offloads),
                None => {
                    let fd = TunFd::open().map_err(|source| TunError::Open { source })?;
                    let dev = set_iff(&fd, name, base)?;
                    (fd, dev, base, Offloads::NONE)
                }
            }
        } else {
            if wanted.vnet_hdr {
                refused.push("the TUN driver has no IFF_VNET_HDR".to_owned());
            }
            let dev = set_iff(&first, name, base)?;
            (first, dev, base, Offloads::NONE)
        };

        let mut tun_queues = Vec::with_capacity(queues);
        tun_queues.push(TunQueue {
            fd: fd0,
            index: 0,
            name: dev.clone(),
        });
        for index in 1..queues {
            let fd = TunFd::open().map_err(|source| TunError::Open { source })?;
            fd.set_iff(&dev, iff(flags))
                .map_err(|source| TunError::AttachQueue {
                    name: dev.clone(),
                    index,
                    source,
                })?;
            tun_queues.push(TunQueue {
                fd,
                index,
                name: dev.clone(),
            });
        }

        if refused.is_empty() {
            tracing::info!(device = %dev, queues, "TUN {dev}: {queues} queue(s), {offloads}");
        } else {
            tracing::warn!(
                device = %dev,
                queues,
                "TUN {dev}: {queues} queue(s), {offloads} (fell back: {})",
                refused.join("; ")
            );
        }
        Ok(Tun {
            name: dev,
            queues: tun_queues,
            offloads,
        })
    }

    /// The device name (as the kernel has it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What was negotiated with the kernel.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// The queues, index 0 first.
    pub fn queues(&self) -> &[TunQueue] {
        &self.queues
    }

    /// Hands the queues out (one per pump thread). The device lives while any queue is open.
    pub fn into_queues(self) -> Vec<TunQueue> {
        self.queues
    }

    /// Makes every queue non-blocking (or blocking again).
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), TunError> {
        self.queues
            .iter()
            .try_for_each(|q| q.set_nonblocking(nonblocking))
    }

    /// Brings the device up.
    pub fn set_up(&self) -> Result<(), TunError> {
        netif::set_up(&self.name).map_err(|source| TunError::SetUp {
            name: self.name.clone(),
            source,
        })
    }

    /// The device MTU.
    pub fn mtu(&self) -> Result<u32, TunError> {
        netif::mtu(&self.name).map_err(|source| TunError::Mtu {
            name: self.name.clone(),
            source,
        })
    }

    /// Sets the device MTU.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), TunError> {
        netif::set_mtu(&self.name, mtu).map_err(|source| TunError::SetMtu {
            name: self.name.clone(),
            mtu,
            source,
        })
    }

    /// Sets the transmit queue length: the packets each queue's ring holds for the pumps while
    /// they are busy (the kernel drops, as `tx_dropped`, what does not fit).
    pub fn set_txqueuelen(&self, len: u32) -> Result<(), TunError> {
        netif::set_txqueuelen(&self.name, len).map_err(|source| TunError::SetTxQueueLen {
            name: self.name.clone(),
            len,
            source,
        })
    }

    /// Sets the device's IPv4 address `addr/prefix_len` (the kernel adds the prefix route).
    pub fn set_ipv4_addr(&self, addr: Ipv4Addr, prefix_len: u8) -> Result<(), TunError> {
        netif::set_ipv4_addr(&self.name, addr, prefix_len).map_err(|source| TunError::SetAddress {
            name: self.name.clone(),
            addr: addr.into(),
            prefix_len,
            source,
        })
    }

    /// Adds the IPv6 address `addr/prefix_len` to the device (the kernel adds the prefix route).
    /// The address is tentative for a moment (DAD is skipped on a TUN, but asynchronously):
    /// binding it right away can fail with EADDRNOTAVAIL.
    pub fn add_ipv6_addr(&self, addr: Ipv6Addr, prefix_len: u8) -> Result<(), TunError> {
        netif::add_ipv6_addr(&self.name, addr, prefix_len).map_err(|source| TunError::SetAddress {
            name: self.name.clone(),
            addr: addr.into(),
            prefix_len,
            source,
        })
    }
}

/// TUNSETIFF for the first queue.
fn set_iff(fd: &TunFd, name: &str, flags: libc::c_int) -> Result<String, TunError> {
    fd.set_iff(name, iff(flags))
        .map_err(|source| TunError::SetIff {
            name: name.to_owned(),
            source,
        })
}

/// Creates the device with the virtio header on `fd` and tries the offload candidates best
/// first. `None` when all were refused: `fd` is dropped, and with it a device we created (a
/// non-persistent TUN goes away with its last queue), so it can be made again without the
/// header.
fn probe_offloads(
    fd: TunFd,
    name: &str,
    flags: libc::c_int,
    wanted: Offloads,
    refused: &mut Vec<String>,
) -> Result<Option<(TunFd, String, Offloads)>, TunError> {
    let dev = set_iff(&fd, name, flags)?;
    for candidate in wanted.candidates() {
        match set_offload(&fd, candidate.tun_flags()) {
            Ok(()) => return Ok(Some((fd, dev, candidate))),
            Err(e) => refused.push(format!("{candidate} refused: {e}")),
        }
    }
    Ok(None)
}

#[cfg(test)]
thread_local! {
    /// TUNSETOFFLOAD bits the tests make "the kernel" refuse with EINVAL on this thread, to
    /// drive the fallbacks a 6.18 kernel never takes.
    static REFUSE_OFFLOADS: std::cell::Cell<libc::c_uint> = const { std::cell::Cell::new(0) };
}

/// TUNSETOFFLOAD (with the test hook above).
fn set_offload(fd: &TunFd, flags: libc::c_uint) -> io::Result<()> {
    #[cfg(test)]
    if REFUSE_OFFLOADS.get() & flags != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    fd.set_offload(flags)
}

/// The kernel's `dev_valid_name` (net/core/dev.c), plus "empty means the kernel picks".
fn check_name(name: &str) -> Result<(), TunError> {
    let invalid = |reason| {
        Err(TunError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.len() >= libc::IFNAMSIZ {
        return invalid("longer than 15 bytes (IFNAMSIZ - 1)");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not interface names");
    }
    if name
        .bytes()
        .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace())
    {
        return invalid("contains NUL, '/', ':' or whitespace");
    }
    Ok(())
}
