//! In-flight work, for graceful shutdown: every command invocation and approval click holds a
//! guard; once shutdown begins no new guard is handed out (the person is told to retry), and
//! the bot waits for the running ones, up to a grace period, before closing the gateway.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// The tracker.
#[derive(Default)]
pub struct InFlight {
    count: AtomicUsize,
    closing: AtomicBool,
    idle: Notify,
}

/// Held while a piece of work runs.
pub struct Guard(Arc<InFlight>);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    /// A guard, or `None` once shutdown has begun.
    pub fn enter(self: &Arc<Self>) -> Option<Guard> {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.closing.load(Ordering::SeqCst) {
            drop(Guard(Arc::clone(self)));
            return None;
        }
        Some(Guard(Arc::clone(self)))
    }

    pub fn running(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Stops handing out guards and waits until the running work ends or `grace` passes.
    /// Returns how many were still running at the end.
    pub async fn close_and_wait(&self, grace: Duration) -> usize {
        self.closing.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.idle.notified();
            if self.running() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.running();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_running_work_and_refuses_new_work() {
        let f = Arc::new(InFlight::default());
        let g = f.enter().expect("open");
        let f2 = Arc::clone(&f);
        let waiter = tokio::spawn(async move { f2.close_and_wait(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(f.enter().is_none(), "no new work once closing");
        assert!(!waiter.is_finished());
        drop(g);
        assert_eq!(waiter.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_grace_period_bounds_the_wait() {
        let f = Arc::new(InFlight::default());
        let _g = f.enter().unwrap();
        assert_eq!(f.close_and_wait(Duration::from_millis(50)).await, 1);
    }
}
