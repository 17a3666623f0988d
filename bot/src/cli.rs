//! The command line: the same operations as the slash commands, for when Discord is down, and
//! audited the same way (the actor is the OS user). Output on stdout, diagnostics on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ops_core::audit::{Actor, AuditFilter};
use ops_core::status::StatusReport;

use futures::StreamExt;
use ops_core::deploy::{
    DeployError, DeployOutcome, DeployPhase, DeployPlan, DeployProgress, DeployRecord,
    DeployReport, DeployRequest, LayerLock, ProgressFn,
};
use ops_core::swarm::rollout::RolloutOutcome;
use ops_core::swarm::{SwarmError, UpdateStarted};
use ops_core::{Ops, OpsError};

use crate::app::{build_ops, load_config, Purpose, Secrets};
use crate::exit::Exit;
use ops_core::services::ServiceChange;

mod services;

/// sprocket-ops: operate the Sprocket platform (Swarm, Pulumi layers, Vault) from Discord or here.
#[derive(Debug, Parser)]
#[command(name = "sprocket-ops", version)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "SPROCKET_OPS_CONFIG",
        default_value = "sprocket-ops.toml"
    )]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect to Discord and serve the slash commands (needs DISCORD_TOKEN or discord.token).
    Serve,
    /// Validate the configuration file and exit (0 valid, 64 invalid). Static: reads the
    /// files only, contacts nothing.
    CheckConfig,
    /// Check the live environment: secrets present (never printed), layer directories exist,
    /// `pulumi version` runs, Docker and Vault answer. One line per check; exit 1 on any problem.
    Doctor,
    /// Show the Swarm services by layer.
    Status {
        /// Print JSON: {"services":[{"name","image","running","desired","layer"}]}.
        #[arg(long)]
        json: bool,
        /// Only this layer.
        #[arg(long)]
        layer: Option<String>,
    },
    /// Set one service's image tag (or full reference) and follow the rollout. A full
    /// reference must name a repository of `[images] allowed`. A service of a layer that always
    /// needs approval, or one of sprocket-ops' own services, needs --break-glass (audited).
    Bump {
        service: String,
        /// A tag (v2) or a full image reference.
        tag: String,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Set a service's replica count. Scaling to 0 (or any scale of a service of a layer that
    /// always needs approval) needs a second engineer: request it in Discord, or pass
    /// --break-glass when Discord is down (audited).
    Scale {
        service: String,
        replicas: u64,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Force a rolling restart of a service (of a layer that always needs approval, or of
    /// sprocket-ops' own services: --break-glass only).
    Restart {
        service: String,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Roll a service back to its previous spec (needs --break-glass outside Discord).
    Rollback {
        service: String,
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Print a service's logs, secrets redacted (stdout to stdout, stderr to stderr).
    Logs {
        service: String,
        /// Only lines newer than this: 10m, 2h, 1d.
        #[arg(long, value_parser = parse_age)]
        since: Option<i64>,
        /// Only the last N lines of each task.
        #[arg(long, default_value_t = 200)]
        tail: u64,
        /// Only lines containing this text.
        #[arg(long)]
        grep: Option<String>,
        /// At most this many bytes per stream are kept (the newest).
        #[arg(long, default_value_t = 64 * 1024 * 1024)]
        max_bytes: usize,
    },
    /// Check the local health endpoint (the image's HEALTHCHECK): exit 0 when it answers 200
    /// within 3 s, 1 otherwise. Reads no configuration.
    Probe {
        /// The URL to GET (plain http).
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
    },
    /// Run the Docker API proxy the stack puts between the bot and the engine socket: it
    /// forwards only the (method, path) pairs of the shipped allow-list (the requests the bot
    /// makes) and answers 403 to everything else. Reads no configuration.
    DockerProxy {
        /// Where to listen (the stack's internal `socket` network).
        #[arg(long, default_value = "0.0.0.0:2375")]
        listen: String,
        /// The engine: unix://PATH, tcp://HOST:PORT or http://HOST:PORT.
        #[arg(long, default_value = "unix:///var/run/docker.sock")]
        upstream: String,
    },
    /// Deploy a Pulumi layer: lock, `pulumi config set` (with --image), preview, apply, verify
    /// on the Swarm. Progress on stderr, the report on stdout. A preview that deletes or
    /// replaces resources (or a layer that always needs approval) is refused: request the
    /// approval in Discord, or pass --break-glass when Discord is down (audited). Ctrl-C cancels
    /// gracefully (pulumi finishes the step in flight). Exit 0 deployed, 1 failed, cancelled or
    /// refused, 64 bad input, 69 Docker unreachable.
    Deploy {
        /// The layer, as configured (`platform`).
        layer: String,
        /// The image tag to deploy (`v2`), for layers with an image tag setting. A value that
        /// looks like an option (`--yes`) is taken as the tag, and refused as one.
        #[arg(long, value_name = "TAG", allow_hyphen_values = true)]
        image: Option<String>,
        /// Apply a preview that needs an approval without one, stating why (only when Discord
        /// is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Show a layer's deploys, newest first.
    History {
        /// The layer, as configured.
        layer: String,
        /// At most this many deploys (1-100).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// Print JSON, one array of deploy records.
        #[arg(long)]
        json: bool,
    },
    /// Show the layer locks held now (who deploys what, since when, until when).
    Locks,
    /// Show the audit log, newest first.
    Audit {
        /// Print JSON, one array of records.
        #[arg(long)]
        json: bool,
        /// Only this actor (Discord id or CLI user).
        #[arg(long)]
        user: Option<String>,
        /// Only entries newer than this: e.g. 30m, 12h, 7d.
        #[arg(long, value_parser = parse_age)]
        since: Option<i64>,
        /// At most this many entries (1-1000).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

/// `30m`, `12h`, `7d`, `90s` -> milliseconds (the same parser as `/audit since`).
pub fn parse_age(s: &str) -> Result<i64, String> {
    commands::parse_age(s)
}

/// Appends the audit row of a read-only command that ran since `started` (the actor is the
/// OS user).
async fn record_read(
    ops: &Ops,
    command: &str,
    params: &serde_json::Value,
    ok: bool,
    started: Instant,
) {
    let outcome = if ok {
        ops_core::audit::Outcome::Ok
    } else {
        ops_core::audit::Outcome::Error
    };
    ops.record(
        &Actor::cli_from_env(),
        command,
        params,
        outcome,
        None,
        None,
        started,
    )
    .await;
}

/// Runs a subcommand.
pub async fn run(cli: &Cli) -> Result<(), Exit> {
    if let Command::Probe { url } = &cli.command {
        return crate::health::probe(url).await;
    }
    if let Command::DockerProxy { listen, upstream } = &cli.command {
        return crate::docker_proxy::run(listen, upstream).await;
    }
    let (cfg, perms) = load_config(&cli.config)?;
    match &cli.command {
        // Answered above, before any configuration.
        Command::Probe { .. } | Command::DockerProxy { .. } => Ok(()),
        Command::Serve => crate::serve::serve(cfg, perms, crate::serve::shutdown_signal()).await,
        Command::CheckConfig => {
            println!(
                "{}: ok ({cfg}); {}: ok ({} roles)",
                cli.config.display(),
                cfg.permissions_file.display(),
                perms.role_names().count()
            );
            Ok(())
        }
        Command::Doctor => crate::doctor::doctor(&cfg, &cli.config).await,
        Command::Status { json, layer } => {
            if let Some(l) = layer {
                ops_core::ops::check_layer(&ops_core::layers::LayerMap::from_config(&cfg), l)
                    .map_err(|m| Exit::new(Exit::USAGE, m))?;
            }
            let secrets = Secrets::resolve(&cfg, false)?;
            let started = Instant::now();
            // The snapshot does not need the database: it is taken while the store opens
            // and migrates, so the command costs the slower of the two, not their sum.
            // Its redactor learns the specs' secrets; the report is redacted by the Ops'.
            let learned = std::sync::Arc::new(ops_core::redact::Redactor::default());
            let swarm = ops_core::swarm::docker::DockerSwarm::new(
                &cfg.docker.host,
                cfg.docker.timeout_secs,
            )
            .map_err(|e| Exit::new(Exit::USAGE, format!("docker.host: {e}: {}", e.detail())))?
            .with_redactor(std::sync::Arc::clone(&learned));
            let (ops, snapshot) = tokio::join!(
                build_ops(&cfg, perms, &secrets, Purpose::OneShot),
                ops_core::swarm::SwarmApi::snapshot(&swarm)
            );
            let ops = ops?;
            ops.redactor.absorb(&learned);
            let report = ops.status_from(snapshot, layer.as_deref());
            record_read(
                &ops,
                "status",
                &serde_json::json!({ "layer": layer }),
                true,
                started,
            )
            .await;
            if let Some(err) = &report.docker_error {
                return Err(Exit::new(
                    Exit::UNAVAILABLE,
                    format!("docker.host {}: {err}", cfg.docker.host),
                ));
            }
            let out = if *json {
                status_json(&report)
            } else {
                status_table(&report)
            };
            print_stdout(&out)
        }
        Command::Bump {
            service,
            tag,
            break_glass,
        } => {
            let ops = one_shot_ops(&cfg, perms).await?;
            let what = ServiceChange::Bump(tag.clone());
            services::run(&ops, service, &what, break_glass).await
        }
        Command::Scale {
            service,
            replicas,
            break_glass,
        } => {
            let ops = one_shot_ops(&cfg, perms).await?;
            let what = ServiceChange::Scale(*replicas);
            services::run(&ops, service, &what, break_glass).await
        }
        Command::Restart {
            service,
            break_glass,
        } => {
            let ops = one_shot_ops(&cfg, perms).await?;
            services::run(&ops, service, &ServiceChange::Restart, break_glass).await
        }
        Command::Rollback {
            service,
            break_glass,
        } => {
            let ops = one_shot_ops(&cfg, perms).await?;
            services::run(&ops, service, &ServiceChange::Rollback, break_glass).await
        }
        Command::Logs {
            service,
            since,
            tail,
            grep,
            max_bytes,
        } => {
            let ops = one_shot_ops(&cfg, perms).await?;
            let query = ops_core::swarm::logs::LogQuery {
                since: since.map(|age| (ops_core::ops::now_ms() - age) / 1000),
                tail: Some(*tail),
                follow: false,
                timestamps: false,
            };
            let params = serde_json::json!({ "service": service, "tail": tail, "grep": grep });
            let logs = ops
                .audited(&Actor::cli_from_env(), "logs", params, || async {
                    ops.logs(service, query, grep.as_deref(), *max_bytes).await
                })
                .await
                .map_err(|e| Exit::new(1, e.to_string()))?;
            print_stdout(&logs.stdout)?;
            if !logs.stdout.is_empty() {
                print_stdout("\n")?;
            }
            if !logs.stderr.is_empty() {
                eprintln!("{}", logs.stderr);
            }
            if logs.truncated {
                eprintln!(
                    "sprocket-ops: older lines were cut to keep {max_bytes} bytes per stream"
                );
            }
            match logs.error {
                Some(e) => Err(Exit::new(1, ops.swarm_error(e).to_string())),
                None => Ok(()),
            }
        }
        Command::Deploy {
            layer,
            image,
            break_glass,
        } => {
            // The layer first: a typo costs no database or Docker connection.
            ops_core::ops::check_layer(&ops_core::layers::LayerMap::from_config(&cfg), layer)
                .map_err(|m| Exit::new(Exit::USAGE, m))?;
            let reason = match break_glass {
                Some(_) => Some(break_glass_reason(break_glass, "a deploy")?),
                None => None,
            };
            let ops = one_shot_ops(&cfg, perms).await?;
            deploy_layer(&ops, layer, image.as_deref(), reason).await
        }
        Command::History { layer, limit, json } => {
            ops_core::ops::check_layer(&ops_core::layers::LayerMap::from_config(&cfg), layer)
                .map_err(|m| Exit::new(Exit::USAGE, m))?;
            let ops = one_shot_ops(&cfg, perms).await?;
            let started = Instant::now();
            let rows = ops.deployer.history(layer, *limit).await;
            record_read(
                &ops,
                "history",
                &serde_json::json!({ "layer": layer, "limit": limit }),
                rows.is_ok(),
                started,
            )
            .await;
            let rows = rows.map_err(deploy_exit)?;
            let out = if *json {
                serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
            } else {
                history_table(&rows)
            };
            print_stdout(&out)
        }
        Command::Locks => {
            let ops = one_shot_ops(&cfg, perms).await?;
            let started = Instant::now();
            let locks = ops.deployer.locks().await;
            record_read(
                &ops,
                "locks",
                &serde_json::json!({}),
                locks.is_ok(),
                started,
            )
            .await;
            print_stdout(&locks_table(&locks.map_err(deploy_exit)?))
        }
        Command::Audit {
            json,
            user,
            since,
            limit,
        } => {
            let ops = one_shot_ops(&cfg, perms).await?;
            let started = Instant::now();
            let filter = AuditFilter {
                actor_id: user.clone(),
                since_ms: since.map(|age| ops_core::ops::now_ms() - age),
                limit: *limit,
            };
            let rows = ops
                .audit_log(&filter)
                .await
                .map_err(|e| Exit::new(Exit::CANTCREAT, format!("database.url: {e}")))?;
            ops.record(
                &Actor::cli_from_env(),
                "audit",
                &serde_json::json!({ "user": user, "since_ms": since, "limit": limit }),
                ops_core::audit::Outcome::Ok,
                None,
                None,
                started,
            )
            .await;
            let out = if *json {
                serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
            } else {
                rows.iter()
                    .map(|r| {
                        let e = &r.entry;
                        let at = chrono::DateTime::from_timestamp_millis(e.at_ms)
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default();
                        format!(
                            "{at}  {:<7} {:<20} {:<12} {:<6} {}\n",
                            e.actor.frontend.as_str(),
                            e.actor.name,
                            e.command,
                            e.outcome.as_str(),
                            e.params
                        )
                    })
                    .collect()
            };
            print_stdout(&out)
        }
    }
}

/// Runs a change, audits it, then follows its rollout printing progress lines; a rollback by
/// Swarm, a pause or a timeout is a failure (exit 1).
async fn change<'a, F, Fut>(
    ops: &'a Ops,
    command: &str,
    params: serde_json::Value,
    op: F,
) -> Result<(), Exit>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<UpdateStarted, OpsError>> + 'a,
{
    let started = ops
        .audited(&Actor::cli_from_env(), command, params, op)
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    println!(
        "{command} {}: {} -> {}",
        started.name,
        ops_core::swarm::display_image(&started.image_before),
        ops_core::swarm::display_image(&started.image_after)
    );
    let mut stream = ops
        .follow(&started, std::time::Duration::from_secs(600))
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    let mut last = String::new();
    while let Some(p) = stream.next().await {
        let line = format!(
            "  {}/{} updated, {} outdated{}",
            p.running_updated.min(p.desired),
            p.desired,
            p.running_outdated,
            p.update_state
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default()
        );
        if line != last {
            println!("{line}");
            last = line;
        }
        if let Some(outcome) = p.outcome {
            return match outcome {
                RolloutOutcome::Completed => {
                    println!("completed");
                    Ok(())
                }
                RolloutOutcome::RolledBack { message } => Err(Exit::new(
                    1,
                    format!("failed: Swarm rolled it back ({message})"),
                )),
                RolloutOutcome::Paused { message } => {
                    Err(Exit::new(1, format!("paused by Swarm ({message})")))
                }
                RolloutOutcome::TimedOut => {
                    Err(Exit::new(1, "still in progress after 600 s".to_string()))
                }
                RolloutOutcome::Failed(e) => Err(Exit::new(1, ops.swarm_error(e).to_string())),
            };
        }
    }
    Err(Exit::new(
        1,
        "the rollout could not be followed".to_string(),
    ))
}

fn break_glass_reason(reason: &Option<String>, what: &str) -> Result<String, Exit> {
    match reason.as_deref().map(str::trim) {
        Some(r) if r.len() >= 10 => Ok(r.to_string()),
        Some(_) => Err(Exit::new(Exit::USAGE, "--break-glass needs a reason of at least 10 characters".to_string())),
        None => Err(Exit::new(
            Exit::USAGE,
            format!("{what} needs a second engineer's approval: request it in Discord, or if Discord is down re-run with --break-glass \"<reason>\" (audited)"),
        )),
    }
}

/// A destructive action without a Discord approval: only from the node's CLI, with a reason,
/// audited as such before it runs (no row, no action: see [`Ops::break_glass`]).
async fn break_glass_action(
    ops: &Ops,
    action: &str,
    params: serde_json::Value,
) -> Result<(), Exit> {
    let summary = ops
        .break_glass(&Actor::cli_from_env(), action, params.clone(), || async {
            ops.approvals.execute_unapproved(action, &params).await
        })
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    println!("{summary}");
    Ok(())
}

/// The ops of a one-shot CLI command (one store connection, no Vault client), with the
/// secrets the config names resolved now.
async fn one_shot_ops(
    cfg: &ops_core::config::Config,
    perms: ops_core::permissions::Permissions,
) -> Result<std::sync::Arc<Ops>, Exit> {
    build_ops(cfg, perms, &Secrets::resolve(cfg, false)?, Purpose::OneShot).await
}

/// `sprocket-ops deploy`: the Deployer flow with progress on stderr and the report on stdout,
/// audited as `deploy` (plus `break_glass.<action>` when an approval is skipped).
async fn deploy_layer(
    ops: &Ops,
    layer: &str,
    image: Option<&str>,
    break_glass: Option<String>,
) -> Result<(), Exit> {
    let actor = Actor::cli_from_env();
    let started = Instant::now();
    let params = serde_json::json!({ "layer": layer, "image": image, "break_glass": break_glass });
    let req = DeployRequest {
        layer: layer.to_string(),
        image_tag: image.map(str::to_string),
        requester: actor.name.clone(),
        reason: break_glass.clone().unwrap_or_default(),
    };
    let progress = progress_printer();
    let mut cancel = CancelOnCtrlC::new(layer);
    let first = cancel
        .run(ops, ops.deployer.deploy(&req, progress.clone()))
        .await;
    let result = match first {
        Ok(DeployOutcome::NeedsApproval(plan)) => match (&break_glass, cancel.requested) {
            (_, true) => Err(DeployError::Cancelled {
                layer: layer.to_string(),
                deploy_id: String::new(),
            }),
            (None, false) => {
                let message = needs_approval_message(&plan);
                ops.record(
                    &actor,
                    "deploy",
                    &params,
                    ops_core::audit::Outcome::Denied,
                    Some(message.clone()),
                    None,
                    started,
                )
                .await;
                return Err(Exit::new(1, message));
            }
            (Some(reason), false) => {
                let action = plan
                    .approval_action
                    .clone()
                    .unwrap_or_else(|| ops_core::deploy::ACTION_DESTRUCTIVE.to_string());
                eprintln!(
                    "break glass: applying without an approval ({}), reason recorded",
                    plan.approval_reasons.join("; ")
                );
                let bg_params = serde_json::json!({
                    "layer": layer,
                    "image": image,
                    "break_glass": reason,
                    "digest": plan.digest,
                });
                // No row, no action: the break-glass row is written before the apply.
                let mut ran = None;
                let (ran_ref, cancel_ref) = (&mut ran, &mut cancel);
                let gate = ops
                    .break_glass(&actor, &action, bg_params, move || async move {
                        let r = cancel_ref
                            .run(
                                ops,
                                ops.deployer.deploy_approved(
                                    &plan.request,
                                    &plan.digest,
                                    progress.clone(),
                                ),
                            )
                            .await;
                        let audit = match &r {
                            Ok(DeployOutcome::Succeeded(_)) => Ok(()),
                            Ok(DeployOutcome::NeedsApproval(_)) => Err(OpsError {
                                summary: "the approved deploy asked for another approval".into(),
                                error_id: ops_core::ops::new_error_id(),
                            }),
                            Err(e) => Err(OpsError {
                                summary: e.to_string(),
                                error_id: ops_core::ops::new_error_id(),
                            }),
                        };
                        *ran_ref = Some(r);
                        audit
                    })
                    .await;
                match (ran, gate) {
                    (Some(result), _) => result,
                    (None, Err(e)) => return Err(Exit::new(1, e.to_string())),
                    (None, Ok(())) => {
                        return Err(Exit::new(1, "the break-glass deploy did not run"))
                    }
                }
            }
        },
        other => other,
    };
    let (outcome, detail) = match &result {
        Ok(DeployOutcome::Succeeded(_)) => (ops_core::audit::Outcome::Ok, None),
        Ok(DeployOutcome::NeedsApproval(_)) => (
            ops_core::audit::Outcome::Error,
            Some("the approved deploy asked for another approval".to_string()),
        ),
        Err(e) => (ops_core::audit::Outcome::Error, Some(e.to_string())),
    };
    ops.record(&actor, "deploy", &params, outcome, detail, None, started)
        .await;
    match result {
        Ok(DeployOutcome::Succeeded(report)) => print_stdout(&deploy_report(&report)),
        Ok(DeployOutcome::NeedsApproval(_)) => Err(Exit::new(
            1,
            "the approved deploy asked for another approval: nothing more was applied".to_string(),
        )),
        Err(DeployError::Cancelled { layer, deploy_id }) => {
            print_stdout(&format!(
                "cancelled: the deploy of {layer}{} was interrupted\n",
                if deploy_id.is_empty() {
                    String::new()
                } else {
                    format!(" (deploy {deploy_id})")
                }
            ))?;
            Err(Exit::new(
                1,
                format!("the deploy of `{layer}` was cancelled"),
            ))
        }
        Err(e) => Err(deploy_exit(e)),
    }
}

/// Cancels the running deploy through [`ops_core::deploy::Deployer::cancel`] on the first
/// SIGINT; later ones only say it is under way (pulumi finishes the step in flight).
struct CancelOnCtrlC {
    layer: String,
    requested: bool,
    /// One listener for the whole command, so no SIGINT falls between two waits; `None` when
    /// no handler could be installed (Ctrl-C then keeps its default: terminate).
    sigint: Option<tokio::signal::unix::Signal>,
}

impl CancelOnCtrlC {
    fn new(layer: &str) -> CancelOnCtrlC {
        use tokio::signal::unix::{signal, SignalKind};
        CancelOnCtrlC {
            layer: layer.to_string(),
            requested: false,
            sigint: signal(SignalKind::interrupt()).ok(),
        }
    }

    async fn run<T>(&mut self, ops: &Ops, fut: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(fut);
        let Some(mut sigint) = self.sigint.take() else {
            return fut.await;
        };
        // A Ctrl-C before the deploy registered itself is retried until it lands.
        let mut delivered = false;
        let mut retry = tokio::time::interval(std::time::Duration::from_millis(200));
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = sigint.recv() => {
                    if self.requested {
                        eprintln!("cancelling already: waiting for pulumi to finish the step in flight");
                    } else {
                        self.requested = true;
                        eprintln!("cancelling the deploy of {}: pulumi finishes the step in flight", self.layer);
                    }
                }
                _ = retry.tick(), if self.requested && !delivered => {}
            }
            if self.requested && !delivered {
                match ops.deployer.cancel(&self.layer).await {
                    Ok(true) => delivered = true,
                    Ok(false) => {}
                    Err(e) => {
                        eprintln!("cancelling failed: {e}");
                        delivered = true;
                    }
                }
            }
        };
        self.sigint = Some(sigint);
        out
    }
}

/// Refusal text of a deploy whose preview needs an approval.
fn needs_approval_message(plan: &DeployPlan) -> String {
    format!(
        "refused: deploying `{}` needs a second engineer's approval ({}; preview: {}). Nothing was applied. Request it in Discord (/deploy {}), or if Discord is down re-run with --break-glass \"<reason>\" (audited)",
        plan.request.layer,
        plan.approval_reasons.join("; "),
        plan.preview.totals().describe(),
        plan.request.layer
    )
}

/// The exit of a failed deploy command: 64 for bad input, 69 when Docker is unreachable, 73
/// when the store is, 1 otherwise; the message with its redacted diagnostics.
fn deploy_exit(e: DeployError) -> Exit {
    let code = match &e {
        DeployError::UnknownLayer(_)
        | DeployError::NoImageTag { .. }
        | DeployError::InvalidArgument { .. } => Exit::USAGE,
        DeployError::Swarm(SwarmError::Unreachable { .. } | SwarmError::NotAManager { .. }) => {
            Exit::UNAVAILABLE
        }
        DeployError::Store { .. } => Exit::CANTCREAT,
        _ => 1,
    };
    let mut message = e.to_string();
    for line in e.errors() {
        message.push_str(&format!("\n  error: {line}"));
    }
    if let Some(tag) = e.rollback_target() {
        message.push_str(&format!(
            "\n  the last good tag is `{tag}`: request a rollback in Discord (/rollback)"
        ));
    }
    Exit::new(code, message)
}

/// A progress callback printing what changed as plain lines on stderr.
fn progress_printer() -> ProgressFn {
    let last: std::sync::Mutex<Option<DeployProgress>> = std::sync::Mutex::new(None);
    std::sync::Arc::new(move |p: &DeployProgress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        for line in progress_lines(last.as_ref(), p) {
            let _ = writeln!(err, "{line}");
        }
        *last = Some(p.clone());
    })
}

fn phase_name(phase: DeployPhase) -> &'static str {
    match phase {
        DeployPhase::Locking => "locking",
        DeployPhase::Configuring => "configuring",
        DeployPhase::Previewing => "previewing",
        DeployPhase::AwaitingApproval => "awaiting approval",
        DeployPhase::Applying => "applying",
        DeployPhase::Verifying => "verifying",
        DeployPhase::Succeeded => "succeeded",
        DeployPhase::Failed => "failed",
        DeployPhase::Cancelled => "cancelled",
    }
}

/// The lines worth printing for a progress change: the phase, steps done of planned with the
/// resource in flight, new warnings and errors.
pub fn progress_lines(prev: Option<&DeployProgress>, p: &DeployProgress) -> Vec<String> {
    let mut lines = Vec::new();
    if prev.map(|q| q.phase) != Some(p.phase) {
        let id = match (&p.deploy_id, prev.and_then(|q| q.deploy_id.as_ref())) {
            (Some(id), None) => format!(" (deploy {id})"),
            _ => String::new(),
        };
        lines.push(format!("{}: {}{id}", p.layer, phase_name(p.phase)));
    }
    let steps_changed = prev.map(|q| (q.steps_done, q.steps_planned, &q.current))
        != Some((p.steps_done, p.steps_planned, &p.current));
    if steps_changed && (p.phase == DeployPhase::Applying || p.steps_done > 0) {
        lines.push(format!(
            "  {}/{} steps{}",
            p.steps_done,
            p.steps_planned,
            p.current
                .as_deref()
                .map(|c| format!(", now {c}"))
                .unwrap_or_default()
        ));
    }
    for w in &p.warnings {
        if !prev.is_some_and(|q| q.warnings.contains(w)) {
            lines.push(format!("  warning: {w}"));
        }
    }
    for e in &p.errors {
        if !prev.is_some_and(|q| q.errors.contains(e)) {
            lines.push(format!("  error: {e}"));
        }
    }
    lines
}

/// The final report of a successful deploy.
pub fn deploy_report(r: &DeployReport) -> String {
    let rec = &r.record;
    let mut out = format!(
        "deployed {}{}: succeeded",
        rec.layer,
        rec.image_after
            .as_deref()
            .map(|t| format!(
                " tag {t}{}",
                rec.image_before
                    .as_deref()
                    .map(|b| format!(" (was {b})"))
                    .unwrap_or_default()
            ))
            .unwrap_or_default()
    );
    if let Some(ms) = rec.duration_ms() {
        out.push_str(&format!(" in {:.1} s", ms as f64 / 1000.0));
    }
    out.push('\n');
    out.push_str(&format!("deploy id: {}\n", rec.id));
    out.push_str(&format!(
        "changes: {} ({} steps done)\n",
        r.preview.totals().describe(),
        r.up.steps_done
    ));
    for line in r.preview.describe() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("services converged: {}\n", r.services.len()));
    for s in &r.services {
        let replicas = match (s.running, s.desired) {
            (Some(a), Some(b)) => format!("{a}/{b}"),
            _ => "-".to_string(),
        };
        out.push_str(&format!("  {}  {replicas}  {}\n", s.name, s.image));
    }
    for w in &r.up.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `history` as a plain table, newest first.
pub fn history_table(rows: &[DeployRecord]) -> String {
    if rows.is_empty() {
        return "no deploys yet\n".to_string();
    }
    let mut out = String::new();
    for d in rows {
        let tags = match (&d.image_before, &d.image_after) {
            (Some(b), Some(a)) => format!("{b} -> {a}"),
            (None, Some(a)) => format!("-> {a}"),
            _ => "-".to_string(),
        };
        let duration = d
            .duration_ms()
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".to_string());
        out.push_str(&format!(
            "{}  {:<11} {:<16} by {}{}  {duration}  {}\n",
            ms_time(d.started_at_ms),
            d.state.as_str(),
            tags,
            d.requester,
            d.approver
                .as_deref()
                .map(|a| format!(", approved by {a}"))
                .unwrap_or_default(),
            d.id
        ));
        if let Some(e) = &d.error {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}

/// `locks` as a plain table.
pub fn locks_table(locks: &[LayerLock]) -> String {
    if locks.is_empty() {
        return "no layer locks held\n".to_string();
    }
    locks
        .iter()
        .map(|l| {
            format!(
                "{}  held by {} since {} until {}{}{}\n",
                l.layer,
                l.owner,
                ms_time(l.started_at_ms),
                ms_time(l.expires_at_ms),
                l.deploy_id
                    .as_deref()
                    .map(|d| format!(" (deploy {d})"))
                    .unwrap_or_default(),
                if l.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", l.reason)
                }
            )
        })
        .collect()
}

fn print_stdout(s: &str) -> Result<(), Exit> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
    Ok(())
}

/// The documented `--json` shape.
pub fn status_json(report: &StatusReport) -> String {
    let services: Vec<serde_json::Value> = report
        .services()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "image": s.image,
                "running": s.running,
                "desired": s.desired,
                "layer": s.layer,
            })
        })
        .collect();
    serde_json::json!({ "services": services }).to_string() + "\n"
}

