//! A Swarm change being rolled out (bump, scale, restart, rollback), as one message edited as
//! it progresses.

use ops_core::swarm::rollout::{RolloutOutcome, RolloutProgress};
use ops_core::swarm::{display_image, UpdateStarted};

use super::{clip, progress_bar, Page, GREEN, RED, YELLOW};

/// A change being rolled out, as one message edited as it progresses.
pub fn rollout_page(
    what: &str,
    started: &UpdateStarted,
    p: Option<&RolloutProgress>,
    elapsed: std::time::Duration,
) -> Page {
    let (color, state) = match p.and_then(|p| p.outcome.as_ref()) {
        None => (YELLOW, "⏳ rolling out".to_string()),
        Some(RolloutOutcome::Completed) => (GREEN, "✅ completed".to_string()),
        Some(RolloutOutcome::RolledBack { message }) => (
            RED,
            format!("❌ failed: Swarm rolled it back ({})", clip(message, 300)),
        ),
        Some(RolloutOutcome::Paused { message }) => {
            (RED, format!("⏸️ paused by Swarm ({})", clip(message, 300)))
        }
        Some(RolloutOutcome::TimedOut) => {
            (YELLOW, "⌛ still in progress: check /status".to_string())
        }
        Some(RolloutOutcome::Failed(e)) => (RED, format!("❌ could not follow the rollout: {e}")),
    };
    let mut fields = vec![("State".to_string(), state)];
    if let Some(p) = p {
        let done = p.running_updated.min(p.desired);
        fields.push((
            "Tasks".into(),
            format!(
                "{} {done}/{} updated, {} outdated still running",
                progress_bar(done, p.desired),
                p.desired,
                p.running_outdated
            ),
        ));
        fields.push(("Image".into(), format!("`{}`", display_image(&p.image))));
    } else {
        fields.push((
            "Image".into(),
            format!(
                "`{}` → `{}`",
                display_image(&started.image_before),
                display_image(&started.image_after)
            ),
        ));
    }
    Page {
        title: clip(what, 256),
        description: String::new(),
        color,
        fields,
        footer: format!("{} s", elapsed.as_secs()),
    }
}
