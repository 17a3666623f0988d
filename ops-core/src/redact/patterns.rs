//! The shapes of secrets nobody told us about: PEM blocks (also unterminated: the rest of the
//! text goes), Vault/OpenBao, GitHub, Discord and AWS tokens, JWTs, `Authorization` headers,
//! `key=value` / `"key": "value"` pairs whose key names a secret (password, passphrase, secret,
//! token, api/private/access key, credentials, auth, session), credentials in URLs and DSNs,
//! and the value of an unseal-share form field. Every value masked by a labelled pattern is
//! returned as a candidate to learn, so the same value is masked wherever it appears next.

use std::sync::LazyLock;

use regex::{Captures, Regex};

use super::MASK;

/// Masked whole. Word boundaries are ASCII (`(?-u:\b)`): cheaper to compile, and a token glued
/// to a non-ASCII letter is still masked.
static WHOLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // PEM blocks, across lines; without an END, the rest of the text.
        r"-----BEGIN [A-Z0-9 ]+-----(?:[\s\S]*?-----END [A-Z0-9 ]+-----|[\s\S]*)",
        // Vault / OpenBao tokens: service, batch, recovery, legacy.
        r"|(?-u:\b)(?:hvs|hvb|hvr|s|b|r)\.[A-Za-z0-9_-]{20,}",
        // GitHub tokens.
        r"|(?-u:\b)(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",
        r"|(?-u:\b)github_pat_[A-Za-z0-9_]{20,}",
        // Discord bot tokens: base64 user id . timestamp . hmac.
        r"|(?-u:\b)[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}",
        // JWTs (header and payload are base64url JSON objects: `eyJ`).
        r"|(?-u:\b)eyJ[A-Za-z0-9_-]{6,}\.eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*",
        // AWS access key ids.
        r"|(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)",
    ))
    .expect("redaction patterns are valid")
});

/// A label, then the value it names.
static LABELLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        // key=value / key: value / "key":"value" pairs.
        r#"(?i:(?P<k>["']?[a-z0-9_.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|private[_-]?key|access[_-]?key|secret[_-]?key|credentials?|auth|session(?:[_-]?id)?)["']?\s*[=:]\s*)(?P<v>"(?:[^"\\]|\\.)*"|'[^']*'|[A-Z][A-Za-z]{1,15}\("(?:[^"\\]|\\.)*"\)|(?:[^\s,;&"'}\\]|\\.)+))"#,
        // Authorization headers.
        r"|(?-u:\b)(?P<hk>(?i:bearer|bot|basic)\s+)(?P<hv>[A-Za-z0-9._~+/=-]{16,})",
        // Credentials in URLs.
        r"|(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)(?P<pw>[^@\s/]+)@",
        // Go-style DSNs: user:password@tcp(host)/db.
        r"|(?P<du>[A-Za-z0-9_.-]+:)(?P<dpw>[^@\s/:]+)@(?P<dt>tcp|unix)\(",
    ))
    .expect("redaction patterns are valid")
});

/// The typed value of an unseal-share form field, in a gateway payload (JSON, either field
/// order) or in a Debug print of the Discord library's component.
static SHARE_FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"(?P<a>"custom_id"\s*:\s*"share"[^{}\[\]]{0,200}?"value"\s*:\s*)"(?:[^"\\]|\\.)*""#,
        r#"|(?P<b>"value"\s*:\s*)"(?:[^"\\]|\\.)*"(?P<c>[^{}\[\]]{0,200}?"custom_id"\s*:\s*"share")"#,
        r#"|(?P<d>custom_id: "share"[^{}]{0,200}?value: (?:Some\()?)"(?:[^"\\]|\\.)*""#,
        // A serde_json `Value` printed with `{:?}` (an event the library could not type).
        r#"|(?P<e>"custom_id": String\("share"\)[^{}\[\]]{0,200}?"value": String\()"(?:[^"\\]|\\.)*""#,
    ))
    .expect("redaction patterns are valid")
});

/// Values not worth learning: they would mask ordinary words or numbers everywhere.
fn learnable(v: &str, min: usize) -> bool {
    v.len() >= min
        && !v.contains(MASK)
        && !v
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
        && !v.bytes().all(|b| b == b'*' || b == b'x' || b == b'X')
        && !matches!(
            v.to_ascii_lowercase().as_str(),
            "redacted" | "<redacted>" | "undefined" | "required" | "missing" | "invalid"
        )
}

