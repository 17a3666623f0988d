//! The one integration test binary of sprocket-ops. Modules share helpers from the
//! `sprocket_ops_tests` library (fake Discord, Swarm fixtures, the prepared environment).
//! Tests that need Docker, OpenBao or Postgres fail when those are missing; none skips.

mod alerts;
mod alerts_e2e;
mod approval_binding;
mod approval_states;
mod approvals;
mod architecture;
mod break_glass;
mod cli;
mod cli_deploy;
mod deploy_binding;
mod deploy_e2e;
mod deploy_latency;
mod discord_e2e;
mod docker_proxy;
mod doctor;
mod fake_discord_selftest;
mod github;
mod identity_abuse;
mod image;
mod leaks;
mod protect_e2e;
mod pulumi;
mod rehearsal;
mod reliability;
mod shipped;
mod store;
mod swarm_e2e;
mod swarm_fixture;
mod swarm_ops;
mod vault;
mod vault_e2e;
