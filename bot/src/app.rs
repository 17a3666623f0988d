//! Start-up shared by every subcommand: load and validate the config (exit 64), then build the
//! [`Ops`] value with its adapters. Nothing connects before the config is valid.

use std::path::Path;
use std::sync::Arc;

use ops_core::config::Config;
use ops_core::layers::LayerMap;
use ops_core::redact::Redactor;
use ops_core::secret::Secret;
use ops_core::swarm::docker::DockerSwarm;
use ops_core::Ops;

use crate::exit::Exit;

/// Reads and validates the config file; any problem is exit 64 with one line naming the key.
pub fn load_config(path: &Path) -> Result<Config, Exit> {
    Config::load(path).map_err(|e| Exit::new(Exit::USAGE, e.to_string()))
}

/// The secrets the process holds, for the redactor.
#[derive(Default)]
pub struct Secrets {
    pub discord_token: Option<Secret>,
    pub database_password: Option<Secret>,
}

impl Secrets {
    /// Resolves the database password (if configured); the Discord token only when `discord`.
    pub fn resolve(cfg: &Config, discord: bool) -> Result<Secrets, Exit> {
        let discord_token = if discord {
            Some(
                cfg.discord_token()
                    .map_err(|e| Exit::new(Exit::USAGE, e.to_string()))?,
            )
        } else {
            None
        };
        let database_password = match &cfg.database.password {
            Some(src) => Some(src.resolve().map_err(|m| {
                Exit::new(
                    Exit::USAGE,
                    format!("(environment): database.password: {m}"),
                )
            })?),
            None => None,
        };
        Ok(Secrets {
            discord_token,
            database_password,
        })
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.discord_token
            .iter()
            .chain(self.database_password.iter())
            .map(Secret::expose)
    }
}

/// Opens the store (creating and migrating it) and sets up the Docker adapter (lazily
/// connected: an unreachable engine does not stop start-up).
pub async fn build_ops(cfg: &Config, secrets: &Secrets) -> Result<Arc<Ops>, Exit> {
    let redactor = Arc::new(Redactor::new(secrets.values()));
    let store = ops_core::store::connect(&cfg.database.url, secrets.database_password.as_ref())
        .await
        .map_err(|e| {
            Exit::new(
                Exit::CANTCREAT,
                format!("database.url: {}", redactor.redact(&e.to_string())),
            )
        })?;
    let swarm = DockerSwarm::new(&cfg.docker.host, cfg.docker.timeout_secs)
        .map_err(|e| Exit::new(Exit::USAGE, format!("docker.host: {e}: {}", e.detail())))?;
    Ok(Arc::new(Ops {
        swarm: Arc::new(swarm),
        store,
        layers: LayerMap::from_config(cfg),
        redactor,
    }))
}
