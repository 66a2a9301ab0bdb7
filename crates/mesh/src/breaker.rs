//! A circuit breaker per remote tier: after `failures` consecutive failed calls the tier is
//! skipped (no network call, the next tier answers at once) for `cooldown`; then one trial
//! call is let through: success closes the breaker, failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { fails: u32 },
    Open { until: Instant },
    HalfOpen { since: Instant },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    failures: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { fails: 0 }),
            failures: failures.max(1),
            cooldown,
        }
    }

    /// May a call go out now? `Err(remaining)` while open. Moving from open to half-open
    /// lets exactly one caller through.
    pub fn allow(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { .. } => Ok(()),
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *s = State::HalfOpen { since: now };
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            // A trial is in flight: others keep skipping until it reports (or, if it never
            // does — its caller went away — until another cooldown has passed).
            State::HalfOpen { since } if since.elapsed() < self.cooldown => Err(Duration::ZERO),
            State::HalfOpen { .. } => {
                *s = State::HalfOpen { since: Instant::now() };
                Ok(())
            }
        }
    }

    pub fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Closed { fails: 0 };
    }

    pub fn failure(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = match *s {
            State::Closed { fails } if fails + 1 < self.failures => State::Closed { fails: fails + 1 },
            _ => State::Open {
                until: Instant::now() + self.cooldown,
            },
        };
    }

    /// `closed`, `open` or `half_open` (for traces and metrics).
    pub fn state(&self) -> &'static str {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_closes_after_a_good_trial() {
        let b = Breaker::new(2, Duration::from_millis(30));
        b.failure();
        assert!(b.allow().is_ok(), "one failure is not enough");
        b.success();
        b.failure();
        assert_eq!(b.state(), "closed", "success resets the count");
        b.failure();
        assert_eq!(b.state(), "open");
        assert!(b.allow().is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow().is_ok(), "cooldown over: one trial");
        assert!(b.allow().is_err(), "only one trial at a time");
        b.failure();
        assert_eq!(b.state(), "open", "failed trial reopens");
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow().is_ok());
        b.success();
        assert_eq!(b.state(), "closed");
        assert!(b.allow().is_ok());
    }
}
