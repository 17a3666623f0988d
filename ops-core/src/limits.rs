//! Per-person rate limits (governor): commands per minute and destructive requests per hour. A
//! person is their GitHub account when linked, else their Discord account.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Which budget an action spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Command,
    Destructive,
}

/// The limiters.
pub struct RateLimits<C: Clock = MonotonicClock> {
    commands: Keyed<C>,
    destructive: Keyed<C>,
    clock: C,
}

impl RateLimits<MonotonicClock> {
    /// On the std monotonic clock: governor's default (quanta) calibrates the TSC when it is
    /// created, which cost a one-shot CLI command milliseconds for nothing.
    pub fn new(commands_per_minute: u32, destructive_per_hour: u32) -> Self {
        RateLimits::with_clock(commands_per_minute, destructive_per_hour, MonotonicClock)
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    pub fn with_clock(commands_per_minute: u32, destructive_per_hour: u32, clock: C) -> Self {
        let per_min = Quota::per_minute(
            NonZeroU32::new(commands_per_minute.max(1)).expect("max(1) is non-zero"),
        );
        let per_hour = Quota::per_hour(
            NonZeroU32::new(destructive_per_hour.max(1)).expect("max(1) is non-zero"),
        );
        RateLimits {
            commands: RateLimiter::dashmap_with_clock(per_min, clock.clone()),
            destructive: RateLimiter::dashmap_with_clock(per_hour, clock.clone()),
            clock,
        }
    }

    /// Spends one unit of `budget` for `person`; `Err(wait)` when over the limit.
    pub fn check(&self, person: &str, budget: Budget) -> Result<(), Duration> {
        let limiter = match budget {
            Budget::Command => &self.commands,
            Budget::Destructive => &self.destructive,
        };
        limiter
            .check_key(&person.to_string())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn limits_are_per_person_and_recover() {
        let clock = FakeRelativeClock::default();
        let l = RateLimits::with_clock(2, 1, clock.clone());
        assert!(l.check("alice", Budget::Command).is_ok());
        assert!(l.check("alice", Budget::Command).is_ok());
        let wait = l.check("alice", Budget::Command).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(
            l.check("bob", Budget::Command).is_ok(),
            "other people are not affected"
        );
        assert!(l.check("alice", Budget::Destructive).is_ok());
        assert!(l.check("alice", Budget::Destructive).is_err());
        clock.advance(Duration::from_secs(31));
        assert!(l.check("alice", Budget::Command).is_ok());
    }
}
