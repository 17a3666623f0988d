//! Approval requests: the page the approvals channel shows, and the confirmation an approver
//! answers.

use ops_core::approvals::{ApprovalRequest, ApprovalState, Decision};

use super::{clip, Page, FIELD_VALUE_MAX, GREEN, RED, YELLOW};

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

/// The confirmation an approver answers: the summary and what will change.
pub fn confirm_text(req: &ApprovalRequest) -> String {
    let mut text = format!("Approve: {}?", clip(&req.summary, 800));
    if !req.changes.is_empty() {
        text.push_str("\nWhat will change:");
        for line in req.changes.iter().take(12) {
            text.push_str("\n• ");
            text.push_str(&clip(line, 150));
        }
        if req.changes.len() > 12 {
            text.push_str(&format!(
                "\n… and {} more (see the request)",
                req.changes.len() - 12
            ));
        }
    }
    text
}