/// A plain table grouped by layer.
pub fn status_table(report: &StatusReport) -> String {
    let width = report
        .services()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    for layer in &report.layers {
        out.push_str(&format!("{}\n", layer.name));
        if layer.services.is_empty() {
            out.push_str("  (no services)\n");
        }
        for s in &layer.services {
            let replicas = format!("{}/{}", s.running, s.desired);
            out.push_str(&format!(
                "  {:<width$}  {:>7}  {}",
                s.name, replicas, s.image
            ));
            if let Some(u) = &s.update_state {
                out.push_str(&format!("  (update {u})"));
            }
            out.push('\n');
            for t in &s.failing_tasks {
                let code = t
                    .exit_code
                    .map(|c| format!(" exit {c}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {:<width$}  ↳ {}{code}\n",
                    "",
                    t.error.as_deref().unwrap_or(&t.state)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_progress_prints_phase_changes_steps_and_each_warning_once() {
        let mut p = DeployProgress::new("platform");
        assert_eq!(progress_lines(None, &p), vec!["platform: locking"]);
        let prev = p.clone();
        p.deploy_id = Some("d1".into());
        p.phase = DeployPhase::Applying;
        p.steps_planned = 3;
        p.warnings = vec!["slow registry".into()];
        assert_eq!(
            progress_lines(Some(&prev), &p),
            vec![
                "platform: applying (deploy d1)",
                "  0/3 steps",
                "  warning: slow registry"
            ]
        );
        let prev = p.clone();
        p.steps_done = 1;
        p.current = Some("svc1".into());
        assert_eq!(
            progress_lines(Some(&prev), &p),
            vec!["  1/3 steps, now svc1"]
        );
        let prev = p.clone();
        assert!(
            progress_lines(Some(&prev), &p).is_empty(),
            "no change, no line"
        );
        p.phase = DeployPhase::Failed;
        p.errors = vec!["boom".into()];
        assert_eq!(
            progress_lines(Some(&prev), &p),
            vec!["platform: failed", "  error: boom"]
        );
    }

    #[test]
    fn ages_parse_or_explain() {
        assert_eq!(parse_age("30m"), Ok(1_800_000));
        assert_eq!(parse_age("2d"), Ok(172_800_000));
        for bad in ["", "m", "5", "5w", "-5m", "99999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
