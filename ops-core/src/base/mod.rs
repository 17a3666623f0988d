//! The leaf every other module may use: the error kinds shown to people ([`OpsError`],
//! [`Denied`], error ids), the store's error kind ([`StoreError`]), one [`Clock`], random ids,
//! "did you mean" and glob matching, and one way to show untrusted text inside a message.
//!
//! It imports nothing from the crate (`tests/it/architecture.rs` checks it), so every domain
//! module can depend on it without depending on the `ops` facade or on each other.

pub mod clock;
pub mod error;
pub mod ids;
pub mod matching;
pub mod shown;

pub use clock::{now_ms, Clock, ManualClock, SharedClock, SystemClock};
pub use error::{new_error_id, Denied, OpsError, StoreError};
pub use ids::random_hex;
pub use matching::{closest, glob_match, valid_service_name};
pub use shown::{shown, Shown};

#[cfg(test)]
mod tests;
