//! Start-up shared by every subcommand: load and validate the config (exit 64), then build the
//! [`Ops`] value with its adapters. Nothing connects before the config is valid.

use std::path::Path;
use std::sync::Arc;

use ops_core::approvals::Approvals;
use ops_core::config::Config;
use ops_core::github::{GithubClient, MembershipCache};
use ops_core::identity::Identity;
use ops_core::layers::LayerMap;
use ops_core::limits::RateLimits;
use ops_core::permissions::Permissions;
use ops_core::protect::executors::{ProtectedBump, ProtectedRestart, ProtectedScale};
use ops_core::protect::{
    Protection, PROTECTED_BUMP, PROTECTED_RESTART, PROTECTED_ROLLBACK, PROTECTED_SCALE,
};
use ops_core::secret::Secret;
use ops_core::swarm::actions::{ScaleToZero, ServiceRollback};
use ops_core::swarm::docker::DockerSwarm;
use ops_core::Ops;

use crate::exit::Exit;

/// Reads and validates the config file and the permissions file it names; any problem is
/// exit 64 with one line naming the file and the key.
/// A missing file says what to do instead of "not found".
pub fn load_config(path: &Path) -> Result<(Config, Permissions), Exit> {
    if !path.exists() {
        return Err(Exit::new(
            Exit::USAGE,
            format!(
                "{}: no such configuration file: copy sprocket-ops.example.toml to {} and fill it \
                 in (README.md, \"Configuration reference\"), or name another file with \
                 --config FILE (or SPROCKET_OPS_CONFIG)",
                path.display(),
                path.display()
            ),
        ));
    }
    let cfg = Config::load(path).map_err(|e| Exit::new(Exit::USAGE, e.to_string()))?;
    if !cfg.permissions_file.exists() {
        return Err(Exit::new(
            Exit::USAGE,
            format!(
                "{}: permissions_file: {} does not exist: copy the repository's permissions.toml \
                 there (and edit its teams), or point permissions_file at it (relative to the \
                 configuration file)",
                path.display(),
                cfg.permissions_file.display()
            ),
        ));
    }
    let perms = Permissions::load(&cfg.permissions_file)
        .map_err(|e| Exit::new(Exit::USAGE, e.to_string()))?;
    Ok((cfg, perms))
}

/// The secrets the process holds, for the redactor.
#[derive(Default)]
pub struct Secrets {
    pub discord_token: Option<Secret>,
    pub database_password: Option<Secret>,
    pub github_token: Option<Secret>,
}

impl Secrets {
    /// Resolves the database password (if configured); the Discord and GitHub tokens only for
    /// `serve` (`discord`), where roles cannot be known without the GitHub token.
    pub fn resolve(cfg: &Config, discord: bool) -> Result<Secrets, Exit> {
        let (discord_token, github_token) = if discord {
            let d = cfg
                .discord_token()
                .map_err(|e| Exit::new(Exit::USAGE, e.to_string()))?;
            let g = cfg.github.token.resolve().map_err(|m| {
                Exit::new(
                    Exit::USAGE,
                    format!("(environment): github.token: {m} (needed to read team membership)"),
                )
            })?;
            (Some(d), Some(g))
        } else {
            (None, cfg.github.token.resolve().ok())
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
            github_token,
        })
    }

    fn values(&self) -> impl Iterator<Item = &str> {
        self.discord_token
            .iter()
            .chain(self.database_password.iter())
            .chain(self.github_token.iter())
            .map(Secret::expose)
    }
}

/// The secrets the process may read besides [`Secrets`]: the Vault token, the Pulumi passphrase
/// and access token, the probes' passwords (those that resolve now).
fn other_secrets(cfg: &Config) -> Vec<Secret> {
    let mut sources = Vec::new();
    if let Some(v) = &cfg.vault {
        sources.push(&v.token);
    }
    sources.extend(cfg.pulumi.passphrase.iter());
    sources.extend(cfg.pulumi.access_token.iter());
    if let Some(a) = &cfg.alerts {
        sources.extend(a.probes.iter().filter_map(|p| p.password.as_ref()));
    }
    sources
        .into_iter()
        .filter_map(|s| s.resolve().ok())
        .collect()
}

/// Opens the store (creating and migrating it) and sets up the Docker adapter (lazily
/// connected: an unreachable engine does not stop start-up).
/// What the [`Ops`] are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The bot: pooled store connections, every client.
    Serve,
    /// One CLI command: one store connection, no Vault client (no CLI command uses Vault).
    OneShot,
}

