//! `/status`: the Swarm report by layer with the alert watcher's open alerts, probes,
//! certificates and Vault, as pages coloured by the worst state.

use ops_core::alerts::{AlertState, Phase, ProbeResult, Severity};
use ops_core::layers::glob_match;
use ops_core::status::{ServiceStatus, StatusReport};

use super::{
    clip, push_fields, Page, EMBED_BUDGET, FIELDS_MAX, FIELD_VALUE_MAX, GREEN, RED, YELLOW,
};

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
