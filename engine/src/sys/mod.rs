//! The kernel boundary: every `unsafe` line of weftd lives under this folder.
//!
//! Contract: each submodule turns one family of syscalls into safe, typed functions over
//! `OwnedFd` / `BorrowedFd`. Opcodes and option names come from `libc`; a constant libc lacks is
//! defined once here with the kernel header it comes from. Every `unsafe` block carries a
//! `// SAFETY:` line and every `unsafe fn` a `# Safety` section. Errors are plain
//! [`std::io::Error`]s; the modules above (`tun`, `udp`) name the operation that failed.
//!
//! - [`io`]: `read`/`write`/`fcntl` on fds, and [`io::retry_eintr`], the one place EINTR is retried.
//! - `ioctl` (private): typed ioctl requests (`PtrIoctl<P>`, `ValIoctl`), one `unsafe fn exec` each.
//! - [`tun`]: `/dev/net/tun` and its ioctls (TUNSETIFF, TUNSETOFFLOAD, ...), the virtio header size.
//! - [`netif`]: interface ioctls on a control socket: flags (up), MTU, IPv4/IPv6 address.
//! - [`ethtool`]: device offload features (tx checksumming, GRO) through `SIOCETHTOOL`.
//! - [`sockopt`]: integer socket options (UDP_GRO, UDP_SEGMENT, SO_RCVBUFFORCE, ...).
//! - [`cmsg`]: control messages: an aligned buffer, an encoder, a decoder that checks MSG_CTRUNC.
//! - [`msg`]: `sendmsg` / `recvmsg` / `recvmmsg` with the UDP_SEGMENT / UDP_GRO cmsgs.
//! - [`fdpass`]: open files across a unix socket (`SCM_RIGHTS`) and `SO_PEERCRED`.
//! - [`process`]: credentials and network-namespace calls (`geteuid`, `unshare`).
//! - [`poll`]: `poll(2)` over borrowed fds and an `eventfd` (the pollable side of
//!   [`crate::Stop`]).
//! - [`ifaddrs`]: which interface holds an address (`getifaddrs`).
//! - [`rtnetlink`]: a minimal `RTM_NEWROUTE` request (routes through the TUN).
//! - [`uring`]: an io_uring that owns every buffer while the kernel has it (fixed buffers,
//!   owned buffers given back with their completions, borrowed writes waited for); what each
//!   operation is for is the pump's ([`crate::pump::ring`]).
//! - [`reuseport`]: a classic BPF program steering datagrams inside a SO_REUSEPORT group.
#![allow(unsafe_code)]

pub mod cmsg;
pub mod ethtool;
pub mod fdpass;
pub mod ifaddrs;
pub mod io;
mod ioctl;
pub mod msg;
pub mod netif;
pub mod poll;
pub mod process;
pub mod reuseport;
pub mod rtnetlink;
pub mod sockopt;
pub mod tun;
pub mod uring;