pub async fn build_ops(
    cfg: &Config,
    perms: Permissions,
    secrets: &Secrets,
    purpose: Purpose,
) -> Result<Arc<Ops>, Exit> {
    // One knowledge for the whole process: the log writer redacts with the same values.
    let redactor = Arc::new(ops_core::redact::global().clone());
    redactor.learn(secrets.values());
    // Every other secret the process can read, resolved now only to be known to the redactor
    // (each is resolved again where it is used: they may rotate).
    let others = other_secrets(cfg);
    redactor.learn(others.iter().map(Secret::expose));
    let pool = match purpose {
        Purpose::Serve => None,
        Purpose::OneShot => Some(1),
    };
    let backend =
        ops_core::store::open_with(&cfg.database.url, secrets.database_password.as_ref(), pool)
            .await
            .map_err(|e| {
                Exit::new(
                    Exit::CANTCREAT,
                    format!("database.url: {}", redactor.redact(&e.to_string())),
                )
            })?;
    let store = backend.store();
    let swarm = DockerSwarm::new(&cfg.docker.host, cfg.docker.timeout_secs)
        .map_err(|e| Exit::new(Exit::USAGE, format!("docker.host: {e}: {}", e.detail())))?
        .with_redactor(Arc::clone(&redactor));
    let github = GithubClient::new(&cfg.github, secrets.github_token.clone())
        .map_err(|e| Exit::new(Exit::USAGE, format!("github: {e}")))?;
    let perms = Arc::new(perms);
    let identity = Identity::new(
        store.clone(),
        MembershipCache::from_config(Arc::new(github), &cfg.github),
        Arc::clone(&perms),
        &cfg.github.static_links,
    );
    // Approval buttons are authenticated with a key derived from the bot token: stable across
    // restarts, never stored. The CLI posts no buttons and uses a per-process key.
    let mac_secret = match &secrets.discord_token {
        Some(t) => t.expose().as_bytes().to_vec(),
        None => format!("cli-{}-{}", std::process::id(), ops_core::ops::now_ms()).into_bytes(),
    };
    let swarm: Arc<dyn ops_core::swarm::SwarmApi> = Arc::new(swarm);
    let mut approvals = Approvals::new(store.clone(), perms, &mac_secret);
    approvals.register(
        "scale_to_zero",
        Arc::new(ScaleToZero::new(Arc::clone(&swarm)).with_redactor(Arc::clone(&redactor))),
    );
    let vault: Option<Arc<dyn ops_core::vault::VaultApi>> = match &cfg.vault {
        // No CLI command talks to Vault; building its HTTP client loads every CA certificate.
        Some(_) if purpose == Purpose::OneShot => None,
        Some(v) => Some(Arc::new(
            ops_core::vault::VaultClient::new(v)
                .map_err(|e| Exit::new(Exit::USAGE, format!("vault: {e}")))?,
        )),
        None => None,
    };
    if let Some(v) = &vault {
        approvals.register(
            ops_core::vault::VAULT_SEAL_ACTION,
            Arc::new(ops_core::vault::VaultSeal::new(Arc::clone(v))),
        );
    }
    let pulumi = ops_core::pulumi::PulumiRunner::new(&cfg.pulumi, Arc::clone(&redactor));
    let metrics = Arc::new(ops_core::metrics::Metrics::new());
    metrics.redact_with(Arc::clone(&redactor));
    let deployer = Arc::new(
        ops_core::deploy::Deployer::new(
            cfg,
            Arc::new(pulumi),
            store.clone(),
            Arc::clone(&swarm),
            Arc::clone(&redactor),
        )
        .with_metrics(Arc::clone(&metrics)),
    );
    let layer_deploys = Arc::new(ops_core::deploy::LayerDeployExecutor::new(Arc::clone(
        &deployer,
    )));
    for action in [
        "layer_deploy_destructive",
        "layer_1_deploy",
        "layer_rollback",
    ] {
        approvals.register(action, layer_deploys.clone());
    }
    approvals.register(
        "unlock",
        Arc::new(ops_core::deploy::UnlockExecutor::new(Arc::clone(&deployer))),
    );
    approvals.register(
        "service_rollback",
        Arc::new(ServiceRollback::new(Arc::clone(&swarm)).with_redactor(Arc::clone(&redactor))),
    );
    // Changes to the services of `always_requires_approval` layers (and, by break-glass, to
    // sprocket-ops' own services).
    let protection = Arc::new(Protection::from_config(cfg));
    approvals.register(
        PROTECTED_BUMP,
        Arc::new(
            ProtectedBump::new(Arc::clone(&swarm))
                .with_redactor(Arc::clone(&redactor))
                .with_images(Arc::new(protection.images.clone())),
        ),
    );
    approvals.register(
        PROTECTED_SCALE,
        Arc::new(ProtectedScale::new(Arc::clone(&swarm)).with_redactor(Arc::clone(&redactor))),
    );
    approvals.register(
        PROTECTED_RESTART,
        Arc::new(ProtectedRestart::new(Arc::clone(&swarm)).with_redactor(Arc::clone(&redactor))),
    );
    approvals.register(
        PROTECTED_ROLLBACK,
        Arc::new(ServiceRollback::new(Arc::clone(&swarm)).with_redactor(Arc::clone(&redactor))),
    );
    Ok(Arc::new(Ops {
        swarm,
        store,
        layers: LayerMap::from_config(cfg),
        redactor,
        identity: Arc::new(identity),
        approvals: Arc::new(approvals),
        vault,
        deployer,
        alert_store: backend.alerts(),
        metrics,
        protection,
        limits: Arc::new(RateLimits::new(
            cfg.limits.commands_per_minute,
            cfg.limits.destructive_per_hour,
        )),
    }))
}
