//! systemd's readiness protocol: `READY=1` once weftd is ready, `STOPPING=1` when it stops,
//! sent to `$NOTIFY_SOCKET`; nothing without the variable.

/// Tells systemd we are ready (`READY=1`).
pub(super) fn notify_ready() {
    notify_systemd("READY=1");
}

/// Sends `state` (`READY=1`, `STOPPING=1`) to `$NOTIFY_SOCKET`, a path or `@abstract` name;
/// nothing without the variable.
pub(super) fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(&target),
    };
    let sent = addr.and_then(|addr| {
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    match sent {
        Ok(_) => tracing::debug!("told systemd {state}"),
        Err(e) => tracing::warn!("telling systemd {state} via {target:?} failed: {e}"),
    }
}
