//! `/audit`: the newest audit rows.

use ops_core::audit::AuditRecord;

use super::{clip, Page, GREEN};

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
