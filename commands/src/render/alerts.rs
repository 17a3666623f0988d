//! `/silence`: the answer to a silence applied, and the list of silences and open alerts.

use ops_core::alerts::{AlertState, Phase};
use ops_core::layers::glob_match;

use super::{clip, Page, GREEN, YELLOW};

fn phase_word(p: Phase) -> &'static str {
    match p {
        Phase::Firing => "firing",
        Phase::Pending => "pending",
        Phase::Resolved => "resolved",
        Phase::Ok => "ok",
    }
}

/// Lines `` `key` (phase): summary ``, clipped to about `budget` characters with a count of the
/// rest.
fn alert_lines(alerts: &[&AlertState], budget: usize) -> String {
    let mut out = String::new();
    for (i, a) in alerts.iter().enumerate() {
        let line = clip(
            &format!(
                "• `{}` ({}): {}",
                a.key,
                phase_word(a.phase),
                a.summary.replace('\n', " ")
            ),
            200,
        );
        let more = format!("… and {} more", alerts.len() - i);
        if out.len() + line.len() + 1 + more.len() + 1 > budget {
            out.push_str(&more);
            return out;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// The answer to a `/silence` that was applied.
pub fn silenced_page(pattern: &str, until_ms: i64, who: &str, matches: &[&AlertState]) -> Page {
    let secs = until_ms.div_euclid(1000);
    let now = if matches.is_empty() {
        "No open alert matches it now; it also holds back alerts that start before it ends."
            .to_string()
    } else {
        alert_lines(matches, 1000)
    };
    Page {
        title: clip(&format!("🔕 Silenced {pattern}"), 256),
        description: format!(
            "Alerts matching `{pattern}` are not announced until <t:{secs}:f> (<t:{secs}:R>). Silenced by {who}."
        ),
        color: YELLOW,
        fields: vec![(format!("Open alerts it matches now ({})", matches.len()), now)],
        footer: String::new(),
    }
}

/// `/silence` without options: the active silences and the open alerts (their keys are what
/// `/silence` takes).
pub fn silences_page(silences: &[(String, i64)], open: &[AlertState], now_ms: i64) -> Page {
    let mut active: Vec<&(String, i64)> = silences.iter().filter(|s| s.1 > now_ms).collect();
    active.sort_by_key(|s| s.1);
    let mut lines = String::new();
    for (i, (pattern, until)) in active.iter().enumerate() {
        let secs = until.div_euclid(1000);
        let n = open.iter().filter(|a| glob_match(pattern, &a.key)).count();
        let line = clip(
            &format!("• `{pattern}` until <t:{secs}:f> (<t:{secs}:R>), matches {n} open alert(s)"),
            300,
        );
        if lines.len() + line.len() + 40 > 1000 {
            lines.push_str(&format!("… and {} more", active.len() - i));
            break;
        }
        lines.push_str(&line);
        lines.push('\n');
    }
    let mut open_sorted: Vec<&AlertState> = open.iter().collect();
    open_sorted.sort_by(|a, b| a.key.cmp(&b.key));
    Page {
        title: "Alert silences".into(),
        description: "Silence one with `/silence key:<key or glob> duration:<30m|2h|1d>`.".into(),
        color: if active.is_empty() { GREEN } else { YELLOW },
        fields: vec![
            (
                format!("Active silences ({})", active.len()),
                if active.is_empty() {
                    "None.".into()
                } else {
                    lines.trim_end().to_string()
                },
            ),
            (
                format!("Open alerts ({})", open_sorted.len()),
                if open_sorted.is_empty() {
                    "None.".into()
                } else {
                    alert_lines(&open_sorted, 1000)
                },
            ),
        ],
        footer: String::new(),
    }
}
