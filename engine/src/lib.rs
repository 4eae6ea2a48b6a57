//! weftd's engine: the kernel-facing layer of the dataplane.
//!
//! - [`model`]: the shared vocabulary: [`model::Backend`], prefixes, MACs, limits.
//! - [`sys`]: the only `unsafe` code: TUN and interface ioctls, socket options, cmsgs,
//!   `sendmsg` / `recvmsg` / `recvmmsg`, an io_uring that owns the buffers the kernel uses.
//! - [`tun`]: a multiqueue TUN device with the virtio header and probed offloads.
//! - [`underlay`]: one UDP socket per pump thread with GSO send and GRO receive.
//! - [`route`]: the route table snapshot (longest-prefix match to peers) and the peers file.
//! - [`pump`]: the pump threads (TUN <-> UDP) with the poll and io_uring drivers (the
//!   io_uring driver's TUN read, receive and send slots in [`pump::ring`], safe code on
//!   [`sys::uring`]).
//! - [`lease`]: flannel's lease store (etcd v3, a lease directory), the network config, the
//!   subnet manager.
//! - [`netconf`]: subnet.env and the masquerade rules.
//! - [`control`]: the control socket (`stats`, `routes`).
//! - [`stop`]: [`Stop`], the one stop request every thread waits on (a flag, a sleep, a
//!   `select!` arm, a pollable eventfd).
//! - [`http`]: `/healthz`, `/readyz` and `/metrics` (`--healthz-ip`, `--healthz-port`).
//! - [`config`]: weftd's command line.
//! - [`daemon`]: weftd itself: start-up in static mode and lease mode, the running [`daemon::Node`]
//!   and shutdown (the `weftd` binary parses the flags and calls [`daemon::run`]).
#![deny(unsafe_code)]

// The test kit's `require_root!` is in scope in every module's tests.
#[cfg(test)]
#[macro_use]
extern crate weft_testkit;
#[cfg(test)]
mod test_support;

pub mod config;
pub mod control;
pub mod daemon;
pub mod http;
pub mod lease;
pub mod model;
pub mod netconf;
pub mod pump;
pub mod route;
pub mod stop;
pub mod sys;
pub mod tun;
pub mod underlay;

pub use stop::Stop;
