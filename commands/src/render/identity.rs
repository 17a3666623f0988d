//! `/whoami`: the Discord identity, the linked GitHub account, its teams and roles.

use ops_core::audit::Actor;
use ops_core::identity::Principal;
use ops_core::permissions::EVERYONE;

use super::{clip, Page, FIELD_VALUE_MAX, GREEN, YELLOW};

/// `/whoami`: the Discord identity, the linked GitHub account, its teams and roles.
pub fn whoami_page(me: &Actor, who: Result<&Principal, &str>) -> Page {
    let mut fields = vec![("Discord".into(), format!("{} (`{}`)", me.name, me.id))];
    let color = match who {
        Ok(p) => {
            fields.push((
                "GitHub".into(),
                format!("`{}` (id {})", p.person.login, p.person.github_id),
            ));
            let teams: Vec<&str> = p.teams.iter().map(String::as_str).collect();
            fields.push((
                "Teams".into(),
                if teams.is_empty() {
                    "none".into()
                } else {
                    teams.join(", ")
                },
            ));
            let roles: Vec<&str> = p
                .roles
                .iter()
                .map(String::as_str)
                .filter(|r| *r != EVERYONE)
                .collect();
            fields.push((
                "Roles".into(),
                if roles.is_empty() {
                    "none".into()
                } else {
                    roles.join(", ")
                },
            ));
            if p.stale {
                fields.push((
                    "Note".into(),
                    "GitHub is unreachable: this is a cached answer".into(),
                ));
            }
            GREEN
        }
        Err(why) => {
            fields.push(("GitHub".into(), clip(why, FIELD_VALUE_MAX)));
            YELLOW
        }
    };
    Page {
        title: "Who am I".into(),
        description: String::new(),
        color,
        fields,
        footer: String::new(),
    }
}
