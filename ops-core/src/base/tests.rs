//! Tests of the leaf: matching, showing untrusted text, clocks, ids.

use super::*;

#[test]
fn glob_cases() {
    let cases = [
        ("prod-*", "prod-sprocket-web-service", true),
        ("prod-*", "prod-", true),
        ("prod-*", "production", false),
        ("traefik*", "traefik-d3127fd", true),
        ("vault-service", "vault-service", true),
        ("vault-service", "vault-service-2", false),
        ("*-bot-*", "prod-discord-bot-service", true),
        ("a*b*c", "abc", true),
        ("a*b*c", "acb", false),
        ("ab*ba", "aba", false),
    ];
    for (p, t, want) in cases {
        assert_eq!(glob_match(p, t), want, "{p} ~ {t}");
    }
}

#[test]
fn suggests_near_names_only() {
    let names = ["layer_1", "layer_2", "platform"];
    assert_eq!(closest("platfrom", names), ["platform"]);
    assert_eq!(closest("layer_3", names)[..2], ["layer_1", "layer_2"]);
    assert!(closest("zzz", names).is_empty());
}

#[test]
fn shown_forms() {
    let long = "x".repeat(100);
    let cases: [(&str, Shown, usize, String); 7] = [
        ("a\nb", Shown::Quoted, 40, "\"a\\nb\"".to_string()),
        (&long, Shown::Quoted, 40, format!("\"{}…\"", "x".repeat(37))),
        ("a\nb", Shown::Escaped, 64, "a\\nb".to_string()),
        (&long, Shown::Escaped, 64, format!("{}…", "x".repeat(64))),
        ("a\nb\u{7}c", Shown::Stripped, 60, "abc".to_string()),
        (&long, Shown::Stripped, 60, "x".repeat(60)),
        ("", Shown::Quoted, 40, "\"\"".to_string()),
    ];
    for (input, how, max, want) in cases {
        assert_eq!(shown(input, how, max), want, "{input:?} {how:?}");
    }
}

#[test]
fn one_clock_trait_for_system_manual_and_closures() {
    let manual = ManualClock::new(5);
    manual.advance(std::time::Duration::from_millis(10));
    assert_eq!(manual.now_ms(), 15);
    let closure: SharedClock = std::sync::Arc::new(|| 42);
    assert_eq!(closure.now_ms(), 42);
    assert!(SystemClock.now_ms() > 1_600_000_000_000);
}

#[test]
fn random_ids_are_hex_and_differ() {
    let a = random_hex(16);
    assert_eq!(a.len(), 32);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, random_hex(16));
}
