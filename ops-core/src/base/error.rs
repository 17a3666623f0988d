//! The errors shown to people: a refusal ([`Denied`]), a safe summary with an error id
//! ([`OpsError`]), the id itself, and the store's error kind every repository trait returns.

use std::sync::atomic::{AtomicU64, Ordering};

/// A refusal, safe to show to the person. Recorded in the audit log as `denied`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// An error shown to people as a safe summary plus an id; the detail goes to the log only.
#[derive(Debug, thiserror::Error)]
#[error("{summary} (error id {error_id})")]
pub struct OpsError {
    pub summary: String,
    pub error_id: String,
}

/// A short id that ties a user-facing message to the log line with the detail.
pub fn new_error_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = chrono::Utc::now().timestamp_micros() as u64;
    format!("E{:06x}{:02x}", (t ^ (t >> 24)) & 0xff_ffff, n & 0xff)
}

/// Why the store failed. `detail` is for logs (it never contains the password: URLs are
/// redacted before they are formatted).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database URL is invalid: {0}")]
    BadUrl(String),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("database migration failed: {0}")]
    Migrate(String),
    #[error("database error: {0}")]
    Query(String),
}
