//! At `serve` start-up: every break-glass action run from the CLI since the last such post is
//! posted to the audit channel (who, with the real uid and `SUDO_USER`, what, why, how it
//! ended). The post is recorded only once it went out, so a failed post is repeated at the
//! next start rather than lost.

use ops_core::breakglass::describe;
use poise::serenity_prelude as serenity;

use crate::render;
use crate::Data;

/// Discord's content limit is 2000 characters; stay below it.
const MESSAGE_MAX: usize = 1900;

/// Posts the break-glass rows not yet announced, then records that they were.
pub async fn announce_break_glass(http: &serenity::Http, data: &Data) {
    let found = match data.ops.unannounced_break_glass().await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %data.ops.redactor.redact(&e.to_string()), "cannot read the break-glass audit rows");
            return;
        }
    };
    if found.rows.is_empty() {
        return;
    }
    let mut lines = vec![format!(
        "🚨 break-glass: {} action row(s) from the CLI without an approval since the last start:",
        found.rows.len() as u64 + found.more
    )];
    lines.extend(found.rows.iter().map(describe));
    if found.more > 0 {
        lines.push(format!("… and {} more (`sprocket-ops audit`)", found.more));
    }
    let mut messages = vec![String::new()];
    for line in lines {
        let line = render::clip(&data.ops.redactor.redact(&line), MESSAGE_MAX);
        let current = messages.last_mut().expect("one message at least");
        if !current.is_empty() && current.len() + 1 + line.len() > MESSAGE_MAX {
            messages.push(line);
        } else {
            if !current.is_empty() {
                current.push('\n');
            }
            current.push_str(&line);
        }
    }
    let channel = serenity::ChannelId::new(data.channels.audit);
    for m in messages {
        let sent = channel
            .send_message(
                http,
                serenity::CreateMessage::new()
                    .content(m)
                    .allowed_mentions(serenity::CreateAllowedMentions::new()),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!("could not post the break-glass actions to the audit channel (posted again at the next start): {e}");
            return;
        }
    }
    if let Err(e) = data.ops.mark_break_glass_announced(found.through_id).await {
        tracing::error!(error = %data.ops.redactor.redact(&e.to_string()), "recording the break-glass announcement failed: it is posted again at the next start");
    }
}
