//! The forms a known secret can take in text: raw, base64 and base64url at each of the three
//! byte alignments (so the value is found inside a longer encoded blob), percent-encoding
//! (upper and lower hex, `+` for spaces, strict and lenient), JSON escaping (with and without
//! `\/` and `\uXXXX`), shell escaping (single quotes, double quotes, backslashes) and hex.
//! Pure: no I/O.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;

/// Every form of `s` (deduplicated, each at least `min` bytes long).
pub(crate) fn forms(s: &str, min: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(24);
    let mut push = |f: String| {
        if f.len() >= min && !out.contains(&f) {
            out.push(f);
        }
    };
    push(s.to_string());
    for engine in [&STANDARD, &URL_SAFE] {
        let full = engine.encode(s);
        push(full.trim_end_matches('=').to_string());
        push(full);
        for f in base64_cores(engine, s.as_bytes()) {
            push(f);
        }
    }
    push(url_encode(s, b"-_.~", false));
    push(url_encode(s, b"-_.~", true));
    push(url_encode(s, b"", false));
    push(url_encode(s, b"", true));
    push(url_encode(s, b"-_.~", false).replace("%20", "+"));
    push(url_encode(s, b"-_.~", true).replace("%20", "+"));
    let json = json_escape(s);
    push(json.replace('/', "\\/"));
    push(json_ascii(&json));
    push(json);
    push(s.replace('\'', "'\\''"));
    push(s.replace('\'', "'\"'\"'"));
    push(shell_double_quoted(s));
    push(shell_backslashed(s));
    push(hex(s.as_bytes(), false));
    push(hex(s.as_bytes(), true));
    out
}

/// The characters of the base64 encoding of `s` that depend on `s` alone, when `s` starts at
/// byte offset 0, 1 or 2 of a 3-byte group: one of the three is a substring of any base64 blob
/// that contains `s`.
fn base64_cores(engine: &impl Engine, s: &[u8]) -> Vec<String> {
    let mut out = Vec::with_capacity(3);
    for k in 0..3usize {
        let mut buf = vec![0u8; k];
        buf.extend_from_slice(s);
        let enc = engine.encode(&buf);
        // Characters are 6 bits each: skip those touching the k prefix bytes, stop before those
        // touching whatever follows.
        let start = (8 * k).div_ceil(6);
        let end = (8 * (k + s.len())) / 6;
        if end > start && end <= enc.len() {
            out.push(enc[start..end].to_string());
        }
    }
    out
}

/// Percent-encoding of `s`, keeping alphanumerics and the bytes in `keep`; `lower` gives
/// lowercase hex (both are valid, and encoders differ).
pub(crate) fn url_encode(s: &str, keep: &[u8], lower: bool) -> String {
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

/// `s` as inside a JSON string (serde_json's escaping, without the quotes).
pub(crate) fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_string()
}

/// A JSON-escaped string with every non-ASCII character as `\uXXXX` (what ASCII-only encoders
/// such as Python's `json.dumps` write).
fn json_ascii(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    for c in escaped.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Inside double quotes in a POSIX shell: `\`, `"`, `$` and backquote are escaped.
fn shell_double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Unquoted, every special character backslash-escaped (bash's `printf %q` for printable text).
fn shell_backslashed(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | '/' | '-' | ':' | ',' | '@' | '%' | '+' | '=')
            || !c.is_ascii())
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8], upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        if upper {
            out.push_str(&format!("{b:02X}"));
        } else {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}
