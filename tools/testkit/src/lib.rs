//! weft's test kit: what engine's, encap's and weftctl's tests (and weftctl's testbed) share.
//!
//! Contract: a test that needs root, `/dev/net/tun`, network namespaces or iproute2 starts with
//! [`require_root!`]; one that needs other programs (etcd, iptables, openssl) with
//! [`require_programs!`]. When something is missing the test prints why and returns, unless the
//! environment has `CI=true`, where the same lack fails it: CI runs `bash tools/test.sh` as
//! root after installing everything, and must run every test. Everything the kit creates on
//! the host is named so that nothing else is touched, and is removed on drop, also when the
//! test panics: namespaces are `wft-<pid>-<n>-<role>` ([`netns`]), processes are children
//! signalled by PID only ([`process`], [`etcd`]), scratch directories are temporary.
//!
//! - [`privileges`]: the probe behind [`require_root!`] and [`require_programs!`], [`in_ci`],
//!   [`skip`].
//! - [`netns`]: named network namespaces ([`netns::Netns`]), their naming, the registry that
//!   removes them on a signal, and the reaping of those a dead process left behind.
//! - [`process`]: a child with its output in a log file, stopped by SIGTERM then SIGKILL.
//! - [`etcd`]: a real single-member etcd (on this namespace's loopback or inside a named
//!   namespace; one member of a cluster the same way), with TLS and authentication when asked.
//! - [`packet`]: IPv4 / IPv6 packets with correct checksums (UDP, TCP, IPv4 options, IPv6
//!   extension header chains) and TUN super-packets with their virtio header.
//! - [`http`]: one HTTP exchange (weftd's health and metrics endpoints).
//! - [`wait`]: bounded polling.
//!
//! encap's own unit tests keep their builders (`encap/src/test_packets.rs`): this crate depends
//! on `encap`, so inside encap's unit tests its types would be another crate's.
#![forbid(unsafe_code)]

pub mod etcd;
pub mod http;
pub mod netns;
pub mod packet;
pub mod privileges;
pub mod process;
pub mod wait;

pub use privileges::{in_ci, skip};
