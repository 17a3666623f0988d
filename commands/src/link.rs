//! `/link`: links a Discord account to a GitHub account through GitHub's device flow.

use ops_core::audit::Outcome;
use ops_core::github::run_device_flow;
use ops_core::ops::Access;
use poise::CreateReply;

use crate::{actor, allow_with, Context, Error, UserError};

/// Link your Discord account to your GitHub account (GitHub device flow: open the link, enter a code).
#[poise::command(slash_command)]
pub async fn link(ctx: Context<'_>) -> Result<(), Error> {
    let Some(api) = ctx.data().link.clone() else {
        return Err(UserError("Linking is not set up here (github.client_id is not configured); ask an admin to add you to github.static_links.".into()).into());
    };
    allow_with(ctx, "link", Access::Read, true).await?;
    ctx.defer_ephemeral().await?;
    let started = std::time::Instant::now();
    let code = api
        .start_device_flow()
        .await
        .map_err(|e| UserError(format!("GitHub: {e}")))?;
    let handle = ctx
        .send(
            CreateReply::default()
                .content(format!(
                    "Open {} and enter the code **{}** within {} minutes. I will link the account that approves it.",
                    code.verification_uri,
                    code.user_code,
                    code.expires_in / 60
                ))
                .ephemeral(true),
        )
        .await?;
    let result = run_device_flow(api.as_ref(), &code, tokio::time::sleep).await;
    let me = actor(ctx);
    let (text, outcome) = match result {
        Ok(user) => {
            ctx.data()
                .ops
                .identity
                .link(ctx.author().id.get(), &user)
                .await
                .map_err(|e| UserError(e.to_string()))?;
            (
                format!(
                    "Linked to GitHub account `{}`. Run /whoami to see your roles.",
                    user.login
                ),
                Outcome::Ok,
            )
        }
        Err(e) => (format!("Not linked: {e}"), Outcome::Error),
    };
    handle
        .edit(ctx, CreateReply::default().content(&text).ephemeral(true))
        .await?;
    ctx.data()
        .ops
        .record(
            &me,
            "link",
            &serde_json::json!({}),
            outcome,
            Some(text),
            None,
            started,
        )
        .await;
    Ok(())
}
