//! [`Stop`]: the one stop request every weftd thread waits on, whatever it blocks in.
//!
//! Contract: a [`Stop`] is a cloneable handle to one request. [`Stop::request`] (idempotent,
//! from any thread; not from a signal handler, see below) makes it requested for good and
//! wakes every waiter at once, however it waits:
//!
//! - a loop that checks between turns: [`Stop::requested`] (one relaxed load: the pumps check
//!   it once per turn);
//! - a plain wait: [`Stop::sleep`] returns after the duration or as soon as the stop is
//!   requested (the lease threads' re-checks, the start-up retries);
//! - a `crossbeam_channel::select!`: [`Stop::closed`] is a channel that never carries a
//!   message and disconnects on request (the etcd watch);
//! - `poll` or an io_uring: [`Stop::event`] is an eventfd that becomes readable on request and
//!   is never drained, so it stays readable for every poller (the poll driver, the io_uring
//!   driver's `POLL_ADD`, the lease directory's inotify wait).
//!
//! Nothing polls: a thread waiting on a [`Stop`] sleeps in the kernel until the request or
//! its own timeout, so an idle weftd makes no periodic wake-ups. Each group of threads that
//! stops together has its own [`Stop`] (the pump threads, which also pause for an upgrade; the
//! lease threads; start-up, which SIGTERM and SIGINT stop): a request stops its group only.
//!
//! A stop is a request going in; whether a thread failed is an outcome coming out, and is not
//! kept here ([`crate::pump::Pumps::failed`] keeps the pumps').
//!
//! [`Stop::request`] takes a lock and writes an eventfd, so it is not async-signal-safe: a
//! signal becomes a request on an ordinary thread (weftd's signal thread, `daemon`).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::sys::poll::EventFd;

/// A cloneable stop request (see the module documentation).
#[derive(Debug, Clone)]
pub struct Stop(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    requested: AtomicBool,
    /// Signalled once on request, never drained.
    event: EventFd,
    /// Dropped on request, which disconnects `closed`: the wake-up of channel waiters.
    closer: Mutex<Option<Sender<()>>>,
    closed: Receiver<()>,
}

impl Stop {
    /// A fresh, unrequested stop (fails only if no eventfd can be made).
    pub fn new() -> io::Result<Stop> {
        let (closer, closed) = crossbeam_channel::bounded(0);
        Ok(Stop(Arc::new(Inner {
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
            tracing::error!("waking the threads waiting on a stop (eventfd write) failed: {e}");
        }
    }

    /// Whether the stop was requested.
    #[inline]
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

    /// An eventfd that becomes readable on request and stays so (for `poll` and io_uring).
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
        let s = Stop::new().expect("eventfd");
        let t = Instant::now();
        assert!(!s.sleep(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(!s.requested());
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
        assert!(s.sleep(Duration::from_secs(30)), "stays requested");
        s.request();
        assert!(s.requested(), "idempotent");
    }

    /// Every kind of waiter sees the request: the eventfd (not consumed by polling), the
    /// select arm, the flag.
    #[test]
    fn every_waiter_wakes_and_the_request_sticks() {
        let s = Stop::new().expect("eventfd");
        let select_waiter = {
            let s = s.clone();
            std::thread::spawn(move || {
                crossbeam_channel::select! {
                    recv(s.closed()) -> r => r.is_err(),
                    default(Duration::from_secs(30)) => false,
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        s.request();
        assert!(select_waiter.join().expect("select waiter"), "disconnected");
        assert!(s.requested());
        assert!(s.event().is_signalled().expect("poll"));
        assert!(s.event().is_signalled().expect("poll"), "never drained");
        assert!(s.closed().recv().is_err(), "stays disconnected");
    }
}
