//! Bounded polling: every wait in a test has a limit.
//!
//! Contract: [`until`] calls its condition at once and then every [`POLL`] ([`until_every`]:
//! every `every`, for conditions that run a program) until it holds or `limit` has passed, and
//! returns how long it took, or `None` when the limit passed first (the caller fails the test
//! saying what it waited for).

use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds (`Some(time taken)`) or `limit` passes (`None`).
pub fn until(limit: Duration, condition: impl FnMut() -> bool) -> Option<Duration> {
    until_every(limit, POLL, condition)
}

/// Like [`until`], polling every `every`.
pub fn until_every(
    limit: Duration,
    every: Duration,
    mut condition: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if condition() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_returns_when_the_condition_holds_or_the_limit_passes() {
        let mut calls = 0;
        let took = until(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        });
        assert!(took.is_some_and(|t| t < Duration::from_secs(5)));
        assert_eq!(calls, 3);
        assert_eq!(until(Duration::from_millis(50), || false), None);
    }
}
