//! Rendering ops-core results as Discord embeds, within Discord's limits (field value 1024,
//! 25 fields and 6000 characters per embed). Pure: pages are plain data first, so the limits
//! are unit-tested without Discord.

use ops_core::alerts::{AlertState, Phase, ProbeResult, Severity};
use ops_core::approvals::{ApprovalRequest, ApprovalState, Decision};
use ops_core::audit::{Actor, AuditRecord};
use ops_core::identity::Principal;
use ops_core::layers::glob_match;
use ops_core::permissions::EVERYONE;
use ops_core::redact::Redactor;
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

    /// The page with every text through the redactor (alert summaries and task errors come
    /// from Docker and probes), still within Discord's limits.
    pub fn redacted(&self, r: &Redactor) -> Page {
        self.redacted_by(|s| r.redact(s).into_owned())
    }

    /// [`Page::redacted`] for a page that carries what people typed (an approval request's
    /// summary and reason): masked, but nothing is learned from it
    /// ([`Redactor::redact_untrusted`]).
    pub fn redacted_untrusted(&self, r: &Redactor) -> Page {
        self.redacted_by(|s| r.redact_untrusted(s).into_owned())
    }

    fn redacted_by(&self, redact: impl Fn(&str) -> String) -> Page {
        let red = |s: &str, max: usize| clip(&redact(s), max);
        Page {
            title: red(&self.title, 256),
            description: red(&self.description, 4096),
            color: self.color,
            fields: self
                .fields
                .iter()
                .map(|(n, v)| (red(n, 256), red(v, FIELD_VALUE_MAX)))
                .collect(),
            footer: red(&self.footer, 2048),
        }
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

/// What `/status` shows besides the Swarm: the alert watcher's view and Vault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    /// `None`: no alert watcher runs (said so, never shown as "all fine").
    pub alerts: Option<AlertsView>,
    /// Vault's seal state asked directly (when `[vault]` is configured and no `vault_seal`
    /// probe reports it).
    pub vault: Option<VaultView>,
    /// For telling active silences from expired ones.
    pub now_ms: i64,
}

/// The alert watcher's state as of its last round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertsView {
    /// Pending and firing alerts.
    pub open: Vec<AlertState>,
    pub probes: Vec<ProbeResult>,
    /// Active silences: (pattern, until unix ms).
    pub silences: Vec<(String, i64)>,
}

/// Vault as asked directly: healthy or not, and a safe line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultView {
    pub ok: bool,
    pub text: String,
}

impl HealthView {
    /// Keeps the alerts and probes of one layer (`/status layer:…`); Vault is `layer_1`'s.
    pub fn only_layer(mut self, layer: &str) -> HealthView {
        if let Some(a) = &mut self.alerts {
            a.open.retain(|s| s.layer.as_deref() == Some(layer));
            a.probes.retain(|p| p.layer.as_deref() == Some(layer));
        }
        if layer != "layer_1" {
            self.vault = None;
        }
        self
    }
}

/// Probe kinds shown in their own field rather than under "Probes".
const VAULT_KIND: &str = "vault_seal";
const TLS_KIND: &str = "tls";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Bad,
}

impl Level {
    fn colour(self) -> u32 {
        match self {
            Level::Ok => GREEN,
            Level::Warn => YELLOW,
            Level::Bad => RED,
        }
    }
    fn of_failure(severity: Severity) -> Level {
        if severity == Severity::Critical {
            Level::Bad
        } else {
            Level::Warn
        }
    }
}

fn probe_line(p: &ProbeResult) -> String {
    let icon = if p.ok {
        "✅"
    } else if p.severity == Severity::Critical {
        "❌"
    } else {
        "⚠️"
    };
    let sev = if p.ok {
        String::new()
    } else {
        format!(", {}", p.severity.as_str())
    };
    format!(
        "{icon} `{}` ({}{sev}): {}",
        p.name,
        p.kind,
        clip(&p.summary.replace('\n', " "), 200)
    )
}

fn alert_line(a: &AlertState, silenced: bool) -> String {
    let (icon, word, since) = match a.phase {
        Phase::Firing => (
            if a.severity == Severity::Critical {
                "🔴"
            } else {
                "🟠"
            },
            "firing",
            a.firing_since_ms.or(a.first_failure_ms),
        ),
        _ => ("🟡", "pending", a.first_failure_ms),
    };
    let since = since
        .map(|ms| format!(" since <t:{}:R>", ms.div_euclid(1000)))
        .unwrap_or_default();
    let layer = a
        .layer
        .as_deref()
        .map(|l| format!(" {l}"))
        .unwrap_or_default();
    let mut line = format!(
        "{icon} `{}` {word}{since} ({}{layer}): {}",
        a.key,
        a.severity.as_str(),
        clip(&a.summary.replace('\n', " "), 200)
    );
    if let Some(root) = &a.held_under {
        line.push_str(&format!(" (held under `{root}`)"));
    }
    if silenced {
        line.push_str(" 🔕");
    }
    line
}

