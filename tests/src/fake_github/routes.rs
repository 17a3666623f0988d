//! The fake's routes: the REST API (users, org members, teams) and the OAuth device flow.

use super::*;

pub(super) async fn handle(
    axum::extract::State(shared): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let form = if method == Method::POST {
        parse_form(&body)
    } else {
        BTreeMap::new()
    };
    let failure = {
        let mut st = lock(&shared);
        st.requests.push(GithubRequest {
            method: method.to_string(),
            path: path.clone(),
            authorization: header(&headers, "authorization"),
            user_agent: header(&headers, "user-agent"),
            accept: header(&headers, "accept"),
            api_version: header(&headers, "x-github-api-version"),
            form: form.clone(),
        });
        st.failure
    };
    match failure {
        Failure::None => {}
        Failure::Hang(d) => tokio::time::sleep(d).await,
        Failure::ErrorBody(status, body) => {
            return respond(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &[],
                "application/json; charset=utf-8",
                body.to_string(),
            )
        }
        Failure::ServerError => {
            return json_response(
                StatusCode::BAD_GATEWAY,
                &[],
                json!({"message": "Server Error"}),
            )
        }
        Failure::RateLimited => {
            let reset = lock(&shared).rate_reset;
            return json_response(
                StatusCode::FORBIDDEN,
                &[
                    ("x-ratelimit-limit", RATE_LIMIT.to_string()),
                    ("x-ratelimit-remaining", "0".into()),
                    ("x-ratelimit-used", RATE_LIMIT.to_string()),
                    ("x-ratelimit-reset", reset.to_string()),
                    ("x-ratelimit-resource", "core".into()),
                ],
                json!({
                    "message": "API rate limit exceeded for installation ID 1.",
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                }),
            );
        }
    }
    let mut st = lock(&shared);
    if let Some(api_path) = path.strip_prefix(API_PREFIX) {
        api(&mut st, &method, api_path, &headers)
    } else {
        oauth(&mut st, &method, &path, &headers, &form)
    }
}

pub(super) fn api(st: &mut State, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    if header(headers, "user-agent").is_none_or(|ua| ua.trim().is_empty()) {
        return respond(
            StatusCode::FORBIDDEN,
            &[],
            "text/plain; charset=utf-8",
            "Request forbidden by administrative rules. Please make sure your request has a \
             User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
             Check https://developer.github.com for other possible causes.\n"
                .into(),
        );
    }
    let auth = auth_of(st, header(headers, "authorization").as_deref());
    if matches!(auth, Auth::Bad) {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &[],
            json!({"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}),
        );
    }
    if st.rate_remaining == 0 {
        return json_response(
            StatusCode::FORBIDDEN,
            &[
                ("x-ratelimit-limit", RATE_LIMIT.to_string()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset", st.rate_reset.to_string()),
            ],
            json!({"message": "API rate limit exceeded.", "documentation_url": DOCS}),
        );
    }
    st.rate_remaining -= 1;
    let rl = [
        ("x-ratelimit-limit", RATE_LIMIT.to_string()),
        ("x-ratelimit-remaining", st.rate_remaining.to_string()),
        (
            "x-ratelimit-used",
            (RATE_LIMIT - st.rate_remaining).to_string(),
        ),
        ("x-ratelimit-reset", st.rate_reset.to_string()),
        ("x-ratelimit-resource", "core".into()),
        ("x-github-api-version-selected", "2022-11-28".into()),
    ];
    if method != Method::GET {
        return not_found(&rl);
    }
    let base = st.base_url();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["orgs", org, "teams", team, "memberships", login] => {
            match auth {
                Auth::Anonymous => {
                    return json_response(
                        StatusCode::UNAUTHORIZED,
                        &rl,
                        json!({"message": "Requires authentication", "documentation_url": DOCS, "status": "401"}),
                    )
                }
                // A user token without read:org cannot see the team: 404, as on GitHub.
                Auth::User(_) | Auth::Bad => return not_found(&rl),
                Auth::Org => {}
            }
            let Some(id) = st.user_id(login) else {
                return not_found(&rl);
            };
            let key = (org.to_ascii_lowercase(), team.to_ascii_lowercase(), id);
            match st.memberships.get(&key) {
                Some(state) => json_response(
                    StatusCode::OK,
                    &rl,
                    json!({
                        "url": format!("{base}{API_PREFIX}/organizations/1/team/1/memberships/{login}"),
                        "role": "member",
                        "state": state,
                    }),
                ),
                None => not_found(&rl),
            }
        }
        ["user", id] if id.parse::<u64>().is_ok() => {
            let id: u64 = id.parse().unwrap_or_default();
            match st.users.get(&id) {
                Some(login) => json_response(StatusCode::OK, &rl, user_json(&base, id, login)),
                None => not_found(&rl),
            }
        }
        ["users", login] => match st.user_id(login) {
            Some(id) => json_response(StatusCode::OK, &rl, user_json(&base, id, &st.users[&id])),
            None => not_found(&rl),
        },
        ["user"] => match auth {
            Auth::User(id) => match st.users.get(&id) {
                Some(login) => json_response(StatusCode::OK, &rl, user_json(&base, id, login)),
                None => not_found(&rl),
            },
            Auth::Org => json_response(
                StatusCode::FORBIDDEN,
                &rl,
                json!({"message": "Resource not accessible by integration", "documentation_url": DOCS, "status": "403"}),
            ),
            Auth::Anonymous | Auth::Bad => json_response(
                StatusCode::UNAUTHORIZED,
                &rl,
                json!({"message": "Requires authentication", "documentation_url": DOCS, "status": "401"}),
            ),
        },
        _ => not_found(&rl),
    }
}

/// An OAuth answer: JSON with `Accept: application/json`, form-encoded otherwise; always 200.
pub(super) fn oauth_answer(headers: &HeaderMap, pairs: Vec<(&str, String)>) -> Response {
    let wants_json = header(headers, "accept").is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let obj: serde_json::Map<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| {
                let v = match v.parse::<u64>() {
                    Ok(n) if k == "interval" || k == "expires_in" => json!(n),
                    _ => json!(v),
                };
                (k.to_string(), v)
            })
            .collect();
        json_response(StatusCode::OK, &[], Value::Object(obj))
    } else {
        respond(
            StatusCode::OK,
            &[],
            "application/x-www-form-urlencoded; charset=utf-8",
            encode_form(&pairs),
        )
    }
}

