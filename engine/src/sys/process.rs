//! Process credentials and network namespaces.
//!
//! Contract: [`unshare_network_namespace`] moves only the calling *thread* into a fresh,
//! anonymous network namespace (which disappears with its last user); tests use it to get a
//! private network without touching the host's.

use std::io;

use super::io::cvt;

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `unshare(CLONE_NEWNET)`: the calling thread gets a new network namespace holding only a
/// down `lo`. Needs CAP_SYS_ADMIN.
pub fn unshare_network_namespace() -> io::Result<()> {
    // SAFETY: unshare takes flags by value; CLONE_NEWNET only changes the calling thread's
    // network namespace and is allowed in a multithreaded process.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map(drop)
}
