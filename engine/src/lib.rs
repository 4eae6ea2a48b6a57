//! weftd's engine: the kernel-facing layer of the dataplane.
//!
//! - [`sys`]: the only `unsafe` code: TUN and interface ioctls, socket options, cmsgs,
//!   `sendmsg` / `recvmsg` / `recvmmsg`.
//! - [`tun`]: a multiqueue TUN device with the virtio header and probed offloads.
//! - [`udp`]: one UDP socket per pump thread with GSO send and GRO receive.
//!
//! The packet pump, route table and control plane build on these (issue 3).
#![deny(unsafe_code)]

// First, so its `require_root!` macro is in scope in the modules below.
#[cfg(test)]
#[macro_use]
mod test_support;

pub mod lease;
pub mod netconf;
pub mod sys;
pub mod tun;
pub mod udp;
