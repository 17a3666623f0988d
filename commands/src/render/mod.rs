//! Rendering ops-core results as Discord embeds, within Discord's limits (title 256,
//! description 4096, field name 256, field value 1024, footer 2048, 25 fields and 6000
//! characters per embed), enforced centrally by [`Page::to_embed`] for every page. Pure: pages are plain data first, so the limits
//! are unit-tested without Discord. One file per subject: `status` (`/status`), `identity`
//! (`/whoami`), `audit`, `rollout` (Swarm changes), `approval`, `deploy`, `vault`, `alerts`;
//! this file holds the page type and the limits they share.

use ops_core::redact::Redactor;
use poise::serenity_prelude as serenity;

mod alerts;
mod approval;
mod audit;
mod deploy;
mod identity;
mod rollout;
mod status;
mod vault;

pub use alerts::{silenced_page, silences_page};
pub use approval::{approval_page, confirm_text};
pub use audit::audit_page;
pub use deploy::{
    approved_run_page, deploy_approval_needed_page, deploy_failed_page, deploy_history_page,
    deploy_progress_page, deploy_succeeded_page, interrupted_deploy_page,
};
pub use identity::whoami_page;
pub use rollout::rollout_page;
pub use status::{status_pages, AlertsView, HealthView, VaultView};
pub use vault::{ceremony_page, vault_secrets_page, vault_status_page};

pub const GREEN: u32 = 0x2e_cc71;
pub const YELLOW: u32 = 0xf1_c40f;
pub const RED: u32 = 0xe7_4c3c;

const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELD_NAME_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1024;
const FOOTER_MAX: usize = 2048;
const FIELDS_MAX: usize = 25;
/// Discord's limit on the text of one embed (title, description, fields, footer together).
const EMBED_TOTAL_MAX: usize = 6000;
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
        Page {
            title: redact(&self.title),
            description: redact(&self.description),
            color: self.color,
            fields: self
                .fields
                .iter()
                .map(|(n, v)| (redact(n), redact(v)))
                .collect(),
            footer: redact(&self.footer),
        }
        .fitted()
    }

    /// The page within Discord's embed limits, whatever it carries (a 300-character tag a
    /// person typed, a long summary): title 256, description 4096, field name 256, field value
    /// 1024, footer 2048, 25 fields and 6000 in all (fields beyond it are dropped, then the
    /// description is cut). Lengths are bytes, never fewer than Discord's characters.
    pub fn fitted(&self) -> Page {
        let mut p = Page {
            title: clip(&self.title, TITLE_MAX),
            description: clip(&self.description, DESCRIPTION_MAX),
            color: self.color,
            fields: self
                .fields
                .iter()
                .take(FIELDS_MAX)
                .map(|(n, v)| (clip(n, FIELD_NAME_MAX), clip(v, FIELD_VALUE_MAX)))
                .collect(),
            footer: clip(&self.footer, FOOTER_MAX),
        };
        while p.len() > EMBED_TOTAL_MAX && !p.fields.is_empty() {
            p.fields.pop();
        }
        if p.len() > EMBED_TOTAL_MAX {
            let rest = p.len() - p.description.len();
            p.description = clip(&p.description, EMBED_TOTAL_MAX.saturating_sub(rest));
        }
        p
    }

    /// The embed, always within Discord's limits ([`Page::fitted`]): every page the commands
    /// send goes through here, so no typed text can make Discord reject a message.
    pub fn to_embed(&self) -> serenity::CreateEmbed {
        let page = self.fitted();
        let mut e = serenity::CreateEmbed::new()
            .title(&page.title)
            .color(page.color);
        if !page.description.is_empty() {
            e = e.description(&page.description);
        }
        for (n, v) in &page.fields {
            e = e.field(n, v, false);
        }
        if !page.footer.is_empty() {
            e = e.footer(serenity::CreateEmbedFooter::new(&page.footer));
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

fn field_name(layer: &str, part: usize) -> String {
    if part == 0 {
        layer.to_string()
    } else {
        format!("{layer} (continued)")
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod approval_tests;