pub(super) fn oauth_error_pairs(error: &str, description: &str) -> Vec<(&'static str, String)> {
    vec![
        ("error", error.to_string()),
        ("error_description", description.to_string()),
        (
            "error_uri",
            "https://docs.github.com/developers/apps/authorizing-oauth-apps#error-codes-for-the-device-flow".into(),
        ),
    ]
}

pub(super) fn oauth_error(headers: &HeaderMap, error: &str, description: &str) -> Response {
    oauth_answer(headers, oauth_error_pairs(error, description))
}

pub(super) fn oauth(
    st: &mut State,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> Response {
    match (method.as_str(), path) {
        ("GET", "/login/device") => respond(
            StatusCode::OK,
            &[],
            "text/html; charset=utf-8",
            "<!doctype html><title>Device Activation</title><p>Enter the code displayed on your device</p>".into(),
        ),
        ("POST", "/login/device/code") => {
            if form.get("client_id").map(String::as_str) != Some(FAKE_CLIENT_ID) {
                return oauth_error(
                    headers,
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                );
            }
            let n = st.next();
            let device_code = format!("{:016x}{:024x}", st.seed, n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let user_code = format!("ABCD-{}", 1233 + n);
            let interval = st.device_interval;
            let expires_in = st.device_expires_in;
            st.devices.push(Device {
                device_code: device_code.clone(),
                user_code: user_code.clone(),
                scope: form.get("scope").cloned().unwrap_or_default(),
                interval,
                expires_at: Instant::now() + Duration::from_secs(expires_in),
                status: DeviceStatus::Pending,
            });
            let verification_uri = format!("{}/login/device", st.base_url());
            oauth_answer(
                headers,
                vec![
                    ("device_code", device_code),
                    ("user_code", user_code),
                    ("verification_uri", verification_uri),
                    ("expires_in", expires_in.to_string()),
                    ("interval", interval.to_string()),
                ],
            )
        }
        ("POST", "/login/oauth/access_token") => {
            if form.get("client_id").map(String::as_str) != Some(FAKE_CLIENT_ID) {
                return oauth_error(
                    headers,
                    "incorrect_client_credentials",
                    "The client_id and/or client_secret passed are incorrect.",
                );
            }
            if form.get("grant_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:grant-type:device_code")
            {
                return oauth_error(
                    headers,
                    "unsupported_grant_type",
                    "The grant type is not supported.",
                );
            }
            let code = form.get("device_code").cloned().unwrap_or_default();
            let slow_down = std::mem::take(&mut st.slow_down_once);
            let n = st.next();
            let seed = st.seed;
            let Some(device) = st.devices.iter_mut().find(|d| d.device_code == code) else {
                return oauth_error(
                    headers,
                    "incorrect_device_code",
                    "The device_code provided is not valid.",
                );
            };
            if device.status == DeviceStatus::Consumed {
                return oauth_error(
                    headers,
                    "incorrect_device_code",
                    "The device_code provided is not valid.",
                );
            }
            if device.status == DeviceStatus::Expired || Instant::now() >= device.expires_at {
                device.status = DeviceStatus::Expired;
                return oauth_error(
                    headers,
                    "expired_token",
                    "The `device_code` has expired.",
                );
            }
            if slow_down {
                // GitHub adds 5 s and sends the new interval.
                device.interval += 5;
                let mut pairs = oauth_error_pairs(
                    "slow_down",
                    "Too many requests have been made in the same timeframe.",
                );
                pairs.push(("interval", device.interval.to_string()));
                return oauth_answer(headers, pairs);
            }
            match device.status {
                DeviceStatus::Pending => oauth_error(
                    headers,
                    "authorization_pending",
                    "The authorization request is still pending.",
                ),
                DeviceStatus::Denied => oauth_error(
                    headers,
                    "access_denied",
                    "The authorization request was denied.",
                ),
                DeviceStatus::Approved(id) => {
                    device.status = DeviceStatus::Consumed;
                    let scope = device.scope.clone();
                    let token = format!("gho_{:016x}{:020x}", seed.rotate_left(17), n);
                    st.user_tokens.insert(token.clone(), id);
                    oauth_answer(
                        headers,
                        vec![
                            ("access_token", token),
                            ("token_type", "bearer".into()),
                            ("scope", scope),
                        ],
                    )
                }
                // Both answered above; kept for exhaustiveness.
                DeviceStatus::Expired | DeviceStatus::Consumed => oauth_error(
                    headers,
                    "expired_token",
                    "The `device_code` has expired.",
                ),
            }
        }
        _ => not_found(&[]),
    }
}
