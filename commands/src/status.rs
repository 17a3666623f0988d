//! `/status`: the Swarm report merged with the alert watcher's open alerts and probe results
//! and Vault's seal status (asked directly when no probe reports it), rendered pure.

use poise::serenity_prelude as serenity;
use poise::CreateReply;

use ops_core::ops::Access;

use crate::{actor, allow, render, Context, Data, Error, UserError};

async fn autocomplete_layer(
    ctx: Context<'_>,
    partial: &str,
) -> serenity::CreateAutocompleteResponse {
    let partial = partial.to_ascii_lowercase();
    let choices = ctx
        .data()
        .ops
        .layers
        .names()
        .filter(|n| n.contains(&partial))
        .map(serenity::AutocompleteChoice::from)
        .collect();
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Platform status: services and replicas by layer, probes, Vault, certificates, open alerts.
///
/// One embed (more pages when large), coloured by the worst state. Probes, certificates and
/// open alerts come from the alert watcher; without one, it says "alerts: not running".
#[poise::command(slash_command, guild_only)]
pub async fn status(
    ctx: Context<'_>,
    #[description = "Only this layer (layer_1, layer_2, platform)"]
    #[autocomplete = "autocomplete_layer"]
    layer: Option<String>,
) -> Result<(), Error> {
    let ops = ctx.data().ops.clone();
    if let Some(l) = &layer {
        ops.check_layer(l).map_err(UserError)?;
    }
    allow(ctx, "status", Access::Read).await?;
    ctx.defer().await?;
    let me = actor(ctx);
    let (report, vault) = tokio::join!(
        ops.audited(
            &me,
            "status",
            serde_json::json!({ "layer": layer }),
            || async { Ok(ops.status(layer.as_deref()).await) },
        ),
        status_vault(ctx.data()),
    );
    let report = report?;
    let mut health = render::HealthView {
        alerts: ctx.data().alert_control().map(|a| render::AlertsView {
            open: a.open_alerts(),
            probes: a.probe_results(),
            silences: a.silences(),
        }),
        vault,
        now_ms: ops_core::ops::now_ms(),
    };
    if let Some(l) = &layer {
        health = health.only_layer(l);
    }
    // The first page answers the interaction; further pages are follow-ups.
    for page in render::status_pages(&report, &health) {
        let page = page.redacted(&ops.redactor);
        ctx.send(CreateReply::default().embed(page.to_embed()))
            .await?;
    }
    Ok(())
}

/// How long `/status` waits for Vault's seal status (the interaction is already deferred).
const STATUS_VAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Vault's seal status for `/status`, asked directly when `[vault]` is configured and no
/// `vault_seal` probe already reports it. Errors are logged; the line is a safe summary.
async fn status_vault(data: &Data) -> Option<render::VaultView> {
    let api = &data.vault.as_ref()?.api;
    if data
        .alert_control()
        .is_some_and(|a| a.probe_results().iter().any(|p| p.kind == "vault_seal"))
    {
        return None;
    }
    Some(
        match tokio::time::timeout(STATUS_VAULT_WAIT, api.seal_status()).await {
            Err(_) => render::VaultView {
                ok: false,
                text: format!("did not answer within {} s", STATUS_VAULT_WAIT.as_secs()),
            },
            Ok(Err(e)) => {
                let id = ops_core::ops::new_error_id();
                let detail = data.ops.redactor.redact(&e.to_string()).into_owned();
                tracing::warn!(error_id = %id, %detail, "/status: vault seal status failed");
                render::VaultView {
                    ok: false,
                    text: format!("unreachable (error id {id})"),
                }
            }
            Ok(Ok(s)) if !s.initialized => render::VaultView {
                ok: false,
                text: "not initialised".into(),
            },
            Ok(Ok(s)) if s.sealed => render::VaultView {
                ok: false,
                text: format!(
                    "sealed: {}/{} unseal shares given (/vault unseal)",
                    s.progress, s.t
                ),
            },
            Ok(Ok(s)) => render::VaultView {
                ok: true,
                text: if s.version.is_empty() {
                    "unsealed".to_string()
                } else {
                    format!("unsealed, version {}", s.version)
                },
            },
        },
    )
}
