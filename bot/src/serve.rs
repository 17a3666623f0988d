//! `sprocket-ops serve`: connect to Discord (through the configured REST proxy if any), register
//! the slash commands in the configured guild, and answer interactions until a shutdown signal.

use std::future::Future;
use std::sync::Arc;

use ops_core::config::Config;
use ops_core::custom_id::{CustomId, Malformed};
use ops_core::permissions::Permissions;
use poise::serenity_prelude as serenity;

use crate::app::{build_ops, Secrets};
use crate::exit::Exit;

/// Runs the bot until `shutdown` resolves (then closes the gateway and returns).
pub async fn serve(
    cfg: Config,
    perms: Permissions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Exit> {
    let secrets = Secrets::resolve(&cfg, true)?;
    let ops = build_ops(&cfg, perms, &secrets, crate::app::Purpose::Serve).await?;
    let metrics = Arc::clone(&ops.metrics);
    crate::rest_latency::record_into(Arc::clone(&metrics));
    let gateway_ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    if !cfg.http.listen.is_empty() {
        // Liveness is the runtime's heartbeat (ticked while the endpoint serves): a deploy or
        // Discord being away never fails it.
        let deployer = Arc::clone(&ops.deployer);
        let state = crate::health::HealthState::new(
            Arc::clone(&metrics),
            Arc::clone(&gateway_ready),
            Arc::clone(&ops.store),
        )
        .with_deploys(Arc::new(move || deployer.running_layers()));
        let addr = crate::health::serve_http(&cfg.http.listen, state, async move {
            let _ = http_stopped.await;
        })
        .await?;
        tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    let token = secrets
        .discord_token
        .as_ref()
        .map(|t| t.expose().to_string())
        .unwrap_or_default();

    let mut http = serenity::HttpBuilder::new(&token);
    if let Some(url) = &cfg.discord.api_base_url {
        // serenity's rate limiter ignores the proxy (it builds its own requests), and a REST
        // proxy owns rate limits anyway: with a proxy, the built-in limiter is off.
        http = http.proxy(url.as_str()).ratelimiter_disabled(true);
    }
    let http = http.build();

    let guild = serenity::GuildId::new(cfg.discord.guild_id);
    let data = commands::Data {
        ops: Arc::clone(&ops),
        guild_id: cfg.discord.guild_id,
        channels: commands::Channels {
            alerts: cfg.discord.alerts_channel_id,
            approvals: cfg.discord.approvals_channel_id,
            audit: cfg.discord.audit_channel_id,
        },
        link: link_api(&cfg, &secrets)?,
        inflight: Arc::new(commands::inflight::InFlight::default()),
        logs_follow: std::time::Duration::from_secs(cfg.discord.logs_follow_secs),
        vault: match (&ops.vault, &cfg.vault) {
            (Some(api), Some(vc)) => Some(Arc::new(commands::vault::VaultState {
                api: Arc::clone(api),
                idle_minutes: vc.ceremony_idle_minutes,
                secret_paths: vc.secret_paths.clone(),
                ceremony: tokio::sync::Mutex::new(None),
            })),
            _ => None,
        },
        // Set in the framework's setup once the alert watcher has started.
        alerts: None,
        alerts_ended: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        request_origins: Default::default(),
    };
    // Static links are bound to numeric ids now, not at first use (a login renamed and
    // claimed in between would bind to the new owner); each is re-checked at live checks.
    for (login, r) in ops.identity.resolve_static_links().await {
        match r {
            Ok(id) => tracing::info!(%login, github_id = id, "static link resolved"),
            Err(e) => {
                tracing::warn!(%login, "static link not resolved at start-up (retried at first use): {e}")
            }
        }
    }
    let inflight = Arc::clone(&data.inflight);
    let grace = std::time::Duration::from_secs(cfg.discord.shutdown_grace_secs);
    let failed_approvals = match ops.approvals.recover_interrupted().await {
        Ok(failed) => {
            if !failed.is_empty() {
                tracing::warn!(
                    count = failed.len(),
                    "approved actions were interrupted by a restart and marked failed"
                );
            }
            failed
        }
        Err(e) => {
            tracing::error!("could not recover interrupted approvals: {e}");
            Vec::new()
        }
    };
    let layer_specs: Vec<commands::deploy::LayerSpec> = cfg
        .layer_order
        .iter()
        .map(|name| commands::deploy::LayerSpec {
            name: name.clone(),
            tagged: cfg.layers[name].image_tag_key.is_some(),
        })
        .collect();
    let interrupted = match ops.deployer.recover_interrupted().await {
        Ok(list) => list,
        Err(e) => {
            tracing::error!("could not recover interrupted deploys: {e}");
            Vec::new()
        }
    };
    let alerts_cfg = cfg.alerts.clone();
    let layer_map = ops_core::layers::LayerMap::from_config(&cfg);
    let (alerts_tx, alerts_stop) = tokio::sync::watch::channel(false);
    let docker_host = cfg.docker.host.clone();
    let docker_timeout = cfg.docker.timeout_secs;
    let setup_data = data;
    let framework = poise::Framework::builder()
        .options(poise::FrameworkOptions {
            commands: commands::all(&layer_specs),
            on_error: |e| Box::pin(commands::on_error(e)),
            command_check: Some(|ctx| Box::pin(commands::channel_check(ctx))),
            event_handler: |framework, event| {
                Box::pin(async move {
                    let (ctx, data) = (framework.serenity_context, framework.user_data);
                    match event {
                        // Clicks and forms pass the allow-list and the Discord id's rate limit
                        // first, as slash commands do.
                        serenity::FullEvent::InteractionCreate {
                            interaction: serenity::Interaction::Component(mci),
                        } => {
                            if !commands::gate_component(ctx, data, mci).await {
                                return Ok(());
                            }
                            // One parse of every id the bot makes, one dispatch; ids of
                            // other components are left alone.
                            match CustomId::parse(&mci.data.custom_id) {
                                Some(Ok(CustomId::VaultShare { ceremony })) => {
                                    commands::vault::handle_share_click(ctx, data, mci, &ceremony)
                                        .await
                                }
                                Some(Ok(CustomId::DeployRollback { layer })) => {
                                    commands::deploy::handle_rollback_click(ctx, data, mci, &layer)
                                        .await
                                }
                                Some(Ok(CustomId::Silence { notifications })) => {
                                    commands::alerts::handle_silence_click(
                                        ctx,
                                        data,
                                        mci,
                                        Ok(notifications),
                                    )
                                    .await
                                }
                                Some(Err(Malformed::Silence)) => {
                                    commands::alerts::handle_silence_click(ctx, data, mci, Err(()))
                                        .await
                                }
                                Some(Ok(CustomId::Approval(button))) => {
                                    commands::approval_ui::handle_component(
                                        ctx,
                                        data,
                                        mci,
                                        Ok(button),
                                    )
                                    .await
                                }
                                Some(Err(Malformed::Approval)) => {
                                    commands::approval_ui::handle_component(
                                        ctx,
                                        data,
                                        mci,
                                        Err(Malformed::Approval),
                                    )
                                    .await
                                }
                                // A form's id on a button, or not one of ours.
                                Some(Ok(CustomId::VaultModal { .. })) | None => {}
                            }
                        }
                        serenity::FullEvent::InteractionCreate {
                            interaction: serenity::Interaction::Modal(m),
                        } if commands::gate_modal(ctx, data, m).await => {
                            if let Some(Ok(CustomId::VaultModal { ceremony })) =
                                CustomId::parse(&m.data.custom_id)
                            {
                                commands::vault::handle_share_modal(ctx, data, m, &ceremony).await
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })
            },
            // Authorisation is sprocket-ops's own (GitHub teams), never Discord ownership.
            initialize_owners: false,
            ..Default::default()
        })
        .setup(move |ctx, ready, framework| {
            Box::pin(async move {
                poise::builtins::register_in_guild(ctx, &framework.options().commands, guild)
                    .await?;
                tracing::info!(
                    user = %ready.user.name,
                    guild = guild.get(),
                    commands = framework.options().commands.len(),
                    "connected and registered slash commands"
                );
                let mut setup_data = setup_data;
                if let Some(alerts) = alerts_cfg.clone() {
                    // Commands see the watcher only when it runs (otherwise /status says
                    // "alerts: not running" and /silence refuses).
                    setup_data.alerts = start_watcher(
                        alerts,
                        Arc::clone(&ctx.http),
                        &setup_data,
                        &layer_map,
                        (&docker_host, docker_timeout),
                        alerts_stop.clone(),
                    )
                    .await;
                }
                spawn_sweeper(Arc::clone(&ctx.http), setup_data.clone());
                // In a task of its own: poise holds every event until setup returns, and these
                // are sequential REST calls (rate-limited, retried) and store reads.
                {
                    let (http, data) = (Arc::clone(&ctx.http), setup_data.clone());
                    tokio::spawn(async move {
                        commands::deploy::announce_interrupted(&http, &data, &interrupted).await;
                        commands::approval_ui::announce_interrupted(
                            &http,
                            &data,
                            &failed_approvals,
                        )
                        .await;
                        commands::break_glass::announce_break_glass(&http, &data).await;
                    });
                }
                Ok(setup_data)
            })
        })
        .build();

    let mut client = serenity::ClientBuilder::new_with_http(http, serenity::GatewayIntents::GUILDS)
        .framework(framework)
        .event_handler(crate::health::GatewayHealth::new(Arc::clone(&metrics)))
        .await
        .map_err(|e| {
            Exit::new(
                Exit::UNAVAILABLE,
                format!("discord: cannot build the client: {e}"),
            )
        })?;

    crate::health::watch_gateway(&client.shard_manager, Arc::clone(&gateway_ready));
    let shard_manager = Arc::clone(&client.shard_manager);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!(
            running = inflight.running(),
            grace_secs = grace.as_secs(),
            "shutting down: no new commands; waiting for running work"
        );
        let _ = alerts_tx.send(true);
        let _ = stop_http.send(());
        let left = inflight.close_and_wait(grace).await;
        if left > 0 {
            tracing::warn!(left, "grace period over: closing with work still running");
        }
        tracing::info!("closing the gateway");
        shard_manager.shutdown_all().await;
    });
    tracing::info!(config = %cfg, "starting");
    client.start().await.map_err(|e| {
        Exit::new(
            Exit::UNAVAILABLE,
            format!("discord: {}", ops.redactor.redact(&e.to_string())),
        )
    })
}

/// The GitHub API for `/link`, when a device-flow client id is configured.
fn link_api(
    cfg: &Config,
    secrets: &crate::app::Secrets,
) -> Result<Option<Arc<dyn ops_core::github::GithubApi>>, Exit> {
    if cfg.github.client_id.is_none() {
        return Ok(None);
    }
    let client = ops_core::github::GithubClient::new(&cfg.github, secrets.github_token.clone())
        .map_err(|e| Exit::new(Exit::USAGE, format!("github: {e}")))?;
    Ok(Some(Arc::new(client)))
}

/// Every 10 s: expire overdue approval requests and disable their buttons (with the bot token,
/// since interaction tokens last 15 minutes), end idle unseal ceremonies, and free the layer
/// locks of holders that are gone (announcing their deploys as interrupted). Started by the
/// framework's setup (first READY).
fn spawn_sweeper(http: Arc<serenity::Http>, data: commands::Data) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            tick.tick().await;
            commands::approval_ui::sweep_expired(&http, &data).await;
            commands::vault::sweep_idle(&http, &data).await;
            // Locks of holders that died since the start (a CLI deploy killed, a bot restarted
            // within the heartbeat window) are freed once they are seen to be gone.
            match data.ops.deployer.recover_interrupted().await {
                Ok(gone) if !gone.is_empty() => {
                    commands::deploy::announce_interrupted(&http, &data, &gone).await
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("recovering layer locks failed: {e}"),
            }
        }
    });
}

