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

mod deploy;
mod flags;
mod output;
mod services;

use deploy::*;
pub use flags::{Cli, Command, LogFormat};
pub use output::*;

/// `30m`, `12h`, `7d`, `90s` -> milliseconds (ops-core's parser, the one `/audit since` uses).
pub use ops_core::duration::parse_age;

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
