//! `/vault`: the seal status, the unseal ceremony's message, the secrets the platform needs.

use ops_core::vault::{SealStatus, SecretPresence};

use super::{clip, Page, GREEN, RED, YELLOW};
use crate::vault::OpenCeremony;

/// `/vault status`.
pub fn vault_status_page(s: &SealStatus) -> Page {
    let color = if !s.initialized || s.sealed {
        RED
    } else {
        GREEN
    };
    Page {
        title: "Vault".into(),
        description: s.describe(),
        color,
        fields: vec![
            ("Initialised".into(), s.initialized.to_string()),
            ("Sealed".into(), s.sealed.to_string()),
            ("Threshold".into(), format!("{} of {} shares", s.t, s.n)),
            (
                "Unseal progress".into(),
                format!("{} of {}", s.progress, s.t),
            ),
            ("Version".into(), s.version.clone()),
            (
                "Storage".into(),
                s.storage_type.clone().unwrap_or_else(|| "unknown".into()),
            ),
            (
                "HA".into(),
                if s.ha_enabled { "enabled" } else { "disabled" }.into(),
            ),
        ],
        footer: String::new(),
    }
}

/// The unseal ceremony's message: progress, who submitted, when it resets.
pub fn ceremony_page(c: &OpenCeremony, note: &str) -> Page {
    let who = c.ceremony.submitted_by();
    Page {
        title: "Vault unseal ceremony".into(),
        description: format!(
            "Key holders: press **Submit my key share** and type your share. It goes straight to Vault and is never stored or shown.\n{note}"
        ),
        color: YELLOW,
        fields: vec![
            ("Progress".into(), format!("{} of {}", c.ceremony.progress(), c.ceremony.threshold())),
            ("Submitted by".into(), if who.is_empty() { "nobody yet".into() } else { who.join(", ") }),
            ("Resets after".into(), format!("<t:{}:R> without a share", c.ceremony.idle_deadline_ms() / 1000)),
        ],
        footer: format!("ceremony {}", c.id),
    }
}

/// `/vault secrets`: one line per path the platform needs (metadata only).
pub fn vault_secrets_page(report: &[SecretPresence]) -> Page {
    let missing = report.iter().filter(|p| !p.exists).count();
    let lines: Vec<String> = report
        .iter()
        .map(|p| match (p.exists, &p.updated_time, &p.error) {
            (_, _, Some(e)) => format!("⚠️ `{}`: {e}", p.path),
            (true, Some(t), None) => format!("✅ `{}` updated <t:{}:R>", p.path, t.timestamp()),
            (true, None, None) => format!("✅ `{}`", p.path),
            (false, _, None) => format!("❌ `{}` missing", p.path),
        })
        .collect();
    Page {
        title: "Vault secrets the platform needs".into(),
        description: clip(&lines.join("\n"), 4000),
        color: if missing > 0 { RED } else { GREEN },
        fields: vec![],
        footer: format!("{} path(s), {missing} missing; metadata only", report.len()),
    }
}
