//! The command line: the same operations as the slash commands, for when Discord is down, and
//! audited the same way (the actor is the OS user). Output on stdout, diagnostics on stderr.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ops_core::audit::{Actor, AuditFilter};
use ops_core::status::StatusReport;

use futures::StreamExt;
use ops_core::swarm::rollout::RolloutOutcome;
use ops_core::swarm::UpdateStarted;
use ops_core::{Ops, OpsError};

use crate::app::{build_ops, load_config, Purpose, Secrets};
use crate::exit::Exit;

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
    /// Validate the configuration file and exit (0 valid, 64 invalid).
    CheckConfig,
    /// Show the Swarm services by layer.
    Status {
        /// Print JSON: {"services":[{"name","image","running","desired","layer"}]}.
        #[arg(long)]
        json: bool,
        /// Only this layer.
        #[arg(long)]
        layer: Option<String>,
    },
    /// Set one service's image tag (or full reference) and follow the rollout.
    Bump {
        service: String,
        /// A tag (v2) or a full image reference.
        tag: String,
    },
    /// Set a service's replica count. Scaling to 0 needs a second engineer: request it in
    /// Discord, or pass --break-glass when Discord is down (audited).
    Scale {
        service: String,
        replicas: u64,
        /// Act without a Discord approval, stating why (only when Discord is unavailable).
        #[arg(long, value_name = "REASON")]
        break_glass: Option<String>,
    },
    /// Force a rolling restart of a service.
    Restart { service: String },
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

/// Runs a subcommand.
pub async fn run(cli: &Cli) -> Result<(), Exit> {
    if let Command::Probe { url } = &cli.command {
        return crate::health::probe(url).await;
    }
    let (cfg, perms) = load_config(&cli.config)?;
    match &cli.command {
        Command::Probe { .. } => Ok(()), // answered above, before any configuration
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
        Command::Status { json, layer } => {
            if let Some(l) = layer {
                ops_core::ops::check_layer(&ops_core::layers::LayerMap::from_config(&cfg), l)
                    .map_err(|m| Exit::new(Exit::USAGE, m))?;
            }
            let secrets = Secrets::resolve(&cfg, false)?;
            let started = Instant::now();
            // The snapshot does not need the database: it is taken while the store opens
            // and migrates, so the command costs the slower of the two, not their sum.
            let swarm = ops_core::swarm::docker::DockerSwarm::new(
                &cfg.docker.host,
                cfg.docker.timeout_secs,
            )
            .map_err(|e| Exit::new(Exit::USAGE, format!("docker.host: {e}: {}", e.detail())))?;
            let (ops, snapshot) = tokio::join!(
                build_ops(&cfg, perms, &secrets, Purpose::OneShot),
                ops_core::swarm::SwarmApi::snapshot(&swarm)
            );
            let ops = ops?;
            let report = ops.status_from(snapshot, layer.as_deref());
            ops.record(
                &Actor::cli_from_env(),
                "status",
                &serde_json::json!({ "layer": layer }),
                ops_core::audit::Outcome::Ok,
                None,
                None,
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
        Command::Bump { service, tag } => {
            let ops = build_ops(
                &cfg,
                perms,
                &Secrets::resolve(&cfg, false)?,
                Purpose::OneShot,
            )
            .await?;
            let params = serde_json::json!({ "service": service, "tag": tag });
            change(&ops, "bump", params, || ops.bump(service, tag)).await
        }
        Command::Scale {
            service,
            replicas,
            break_glass,
        } => {
            let ops = build_ops(
                &cfg,
                perms,
                &Secrets::resolve(&cfg, false)?,
                Purpose::OneShot,
            )
            .await?;
            if *replicas == 0 {
                let reason = break_glass_reason(break_glass, "scaling to 0")?;
                let params = serde_json::json!({ "service": service, "break_glass": reason });
                return break_glass_action(&ops, "scale_to_zero", params).await;
            }
            let params = serde_json::json!({ "service": service, "replicas": replicas });
            change(&ops, "scale", params, || ops.scale(service, *replicas)).await
        }
        Command::Restart { service } => {
            let ops = build_ops(
                &cfg,
                perms,
                &Secrets::resolve(&cfg, false)?,
                Purpose::OneShot,
            )
            .await?;
            let params = serde_json::json!({ "service": service });
            change(&ops, "restart", params, || ops.restart(service)).await
        }
        Command::Rollback {
            service,
            break_glass,
        } => {
            let ops = build_ops(
                &cfg,
                perms,
                &Secrets::resolve(&cfg, false)?,
                Purpose::OneShot,
            )
            .await?;
            let reason = break_glass_reason(break_glass, "a rollback")?;
            let params = serde_json::json!({ "service": service, "break_glass": reason });
            break_glass_action(&ops, "service_rollback", params).await
        }
        Command::Logs {
            service,
            since,
            tail,
            grep,
            max_bytes,
        } => {
            let ops = build_ops(
                &cfg,
                perms,
                &Secrets::resolve(&cfg, false)?,
                Purpose::OneShot,
            )
            .await?;
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
        Command::Audit {
            json,
            user,
            since,
            limit,
        } => {
            let ops = build_ops(
                &cfg,
                perms,
                &Secrets::resolve(&cfg, false)?,
                Purpose::OneShot,
            )
            .await?;
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
/// audited as such.
async fn break_glass_action(
    ops: &Ops,
    action: &str,
    params: serde_json::Value,
) -> Result<(), Exit> {
    let summary = ops
        .audited(
            &Actor::cli_from_env(),
            &format!("break_glass.{action}"),
            params.clone(),
            || async { ops.approvals.execute_unapproved(action, &params).await },
        )
        .await
        .map_err(|e| Exit::new(1, e.to_string()))?;
    println!("{summary}");
    Ok(())
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
    fn ages_parse_or_explain() {
        assert_eq!(parse_age("30m"), Ok(1_800_000));
        assert_eq!(parse_age("2d"), Ok(172_800_000));
        for bad in ["", "m", "5", "5w", "-5m", "99999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
