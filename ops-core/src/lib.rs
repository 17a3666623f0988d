//! ops-core: the sprocket-ops domain and its adapters to real systems (Docker Swarm through
//! bollard, the SQL store through sqlx) and the policies. It knows nothing of Discord: the
//! `commands` crate renders its results, the `bot` crate wires it up.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod approval_click;
pub mod approvals;
pub mod audit;
pub mod base;
pub mod breakglass;
pub mod checkout;
pub mod config;
pub mod custom_id;
pub mod deploy;
pub mod duration;
pub mod github;
pub mod identity;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod permissions;
pub mod progress;
pub mod protect;
pub mod pulumi;
pub mod redact;
pub mod secret;
pub mod services;
pub mod status;
pub mod store;
pub mod swarm;
pub mod vault;

#[cfg(test)]
mod testing;

pub use base::OpsError;
pub use ops::Ops;
