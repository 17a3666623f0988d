//! Wall-clock time in unix milliseconds, behind one [`Clock`] trait: [`SystemClock`] in
//! production, [`ManualClock`] (or any `Fn() -> i64`) in tests.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Wall-clock time in unix milliseconds, injectable.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// A clock shared between the parts that read it.
pub type SharedClock = Arc<dyn Clock>;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock, shared.
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock moved by hand (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(ms: i64) -> ManualClock {
        ManualClock(AtomicI64::new(ms))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A closure returning unix milliseconds is a clock (tests read an atomic).
impl<F: Fn() -> i64 + Send + Sync> Clock for F {
    fn now_ms(&self) -> i64 {
        self()
    }
}
