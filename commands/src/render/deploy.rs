//! `/deploy`: a running deploy's progress, its final report (succeeded, approval needed,
//! failed), an approved deploy's run (the same progress page, then its report), an
//! interrupted deploy's message, and `/history`.

use std::time::Duration;

use ops_core::approvals::{ApprovalRequest, Executed};
use ops_core::deploy::{DeployError, DeployPhase, DeployProgress, DeployReport};
use ops_core::store::DeployRecord;

use super::{clip, progress_bar, Page, GREEN, RED, YELLOW};

/// A running deploy's message, edited as it progresses.
pub fn deploy_progress_page(
    layer: &str,
    tag: Option<&str>,
    p: &DeployProgress,
    elapsed: Duration,
) -> Page {
    let phase = match p.phase {
        DeployPhase::Locking => "taking the layer lock",
        DeployPhase::Configuring => "setting the image tag",
        DeployPhase::Previewing => "previewing",
        DeployPhase::AwaitingApproval => "waiting for an approval",
        DeployPhase::Applying => "applying",
        DeployPhase::Verifying => "verifying the Swarm converged",
        DeployPhase::Succeeded => "succeeded",
        DeployPhase::Failed => "failed",
        DeployPhase::Cancelled => "cancelled",
    };
    let mut fields = vec![
        ("Phase".to_string(), phase.to_string()),
        (
            "Progress".to_string(),
            format!(
                "{} {}/{} steps",
                progress_bar(u64::from(p.steps_done), u64::from(p.steps_planned)),
                p.steps_done,
                p.steps_planned
            ),
        ),
    ];
    if let Some(c) = &p.current {
        fields.push(("Current".into(), clip(c, 1000)));
    }
    if !p.warnings.is_empty() {
        fields.push(("Warnings".into(), clip(&p.warnings.join("\n"), 1000)));
    }
    if !p.errors.is_empty() {
        fields.push(("Errors".into(), clip(&p.errors.join("\n"), 1000)));
    }
    Page {
        title: format!(
            "Deploy {layer}{}",
            tag.map(|t| format!(" image:{t}")).unwrap_or_default()
        ),
        description: String::new(),
        color: YELLOW,
        fields,
        footer: format!("{} s", elapsed.as_secs()),
    }
}

/// What an interrupted deploy's own message says after the restart.
pub fn interrupted_deploy_page(d: &DeployRecord) -> Page {
    let mut fields = Vec::new();
    if d.image_before.is_some() || d.image_after.is_some() {
        fields.push((
            "Image".into(),
            format!(
                "{} → {}",
                d.image_before.as_deref().unwrap_or("-"),
                d.image_after.as_deref().unwrap_or("-")
            ),
        ));
    }
    Page {
        title: format!("Deploy {}: interrupted", d.layer),
        description: format!(
            "sprocket-ops restarted while this deploy ran. It is marked interrupted and the \
             `{}` lock is released, but the apply may have stopped half-way and pulumi's own \
             stack lock may remain. Check `/status` and `/history layer:{}` before deploying \
             again.",
            d.layer, d.layer
        ),
        color: RED,
        fields,
        footer: format!("deploy {} · requested by {}", d.id, d.requester),
    }
}

/// A deploy that was applied and verified.
pub fn deploy_succeeded_page(layer: &str, report: &DeployReport, elapsed: Duration) -> Page {
    let services: Vec<String> = report
        .services
        .iter()
        .map(|s| {
            format!(
                "`{}` {}/{} `{}`",
                s.name,
                s.running.unwrap_or(0),
                s.desired.unwrap_or(0),
                ops_core::swarm::display_image(&s.image)
            )
        })
        .collect();
    Page {
        title: format!("Deploy {layer}: succeeded"),
        description: report.preview.describe().join("\n"),
        color: GREEN,
        fields: vec![
            (
                "Image".into(),
                format!(
                    "{} → {}",
                    report.record.image_before.as_deref().unwrap_or("-"),
                    report.record.image_after.as_deref().unwrap_or("-")
                ),
            ),
            ("Duration".into(), format!("{} s", elapsed.as_secs())),
            ("Steps".into(), format!("{} done", report.up.steps_done)),
            ("Services".into(), clip(&services.join("\n"), 1000)),
        ],
        footer: format!("deploy {}", report.record.id),
    }
}

