//! `permissions.toml`: roles granted by GitHub team membership (a role may include others), the
//! role each command needs, and the approval rule of each destructive action. Validated once at
//! start-up (exit 64 naming the key): unknown roles or commands, include cycles, and actions that
//! nobody could ever approve are refused. Pure: resolution takes the set of active teams.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigError;

/// The reserved role everybody holds, linked to GitHub or not.
pub const EVERYONE: &str = "everyone";

/// Every command key sprocket-ops knows. A slash command and its CLI twin use the same key.
pub const COMMANDS: &[&str] = &[
    "status",
    "whoami",
    "link",
    "audit",
    "logs",
    "bump",
    "scale",
    "restart",
    "rollback",
    "vault_status",
    "vault_unseal",
    "vault_seal",
    "vault_secrets",
    "deploy",
    "cancel",
    "locks",
    "unlock",
    "history",
    "silence",
];

/// Every destructive action that needs a second engineer.
pub const ACTIONS: &[&str] = &[
    "service_rollback",
    "scale_to_zero",
    "vault_seal",
    "layer_deploy_destructive",
    "layer_1_deploy",
    "layer_rollback",
    "unlock",
    // Changes to a service of a layer with `always_requires_approval` (crate::protect).
    "protected_bump",
    "protected_restart",
    "protected_scale",
    "protected_rollback",
];

/// The parsed, validated policy.
#[derive(Debug, Clone)]
pub struct Permissions {
    roles: BTreeMap<String, RoleDef>,
    commands: BTreeMap<String, String>,
    actions: BTreeMap<String, ApprovalRule>,
    pub guilds: BTreeSet<u64>,
    pub channels: BTreeSet<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleDef {
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    includes: Vec<String>,
}

/// How a destructive action is approved.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    /// Distinct approvers needed (never the requester).
    #[serde(default = "one")]
    pub approvals: u32,
    /// Roles whose holders may approve or deny.
    pub approver_roles: Vec<String>,
    /// Minutes before the request expires.
    #[serde(default = "fifteen")]
    pub expiry_minutes: u32,
}

