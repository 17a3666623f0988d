//! `/audit`: the audit log, newest first, by user and age.

use ops_core::audit::AuditFilter;
use ops_core::ops::Access;
use poise::serenity_prelude as serenity;
use poise::CreateReply;

use crate::{actor, allow_with, render, Context, Error, UserError};

/// Show the audit log: who did what, newest first.
#[poise::command(slash_command, guild_only)]
pub async fn audit(
    ctx: Context<'_>,
    #[description = "Only this Discord user"] user: Option<serenity::User>,
    #[description = "Only entries newer than this, like 30m, 12h or 7d"] since: Option<String>,
) -> Result<(), Error> {
    let since_ms = match &since {
        Some(s) => {
            Some(ops_core::ops::now_ms() - ops_core::duration::parse_age(s).map_err(UserError)?)
        }
        None => None,
    };
    allow_with(ctx, "audit", Access::Read, true).await?;
    ctx.defer_ephemeral().await?;
    let filter = AuditFilter {
        actor_id: user.as_ref().map(|u| u.id.get().to_string()),
        since_ms,
        limit: 25,
    };
    let ops = ctx.data().ops.clone();
    let rows = ops
        .audited(
            &actor(ctx),
            "audit",
            serde_json::json!({ "user": filter.actor_id, "since": since }),
            || async {
                ops.audit_log(&filter)
                    .await
                    .map_err(|e| ops.fail("the audit log is unavailable", &e))
            },
        )
        .await?;
    let page = render::audit_page(&rows);
    ctx.send(
        CreateReply::default()
            .embed(page.to_embed())
            .ephemeral(true),
    )
    .await?;
    Ok(())
}