/// Starts the alert watcher (Docker events, the reconciler, probes) posting to Discord, with an
/// [`ops_core::alerts::AlertHub`] that commands use for `/status` and silences (returned). A
/// watcher that cannot start is logged and `None` returned; the bot keeps serving commands.
async fn start_watcher(
    cfg: ops_core::alerts::config::AlertsConfig,
    http: Arc<serenity::Http>,
    data: &commands::Data,
    layers: &ops_core::layers::LayerMap,
    docker: (&str, u64),
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<Arc<dyn ops_core::alerts::AlertControl>> {
    let ops = &data.ops;
    let hub = ops_core::alerts::AlertHub::new();
    let docker_events = match ops_core::swarm::docker::DockerSwarm::new(docker.0, docker.1) {
        Ok(d) => Some(Arc::new(d.with_redactor(Arc::clone(&ops.redactor)))),
        Err(e) => {
            tracing::warn!("alerts: no Docker events: {e}");
            None
        }
    };
    let deps = ops_core::alerts::WatcherDeps {
        store: Arc::clone(&ops.alert_store),
        sink: Arc::new(commands::alerts::DiscordSink {
            http,
            redactor: Arc::clone(&ops.redactor),
            metrics: Arc::clone(&ops.metrics),
        }),
        clock: Arc::new(ops_core::alerts::SystemClock),
        swarm: Some(Arc::clone(&ops.swarm)),
        docker_events,
        layers: ops_core::alerts::sources::layer_resolver(layers.clone()),
        hub: Some(Arc::clone(&hub)),
    };
    match ops_core::alerts::Watcher::new(cfg, deps).await {
        Ok(w) => {
            let task = tokio::spawn(w.with_redactor(Arc::clone(&ops.redactor)).run(stop));
            tracing::info!("alert watcher started");
            let ended = Arc::clone(&data.alerts_ended);
            tokio::spawn(async move {
                match task.await {
                    Err(e) if e.is_panic() => tracing::error!(
                        "the alert watcher crashed: no more alerts; /status says alerts are not running"
                    ),
                    _ => tracing::info!("alert watcher stopped"),
                }
                ended.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            Some(hub)
        }
        Err(e) => {
            tracing::error!("alert watcher could not start: {e}");
            None
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