/// Lines packed into fields of at most 1024 characters, the first named `name`, the rest
/// `name (continued)`.
fn push_fields(fields: &mut Vec<(String, String)>, name: &str, lines: Vec<String>) {
    let mut value = String::new();
    let mut part = 0;
    for line in lines {
        let line = clip(&line, FIELD_VALUE_MAX);
        if !value.is_empty() && value.len() + 1 + line.len() > FIELD_VALUE_MAX {
            fields.push((field_name(name, part), std::mem::take(&mut value)));
            part += 1;
        }
        if !value.is_empty() {
            value.push('\n');
        }
        value.push_str(&line);
    }
    fields.push((field_name(name, part), value));
}

/// The `/status` report (Swarm by layer, plus probes, Vault, certificates and open alerts from
/// `health`) as one or more pages, coloured by the worst state.
pub fn status_pages(report: &StatusReport, health: &HealthView) -> Vec<Page> {
    let title = "Sprocket platform status".to_string();
    let mut level = Level::Ok;
    let mut description = String::new();
    let services: Vec<&ServiceStatus> = report.services().collect();
    if let Some(err) = &report.docker_error {
        level = Level::Bad;
        description.push_str(&format!("⚠️ Swarm state unavailable: {}", clip(err, 500)));
    } else {
        let unhealthy = services.iter().filter(|s| !s.healthy()).count();
        let down = services
            .iter()
            .filter(|s| s.running == 0 && s.desired > 0)
            .count();
        if down > 0 {
            level = Level::Bad;
        } else if unhealthy > 0 {
            level = Level::Warn;
        }
        let ready = report.nodes.iter().filter(|n| n.state == "ready").count();
        description.push_str(&format!(
            "{} services, {} not healthy · nodes: {ready}/{} ready",
            services.len(),
            unhealthy,
            report.nodes.len()
        ));
        for n in report
            .nodes
            .iter()
            .filter(|n| n.state != "ready" || n.availability != "active")
        {
            level = level.max(Level::Warn);
            description.push_str(&format!(
                "\n⚠️ node `{}` {} ({})",
                n.hostname, n.state, n.availability
            ));
        }
    }

    let mut fields: Vec<(String, String)> = Vec::new();
    match &health.alerts {
        None => {
            description.push_str(
                "\n⚠️ alerts: not running (no [alerts] configured, or the watcher failed to start): probes and alerts are not checked",
            );
        }
        Some(a) => {
            let active: Vec<&(String, i64)> =
                a.silences.iter().filter(|s| s.1 > health.now_ms).collect();
            let silenced = |key: &str| active.iter().any(|(p, _)| glob_match(p, key));
            let mut open: Vec<&AlertState> = a
                .open
                .iter()
                .filter(|s| matches!(s.phase, Phase::Pending | Phase::Firing))
                .collect();
            // Firing before pending, critical first, then by key.
            open.sort_by(|x, y| {
                (y.phase == Phase::Firing, y.severity, &x.key).cmp(&(
                    x.phase == Phase::Firing,
                    x.severity,
                    &y.key,
                ))
            });
            // A silence holds back announcements; it does not make a failure healthy, so a
            // silenced alert still colours the status (and is marked 🔕).
            for s in &open {
                level = level.max(match s.phase {
                    Phase::Firing => Level::of_failure(s.severity),
                    _ => Level::Warn,
                });
            }
            let firing = open.iter().filter(|s| s.phase == Phase::Firing).count();
            let failing_probes = a.probes.iter().filter(|p| !p.ok).count();
            description.push_str(&format!(
                "\nalerts: {firing} firing, {} pending · probes: {}/{} ok{}",
                open.len() - firing,
                a.probes.len() - failing_probes,
                a.probes.len(),
                if active.is_empty() {
                    String::new()
                } else {
                    format!(" · {} silence(s) active", active.len())
                }
            ));
            let lines = if open.is_empty() {
                vec!["None.".to_string()]
            } else {
                open.iter()
                    .map(|s| alert_line(s, silenced(&s.key)))
                    .collect()
            };
            push_fields(&mut fields, &format!("Open alerts ({})", open.len()), lines);
            if !active.is_empty() {
                let mut active = active.clone();
                active.sort_by_key(|s| s.1);
                let lines = active
                    .iter()
                    .map(|(p, until)| {
                        let secs = until.div_euclid(1000);
                        clip(&format!("🔕 `{p}` until <t:{secs}:f> (<t:{secs}:R>)"), 300)
                    })
                    .collect();
                push_fields(&mut fields, &format!("Silences ({})", active.len()), lines);
            }

            for p in a.probes.iter().filter(|p| !p.ok) {
                level = level.max(Level::of_failure(p.severity));
            }
            let group = |pred: &dyn Fn(&ProbeResult) -> bool| -> Vec<String> {
                a.probes
                    .iter()
                    .filter(|p| pred(p))
                    .map(probe_line)
                    .collect()
            };
            let others = group(&|p| p.kind != VAULT_KIND && p.kind != TLS_KIND);
            push_fields(
                &mut fields,
                "Probes",
                if others.is_empty() {
                    vec![
                        "No results (none configured, or the first round has not finished).".into(),
                    ]
                } else {
                    others
                },
            );
            let vault = group(&|p| p.kind == VAULT_KIND);
            if !vault.is_empty() {
                push_fields(&mut fields, "Vault", vault);
            }
            let certs = group(&|p| p.kind == TLS_KIND);
            if !certs.is_empty() {
                push_fields(&mut fields, "Certificates", certs);
            }
        }
    }
    let vault_probed = health
        .alerts
        .as_ref()
        .is_some_and(|a| a.probes.iter().any(|p| p.kind == VAULT_KIND));
    if let (Some(v), false) = (&health.vault, vault_probed) {
        if !v.ok {
            level = Level::Bad;
        }
        let icon = if v.ok { "✅" } else { "❌" };
        fields.push((
            "Vault".into(),
            clip(&format!("{icon} {}", v.text), FIELD_VALUE_MAX),
        ));
    }

    // One field per layer, continued in further fields when it exceeds 1024 characters.
    if report.docker_error.is_none() {
        for layer in &report.layers {
            let lines: Vec<String> = if layer.services.is_empty() {
                vec!["(no services)".to_string()]
            } else {
                layer.services.iter().map(service_line).collect()
            };
            push_fields(&mut fields, &layer.name, lines);
        }
    }

    let color = level.colour();
    let mut pages = vec![Page {
        title: title.clone(),
        description: clip(&description, 4000),
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
    // An empty total is complete.
    let filled = (u128::from(done.min(total)) * u128::from(width))
        .checked_div(u128::from(total))
        .map_or(width, |f| f as u64);
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
        ApprovalState::Void => (
            RED,
            "⚠️ void: what would run changed, nothing applied".into(),
        ),
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
    ];
    if !req.changes.is_empty() {
        // One field of at most 1024 bytes: the lines that fit, then how many more (the full
        // preview of a deploy is the attached file).
        let mut shown = String::new();
        let mut left = req.changes.len();
        for line in &req.changes {
            let line = clip(line, 200);
            let more = format!("\n… and {left} more");
            if shown.len() + line.len() + 1 + more.len() > FIELD_VALUE_MAX {
                shown.push_str(if shown.is_empty() { &more[1..] } else { &more });
                break;
            }
            if !shown.is_empty() {
                shown.push('\n');
            }
            shown.push_str(&line);
            left -= 1;
        }
        fields.push(("What will change".into(), shown));
    }
    fields.push(("State".into(), state));
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
            let pages = status_pages(&report(n), &HealthView::default());
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
        let none = HealthView::default();
        assert_eq!(status_pages(&report(1), &none)[0].color, RED);
        assert_eq!(status_pages(&report(0), &none)[0].color, GREEN);
        let r = StatusReport::unavailable("the Docker engine is unreachable (error id E1)");
        let p = &status_pages(&r, &none)[0];
        assert_eq!(p.color, RED);
        assert!(p.description.contains("unreachable"));
    }

    fn probe(name: &str, kind: &str, ok: bool, severity: Severity, summary: &str) -> ProbeResult {
        ProbeResult {
            name: name.into(),
            kind: kind.into(),
            layer: Some("layer_1".into()),
            ok,
            severity,
            summary: summary.into(),
            at_ms: 0,
        }
    }

    fn alert(key: &str, phase: Phase, severity: Severity) -> AlertState {
        AlertState {
            key: key.into(),
            phase,
            layer: Some("platform".into()),
            severity,
            summary: "0 of 1 tasks running".into(),
            consecutive_failures: 3,
            consecutive_ok: 0,
            first_failure_ms: Some(1_700_000_000_000),
            firing_since_ms: (phase == Phase::Firing).then_some(1_700_000_060_000),
            resolved_at_ms: None,
            notified: phase == Phase::Firing,
            last_notified_ms: None,
            held_under: None,
            updated_ms: 0,
        }
    }

    fn health(open: Vec<AlertState>, probes: Vec<ProbeResult>) -> HealthView {
        HealthView {
            alerts: Some(AlertsView {
                open,
                probes,
                silences: vec![],
            }),
            vault: None,
            now_ms: 1_700_000_100_000,
        }
    }

    fn text(pages: &[Page]) -> String {
        pages
            .iter()
            .flat_map(|p| {
                [p.description.clone()]
                    .into_iter()
                    .chain(p.fields.iter().map(|(n, v)| format!("{n}\n{v}")))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// (case, open alerts, probes, direct vault, expected colour): the colour is the worst
    /// state of services, alerts, probes and Vault.
    #[test]
    fn status_colour_is_the_worst_of_alerts_probes_and_vault() {
        use Severity::*;
        let ok_probe = probe("web", "http", true, Critical, "HTTP 200");
        type Case = (
            &'static str,
            Vec<AlertState>,
            Vec<ProbeResult>,
            Option<VaultView>,
            u32,
        );
        let cases: Vec<Case> = vec![
            ("all fine", vec![], vec![ok_probe.clone()], None, GREEN),
            (
                "pending",
                vec![alert("service:a", Phase::Pending, Critical)],
                vec![],
                None,
                YELLOW,
            ),
            (
                "firing warning",
                vec![alert("service:a", Phase::Firing, Warning)],
                vec![],
                None,
                YELLOW,
            ),
            (
                "firing critical",
                vec![alert("service:a", Phase::Firing, Critical)],
                vec![],
                None,
                RED,
            ),
            (
                "warning probe",
                vec![],
                vec![probe(
                    "cert",
                    "tls",
                    false,
                    Warning,
                    "certificate expires in 3 days",
                )],
                None,
                YELLOW,
            ),
            (
                "critical probe",
                vec![],
                vec![probe("web", "http", false, Critical, "connection refused")],
                None,
                RED,
            ),
            (
                "vault sealed",
                vec![],
                vec![],
                Some(VaultView {
                    ok: false,
                    text: "sealed".into(),
                }),
                RED,
            ),
            (
                "vault fine",
                vec![],
                vec![],
                Some(VaultView {
                    ok: true,
                    text: "unsealed".into(),
                }),
                GREEN,
            ),
        ];
        for (case, open, probes, vault, colour) in cases {
            let mut h = health(open, probes);
            h.vault = vault;
            let pages = status_pages(&report(0), &h);
            assert_eq!(pages[0].color, colour, "{case}: {}", text(&pages));
        }
        // A silenced firing alert is marked, and still red: a silence is not a fix.
        let mut h = health(vec![alert("service:a", Phase::Firing, Critical)], vec![]);
        h.alerts.as_mut().unwrap().silences = vec![("service:*".into(), h.now_ms + 1)];
        let pages = status_pages(&report(0), &h);
        assert_eq!(pages[0].color, RED);
        assert!(
            text(&pages).contains("`service:a` firing"),
            "{}",
            text(&pages)
        );
        assert!(text(&pages).contains("🔕"));
        assert!(
            text(&pages).contains("Silences (1)\n🔕 `service:*` until <t:1700000100:f>"),
            "{}",
            text(&pages)
        );
    }

    #[test]
    fn pages_are_redacted_within_limits() {
        let r = Redactor::new(["hunter2-secret-value"]);
        let page = Page {
            title: "t hunter2-secret-value".into(),
            description: "d".into(),
            color: GREEN,
            fields: vec![("f".into(), "x".repeat(1000) + "hunter2-secret-value")],
            footer: String::new(),
        };
        let p = page.redacted(&r);
        assert!(!format!("{p:?}").contains("hunter2"), "{p:?}");
        assert!(p.fields[0].1.len() <= FIELD_VALUE_MAX);
    }

    #[test]
    fn status_lists_alerts_probes_vault_and_certificates_in_their_fields() {
        use Severity::*;
        let mut held = alert("service:held", Phase::Firing, Warning);
        held.held_under = Some("probe:traefik".into());
        let h = health(
            vec![
                alert("service:pending", Phase::Pending, Critical),
                alert("service:firing", Phase::Firing, Critical),
                held,
            ],
            vec![
                probe("web", "http", false, Critical, "connection refused"),
                probe("bao", "vault_seal", true, Critical, "unsealed"),
                probe(
                    "cert",
                    "tls",
                    false,
                    Warning,
                    "certificate expires in 3 days",
                ),
            ],
        );
        let pages = status_pages(&report(2), &h);
        let p = &pages[0];
        let field = |name: &str| {
            p.fields
                .iter()
                .find(|(n, _)| n.starts_with(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no field {name}: {p:?}"))
        };
        let open = field("Open alerts (3)");
        assert!(open.contains("`service:held` firing"), "{open}");
        assert!(open.contains("(held under `probe:traefik`)"), "{open}");
        assert!(
            open.find("service:firing").unwrap() < open.find("service:pending").unwrap(),
            "firing first: {open}"
        );
        assert!(open.contains("since <t:1700000060:R>"), "{open}");
        assert!(field("Probes").contains("❌ `web` (http, critical): connection refused"));
        assert!(field("Vault").contains("unsealed"));
        assert!(field("Certificates").contains("expires in 3 days"));
        assert!(p
            .description
            .contains("alerts: 2 firing, 1 pending · probes: 1/3 ok"));
        assert!(
            !field("Probes").contains("cert"),
            "tls probes only under Certificates"
        );

        // No watcher: said so, never an empty "all fine".
        let none = status_pages(&report(0), &HealthView::default());
        assert!(none[0].description.contains("alerts: not running"));
        assert!(none[0]
            .fields
            .iter()
            .all(|(n, _)| !n.starts_with("Open alerts")));

        // Docker down: the alerts are still shown.
        let r = StatusReport::unavailable("the Docker engine is unreachable (error id E1)");
        let pages = status_pages(&r, &h);
        assert_eq!(pages[0].color, RED);
        assert!(text(&pages).contains("service:firing"));
    }

    #[test]
    fn many_alerts_and_probes_paginate_within_discord_limits() {
        use Severity::*;
        for n in [0usize, 1, 30, 400] {
            let open: Vec<AlertState> = (0..n)
                .map(|i| {
                    alert(
                        &format!("service:prod-crashing-service-{i:04}"),
                        Phase::Firing,
                        Critical,
                    )
                })
                .collect();
            let probes: Vec<ProbeResult> = (0..n)
                .map(|i| {
                    probe(
                        &format!("probe-{i:04}"),
                        "http",
                        i % 2 == 0,
                        Critical,
                        &"x".repeat(300),
                    )
                })
                .collect();
            let pages = status_pages(&report(n), &health(open, probes));
            let (mut alerts_seen, mut probes_seen) = (0, 0);
            for p in &pages {
                assert!(p.fields.len() <= FIELDS_MAX);
                assert!(p.len() <= 6000, "{n}: {}", p.len());
                for (name, v) in &p.fields {
                    assert!(name.len() <= 256 && v.len() <= FIELD_VALUE_MAX, "{n}");
                    alerts_seen += v.matches("prod-crashing-service-").count();
                    probes_seen += v.matches("`probe-").count();
                }
            }
            assert_eq!(
                (alerts_seen, probes_seen),
                (n, n),
                "every alert and probe appears once"
            );
        }
    }

    #[test]
    fn only_layer_keeps_that_layers_alerts_and_probes() {
        let h = health(
            vec![alert("service:a", Phase::Firing, Severity::Critical)],
            vec![probe("web", "http", true, Severity::Critical, "HTTP 200")],
        );
        let mut with_vault = h.clone();
        with_vault.vault = Some(VaultView {
            ok: true,
            text: "unsealed".into(),
        });
        let p = with_vault.clone().only_layer("platform");
        assert_eq!(p.alerts.as_ref().unwrap().open.len(), 1);
        assert!(p.alerts.as_ref().unwrap().probes.is_empty());
        assert!(p.vault.is_none());
        let l1 = with_vault.only_layer("layer_1");
        assert!(l1.alerts.as_ref().unwrap().open.is_empty());
        assert_eq!(l1.alerts.as_ref().unwrap().probes.len(), 1);
        assert!(l1.vault.is_some());
    }

    #[test]
    fn progress_bar_is_bounded_for_any_counts() {
        for (done, total, filled) in [
            (0, 0, 10),
            (0, 5, 0),
            (1, 2, 5),
            (3, 2, 10),
            (u64::MAX, u64::MAX, 10),
        ] {
            let bar = progress_bar(done, total);
            assert_eq!(bar.matches('#').count(), filled, "{done}/{total}: {bar}");
            assert_eq!(bar.len(), 14, "{bar}");
        }
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 3), "h…");
        assert_eq!(clip("ok", 10), "ok");
    }
}

#[cfg(test)]
mod approval_tests;
