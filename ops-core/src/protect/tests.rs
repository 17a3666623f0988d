//! Unit tests of the protection policy: repository globs, the image allow-list, which services
//! are sprocket-ops' own, which layers are protected.

use super::*;
use crate::config::Config;

const EXAMPLE: &str = include_str!("../../../sprocket-ops.example.toml");

fn policy(patterns: &[&str]) -> ImagePolicy {
    let p: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    for s in &p {
        RepoPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    ImagePolicy::new(&p)
}

fn check(policy: &ImagePolicy, input: &str) -> Result<(), String> {
    policy.check(&ImageTarget::parse(input).expect("a valid image"))
}

#[test]
fn references_are_normalised_like_the_engine_does() {
    let cases = [
        ("web", "docker.io/library/web"),
        ("web:v2", "docker.io/library/web"),
        ("team/web:v2", "docker.io/team/web"),
        ("docker.io/web", "docker.io/library/web"),
        ("index.docker.io/team/web", "docker.io/team/web"),
        ("ghcr.io/sprocketbot/web:main", "ghcr.io/sprocketbot/web"),
        ("GHCR.io/sprocketbot/web:main", "ghcr.io/sprocketbot/web"),
        ("localhost:5000/web:1", "localhost:5000/web"),
    ];
    for (input, want) in cases {
        assert_eq!(repository_of(input).as_deref(), Some(want), "{input}");
    }
    assert_eq!(repository_of("NOT VALID"), None);
}

/// Data-driven: (patterns, image typed, allowed?).
#[test]
fn the_allow_list_admits_tags_and_matching_repositories_only() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let pinned_ok = format!("ghcr.io/sprocketbot/web@{digest}");
    let pinned_bad = format!("ghcr.io/evil/web@{digest}");
    let cases: &[(&[&str], &str, bool)] = &[
        // Empty list: tags only.
        (&[], "v2", true),
        (&[], ":v2", true),
        (&[], "web:v2", false),
        (&[], "ghcr.io/sprocketbot/web:v2", false),
        // `*` stays within one segment.
        (
            &["ghcr.io/sprocketbot/*"],
            "ghcr.io/sprocketbot/web:v2",
            true,
        ),
        (&["ghcr.io/sprocketbot/*"], &pinned_ok, true),
        (&["ghcr.io/sprocketbot/*"], &pinned_bad, false),
        (
            &["ghcr.io/sprocketbot/*"],
            "ghcr.io/sprocketbot/a/b:v2",
            false,
        ),
        (
            &["ghcr.io/sprocketbot/*"],
            "ghcr.io/sprocketbot-evil/web:v2",
            false,
        ),
        (
            &["ghcr.io/sprocketbot/*"],
            "evil.io/ghcr.io/sprocketbot/web",
            false,
        ),
        (&["ghcr.io/sprocketbot/*"], "sprocketbot/web:v2", false),
        // `**` spans segments.
        (
            &["ghcr.io/sprocketbot/**"],
            "ghcr.io/sprocketbot/a/b:v2",
            true,
        ),
        (&["ghcr.io/sprocketbot/**"], "ghcr.io/sprocketbot:v2", false),
        // Docker Hub names are normalised on both sides.
        (&["nginx"], "nginx:1.27", true),
        (&["nginx"], "docker.io/library/nginx:1.27", true),
        (&["nginx"], "evil/nginx:1.27", false),
        (&["docker.io/sprocket*"], "sprocketbot:1", true),
        (&["docker.io/sprocket*"], "sprocketbot/web:1", false),
        (&["docker.io/sprocketbot/*"], "sprocketbot/web:1", true),
        (&["localhost:5000/*"], "localhost:5000/web:1", true),
        (&["localhost:5000/*"], "localhost:5001/web:1", false),
        // Several patterns: any one.
        (
            &["nginx", "ghcr.io/sprocketbot/*"],
            "ghcr.io/sprocketbot/api:2",
            true,
        ),
    ];
    for (patterns, input, want) in cases {
        let got = check(&policy(patterns), input);
        assert_eq!(got.is_ok(), *want, "{patterns:?} {input}: {got:?}");
        if let Err(e) = got {
            assert!(e.starts_with("refused: "), "{e}");
            assert!(e.contains("tag like `v2`"), "says what is allowed: {e}");
        }
    }
}

