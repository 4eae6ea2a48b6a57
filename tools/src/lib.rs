//! weftctl: inspect and drive weft, and the harness that tests and measures it.
//!
//! - [`attack`]: `weftctl attack`, a fuzzing sender of hostile datagrams at a running weftd.
//! - [`testbed`]: two- or three-node testbeds in network namespaces (kernel VXLAN, the udp
//!   forwarder or weftd on each node) and bounded traffic checks between them, built on the
//!   workspace's test kit (`weft_testkit`: namespaces, processes, etcd, packets).
//! - [`forward`]: `weftctl forward-udp`, flannel's one-packet-per-syscall udp data path: the
//!   interop peer for weftd's udp backend and the benchmarks' floor.
//! - [`bench`](mod@bench): `weftctl bench`, TCP throughput of each data path on the same testbed.
//! - [`control`]: a client for weftd's control socket.
//! - [`demo`]: `weftctl demo`, two nodes talking through weftd in lease mode.
//! - [`leases`]: `weftctl leases`, what a lease store holds.
//! - [`scale`]: `weftctl scale-leases`, weftd with thousands of leases: time to all routes,
//!   memory.
//! - [`peers`], [`net`]: the static peers file and IP prefixes.
#![forbid(unsafe_code)]

pub mod attack;
pub mod bench;
pub mod control;
pub mod demo;
pub mod forward;
pub mod leases;
pub mod peers;
pub mod scale;
pub mod soak;
pub mod testbed;
