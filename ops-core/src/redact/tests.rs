//! Unit tests of the redactor: one data-driven table per form of a known value, the patterns for
//! unknown ones, learning, line streams, and ordinary text left alone.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;

use super::forms::{json_escape, url_encode};
use super::*;

/// A secret with every awkward character: space, quotes, slash, plus, ampersand, equals,
/// dollar, backslash and a non-ASCII letter.
const PLANTED: &str = "p@ss w0rd/\"quo'ted\"+&=$\\é-Zq";

fn hex(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// Every encoding the redactor must find, by name.
fn encodings(s: &str) -> Vec<(&'static str, String)> {
    let b = s.as_bytes();
    let pre = |n: usize| {
        let mut v = b"xy".to_vec()[..n].to_vec();
        v.extend_from_slice(b);
        v.extend_from_slice(b"tail-bytes");
        v
    };
    vec![
        ("raw", s.to_string()),
        ("base64", STANDARD.encode(b)),
        ("base64 no pad", STANDARD_NO_PAD.encode(b)),
        ("base64url", URL_SAFE.encode(b)),
        ("base64url no pad", URL_SAFE_NO_PAD.encode(b)),
        ("base64 inside a blob, offset 1", STANDARD.encode(pre(1))),
        ("base64 inside a blob, offset 2", STANDARD.encode(pre(2))),
        ("base64url inside a blob, offset 1", URL_SAFE.encode(pre(1))),
        ("base64url inside a blob, offset 2", URL_SAFE.encode(pre(2))),
        ("url", url_encode(s, b"-_.~", false)),
        ("url lower", url_encode(s, b"-_.~", true)),
        ("url strict", url_encode(s, b"", false)),
        (
            "url form (+ for space)",
            url_encode(s, b"-_.~", false).replace("%20", "+"),
        ),
        ("json", json_escape(s)),
        ("json \\/", json_escape(s).replace('/', "\\/")),
        ("json ascii", json_escape(s).replace('é', "\\u00e9")),
        (
            "shell single quotes",
            format!("'{}'", s.replace('\'', "'\\''")),
        ),
        (
            "shell double quotes",
            format!(
                "\"{}\"",
                s.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('$', "\\$")
            ),
        ),
        ("hex", hex(s, false)),
        ("HEX", hex(s, true)),
    ]
}

/// Data-driven: every form of a known value, alone and inside a line, is masked, and nothing
/// of it is left.
#[test]
fn every_form_of_a_known_value_is_masked() {
    for secret in [PLANTED, "hunter2-planted", "Zm9vYmFy!", "s3cr3t"] {
        let r = Redactor::new([secret]);
        for (name, form) in encodings(secret) {
            let line = format!("level=info msg=\"{form}\" done");
            let out = r.redact(&line);
            assert!(out.contains(MASK), "{secret} / {name}: {line} -> {out}");
            assert!(out.ends_with(" done"), "{secret} / {name}: {out}");
            // No 8-character run of the secret's part of the form survives (in a blob, the
            // characters that encode the secret alone).
            let part = match name.rsplit_once("offset ") {
                Some((_, k)) => {
                    let k: usize = k.parse().unwrap();
                    let (start, end) = ((8 * k).div_ceil(6), (8 * (k + secret.len())) / 6);
                    form[start..end].to_string()
                }
                None => form.clone(),
            };
            let f = part.as_bytes();
            for w in f.windows(8) {
                let w = String::from_utf8_lossy(w);
                assert!(
                    !out.contains(w.as_ref()) || "level=info msg=\" done".contains(w.as_ref()),
                    "{secret} / {name}: {w:?} left in {out}"
                );
            }
        }
    }
}

#[test]
fn values_shorter_than_six_are_not_learned() {
    let r = Redactor::new(["abcde", "the", ""]);
    assert_eq!(r.known(), 0);
    assert_eq!(r.redact("abcde the end"), "abcde the end");
    let r = Redactor::new(["abcdef"]);
    assert_eq!(r.redact("x abcdef y"), format!("x {MASK} y"));
}

#[test]
fn token_shapes_and_pairs_are_masked() {
    let r = Redactor::default();
    let cases = [
        ("vault hvs.CAESIJ0abcdefghijklmnopqrstuv", "CAESIJ0"),
        ("gh ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abc"),
        ("pat github_pat_11ABCDEFG0abcdefghijklmn", "11ABCDEFG"),
        (
            "discord MTIzNDU2Nzg5MDEyMzQ1Njc4.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456",
            "GaBcDe",
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "dBjftJeZ4CVP",
        ),
        ("aws AKIAIOSFODNN7EXAMPLE ok", "IOSFODNN7"),
        ("DB_PASSWORD=supersecret next", "supersecret"),
        ("{\"client_secret\": \"xyz123abc\"}", "xyz123abc"),
        ("PULUMI_CONFIG_PASSPHRASE=correct-horse", "correct-horse"),
        ("{\"auth\":\"dXNlcjpodW50ZXIy\"}", "dXNlcjpodW50ZXIy"),
        ("basic_auth: admin:s3cret99", "s3cret99"),
        ("session=0a1b2c3d4e5f; Path=/", "0a1b2c3d4e5f"),
        ("sessionid: f00dfeedbeef", "f00dfeedbeef"),
        ("{\"token\": \"a\\\"quoted\\\"tok\"}", "quoted"),
        ("url postgres://doadmin:pgpass99@db:25060/x", "pgpass99"),
        ("dsn app:mysqlpass7@tcp(db:3306)/app", "mysqlpass7"),
        (
            "Authorization: Bearer abcdefghijklmnop1234",
            "abcdefghijklmnop1234",
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----",
            "MIIEow",
        ),
        ("-----BEGIN PRIVATE KEY-----\nMIIEunterminated", "MIIEunterminated"),
        (
            r#"{"type":1,"custom_id":"share","value":"c2hhcmUtb25lLXNlY3JldA=="}"#,
            "c2hhcmUtb25lLXNlY3JldA",
        ),
        (
            r#"{"value":"c2hhcmUtb25lLXNlY3JldA==","type":4,"custom_id":"share"}"#,
            "c2hhcmUtb25lLXNlY3JldA",
        ),
        (
            r#"InputText { custom_id: "share", value: Some("c2hhcmUtb25lLXNlY3JldA==") }"#,
            "c2hhcmUtb25lLXNlY3JldA",
        ),
        (
            r#"Object {"custom_id": String("share"), "type": Number(4), "value": String("c2hhcmUtb25lLXNlY3JldA==")}"#,
            "c2hhcmUtb25lLXNlY3JldA",
        ),
    ];
    for (input, secret) in cases {
        let out = r.redact(input);
        assert!(!out.contains(secret), "{input} -> {out}");
    }
    assert_eq!(r.redact("next"), "next");
    assert!(r.redact("DB_PASSWORD=supersecret next").ends_with(" next"));
}

#[test]
fn a_value_seen_labelled_once_is_masked_everywhere_after() {
    let r = Redactor::default();
    let out = r.redact("connecting with password=Tr0ub4dor&3x (then Tr0ub4dor again)");
    assert!(!out.contains("Tr0ub4dor"), "{out}");
    // Later text, bare and encoded, through a clone (the bot shares one redactor).
    let c = r.clone();
    for later in [
        "retrying Tr0ub4dor".to_string(),
        STANDARD.encode("Tr0ub4dor&3x"),
        url_encode("Tr0ub4dor&3x", b"", false),
    ] {
        let out = c.redact(&later);
        assert!(out.contains(MASK), "{later} -> {out}");
        assert!(!out.contains("Tr0ub4dor"), "{later} -> {out}");
    }
    for labelled in [
        r#"{"token": "json-labelled-1"}"#,
        "Authorization: Bearer bearerlabelled0123456",
        "redis://default:url-labelled-pw@cache:6379",
    ] {
        r.redact(labelled);
    }
    for (bare, gone) in [
        ("x json-labelled-1 y", "json-labelled-1"),
        ("x bearerlabelled0123456 y", "bearerlabelled"),
        ("x url-labelled-pw y", "url-labelled-pw"),
    ] {
        let out = r.redact(bare);
        assert!(!out.contains(gone), "{bare} -> {out}");
    }
}

/// A Debug print (`token: String("…")`) must not teach the redactor `String(`: every later
/// `String(` would be masked.
#[test]
fn a_value_cut_short_by_a_quote_is_not_learned() {
    let r = Redactor::default();
    let out = r.redact(r#"Object {"token": String("abcdef123456"), "auth": Some("x")}"#);
    assert!(
        !out.contains("abcdef123456") && !out.contains("Some(\"x"),
        "{out}"
    );
    assert_eq!(r.known(), 1, "the whole value is learned: {out}");
    assert!(r.redact("later abcdef123456").contains(MASK));
    let out = r.redact(r#"token: String(" and more"#);
    assert_eq!(r.known(), 1, "a cut value is not learned: {out}");
    assert_eq!(r.redact(r#"String("plain")"#), r#"String("plain")"#);
}

#[test]
fn numbers_and_placeholders_are_masked_in_place_but_not_learned() {
    let r = Redactor::default();
    let out = r.redact("session: 1234567890 password=******** token=[REDACTED]");
    assert!(!out.contains("1234567890"), "{out}");
    assert_eq!(r.known(), 0);
    assert_eq!(r.redact("took 1234567890 ns"), "took 1234567890 ns");
}

#[test]
fn secret_env_values_of_a_spec() {
    let env = [
        "DB_PASSWORD=hunter2-spec",
        "API_KEY=k-123456789",
        "GITHUB_TOKEN=ghp_whatever",
        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI",
        "SERVICE_CREDENTIALS=credvalue99",
        "DATABASE_URL=postgres://app:urlpass-spec@db:5432/app",
        "MYSQL_DSN=app:dsnpass-spec@tcp(db:3306)/app",
        "DB_PASSWORD_FILE=/run/secrets/db_password",
        "LOG_LEVEL=debug",
        "NODE_ENV=production",
        "SHORT_TOKEN=abc",
        "NOEQUALS",
    ];
    let got = secret_env_values(&env);
    for want in [
        "hunter2-spec",
        "k-123456789",
        "ghp_whatever",
        "wJalrXUtnFEMI",
        "credvalue99",
        "urlpass-spec",
        "dsnpass-spec",
    ] {
        assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
    }
    for not in ["/run/secrets/db_password", "debug", "production", "abc"] {
        assert!(!got.iter().any(|g| g == not), "{not} learned: {got:?}");
    }
}

/// No over-masking: ordinary log lines come through unchanged (and borrowed), with known values
/// and learned ones around.
#[test]
fn ordinary_lines_are_unchanged() {
    let r = Redactor::new(["longsecretvalue", "hunter2-planted"]);
    r.redact("password=learned-one");
    let lines = [
        "prod-sprocket-web 2/2 sprocket-web:main",
        "2026-12-04T01:02:03.456789Z INFO request id=7f3a9c1e-55b2-4c1e-9d7a-0b1c2d3e4f50 200 12ms",
        "task rj3k5l7m9n0p1q2r3s4t5u6v7 running on node xk2j4h6g8f0d",
        "image sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "commit 4f2b8c1d9e0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c merged",
        "GET /api/v1/users?page=2&limit=50 200 1532 bytes 0.042s",
        "processed 1048576 records in 3.14159 s (334007.3 rec/s)",
        "connected to redis://cache:6379/0 (no auth)",
        "Bearer tokens are checked by the gateway",
        "author: Alice, keyboard layout de, monkey business",
        "tokens_used=1234 sessions=3 auth_enabled",
        "uptime 99.99% over 30d; p99 120ms; errors 0",
        "eyJ is how a JWT starts",
        "base64 aGVsbG8gd29ybGQ= decodes to hello world",
        "-----END OF REPORT-----",
    ];
    for l in lines {
        let out = r.redact(l);
        assert_eq!(out, l, "over-masked");
        assert!(matches!(out, Cow::Borrowed(_)), "{l}");
    }
}

#[test]
fn json_values_under_sensitive_keys_are_masked_and_learned() {
    let r = Redactor::default();
    let v = serde_json::json!({
        "service": "web", "token": "abc", "nested": {"db_password": "x"},
        "auth": "dXNlcjpwYXNzd29yZA==", "author": "Alice"
    });
    let out = r.redact_json(&v);
    assert_eq!(out["service"], "web");
    assert_eq!(out["author"], "Alice");
    assert_eq!(out["token"], MASK);
    assert_eq!(out["auth"], MASK);
    assert_eq!(out["nested"]["db_password"], MASK);
    assert!(r.redact("later dXNlcjpwYXNzd29yZA==").contains(MASK));
}

#[test]
fn a_token_glued_to_a_non_ascii_letter_is_still_masked() {
    let r = Redactor::default();
    for input in [
        "éghp_abcdefghijklmnopqrstuvwxyz0123",
        "ähvs.CAESIJ0abcdefghijklmnopqrstuv",
        "ü Bearer abcdefghijklmnop1234",
    ] {
        let out = r.redact(input);
        assert!(out.contains(MASK), "{input} -> {out}");
        assert!(!out.contains("abcdefghijklmnop"), "{input} -> {out}");
    }
}

#[test]
fn a_pem_block_across_lines_is_swallowed() {
    let r = Redactor::default();
    let mut l = r.lines();
    let got: Vec<Option<String>> = [
        "before",
        "key: -----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
        "AAAAC3NzaC1lZDI1NTE5AAAAIN",
        "-----END OPENSSH PRIVATE KEY----- after",
        "next",
    ]
    .iter()
    .map(|x| l.line(x, false))
    .collect();
    assert_eq!(
        got,
        vec![
            Some("before".into()),
            Some(format!("key: {MASK}")),
            None,
            None,
            Some(format!("{MASK} after")),
            Some("next".into()),
        ]
    );
}

/// A secret across Docker's 16 KiB cut: neither piece holds it whole.
#[test]
fn a_secret_split_at_the_16_kib_cut_is_masked() {
    let secret = "split-secret-0123456789";
    let r = Redactor::new([secret]);
    let line = format!("{}{secret} end", "x".repeat(DOCKER_LINE_CUT - 10));
    let (a, b) = line.split_at(DOCKER_LINE_CUT);
    let mut l = r.lines();
    assert_eq!(l.line(a, true), None);
    let out = l.line(b, false).expect("the joined line");
    assert!(!out.contains("split-secret"), "{}", &out[out.len() - 40..]);
    assert!(out.ends_with(&format!("{MASK} end")));
    // A labelled one, unknown before.
    let line = format!(
        "{}password=cut-in-two-pw next",
        "y".repeat(DOCKER_LINE_CUT - 15)
    );
    let (a, b) = line.split_at(DOCKER_LINE_CUT);
    assert_eq!(l.line(a, true), None);
    let out = l.line(b, false).unwrap();
    assert!(!out.contains("cut-in-two"), "{}", &out[out.len() - 40..]);
    // Pieces without an end are flushed, redacted.
    assert_eq!(l.line(&format!("password={}", "q".repeat(10)), true), None);
    assert_eq!(l.finish(), Some(format!("password={MASK}")));
}

#[test]
fn fifty_known_values_in_one_pass() {
    let values: Vec<String> = (0..50)
        .map(|i| format!("learned-secret-{i:03}-x"))
        .collect();
    let r = Redactor::new(values.iter().map(String::as_str));
    let line: String = values
        .iter()
        .map(|v| STANDARD.encode(v))
        .collect::<Vec<_>>()
        .join(" ");
    let out = r.redact(&line);
    assert_eq!(out.matches(MASK).count(), 50, "{out}");
}

#[test]
fn text_a_person_typed_teaches_the_redactor_nothing() {
    let r = Redactor::default();
    // The attack: a parameter labelled like a secret, naming a word the bot shows elsewhere.
    let typed = "token=vault-service please";
    let shown = r.redact_untrusted(typed);
    assert!(
        !shown.contains("vault-service"),
        "masked where typed: {shown}"
    );
    let json = r.redact_json_untrusted(&serde_json::json!({
        "grep": "password=alice-admin",
        "secret": "hunter2-long",
    }));
    assert!(!json.to_string().contains("alice-admin"), "{json}");
    assert!(!json.to_string().contains("hunter2-long"), "{json}");
    assert_eq!(r.known(), 0, "nothing learned from typed text");
    // So the service and the login still show in the bot's own output.
    assert_eq!(
        r.redact("restart `vault-service` requested by alice-admin"),
        "restart `vault-service` requested by alice-admin"
    );
    // Known secrets are still masked in typed text.
    let k = Redactor::new(["s3cr3t-value-xyz"]);
    assert!(!k
        .redact_untrusted("look: s3cr3t-value-xyz")
        .contains("s3cr3t-value-xyz"));
}

#[test]
fn url_passwords_are_hidden() {
    assert_eq!(
        redact_url_password("postgres://u:pw@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(
        redact_url_password("postgres://u@h/db"),
        "postgres://u@h/db"
    );
    assert_eq!(redact_url_password("sqlite://x.db"), "sqlite://x.db");
}
