//! Test support for sprocket-ops: an in-process fake Discord (REST + gateway) that validates
//! every request body against Discord's OpenAPI spec, Swarm fixtures on the real engine, and
//! the environment the test script prepares (Postgres URL, test images, the built binary).
#![forbid(unsafe_code)]

pub mod bao;
pub mod bot;
pub mod docker_cli;
pub mod env;
pub mod fake_discord;
pub mod fake_github;
pub mod outage;
pub mod probe_servers;
pub mod swarm;
