//! The shipped allow-list against the requests the bot makes and the ones an attacker would.

use super::*;

/// What the bot's operations send (as bollard and `rawapi` spell them).
const BOT_REQUESTS: &[(&str, &str)] = &[
    ("GET", "/version"),
    ("GET", "/v1.41/version"),
    ("GET", "/_ping"),
    ("HEAD", "/_ping"),
    ("GET", "/v1.47/services?status=true"),
    ("GET", "/v1.47/services?filters=%7B%22id%22%3A%5B%22abc%22%5D%7D&status=true"),
    ("GET", "/v1.47/tasks"),
    ("GET", "/v1.47/tasks?filters=%7B%22service%22%3A%5B%22abc%22%5D%7D"),
    ("GET", "/v1.47/nodes"),
    ("GET", "/v1.47/services/platform_web"),
    ("GET", "/v1.47/services/sprocket-e2e-1.web"),
    ("POST", "/v1.47/services/q1w2e3r4t5y6u7i8o9p0a1s2d/update?version=42"),
    (
        "POST",
        "/v1.47/services/q1w2e3r4t5y6u7i8o9p0a1s2d/update?version=42&rollback=previous",
    ),
    (
        "GET",
        "/v1.47/services/q1w2e3r4t5y6u7i8o9p0a1s2d/logs?follow=false&stdout=true&stderr=true&tail=100",
    ),
    ("GET", "/v1.47/events?filters=%7B%22type%22%3A%5B%22service%22%5D%7D&since=1"),
];

/// What a compromised bot would try.
const ATTACKS: &[(&str, &str)] = &[
    ("POST", "/v1.47/services/create"),
    ("POST", "/services/create"),
    ("DELETE", "/v1.47/services/platform_web"),
    ("POST", "/v1.47/nodes/n1/update?version=3"),
    ("DELETE", "/v1.47/nodes/n1"),
    ("POST", "/v1.47/swarm/leave?force=true"),
    ("POST", "/v1.47/swarm/init"),
    ("POST", "/v1.47/swarm/join"),
    ("POST", "/v1.47/swarm/update?version=1"),
    ("POST", "/v1.47/swarm/unlock"),
    ("GET", "/v1.47/swarm/unlockkey"),
    ("GET", "/v1.47/swarm"),
    ("GET", "/v1.47/secrets"),
    ("POST", "/v1.47/secrets/create"),
    ("GET", "/v1.47/secrets/s1"),
    ("GET", "/v1.47/configs"),
    ("POST", "/v1.47/configs/create"),
    ("POST", "/v1.47/containers/c1/exec"),
    ("POST", "/v1.47/exec/e1/start"),
    ("POST", "/v1.47/containers/create"),
    ("POST", "/v1.47/containers/c1/attach?stream=1"),
    ("GET", "/v1.47/containers/json"),
    ("GET", "/v1.47/containers/c1/archive?path=/"),
    ("POST", "/v1.47/plugins/pull?remote=evil"),
    ("POST", "/v1.47/plugins/evil/enable"),
    ("POST", "/v1.47/images/create?fromImage=evil"),
    ("POST", "/v1.47/build"),
    ("POST", "/v1.47/volumes/create"),
    ("POST", "/v1.47/networks/create"),
    ("POST", "/v1.47/auth"),
    ("POST", "/v1.47/session"),
    ("GET", "/v1.47/info"),
    ("GET", "/v1.47/system/df"),
    ("GET", "/v1.47/tasks/t1/logs"),
    ("GET", "/v1.47/distribution/evil/json"),
    ("PUT", "/v1.47/services/x/update"),
    ("POST", "/v1.47/services/x/logs"),
    ("GET", "/v1.47/services/x/update"),
    // Path tricks: the engine's router would clean or decode these into another endpoint.
    ("POST", "/v1.47/services/x/../create"),
    ("POST", "/v1.47/services/./create"),
    ("POST", "/v1.47//services/create"),
    ("POST", "/v1.47/services/create/"),
    ("POST", "/v1.47/services%2Fcreate"),
    ("POST", "/v1.47/services/x%2F..%2Fcreate/update"),
    ("POST", "/v1.47/services/x/update/../../create"),
    ("GET", "/v1.47/services/x/logs/../../../secrets"),
    ("GET", "/"),
    ("GET", ""),
    ("GET", "/v1.47"),
    ("GET", "/v1.47/"),
    ("POST", "/v1.47/services/x\u{0}/update"),
    ("POST", "/v1.47/services/ x/update"),
];

#[test]
fn the_shipped_list_admits_every_request_the_bot_makes() {
    let list = AllowList::shipped();
    for (method, path) in BOT_REQUESTS {
        assert!(
            list.check(method, path).is_ok(),
            "{method} {path} should be admitted: {:?}",
            list.check(method, path)
        );
    }
}

#[test]
fn the_shipped_list_refuses_service_create_node_update_swarm_leave_secrets_exec() {
    let list = AllowList::shipped();
    for (method, path) in ATTACKS {
        assert!(
            list.check(method, path).is_err(),
            "{method} {path:?} must be refused, matched {:?}",
            list.check(method, path).map(|r| &r.pattern)
        );
    }
}

#[test]
fn no_shipped_rule_changes_anything_but_a_service_update() {
    for r in AllowList::shipped().rules() {
        if r.method != "GET" && r.method != "HEAD" {
            assert_eq!(
                (r.method.as_str(), r.pattern.as_str()),
                ("POST", "/services/[A-Za-z0-9]{1,64}/update")
            );
        }
    }
}

#[test]
fn rule_files_are_validated() {
    let cases: &[(&str, AllowListError)] = &[
        ("", AllowListError::Empty),
        ("# only a comment\n", AllowListError::Empty),
        ("GET", AllowListError::Malformed { line: 1 }),
        ("GET /a /b", AllowListError::Malformed { line: 1 }),
        (
            "\nget /a",
            AllowListError::Method {
                line: 2,
                method: "get".into(),
            },
        ),
        ("GET a", AllowListError::NotAPath { line: 1 }),
    ];
    for (text, want) in cases {
        assert_eq!(AllowList::parse(text).unwrap_err(), *want, "{text:?}");
    }
    assert!(matches!(
        AllowList::parse("GET /a(").unwrap_err(),
        AllowListError::Regex { line: 1, .. }
    ));
}

#[test]
fn rules_match_the_whole_path_never_a_prefix_or_suffix() {
    let list = AllowList::parse("GET /services\nPOST /a|/b").unwrap();
    assert!(list.check("GET", "/services").is_ok());
    assert!(list.check("GET", "/services/x").is_err());
    assert!(list.check("GET", "/x/services").is_err());
    // An alternation is anchored as a whole.
    assert!(list.check("POST", "/b").is_ok());
    assert!(list.check("POST", "/a/c").is_err());
    assert!(list.check("POST", "/c/b").is_err());
    // Only a /vN.M prefix is taken off.
    assert!(list.check("GET", "/v1.41/services").is_ok());
    assert!(list.check("GET", "/vx.41/services").is_err());
    assert!(list.check("GET", "/v1/services").is_err());
    assert!(list.check("GET", "/v1.41/v1.41/services").is_err());
}
