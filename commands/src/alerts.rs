//! The Discord side of health alerts: the sink that posts the alert engine's notifications
//! (grouped, rate limited and coalesced by ops-core) as embeds, coloured by severity.

use std::sync::Arc;

use async_trait::async_trait;
use ops_core::alerts::engine::{Notification, NotificationKind};
use ops_core::alerts::{AlertSink, SinkError};
use ops_core::redact::Redactor;
use poise::serenity_prelude as serenity;

use crate::render::{clip, GREEN};

/// Posts notifications with the bot token.
pub struct DiscordSink {
    pub http: Arc<serenity::Http>,
    pub redactor: Arc<Redactor>,
}

#[async_trait]
impl AlertSink for DiscordSink {
    async fn deliver(&self, channel: u64, notifications: &[Notification]) -> Result<(), SinkError> {
        let Some(first) = notifications.first() else {
            return Ok(());
        };
        let text: Vec<String> = notifications.iter().map(|n| n.render_text()).collect();
        let body = self.redactor.redact(&text.join("\n\n")).into_owned();
        let all_resolved = notifications
            .iter()
            .all(|n| n.kind == NotificationKind::Resolved);
        let colour = if all_resolved {
            GREEN
        } else {
            first.severity.colour()
        };
        let embed = serenity::CreateEmbed::new()
            .title(clip(&self.redactor.redact(&first.title()), 256))
            .description(clip(&body, 4000))
            .color(colour);
        serenity::ChannelId::new(channel)
            .send_message(
                &self.http,
                serenity::CreateMessage::new()
                    .embed(embed)
                    .allowed_mentions(serenity::CreateAllowedMentions::new()),
            )
            .await
            .map(|_| ())
            .map_err(|e| SinkError {
                detail: e.to_string(),
            })
    }
}
