//! Adaptive busy polling: how long a pump thread keeps polling without blocking after it last
//! moved a packet (`--busy-poll-us`).
//!
//! Contract: [`BusyPoll`] is a pure state machine over instants the caller passes in; it
//! reads no clock, sleeps and spins nowhere. After each turn of a driver's loop it answers
//! [`Next::Turn`] (the turn filled a batch: go again at once), [`Next::Spin`] (the last packet
//! moved less than the window ago: take another non-blocking turn) or [`Next::Block`] (sleep in
//! the kernel until an fd is ready). A turn that moved nothing never opens a window, so an
//! idle thread blocks after the first empty turn following its traffic and stays asleep: no
//! periodic wake-ups without traffic. A zero window is today's behaviour (block as soon as a
//! turn finds nothing) and asks for no clock at all.

use std::time::{Duration, Instant};

/// What a pump thread does after a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A batch was full: more is probably queued, turn again at once.
    Turn,
    /// Inside the window after the last packet: a non-blocking turn, after a pause hint.
    Spin,
    /// Nothing moved for a whole window (or the window is zero): block until an fd is ready.
    Block,
}

/// What one turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnOutcome {
    /// It moved at least one packet (a TUN read, a datagram received, a completion handled).
    pub moved: bool,
    /// It stopped at a batch limit, with more probably queued.
    pub full: bool,
}

/// The busy-poll window of one pump thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    window: Duration,
    /// The end of the current window: the last packet moved plus `window`.
    until: Option<Instant>,
    /// A full turn came last: the next turn opens the window (its time is as good as the full
    /// turn's, and a full turn reads no clock).
    after_full: bool,
}

impl BusyPoll {
    /// A thread that polls for `window` after its last packet (zero: blocks at once).
    pub fn new(window: Duration) -> BusyPoll {
        BusyPoll {
            window,
            until: None,
            after_full: false,
        }
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// What to do after a turn that did `turn`; `now` is called (once) only when the answer
    /// depends on the time.
    pub fn after(&mut self, turn: TurnOutcome, now: impl FnOnce() -> Instant) -> Next {
        if turn.full {
            self.after_full = true;
            return Next::Turn;
        }
        if self.window.is_zero() {
            return Next::Block;
        }
        let now = now();
        if turn.moved || std::mem::take(&mut self.after_full) {
            self.until = Some(now + self.window);
            return Next::Spin;
        }
        match self.until {
            Some(until) if now < until => Next::Spin,
            _ => {
                self.until = None;
                Next::Block
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MOVED: TurnOutcome = TurnOutcome {
        moved: true,
        full: false,
    };
    const EMPTY: TurnOutcome = TurnOutcome {
        moved: false,
        full: false,
    };
    const FULL: TurnOutcome = TurnOutcome {
        moved: true,
        full: true,
    };

    fn no_clock() -> Instant {
        panic!("the clock was read")
    }

    #[test]
    fn a_zero_window_blocks_after_every_turn_that_is_not_full_and_reads_no_clock() {
        let mut b = BusyPoll::new(Duration::ZERO);
        assert_eq!(b.after(FULL, no_clock), Next::Turn);
        assert_eq!(b.after(MOVED, no_clock), Next::Block);
        assert_eq!(b.after(EMPTY, no_clock), Next::Block);
    }

    #[test]
    fn the_window_runs_from_the_last_packet_moved_then_blocks() {
        let t0 = Instant::now();
        let at = |us| move || t0 + Duration::from_micros(us);
        let mut b = BusyPoll::new(Duration::from_micros(50));
        // Idle from the start: block at once, no window opened by an empty turn.
        assert_eq!(b.after(EMPTY, at(0)), Next::Block);
        assert_eq!(b.after(MOVED, at(0)), Next::Spin);
        assert_eq!(b.after(EMPTY, at(10)), Next::Spin);
        assert_eq!(b.after(EMPTY, at(49)), Next::Spin);
        // A packet at 40 us pushes the end to 90 us.
        assert_eq!(b.after(MOVED, at(40)), Next::Spin);
        assert_eq!(b.after(EMPTY, at(89)), Next::Spin);
        assert_eq!(b.after(EMPTY, at(90)), Next::Block);
        // Once blocked, an empty turn (a spurious wake-up) does not reopen the window.
        assert_eq!(b.after(EMPTY, at(91)), Next::Block);
    }

    #[test]
    fn a_full_batch_turns_again_without_reading_the_clock() {
        let mut b = BusyPoll::new(Duration::from_micros(50));
        assert_eq!(b.after(FULL, no_clock), Next::Turn);
        assert_eq!(b.window(), Duration::from_micros(50));
        // The empty turn after a full one opens the window: the full turn moved packets.
        let t0 = Instant::now();
        assert_eq!(b.after(EMPTY, || t0), Next::Spin);
        assert_eq!(
            b.after(EMPTY, || t0 + Duration::from_micros(50)),
            Next::Block
        );
    }
}