/// A quoted value without its quotes (JSON escapes undone), also inside a Debug wrapper
/// (`Some("…")`, `String("…")`).
fn unquote(v: &str) -> String {
    if let Some(open) = v.find("(\"") {
        if v.ends_with("\")") && v[..open].bytes().all(|b| b.is_ascii_alphabetic()) {
            return unquote(&v[open + 1..v.len() - 1]);
        }
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        serde_json::from_str::<String>(v).unwrap_or_else(|_| v[1..v.len() - 1].to_string())
    } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// `%XX` decoded (a password in a URL is percent-encoded there).
fn percent_decode(v: &str) -> Option<String> {
    if !v.contains('%') {
        return None;
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(x) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `text` with every secret-shaped part masked (`None`: nothing to mask), and the labelled
/// values found (to learn).
pub(crate) fn mask(text: &str, min: usize, learned: &mut Vec<String>) -> Option<String> {
    let mut out: Option<String> = None;
    if WHOLE.is_match(text) {
        out = Some(WHOLE.replace_all(text, MASK).into_owned());
    }
    let src = out.as_deref().unwrap_or(text);
    if LABELLED.is_match(src) {
        let replaced = LABELLED
            .replace_all(src, |c: &Captures| {
                let mut keep = |v: &str| {
                    let v = unquote(v);
                    if let Some(d) = percent_decode(&v) {
                        if learnable(&d, min) {
                            learned.push(d);
                        }
                    }
                    if learnable(&v, min) {
                        learned.push(v);
                    }
                };
                if let (Some(k), Some(v)) = (c.name("k"), c.name("v")) {
                    let whole = c.get(0).map(|m| m.end()).unwrap_or(0);
                    let v = v.as_str();
                    // An unquoted value cut short by a quote (`token: Some("…")`, `String(`)
                    // is masked but not learned: it is not the whole value.
                    let cut = !v.starts_with(['"', '\'']) && src[whole..].starts_with(['"', '\'']);
                    if !cut && !v.ends_with('(') {
                        keep(v);
                    }
                    let quote = if v.starts_with('"') {
                        "\""
                    } else if v.starts_with('\'') {
                        "'"
                    } else {
                        ""
                    };
                    format!("{}{quote}{MASK}{quote}", k.as_str())
                } else if let (Some(k), Some(v)) = (c.name("hk"), c.name("hv")) {
                    keep(v.as_str());
                    format!("{}{MASK}", k.as_str())
                } else if let (Some(s), Some(pw)) = (c.name("scheme"), c.name("pw")) {
                    keep(pw.as_str());
                    format!("{}{MASK}@", s.as_str())
                } else if let (Some(u), Some(pw), Some(t)) =
                    (c.name("du"), c.name("dpw"), c.name("dt"))
                {
                    keep(pw.as_str());
                    format!("{}{MASK}@{}(", u.as_str(), t.as_str())
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
        out = Some(replaced);
    }
    let src = out.as_deref().unwrap_or(text);
    if src.contains("\"share\"") && SHARE_FIELD.is_match(src) {
        let replaced = SHARE_FIELD
            .replace_all(src, |c: &Captures| {
                if let Some(a) = c.name("a") {
                    format!("{}\"{MASK}\"", a.as_str())
                } else if let (Some(b), Some(cc)) = (c.name("b"), c.name("c")) {
                    format!("{}\"{MASK}\"{}", b.as_str(), cc.as_str())
                } else if let Some(d) = c.name("d").or(c.name("e")) {
                    format!("{}\"{MASK}\"", d.as_str())
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
        out = Some(replaced);
    }
    out
}

/// Does `line` open a PEM block it does not close (the block goes on in the next lines)?
pub(crate) fn opens_pem(line: &str) -> bool {
    static OPEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"-----BEGIN [A-Z0-9 ]+-----").expect("redaction patterns are valid")
    });
    match OPEN.find_iter(line).last() {
        Some(m) => !line[m.end()..].contains("-----END "),
        None => false,
    }
}
