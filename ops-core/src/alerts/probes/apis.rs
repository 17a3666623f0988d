//! The verdicts on Traefik's and Gatus' APIs (`traefik_routers`, `gatus`): pure, on the JSON.

use super::*;

/// At most this many names in a summary; the rest are counted.
const MAX_NAMED: usize = 5;

pub(super) fn name_some(names: &[String]) -> String {
    let mut out = names
        .iter()
        .take(MAX_NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMED {
        out.push_str(&format!(" and {} more", names.len() - MAX_NAMED));
    }
    out
}

/// Traefik's `/api/http/routers`: an array of routers with `name` and `status`
/// (`enabled`, `disabled`, `warning`).
pub fn traefik_routers_verdict(v: &serde_json::Value) -> ProbeOutcome {
    let Some(routers) = v.as_array() else {
        return ProbeOutcome::Fail("Traefik's router list is not an array".into());
    };
    if routers.is_empty() {
        return ProbeOutcome::Fail("Traefik has no HTTP routers".into());
    }
    let bad: Vec<String> = routers
        .iter()
        .filter_map(|r| {
            let status = r
                .get("status")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown");
            (status != "enabled").then(|| {
                let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                format!("{name} ({status})")
            })
        })
        .collect();
    if bad.is_empty() {
        ProbeOutcome::Ok(format!("{} routers enabled", routers.len()))
    } else {
        ProbeOutcome::Fail(format!(
            "{} of {} routers not enabled: {}",
            bad.len(),
            routers.len(),
            name_some(&bad)
        ))
    }
}

/// Gatus's `/api/v1/endpoints/statuses`: an array of endpoints with `name`, `group` and
/// `results` (oldest first, each with `success`).
pub fn gatus_verdict(v: &serde_json::Value) -> ProbeOutcome {
    let Some(endpoints) = v.as_array() else {
        return ProbeOutcome::Fail("Gatus's status list is not an array".into());
    };
    if endpoints.is_empty() {
        return ProbeOutcome::Fail("Gatus reports no endpoints".into());
    }
    let mut failing = Vec::new();
    let mut unknown = 0;
    for e in endpoints {
        let name = e.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        let name = match e.get("group").and_then(|g| g.as_str()) {
            Some(g) if !g.is_empty() => format!("{g}/{name}"),
            _ => name.to_string(),
        };
        let newest = e
            .get("results")
            .and_then(|r| r.as_array())
            .and_then(|r| r.last())
            .and_then(|r| r.get("success"))
            .and_then(|s| s.as_bool());
        match newest {
            Some(true) => {}
            Some(false) => failing.push(name),
            None => unknown += 1,
        }
    }
    if failing.is_empty() {
        let note = if unknown > 0 {
            format!(" ({unknown} without results yet)")
        } else {
            String::new()
        };
        ProbeOutcome::Ok(format!(
            "{} endpoints healthy{note}",
            endpoints.len() - unknown
        ))
    } else {
        ProbeOutcome::Fail(format!(
            "{} of {} endpoints failing: {}",
            failing.len(),
            endpoints.len(),
            name_some(&failing)
        ))
    }
}
