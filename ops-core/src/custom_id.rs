//! The ids of the bot's buttons and forms (a frontend component's `custom_id`, at most
//! [`MAX_LEN`] characters): one type, one parse, one place that knows every format. An approval
//! button's id carries a MAC that only [`crate::approvals::Approvals`] can check: parsing reads
//! its parts and trusts none of them before `Approvals::authenticate`. A leaf: it imports
//! nothing from the crate.

use std::fmt;

/// Discord's limit on a component's custom id.
pub const MAX_LEN: usize = 100;

const APPROVAL: &str = "apr:";
/// The prefix of an alert message's "Silence 1 h" button.
pub const SILENCE_PREFIX: &str = "alsil:";
const VAULT_SHARE: &str = "vault:share:";
const VAULT_MODAL: &str = "vault:modal:";
const DEPLOY_ROLLBACK: &str = "deployrb:";

/// The button kinds on an approval message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonKind {
    Approve,
    Deny,
    /// The second step of Approve, against mis-clicks.
    Confirm,
}

impl ButtonKind {
    /// The kind's letter in the id (and in what the MAC covers).
    pub fn code(self) -> char {
        match self {
            ButtonKind::Approve => 'a',
            ButtonKind::Deny => 'd',
            ButtonKind::Confirm => 'c',
        }
    }

    fn from_code(code: &str) -> Option<ButtonKind> {
        match code {
            "a" => Some(ButtonKind::Approve),
            "d" => Some(ButtonKind::Deny),
            "c" => Some(ButtonKind::Confirm),
            _ => None,
        }
    }
}

/// An approval button as clicked: not authentic until its MAC is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalButton {
    pub request: String,
    pub kind: ButtonKind,
    /// Hex, as the id carries it.
    pub mac: String,
}

/// Every button and form id the bot makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomId {
    /// `apr:<request>:<a|d|c>:<mac>`: Approve, Deny or "Yes, approve" on an approval request.
    Approval(ApprovalButton),
    /// `alsil:<notification>.<notification>…`: "Silence 1 h" under an alert message.
    Silence { notifications: Vec<u64> },
    /// `vault:share:<ceremony>`: "Submit my key share" under an unseal ceremony.
    VaultShare { ceremony: String },
    /// `vault:modal:<ceremony>`: the key share form.
    VaultModal { ceremony: String },
    /// `deployrb:<layer>`: "Request rollback" under a failed deploy.
    DeployRollback { layer: String },
}

/// An id with one of the bot's prefixes that does not parse (a modified client), by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Approval,
    Silence,
}

impl CustomId {
    /// `None`: not one of the bot's ids (left alone); `Some(Err)`: one of ours, malformed.
    pub fn parse(custom_id: &str) -> Option<Result<CustomId, Malformed>> {
        if let Some(rest) = custom_id.strip_prefix(APPROVAL) {
            let mut parts = rest.split(':');
            let (Some(request), Some(kind), Some(mac), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Some(Err(Malformed::Approval));
            };
            let Some(kind) = ButtonKind::from_code(kind) else {
                return Some(Err(Malformed::Approval));
            };
            return Some(Ok(CustomId::Approval(ApprovalButton {
                request: request.to_string(),
                kind,
                mac: mac.to_string(),
            })));
        }
        if let Some(rest) = custom_id.strip_prefix(SILENCE_PREFIX) {
            let ids: Result<Vec<u64>, _> = rest.split('.').map(str::parse::<u64>).collect();
            return Some(match ids {
                Ok(notifications) if !notifications.is_empty() => {
                    Ok(CustomId::Silence { notifications })
                }
                _ => Err(Malformed::Silence),
            });
        }
        if let Some(ceremony) = custom_id.strip_prefix(VAULT_SHARE) {
            return Some(Ok(CustomId::VaultShare {
                ceremony: ceremony.to_string(),
            }));
        }
        if let Some(ceremony) = custom_id.strip_prefix(VAULT_MODAL) {
            return Some(Ok(CustomId::VaultModal {
                ceremony: ceremony.to_string(),
            }));
        }
        if let Some(layer) = custom_id.strip_prefix(DEPLOY_ROLLBACK) {
            return Some(Ok(CustomId::DeployRollback {
                layer: layer.to_string(),
            }));
        }
        None
    }
}

impl fmt::Display for CustomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CustomId::Approval(b) => {
                write!(f, "{APPROVAL}{}:{}:{}", b.request, b.kind.code(), b.mac)
            }
            CustomId::Silence { notifications } => {
                f.write_str(SILENCE_PREFIX)?;
                for (i, n) in notifications.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{n}")?;
                }
                Ok(())
            }
            CustomId::VaultShare { ceremony } => write!(f, "{VAULT_SHARE}{ceremony}"),
            CustomId::VaultModal { ceremony } => write!(f, "{VAULT_MODAL}{ceremony}"),
            CustomId::DeployRollback { layer } => write!(f, "{DEPLOY_ROLLBACK}{layer}"),
        }
    }
}

#[cfg(test)]
mod tests;
