//! Rendering ops-core results as Discord embeds, within Discord's limits (field value 1024,
//! 25 fields and 6000 characters per embed). Pure: pages are plain data first, so the limits
//! are unit-tested without Discord.

use ops_core::approvals::{ApprovalRequest, ApprovalState, Decision};
use ops_core::audit::{Actor, AuditRecord};
use ops_core::identity::Principal;
use ops_core::permissions::EVERYONE;
use ops_core::status::{ServiceStatus, StatusReport};
use ops_core::swarm::rollout::{RolloutOutcome, RolloutProgress};
use ops_core::swarm::{display_image, UpdateStarted};
use poise::serenity_prelude as serenity;

pub const GREEN: u32 = 0x2e_cc71;
pub const YELLOW: u32 = 0xf1_c40f;
pub const RED: u32 = 0xe7_4c3c;

const FIELD_VALUE_MAX: usize = 1024;
const FIELDS_MAX: usize = 25;
/// Below Discord's 6000 per message, leaving room for title, description and footer.
const EMBED_BUDGET: usize = 5000;

/// One embed's content as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub title: String,
    pub description: String,
    pub color: u32,
    pub fields: Vec<(String, String)>,
    pub footer: String,
}

impl Page {
    fn len(&self) -> usize {
        self.title.len()
            + self.description.len()
            + self.footer.len()
            + self
                .fields
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    pub fn to_embed(&self) -> serenity::CreateEmbed {
        let mut e = serenity::CreateEmbed::new()
            .title(&self.title)
            .color(self.color);
        if !self.description.is_empty() {
            e = e.description(&self.description);
        }
        for (n, v) in &self.fields {
            e = e.field(n, v, false);
        }
        if !self.footer.is_empty() {
            e = e.footer(serenity::CreateEmbedFooter::new(&self.footer));
        }
        e
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(1);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn service_line(s: &ServiceStatus) -> String {
    let icon = if s.healthy() {
        "🟢"
    } else if s.running > 0 {
        "🟡"
    } else {
        "🔴"
    };
    let mut line = format!(
        "{icon} `{}` {}/{} `{}`",
        s.name, s.running, s.desired, s.image
    );
    if let Some(u) = &s.update_state {
        line.push_str(&format!(" · update {u}"));
    }
    if let Some(t) = s.failing_tasks.first() {
        let code = t
            .exit_code
            .map(|c| format!(" exit {c}"))
            .unwrap_or_default();
        let err = t.error.as_deref().unwrap_or(&t.state);
        line.push_str(&format!("\n  ↳ {}{code}", clip(err, 120)));
    }
    line
}

/// The `/status` report as one or more pages.
pub fn status_pages(report: &StatusReport) -> Vec<Page> {
    let title = "Sprocket platform status".to_string();
    if let Some(err) = &report.docker_error {
        return vec![Page {
            title,
            description: format!("⚠️ Swarm state unavailable: {err}"),
            color: RED,
            fields: vec![],
            footer: String::new(),
        }];
    }
    let services: Vec<&ServiceStatus> = report.services().collect();
    let unhealthy = services.iter().filter(|s| !s.healthy()).count();
    let down = services
        .iter()
        .filter(|s| s.running == 0 && s.desired > 0)
        .count();
    let color = if down > 0 {
        RED
    } else if unhealthy > 0 {
        YELLOW
    } else {
        GREEN
    };
    let ready = report.nodes.iter().filter(|n| n.state == "ready").count();
    let mut description = format!(
        "{} services, {} not healthy · nodes: {ready}/{} ready",
        services.len(),
        unhealthy,
        report.nodes.len()
    );
    for n in report
        .nodes
        .iter()
        .filter(|n| n.state != "ready" || n.availability != "active")
    {
        description.push_str(&format!(
            "\n⚠️ node `{}` {} ({})",
            n.hostname, n.state, n.availability
        ));
    }

    // Fields: one per layer, continued in further fields when a layer exceeds 1024 characters.
    let mut fields: Vec<(String, String)> = Vec::new();
    for layer in &report.layers {
        let mut value = String::new();
        let mut part = 0;
        let lines: Vec<String> = if layer.services.is_empty() {
            vec!["(no services)".to_string()]
        } else {
            layer.services.iter().map(service_line).collect()
        };
        for line in lines {
            let line = clip(&line, FIELD_VALUE_MAX);
            if !value.is_empty() && value.len() + 1 + line.len() > FIELD_VALUE_MAX {
                fields.push((field_name(&layer.name, part), std::mem::take(&mut value)));
                part += 1;
            }
            if !value.is_empty() {
                value.push('\n');
            }
            value.push_str(&line);
        }
        fields.push((field_name(&layer.name, part), value));
    }

    let mut pages = vec![Page {
        title: title.clone(),
        description,
        color,
        fields: vec![],
        footer: String::new(),
    }];
    for f in fields {
        let page = pages.last_mut().expect("at least one page");
        if page.fields.len() == FIELDS_MAX || page.len() + f.0.len() + f.1.len() > EMBED_BUDGET {
            pages.push(Page {
                title: title.clone(),
                description: String::new(),
                color,
                fields: vec![],
                footer: String::new(),
            });
        }
        pages.last_mut().expect("at least one page").fields.push(f);
    }
    let n = pages.len();
    if n > 1 {
        for (i, p) in pages.iter_mut().enumerate() {
            p.footer = format!("page {} of {n}", i + 1);
        }
    }
    pages
}

fn field_name(layer: &str, part: usize) -> String {
    if part == 0 {
        layer.to_string()
    } else {
        format!("{layer} (continued)")
    }
}

/// `/whoami`: the Discord identity, the linked GitHub account, its teams and roles.
pub fn whoami_page(me: &Actor, who: Result<&Principal, &str>) -> Page {
    let mut fields = vec![("Discord".into(), format!("{} (`{}`)", me.name, me.id))];
    let color = match who {
        Ok(p) => {
            fields.push((
                "GitHub".into(),
                format!("`{}` (id {})", p.person.login, p.person.github_id),
            ));
            let teams: Vec<&str> = p.teams.iter().map(String::as_str).collect();
            fields.push((
                "Teams".into(),
                if teams.is_empty() {
                    "none".into()
                } else {
                    teams.join(", ")
                },
            ));
            let roles: Vec<&str> = p
                .roles
                .iter()
                .map(String::as_str)
                .filter(|r| *r != EVERYONE)
                .collect();
            fields.push((
                "Roles".into(),
                if roles.is_empty() {
                    "none".into()
                } else {
                    roles.join(", ")
                },
            ));
            if p.stale {
                fields.push((
                    "Note".into(),
                    "GitHub is unreachable: this is a cached answer".into(),
                ));
            }
            GREEN
        }
        Err(why) => {
            fields.push(("GitHub".into(), clip(why, FIELD_VALUE_MAX)));
            YELLOW
        }
    };
    Page {
        title: "Who am I".into(),
        description: String::new(),
        color,
        fields,
        footer: String::new(),
    }
}

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

/// `[#####-----]`.
pub fn progress_bar(done: u64, total: u64) -> String {
    let width = 10u64;
    let filled = if total == 0 {
        width
    } else {
        (done.min(total) * width) / total
    };
    format!(
        "`[{}{}]`",
        "#".repeat(filled as usize),
        "-".repeat((width - filled) as usize)
    )
}

/// The newest audit rows.
pub fn audit_page(rows: &[AuditRecord]) -> Page {
    let mut lines = Vec::new();
    for r in rows {
        let e = &r.entry;
        let who = match &e.actor.github_login {
            Some(l) => format!("{} ({l})", e.actor.name),
            None => e.actor.name.clone(),
        };
        lines.push(clip(
            &format!(
                "<t:{}:f> `{}` {} {} **{}** {}",
                e.at_ms / 1000,
                e.actor.frontend.as_str(),
                who,
                e.command,
                e.outcome.as_str(),
                e.params
            ),
            300,
        ));
    }
    let mut description = String::new();
    for l in lines {
        if description.len() + l.len() + 1 > 4000 {
            break;
        }
        description.push_str(&l);
        description.push('\n');
    }
    if description.is_empty() {
        description = "No entries.".into();
    }
    Page {
        title: "Audit log".into(),
        description,
        color: GREEN,
        fields: vec![],
        footer: format!("{} entries, newest first", rows.len()),
    }
}

/// An approval request as the approvals channel shows it.
pub fn approval_page(req: &ApprovalRequest, votes: &[(String, Decision)]) -> Page {
    let (color, state) = match req.state {
        ApprovalState::Pending => (YELLOW, "⏳ waiting for approval".to_string()),
        ApprovalState::Approved | ApprovalState::Executing => {
            (YELLOW, "▶️ approved, executing".into())
        }
        ApprovalState::Done => (GREEN, "✅ done".into()),
        ApprovalState::Failed => (RED, "❌ failed".into()),
        ApprovalState::Denied => (RED, "🚫 denied".into()),
        ApprovalState::Expired => (RED, "⌛ expired".into()),
        ApprovalState::Void => (RED, "⚠️ void: what would run changed".into()),
    };
    let approvers = req.rule.approver_roles.join(" or ");
    let mut fields = vec![
        (
            "Requested by".into(),
            format!(
                "`{}` (<@{}>)",
                req.requester.login, req.requester.discord_id
            ),
        ),
        (
            "Needs".into(),
            format!(
                "{} approval(s) from {approvers}, not the requester",
                req.rule.approvals
            ),
        ),
        ("State".into(), state),
    ];
    if req.state == ApprovalState::Pending {
        fields.push((
            "Expires".into(),
            format!("<t:{}:R>", req.expires_at_ms / 1000),
        ));
    }
    if !votes.is_empty() {
        let v: Vec<String> = votes
            .iter()
            .map(|(login, d)| {
                format!(
                    "`{login}` {}",
                    if *d == Decision::Approve {
                        "approved"
                    } else {
                        "denied"
                    }
                )
            })
            .collect();
        fields.push(("Decisions".into(), clip(&v.join(", "), FIELD_VALUE_MAX)));
    }
    if let Some(r) = &req.result {
        fields.push(("Result".into(), clip(r, FIELD_VALUE_MAX)));
    }
    Page {
        title: clip(&format!("Approval: {}", req.action), 256),
        description: clip(&req.summary, 2000),
        color,
        fields,
        footer: format!("request {}", req.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ops_core::status::LayerStatus;

    fn report(n: usize) -> StatusReport {
        let services = (0..n)
            .map(|i| ServiceStatus {
                name: format!("prod-service-with-a-long-name-{i:03}"),
                image: format!("asaxplayinghorse/sprocket-web:main-{i}"),
                running: (i % 3) as u64,
                desired: 2,
                layer: "platform".into(),
                update_state: None,
                failing_tasks: vec![],
            })
            .collect();
        StatusReport {
            layers: vec![LayerStatus {
                name: "platform".into(),
                services,
            }],
            nodes: vec![],
            docker_error: None,
        }
    }

    #[test]
    fn large_swarms_split_into_pages_within_discord_limits() {
        for n in [0, 1, 10, 50, 300] {
            let pages = status_pages(&report(n));
            let mut seen = 0;
            for p in &pages {
                assert!(p.fields.len() <= FIELDS_MAX);
                assert!(p.len() <= 6000, "{n}: {}", p.len());
                assert!(p.description.len() <= 4096);
                for (name, v) in &p.fields {
                    assert!(name.len() <= 256 && v.len() <= FIELD_VALUE_MAX, "{n}");
                    seen += v.matches("prod-service-with").count();
                }
            }
            assert_eq!(seen, n, "every service appears exactly once");
        }
    }

    #[test]
    fn colour_follows_the_worst_service() {
        assert_eq!(status_pages(&report(1))[0].color, RED);
        assert_eq!(status_pages(&report(0))[0].color, GREEN);
        let r = StatusReport::unavailable("the Docker engine is unreachable (error id E1)");
        let p = &status_pages(&r)[0];
        assert_eq!(p.color, RED);
        assert!(p.description.contains("unreachable"));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 3), "h…");
        assert_eq!(clip("ok", 10), "ok");
    }
}