fn one() -> u32 {
    1
}
fn fifteen() -> u32 {
    15
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    allow: Allow,
    roles: BTreeMap<String, RoleDef>,
    commands: BTreeMap<String, String>,
    #[serde(default)]
    actions: BTreeMap<String, ApprovalRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Allow {
    /// Guilds the bot answers in (empty: the configured guild only).
    #[serde(default)]
    guilds: Vec<u64>,
    /// Channels commands are accepted in (empty: any channel of an allowed guild).
    #[serde(default)]
    channels: Vec<u64>,
}

impl Permissions {
    pub fn load(path: &Path) -> Result<Permissions, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            message: format!("cannot read: {}", e.kind()),
        })?;
        Permissions::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Permissions, ConfigError> {
        let err = |key: String, message: String| ConfigError {
            file: file.to_string(),
            key,
            message,
        };
        let raw: Raw =
            serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let key = match (path.as_str(), inner.span()) {
                    (".", Some(span)) => {
                        format!("line {}", text[..span.start].matches('\n').count() + 1)
                    }
                    (".", None) => "(document)".to_string(),
                    _ => path,
                };
                err(
                    key,
                    inner
                        .message()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                )
            })?;
        let p = Permissions {
            roles: raw.roles,
            commands: raw.commands,
            actions: raw.actions,
            guilds: raw.allow.guilds.into_iter().collect(),
            channels: raw.allow.channels.into_iter().collect(),
        };
        p.validate().map_err(|(k, m)| err(k, m))?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        if self.roles.contains_key(EVERYONE) {
            return Err((
                format!("roles.{EVERYONE}"),
                "`everyone` is reserved: everybody holds it".into(),
            ));
        }
        for (name, role) in &self.roles {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err((
                    format!("roles.{name}"),
                    "role names are lowercase letters, digits, _ and -".into(),
                ));
            }
            for (i, t) in role.teams.iter().enumerate() {
                parse_team(t).map_err(|m| (format!("roles.{name}.teams[{i}]"), m))?;
            }
            for (i, inc) in role.includes.iter().enumerate() {
                if !self.roles.contains_key(inc) {
                    return Err((
                        format!("roles.{name}.includes[{i}]"),
                        format!("unknown role `{inc}`"),
                    ));
                }
            }
        }
        // Cycles: a role may not include itself, however indirectly.
        for name in self.roles.keys() {
            let mut stack: Vec<(&str, Vec<&str>)> = vec![(name, vec![name.as_str()])];
            while let Some((r, path)) = stack.pop() {
                for inc in &self.roles[r].includes {
                    if inc == name {
                        let mut cycle = path.clone();
                        cycle.push(inc);
                        return Err((
                            format!("roles.{name}.includes"),
                            format!("cycle: {}", cycle.join(" -> ")),
                        ));
                    }
                    if !path.contains(&inc.as_str()) {
                        let mut next = path.clone();
                        next.push(inc);
                        stack.push((inc, next));
                    }
                }
            }
        }
        for (cmd, role) in &self.commands {
            if !COMMANDS.contains(&cmd.as_str()) {
                return Err((
                    format!("commands.{cmd}"),
                    format!("unknown command; commands are: {}", COMMANDS.join(", ")),
                ));
            }
            if role != EVERYONE && !self.roles.contains_key(role) {
                return Err((format!("commands.{cmd}"), format!("unknown role `{role}`")));
            }
        }
        for cmd in COMMANDS {
            if !self.commands.contains_key(*cmd) {
                return Err((
                    format!("commands.{cmd}"),
                    "missing: every command needs a role (use \"everyone\" for public ones)".into(),
                ));
            }
        }
        for (action, rule) in &self.actions {
            let key = |k: &str| format!("actions.{action}.{k}");
            if !ACTIONS.contains(&action.as_str()) {
                return Err((
                    format!("actions.{action}"),
                    format!("unknown action; actions are: {}", ACTIONS.join(", ")),
                ));
            }
            if rule.approvals == 0 || rule.approvals > 5 {
                return Err((key("approvals"), "must be between 1 and 5".into()));
            }
            if rule.expiry_minutes == 0 || rule.expiry_minutes > 24 * 60 {
                return Err((key("expiry_minutes"), "must be between 1 and 1440".into()));
            }
            if rule.approver_roles.is_empty() {
                return Err((
                    key("approver_roles"),
                    "nobody could ever approve: list at least one role".into(),
                ));
            }
            for (i, r) in rule.approver_roles.iter().enumerate() {
                if r == EVERYONE {
                    return Err((
                        format!("actions.{action}.approver_roles[{i}]"),
                        "`everyone` cannot approve destructive actions".into(),
                    ));
                }
                if !self.roles.contains_key(r) {
                    return Err((
                        format!("actions.{action}.approver_roles[{i}]"),
                        format!("unknown role `{r}`"),
                    ));
                }
            }
            if rule
                .approver_roles
                .iter()
                .all(|r| self.granting_teams(r).is_empty())
            {
                return Err((
                    key("approver_roles"),
                    "nobody could ever approve: no GitHub team grants any of these roles".into(),
                ));
            }
        }
        for action in ACTIONS {
            if !self.actions.contains_key(*action) {
                return Err((
                    format!("actions.{action}"),
                    "missing: every destructive action needs an approval rule".into(),
                ));
            }
        }
        Ok(())
    }

    /// Teams whose members hold `role`: its own teams and those of every role that includes it.
    pub fn granting_teams(&self, role: &str) -> BTreeSet<String> {
        self.roles
            .iter()
            .filter(|(name, _)| self.closure(name).contains(role))
            .flat_map(|(_, def)| def.teams.iter().cloned())
            .collect()
    }

    /// A role and every role it includes, transitively.
    fn closure(&self, role: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![role.to_string()];
        while let Some(r) = stack.pop() {
            if seen.insert(r.clone()) {
                if let Some(def) = self.roles.get(&r) {
                    stack.extend(def.includes.iter().cloned());
                }
            }
        }
        seen
    }

    /// The teams that grant `role` directly (not through an including role).
    pub fn teams_of_role(&self, role: &str) -> &[String] {
        self.roles
            .get(role)
            .map(|r| r.teams.as_slice())
            .unwrap_or(&[])
    }

    /// Every command key with its required role.
    pub fn commands(&self) -> impl Iterator<Item = (&str, &str)> {
        self.commands.iter().map(|(c, r)| (c.as_str(), r.as_str()))
    }

    /// Every team any role mentions, as `org/team`: what to ask GitHub about a person.
    pub fn all_teams(&self) -> BTreeSet<String> {
        self.roles
            .values()
            .flat_map(|r| r.teams.iter().cloned())
            .collect()
    }

    /// The roles held by a person in `active_teams` (team membership state `active` only).
    pub fn roles_for(&self, active_teams: &BTreeSet<String>) -> BTreeSet<String> {
        let mut roles = BTreeSet::new();
        for (name, def) in &self.roles {
            if def.teams.iter().any(|t| active_teams.contains(t)) {
                roles.extend(self.closure(name));
            }
        }
        roles.insert(EVERYONE.to_string());
        roles
    }

    /// The role a command needs (every known command has one: validated at load).
    pub fn required_role(&self, command: &str) -> Option<&str> {
        self.commands.get(command).map(String::as_str)
    }

    pub fn allows(&self, roles: &BTreeSet<String>, command: &str) -> bool {
        self.required_role(command)
            .is_some_and(|r| roles.contains(r))
    }

    pub fn rule(&self, action: &str) -> Option<&ApprovalRule> {
        self.actions.get(action)
    }

    /// Whether someone holding `roles` may approve `action`.
    pub fn may_approve(&self, roles: &BTreeSet<String>, action: &str) -> bool {
        self.rule(action)
            .is_some_and(|r| r.approver_roles.iter().any(|a| roles.contains(a)))
    }

    pub fn role_names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// Whether an interaction from this guild/channel is accepted at all.
    pub fn channel_allowed(&self, default_guild: u64, guild: Option<u64>, channel: u64) -> bool {
        self.guild_allowed(default_guild, guild)
            && (self.channels.is_empty() || self.channels.contains(&channel))
    }

    /// Whether an interaction from this guild is accepted (DMs never are).
    pub fn guild_allowed(&self, default_guild: u64, guild: Option<u64>) -> bool {
        match guild {
            Some(g) if self.guilds.is_empty() => g == default_guild,
            Some(g) => self.guilds.contains(&g),
            None => false,
        }
    }
}

