//! The HTTP probe kinds: `http` (expected status; `rabbitmq` is one with basic auth),
//! `https_redirect`, `graphql`, `vault_seal`, and the JSON fetch behind the API kinds.

use super::*;

pub(super) async fn http(req: reqwest::RequestBuilder, expect: Option<u16>) -> ProbeOutcome {
    match req.send().await {
        Ok(r) => {
            let s = r.status();
            let ok = match expect {
                Some(e) => s.as_u16() == e,
                None => s.is_success(),
            };
            if ok {
                ProbeOutcome::Ok(format!("HTTP {}", s.as_u16()))
            } else {
                ProbeOutcome::Fail(format!(
                    "HTTP {} (expected {})",
                    s.as_u16(),
                    expect.map_or("2xx".to_string(), |e| e.to_string())
                ))
            }
        }
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

pub(super) async fn https_redirect(client: &reqwest::Client, url: &str) -> ProbeOutcome {
    match client.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            let loc = r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if matches!(s, 301 | 302 | 307 | 308) && loc.starts_with("https://") {
                ProbeOutcome::Ok(format!("HTTP {s} to https"))
            } else if matches!(s, 301 | 302 | 307 | 308) {
                ProbeOutcome::Fail(format!("HTTP {s} redirects, but not to https://"))
            } else {
                ProbeOutcome::Fail(format!("HTTP {s}: no redirect to https"))
            }
        }
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

pub(super) async fn graphql(client: &reqwest::Client, url: &str) -> ProbeOutcome {
    let req = client
        .post(url)
        .json(&serde_json::json!({ "query": "{ __typename }" }));
    match req.send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(v) if v.get("data").is_some_and(|d| !d.is_null()) => {
                ProbeOutcome::Ok("GraphQL answers".into())
            }
            Ok(_) => ProbeOutcome::Fail("GraphQL answer has no `data`".into()),
            Err(_) => ProbeOutcome::Fail("GraphQL answer is not JSON".into()),
        },
        Ok(r) => ProbeOutcome::Fail(format!("HTTP {}", r.status().as_u16())),
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

/// GETs JSON and judges it with `verdict`.
pub(super) async fn json_check(
    req: reqwest::RequestBuilder,
    verdict: fn(&serde_json::Value) -> ProbeOutcome,
) -> ProbeOutcome {
    match req.send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(v) => verdict(&v),
            Err(_) => ProbeOutcome::Fail("the answer is not JSON".into()),
        },
        Ok(r) => ProbeOutcome::Fail(format!("HTTP {}", r.status().as_u16())),
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}

pub(super) async fn vault_seal(client: &reqwest::Client, url: &str) -> ProbeOutcome {
    let u = format!("{}/v1/sys/seal-status", url.trim_end_matches('/'));
    match client.get(u).send().await {
        Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
            Ok(v) => match v.get("sealed").and_then(|s| s.as_bool()) {
                Some(false) => ProbeOutcome::Ok("unsealed".into()),
                Some(true) => ProbeOutcome::Fail("Vault is sealed".into()),
                None => ProbeOutcome::Fail("seal status has no `sealed`".into()),
            },
            Err(_) => ProbeOutcome::Fail("seal status is not JSON".into()),
        },
        Ok(r) => ProbeOutcome::Fail(format!("HTTP {}", r.status().as_u16())),
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}