/// A deploy whose plan needs an approval: nothing ran.
pub fn deploy_approval_needed_page(layer: &str, summary: &str) -> Page {
    Page {
        title: format!("Deploy {layer}: approval needed"),
        description: clip(summary, 4000),
        color: YELLOW,
        fields: vec![],
        footer: String::new(),
    }
}

/// A deploy that failed, with pulumi's diagnostics.
pub fn deploy_failed_page(layer: &str, e: &DeployError, elapsed: Duration) -> Page {
    let mut page = Page {
        title: format!("Deploy {layer}: failed"),
        description: clip(&e.to_string(), 2000),
        color: RED,
        fields: vec![],
        footer: format!("{} s", elapsed.as_secs()),
    };
    if !e.errors().is_empty() {
        page.fields
            .push(("Diagnostics".into(), clip(&e.errors().join("\n"), 1000)));
    }
    page
}

/// `/history`: the deploys of a layer, newest first.
pub fn deploy_history_page(layer: &str, rows: &[DeployRecord]) -> Page {
    let lines: Vec<String> = rows
        .iter()
        .map(|d| {
            format!(
                "<t:{}:f> **{}** {} → {} by {}{}{}",
                d.started_at_ms / 1000,
                d.state.as_str(),
                d.image_before.as_deref().unwrap_or("-"),
                d.image_after.as_deref().unwrap_or("-"),
                d.requester,
                d.approver
                    .as_deref()
                    .map(|a| format!(", approved by {a}"))
                    .unwrap_or_default(),
                d.error
                    .as_deref()
                    .map(|e| format!(": {}", clip(e, 120)))
                    .unwrap_or_default(),
            )
        })
        .collect();
    Page {
        title: format!("Deploys of {layer}"),
        description: if lines.is_empty() {
            "No deploys yet.".into()
        } else {
            clip(&lines.join("\n"), 4000)
        },
        color: GREEN,
        fields: vec![],
        footer: String::new(),
    }
}

/// An approved deploy or rollback (request `req`) as it runs and, with `result`, as it ended:
/// the `/deploy` progress page while it runs, then a report with the run's outcome, steps,
/// warnings and diagnostics. The footer names the request and who asked.
pub fn approved_run_page(
    req: &ApprovalRequest,
    p: &DeployProgress,
    result: Option<&Executed>,
    elapsed: Duration,
) -> Page {
    let tag = req.params.get("image_tag").and_then(|t| t.as_str());
    let footer = format!(
        "approved request {} · requested by {} · {} s",
        &req.id[..req.id.len().min(8)],
        req.requester.login,
        elapsed.as_secs()
    );
    let Some(result) = result else {
        let mut page = deploy_progress_page(&p.layer, tag, p, elapsed);
        page.footer = footer;
        return page;
    };
    let (outcome, text, color) = match result {
        Executed::Done(s) => ("succeeded", s.as_str(), GREEN),
        Executed::Unsaved(s) => ("succeeded (result not saved)", s.as_str(), YELLOW),
        Executed::Failed(s) => ("failed", s.as_str(), RED),
        Executed::Void(s) => ("not executed", s.as_str(), RED),
        Executed::NotMine => ("already executed", "", YELLOW),
    };
    let mut fields = vec![
        ("Duration".to_string(), format!("{} s", elapsed.as_secs())),
        ("Steps".to_string(), format!("{} done", p.steps_done)),
    ];
    if !p.warnings.is_empty() {
        fields.push(("Warnings".into(), clip(&p.warnings.join("\n"), 1000)));
    }
    if !p.errors.is_empty() {
        fields.push(("Diagnostics".into(), clip(&p.errors.join("\n"), 1000)));
    }
    Page {
        title: format!("Deploy {}: {outcome}", p.layer),
        description: clip(text, 2000),
        color,
        fields,
        footer,
    }
}
