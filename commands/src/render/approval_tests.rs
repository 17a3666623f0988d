//! Unit tests of the approval page's "What will change" field.

use super::*;
use ops_core::approvals::{ApprovalRequest, ApprovalState};

#[test]
fn an_approval_page_lists_what_will_change_within_the_field_limit() {
    let mut req = ApprovalRequest {
        id: "0123456789abcdef".into(),
        action: "layer_1_deploy".into(),
        params: serde_json::json!({}),
        digest: "d".into(),
        summary: "deploy layer_1".into(),
        requester: ops_core::approvals::PersonRef {
            github_id: 1,
            login: "alice".into(),
            discord_id: 101,
        },
        rule: ops_core::permissions::ApprovalRule {
            approvals: 1,
            approver_roles: vec!["admin".into()],
            expiry_minutes: 15,
        },
        state: ApprovalState::Pending,
        created_at_ms: 0,
        expires_at_ms: 0,
        channel_id: None,
        message_id: None,
        result: None,
        bound: serde_json::Value::Null,
        changes: vec![
            "infra checkout: commit 1a2b3c4d5e6f (clean)".into(),
            "update traefik (docker:index/service:Service): taskSpec.containerSpec.image (update)"
                .into(),
        ],
        attachment: None,
    };
    let page = approval_page(&req, &[]);
    let (_, shown) = page
        .fields
        .iter()
        .find(|(n, _)| n == "What will change")
        .expect("a field of changes");
    assert_eq!(shown, &req.changes.join("\n"));
    req.changes = (0..200)
        .map(|i| {
            format!("update resource-{i:03} (docker:index/service:Service): taskSpec (update)")
        })
        .collect();
    let page = approval_page(&req, &[]);
    let (_, shown) = page
        .fields
        .iter()
        .find(|(n, _)| n == "What will change")
        .unwrap();
    assert!(shown.len() <= FIELD_VALUE_MAX, "{}", shown.len());
    assert!(shown.starts_with("update resource-000"), "{shown}");
    assert!(shown.ends_with(" more"), "says how many more: {shown}");
    assert!(page.len() <= 6000);
}
