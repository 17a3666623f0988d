//! Redaction: the one gate every text passes before it leaves the process (a Discord message, a
//! log line, the audit log). It removes configured secret values in their raw, base64,
//! URL-encoded and JSON-escaped forms, PEM blocks, Vault, Discord and GitHub tokens, and
//! `password=`/`secret=`/`token=` style pairs. Pure: no I/O.

use std::borrow::Cow;
use std::sync::LazyLock;

use base64::Engine;
use regex::Regex;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// A redactor built once from the configured secret values.
#[derive(Debug, Clone)]
pub struct Redactor {
    literals: Vec<String>,
}

/// The secret-shaped patterns, compiled once per process on first use and shared by every
/// [`Redactor`] (compiling them is most of what building one used to cost). Word boundaries
/// are ASCII (`(?-u:\b)`): cheaper to compile, and a token glued to a non-ASCII letter is
/// still masked.
static PATTERNS: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        // PEM blocks (private keys, certificates), across lines.
        r"-----BEGIN [A-Z0-9 ]+-----[\s\S]*?-----END [A-Z0-9 ]+-----",
        // Vault / OpenBao tokens: service, batch, recovery, legacy.
        r"(?-u:\b)(?:hvs|hvb|hvr|s|b|r)\.[A-Za-z0-9_-]{20,}",
        // GitHub tokens.
        r"(?-u:\b)(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",
        r"(?-u:\b)github_pat_[A-Za-z0-9_]{20,}",
        // Discord bot tokens: base64 user id . timestamp . hmac.
        r"(?-u:\b)[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}",
        // Authorization headers.
        r"(?i)(?-u:\b)(?:bearer|bot|basic)\s+[A-Za-z0-9._~+/=-]{16,}",
        // key=value / key: value / "key":"value" pairs.
        r#"(?i)(?P<k>["']?[a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|client[_-]?secret)["']?\s*[=:]\s*)(?P<v>"[^"]*"|'[^']*'|[^\s,;&"'}]+)"#,
        // Credentials in URLs.
        r"(?P<scheme>[a-z][a-z0-9+.-]*://[^/\s:@]+:)(?P<pw>[^@\s/]+)@",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("redaction patterns are valid"))
    .collect()
});

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(std::iter::empty::<&str>())
    }
}

impl Redactor {
    /// `secrets`: values that must never leave the process (tokens, passwords). Values shorter
    /// than 4 characters are ignored: masking them would mangle ordinary text.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut literals = Vec::new();
        for s in secrets {
            if s.len() < 4 {
                continue;
            }
            let forms = [
                s.to_string(),
                base64::engine::general_purpose::STANDARD.encode(s),
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(s),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s),
                url_encode(s, b"-_.~", false),
                url_encode(s, b"-_.~", true),
                url_encode(s, b"", false),
                url_encode(s, b"", true),
                url_encode(s, b"-_.~", false).replace("%20", "+"),
                json_escape(s),
            ];
            for f in forms {
                if !literals.contains(&f) {
                    literals.push(f);
                }
            }
        }
        // Longest first, so a form that contains another is masked whole.
        literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
        Redactor { literals }
    }

    /// The text with every secret masked.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out: Cow<'t, str> = Cow::Borrowed(text);
        for l in &self.literals {
            if out.contains(l.as_str()) {
                out = Cow::Owned(out.replace(l.as_str(), MASK));
            }
        }
        for (i, re) in PATTERNS.iter().enumerate() {
            let replaced = match i {
                6 => re.replace_all(&out, |c: &regex::Captures| {
                    let v = &c["v"];
                    let quote = if v.starts_with('"') {
                        "\""
                    } else if v.starts_with('\'') {
                        "'"
                    } else {
                        ""
                    };
                    format!("{}{quote}{MASK}{quote}", &c["k"])
                }),
                7 => re.replace_all(&out, |c: &regex::Captures| {
                    format!("{}{MASK}@", &c["scheme"])
                }),
                _ => re.replace_all(&out, MASK),
            };
            if let Cow::Owned(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Redacts every string inside a JSON value (keys stay as they are).
    pub fn redact_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let sensitive = is_sensitive_key(k);
                        let x = match x {
                            Value::String(_) if sensitive => Value::String(MASK.into()),
                            _ => self.redact_json(x),
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

fn is_sensitive_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "share",
        "api_key",
        "apikey",
        "private_key",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// Percent-encoding of `s`, keeping alphanumerics and the bytes in `keep`; `lower` gives
/// lowercase hex (both are valid, and encoders differ).
fn url_encode(s: &str, keep: &[u8], lower: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len().saturating_sub(1).max(1)].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANTED: &str = "p@ss w0rd/\"quoted\"+&=";

    /// Data-driven: each input must come out without the secret part.
    #[test]
    fn every_form_is_masked() {
        let r = Redactor::new([PLANTED]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(PLANTED);
        let cases = vec![
            format!("raw {PLANTED} end"),
            format!("b64 {b64} end"),
            format!("url {} end", url_encode(PLANTED, b"-_.~", false)),
            format!("strict url {} end", url_encode(PLANTED, b"", true)),
            format!("json {{\"v\":\"{}\"}}", json_escape(PLANTED)),
        ];
        for c in cases {
            let out = r.redact(&c);
            assert!(out.contains(MASK), "{c} -> {out}");
            assert!(!out.contains("w0rd"), "{c} -> {out}");
            assert!(!out.contains(&b64), "{c} -> {out}");
        }
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
            ("DB_PASSWORD=supersecret next", "supersecret"),
            ("{\"client_secret\": \"xyz123abc\"}", "xyz123abc"),
            ("url postgres://doadmin:pgpass99@db:25060/x", "pgpass99"),
            (
                "Authorization: Bearer abcdefghijklmnop1234",
                "abcdefghijklmnop1234",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nabc\n-----END RSA PRIVATE KEY-----",
                "MIIEow",
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
    fn plain_text_is_untouched_and_borrowed() {
        let r = Redactor::new(["longsecretvalue"]);
        let s = "prod-sprocket-web 2/2 sprocket-web:main";
        assert!(matches!(r.redact(s), Cow::Borrowed(_)));
    }

    #[test]
    fn json_values_under_sensitive_keys_are_masked() {
        let r = Redactor::default();
        let v =
            serde_json::json!({"service": "web", "token": "abc", "nested": {"db_password": "x"}});
        let out = r.redact_json(&v);
        assert_eq!(out["service"], "web");
        assert_eq!(out["token"], MASK);
        assert_eq!(out["nested"]["db_password"], MASK);
    }
}
