//! A stop request the lease threads wait on without polling.
//!
//! The manager thread blocks in its watch (a channel for etcd, `poll` on inotify for the
//! directory store) and the masquerade thread sleeps between re-checks; both must wake at once
//! on SIGTERM and otherwise not at all, so an idle weftd makes no periodic wake-ups. A
//! [`Shutdown`] gives every kind of waiter something to block on: [`Shutdown::sleep`] for a
//! plain wait, [`Shutdown::closed`] for a `crossbeam_channel::select!`, and
//! [`Shutdown::event`] for `poll`. Once requested it stays requested.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::sys::poll::EventFd;

/// A cloneable stop request (see the module documentation).
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    requested: AtomicBool,
    /// Signalled once on request, never drained.
    event: EventFd,
    /// Dropped on request, which disconnects `closed`: a wake-up for channel waiters.
    closer: Mutex<Option<Sender<()>>>,
    closed: Receiver<()>,
}

impl Shutdown {
    /// A fresh, unrequested shutdown (fails only if no eventfd can be made).
    pub fn new() -> io::Result<Shutdown> {
        let (closer, closed) = crossbeam_channel::bounded(0);
        Ok(Shutdown(Arc::new(Inner {
            requested: AtomicBool::new(false),
            event: EventFd::new()?,
            closer: Mutex::new(Some(closer)),
            closed,
        })))
    }

    /// Requests the stop and wakes every waiter. Idempotent.
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::Relaxed);
        let closer = match self.0.closer.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(closer);
        if let Err(e) = self.0.event.signal() {
            tracing::error!("waking the lease threads (eventfd write) failed: {e}");
        }
    }

    /// Whether the stop was requested.
    pub fn requested(&self) -> bool {
        self.0.requested.load(Ordering::Relaxed)
    }

    /// Sleeps `d`, or less if the stop is requested; returns whether it was.
    pub fn sleep(&self, d: Duration) -> bool {
        match self.0.closed.recv_timeout(d) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => self.requested(),
            Err(RecvTimeoutError::Disconnected) => true,
        }
    }

    /// A channel that never carries a message and disconnects on request: a `select!` arm.
    pub fn closed(&self) -> &Receiver<()> {
        &self.0.closed
    }

    /// An eventfd that becomes readable on request (for `poll`).
    pub fn event(&self) -> &EventFd {
        &self.0.event
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn sleep_times_out_until_requested_then_returns_at_once() {
        let s = Shutdown::new().expect("eventfd");
        let t = Instant::now();
        assert!(!s.sleep(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(!s.event().is_signalled().expect("poll"));

        let other = s.clone();
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            let stopped = other.sleep(Duration::from_secs(30));
            (stopped, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        s.request();
        let (stopped, took) = waiter.join().expect("waiter");
        assert!(stopped);
        assert!(took < Duration::from_secs(5), "woke after {took:?}");
        assert!(s.requested());
        assert!(s.event().is_signalled().expect("poll"));
        assert!(s.sleep(Duration::from_secs(30)), "stays requested");
        s.request();
    }
}
