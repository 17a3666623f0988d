//! Unit tests of the custom id formats: every id the bot makes parses back to itself, and ids
//! of other components are left alone.

use super::*;

#[test]
fn every_id_parses_back_to_itself() {
    let ids = [
        CustomId::Approval(ApprovalButton {
            request: "0123456789abcdef".into(),
            kind: ButtonKind::Confirm,
            mac: "00ff".repeat(6),
        }),
        CustomId::Silence {
            notifications: vec![6, 7, 123],
        },
        CustomId::VaultShare {
            ceremony: "c1".into(),
        },
        CustomId::VaultModal {
            ceremony: "c1".into(),
        },
        CustomId::DeployRollback {
            layer: "platform".into(),
        },
    ];
    for id in ids {
        let text = id.to_string();
        assert!(text.len() <= MAX_LEN, "{text}");
        assert_eq!(CustomId::parse(&text), Some(Ok(id)), "{text}");
    }
}

#[test]
fn malformed_ids_of_ours_are_told_apart_from_others() {
    for bad in ["apr:garbage", "apr:1:x:00", "apr:1:a:00:extra"] {
        assert_eq!(
            CustomId::parse(bad),
            Some(Err(Malformed::Approval)),
            "{bad}"
        );
    }
    for bad in ["alsil:", "alsil:x", "alsil:1..2", "alsil:-1"] {
        assert_eq!(CustomId::parse(bad), Some(Err(Malformed::Silence)), "{bad}");
    }
    for other in ["other:button", "share", "", "apr", "vault:unknown:1"] {
        assert_eq!(CustomId::parse(other), None, "{other}");
    }
}