/// Data-driven: (pattern, words in the error).
#[test]
fn bad_patterns_are_refused_with_a_reason() {
    let cases = [
        ("", "empty"),
        ("ghcr.io/Sprocket/*", "lowercase"),
        ("ghcr.io/sprocketbot/web:v2", "names a tag"),
        ("web:v2", "names a tag"),
        ("ghcr.io/sprocketbot/web@sha256:abc", "`@` is not allowed"),
        ("ghcr.io//web", "empty path segment"),
        ("ghcr.io/sprocketbot/", "empty path segment"),
        ("ghcr.io/a**", "whole path segment"),
        ("*/sprocketbot/*", "registry host cannot be a glob"),
        ("*.io/sprocketbot/*", "registry host cannot be a glob"),
        ("ghcr.io/[ab]", "`[` is not allowed"),
        ("ghcr.io/a b", "` ` is not allowed"),
        ("ghcr.io/a?", "`?` is not allowed"),
    ];
    for (p, words) in cases {
        let e = RepoPattern::parse(p).expect_err(p);
        assert!(e.contains(words), "{p:?}: {e}");
    }
    assert_eq!(
        RepoPattern::parse("sprocketbot/*").unwrap().as_str(),
        "docker.io/sprocketbot/*"
    );
}

#[test]
fn config_keys_are_validated_at_load_and_name_the_key() {
    let cases = [
        (
            "[images]\nallowed = [\"ghcr.io/sprocketbot/*\", \"ghcr.io/Bad\"]\n",
            "images.allowed[1]",
        ),
        ("[images]\nallowed = \"ghcr.io/*\"\n", "images.allowed"),
        ("[images]\nallow = []\n", "images.allow"),
        (
            "[self_services]\nnames = [\"bad name\"]\n",
            "self_services.names[0]",
        ),
        ("[self_services]\nlabel = \"a=b\"\n", "self_services.label"),
    ];
    for (extra, key) in cases {
        let e = Config::parse("x.toml", &format!("{EXAMPLE}\n{extra}")).expect_err(extra);
        assert_eq!(e.key, key, "{extra}: {e}");
    }
    let cfg = Config::parse(
        "x.toml",
        &format!("{EXAMPLE}\n[images]\nallowed = [\"ghcr.io/sprocketbot/*\"]\n"),
    )
    .unwrap();
    assert_eq!(cfg.images.allowed, ["ghcr.io/sprocketbot/*"]);
    let cfg = Config::parse("x.toml", EXAMPLE).unwrap();
    assert!(cfg.images.allowed.is_empty(), "default: tags only");
    assert_eq!(cfg.self_services.names, DEFAULT_SELF_SERVICES);
    assert_eq!(cfg.self_services.label, DEFAULT_SELF_LABEL);
}

fn service(name: &str, labels: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        id: "id".into(),
        name: name.into(),
        image: "web:main".into(),
        replicas: Some(1),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        running_tasks: None,
        desired_tasks: None,
        update_state: None,
        update_message: None,
        version: 1,
    }
}

#[test]
fn own_services_and_protected_layers_are_recognised() {
    let cfg = Config::parse("x.toml", EXAMPLE).unwrap();
    let p = Protection::from_config(&cfg);
    assert!(p.is_self(&service("sprocket-ops_bot", &[])));
    assert!(p.is_self(&service("sprocket-ops_socket-proxy", &[])));
    assert!(p.is_self(&service("ops_bot", &[("sprocket-ops.self", "true")])));
    assert!(!p.is_self(&service("ops_bot", &[("sprocket-ops.self", "false")])));
    assert!(!p.is_self(&service("sprocket-ops_bot2", &[])));

    // The example's layer_1 always requires approval: by pattern and by label.
    assert_eq!(
        p.protected_layer(&service("vault-service", &[])).as_deref(),
        Some("layer_1")
    );
    assert_eq!(
        p.protected_layer(&service("anything", &[("sprocket.layer", "layer_1")]))
            .as_deref(),
        Some("layer_1")
    );
    assert_eq!(p.protected_layer(&service("prod-web", &[])), None);
    assert_eq!(
        p.protected_layer(&service("vault-x", &[("sprocket.layer", "platform")])),
        None,
        "the label wins over the patterns"
    );

    let cfg = Config::parse(
        "x.toml",
        &format!("{EXAMPLE}\n[self_services]\nnames = [\"ops_bot\"]\nlabel = \"mine\"\n"),
    )
    .unwrap();
    let p = Protection::from_config(&cfg);
    assert!(p.is_self(&service("ops_bot", &[])));
    assert!(
        !p.is_self(&service("sprocket-ops_bot", &[])),
        "names replace the default"
    );
    assert!(p.is_self(&service("x", &[("mine", "true")])));
}
