//! Text output of the command line: progress lines, deploy reports, history and lock tables,
//! status as a table or JSON.

use super::*;

/// The lines worth printing for a progress change: the phase, steps done of planned with the
/// resource in flight, new warnings and errors.
pub fn progress_lines(prev: Option<&DeployProgress>, p: &DeployProgress) -> Vec<String> {
    let mut lines = Vec::new();
    if prev.map(|q| q.phase) != Some(p.phase) {
        let id = match (&p.deploy_id, prev.and_then(|q| q.deploy_id.as_ref())) {
            (Some(id), None) => format!(" (deploy {id})"),
            _ => String::new(),
        };
        lines.push(format!("{}: {}{id}", p.layer, phase_name(p.phase)));
    }
    let steps_changed = prev.map(|q| (q.steps_done, q.steps_planned, &q.current))
        != Some((p.steps_done, p.steps_planned, &p.current));
    if steps_changed && (p.phase == DeployPhase::Applying || p.steps_done > 0) {
        lines.push(format!(
            "  {}/{} steps{}",
            p.steps_done,
            p.steps_planned,
            p.current
                .as_deref()
                .map(|c| format!(", now {c}"))
                .unwrap_or_default()
        ));
    }
    for w in &p.warnings {
        if !prev.is_some_and(|q| q.warnings.contains(w)) {
            lines.push(format!("  warning: {w}"));
        }
    }
    for e in &p.errors {
        if !prev.is_some_and(|q| q.errors.contains(e)) {
            lines.push(format!("  error: {e}"));
        }
    }
    lines
}

/// The final report of a successful deploy.
pub fn deploy_report(r: &DeployReport) -> String {
    let rec = &r.record;
    let mut out = format!(
        "deployed {}{}: succeeded",
        rec.layer,
        rec.image_after
            .as_deref()
            .map(|t| format!(
                " tag {t}{}",
                rec.image_before
                    .as_deref()
                    .map(|b| format!(" (was {b})"))
                    .unwrap_or_default()
            ))
            .unwrap_or_default()
    );
    if let Some(ms) = rec.duration_ms() {
        out.push_str(&format!(" in {:.1} s", ms as f64 / 1000.0));
    }
    out.push('\n');
    out.push_str(&format!("deploy id: {}\n", rec.id));
    out.push_str(&format!(
        "changes: {} ({} steps done)\n",
        r.preview.totals().describe(),
        r.up.steps_done
    ));
    for line in r.preview.describe() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("services converged: {}\n", r.services.len()));
    for s in &r.services {
        let replicas = match (s.running, s.desired) {
            (Some(a), Some(b)) => format!("{a}/{b}"),
            _ => "-".to_string(),
        };
        out.push_str(&format!("  {}  {replicas}  {}\n", s.name, s.image));
    }
    for w in &r.up.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

pub(super) fn ms_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `history` as a plain table, newest first.
pub fn history_table(rows: &[DeployRecord]) -> String {
    if rows.is_empty() {
        return "no deploys yet\n".to_string();
    }
    let mut out = String::new();
    for d in rows {
        let tags = match (&d.image_before, &d.image_after) {
            (Some(b), Some(a)) => format!("{b} -> {a}"),
            (None, Some(a)) => format!("-> {a}"),
            _ => "-".to_string(),
        };
        let duration = d
            .duration_ms()
            .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".to_string());
        out.push_str(&format!(
            "{}  {:<11} {:<16} by {}{}  {duration}  {}\n",
            ms_time(d.started_at_ms),
            d.state.as_str(),
            tags,
            d.requester,
            d.approver
                .as_deref()
                .map(|a| format!(", approved by {a}"))
                .unwrap_or_default(),
            d.id
        ));
        if let Some(e) = &d.error {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}

/// `locks` as a plain table.
pub fn locks_table(locks: &[LayerLock]) -> String {
    if locks.is_empty() {
        return "no layer locks held\n".to_string();
    }
    locks
        .iter()
        .map(|l| {
            format!(
                "{}  held by {} since {} until {}{}{}\n",
                l.layer,
                l.owner,
                ms_time(l.started_at_ms),
                ms_time(l.expires_at_ms),
                l.deploy_id
                    .as_deref()
                    .map(|d| format!(" (deploy {d})"))
                    .unwrap_or_default(),
                if l.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", l.reason)
                }
            )
        })
        .collect()
}

pub(super) fn print_stdout(s: &str) -> Result<(), Exit> {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
    Ok(())
}

/// The documented `--json` shape.
pub fn status_json(report: &StatusReport) -> String {
    let services: Vec<serde_json::Value> = report
        .services()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "image": s.image,
                "running": s.running,
                "desired": s.desired,
                "layer": s.layer,
            })
        })
        .collect();
    serde_json::json!({ "services": services }).to_string() + "\n"
}

/// A plain table grouped by layer.
pub fn status_table(report: &StatusReport) -> String {
    let width = report
        .services()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = String::new();
    for layer in &report.layers {
        out.push_str(&format!("{}\n", layer.name));
        if layer.services.is_empty() {
            out.push_str("  (no services)\n");
        }
        for s in &layer.services {
            let replicas = format!("{}/{}", s.running, s.desired);
            out.push_str(&format!(
                "  {:<width$}  {:>7}  {}",
                s.name, replicas, s.image
            ));
            if let Some(u) = &s.update_state {
                out.push_str(&format!("  (update {u})"));
            }
            out.push('\n');
            for t in &s.failing_tasks {
                let code = t
                    .exit_code
                    .map(|c| format!(" exit {c}"))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  {:<width$}  ↳ {}{code}\n",
                    "",
                    t.error.as_deref().unwrap_or(&t.state)
                ));
            }
        }
    }
    out
}
