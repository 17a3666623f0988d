//! The sprocket-ops binary's library half: start-up (config, store, adapters), the Discord
//! gateway, and the CLI subcommands. `main.rs` only parses arguments and maps errors to exit
//! codes; tests drive [`serve::serve`] in-process against a fake Discord.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod docker_proxy;
pub mod doctor;
pub mod exit;
pub mod health;
pub mod logging;
pub mod rest_latency;
pub mod serve;