/// `org/team-slug` -> (org, team).
pub fn parse_team(s: &str) -> Result<(&str, &str), String> {
    let (org, team) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` must be `org/team-slug`"))?;
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    if !ok(org) || !ok(team) {
        return Err(format!("`{s}` must be `org/team-slug`"));
    }
    Ok((org, team))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const SHIPPED: &str = include_str!("../../permissions.toml");

    fn teams(t: &[&str]) -> BTreeSet<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shipped_permissions_are_valid_and_roles_include_others() {
        let p = Permissions::parse("permissions.toml", SHIPPED).unwrap();
        let deployer_teams = p.granting_teams("viewer");
        assert!(deployer_teams.len() >= 3, "{deployer_teams:?}");
        let roles = p.roles_for(&teams(&["sprocketbot/deployers"]));
        assert!(
            roles.contains("deployer") && roles.contains("operator") && roles.contains("viewer")
        );
        assert!(!roles.contains("admin"));
        let none = p.roles_for(&BTreeSet::new());
        assert_eq!(none, teams(&[EVERYONE]));
        assert!(p.allows(&none, "whoami"));
        assert!(!p.allows(&none, "status"));
    }

    /// Data-driven: (edit to the shipped file, expected key, words in the message).
    #[test]
    fn invalid_policies_name_the_key() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "status = \"viewer\"",
                "status = \"ghost\"",
                "commands.status",
                "unknown role",
            ),
            (
                "status = \"viewer\"",
                "status = \"viewer\"\nteleport = \"viewer\"",
                "commands.teleport",
                "unknown command",
            ),
            ("status = \"viewer\"", "", "commands.status", "missing"),
            (
                "includes = [\"viewer\"]",
                "includes = [\"admin\"]",
                "roles.admin.includes",
                "cycle",
            ),
            (
                "includes = [\"viewer\"]",
                "includes = [\"nobody\"]",
                "roles.operator.includes[0]",
                "unknown role",
            ),
            (
                "teams = [\"sprocketbot/oncall\"]",
                "teams = [\"oncall\"]",
                "roles.operator.teams[0]",
                "org/team",
            ),
            (
                "[actions.vault_seal]\napprovals = 1\napprover_roles = [\"keyholder\"]",
                "[actions.vault_seal]\napprovals = 1\napprover_roles = []",
                "actions.vault_seal.approver_roles",
                "nobody could ever approve",
            ),
            (
                "[actions.vault_seal]\napprovals = 1\napprover_roles = [\"keyholder\"]",
                "[actions.vault_seal]\napprovals = 0\napprover_roles = [\"keyholder\"]",
                "actions.vault_seal.approvals",
                "between",
            ),
            (
                "[actions.vault_seal]",
                "[actions.vault_explode]",
                "actions.vault_explode",
                "unknown action",
            ),
            (
                "[roles.keyholder]\nteams = [\"sprocketbot/vault-keyholders\"]",
                "[roles.keyholder]\nteams = []",
                "actions.vault_seal.approver_roles",
                "nobody could ever approve",
            ),
        ];
        for (from, to, key, words) in cases {
            assert!(SHIPPED.contains(from), "shipped file lacks {from:?}");
            let text = SHIPPED.replacen(from, to, 1);
            let e = Permissions::parse("p.toml", &text).expect_err(to);
            assert_eq!(&e.key, key, "for {to:?}: {e}");
            assert!(e.message.contains(words), "for {to:?}: {e}");
        }
    }

    #[test]
    fn allow_lists() {
        let p = Permissions::parse("p", SHIPPED).unwrap();
        assert!(p.channel_allowed(1000, Some(1000), 5));
        assert!(!p.channel_allowed(1000, Some(999), 5));
        assert!(!p.channel_allowed(1000, None, 5), "DMs are refused");
    }
}
