//! Redaction: the one gate every text passes before it leaves the process (a Discord message, a
//! log line, the audit log, the database, `/metrics`). Two halves:
//!
//! - Known values, in every form ([`forms`]: raw, base64/base64url at the three alignments,
//!   percent-encoding, JSON and shell escaping, hex), found in one pass by an Aho-Corasick
//!   automaton. Values are known from the start (the bot's own secrets), taught with
//!   [`Redactor::learn`] (the secret-like env values of every service spec the Swarm adapter
//!   reads, see [`secret_env_values`]; the Pulumi passphrase and token; probe passwords), or
//!   learned from the text itself: a value seen once labelled (`password=X`, `"token": "X"`,
//!   `Authorization: Bearer X`, `scheme://user:X@`) is masked everywhere after that, in every
//!   output of the process. Values shorter than [`MIN_SECRET_LEN`] are never learned.
//! - Patterns for unknown secrets ([`patterns`]): PEM blocks, token shapes, JWTs, labelled pairs.
//!
//! [`LineRedactor`] is the per-stream state for text that arrives in lines (service logs): PEM
//! blocks across lines, and lines the engine cut at 16 KiB joined again before redaction.
//! Pure: no I/O. Clones share what was learned.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

mod forms;
mod patterns;
#[cfg(test)]
mod tests;

/// What replaces a secret.
pub const MASK: &str = "[REDACTED]";

/// Shorter values are not learned: they would mask ordinary words.
pub const MIN_SECRET_LEN: usize = 6;

/// At most this many values are learned from labelled text (values taught with
/// [`Redactor::learn`] do not count): a log full of distinct `session=` pairs cannot make the
/// matcher grow without bound. Labelled values past it are still masked where they stand.
pub const MAX_LEARNED_FROM_TEXT: usize = 512;

/// Docker cuts a log line longer than this into pieces (without a newline between them).
pub const DOCKER_LINE_CUT: usize = 16 * 1024;

/// A line joined from pieces grows at most this long before it is redacted as it is.
const MAX_JOINED: usize = 1 << 20;

static GLOBAL: LazyLock<Redactor> = LazyLock::new(Redactor::default);

/// The process-wide redactor: the binary's log writer uses it and every `Ops` the binary builds
/// shares its knowledge (clones), so a value learned on one path is masked on all of them.
pub fn global() -> &'static Redactor {
    &GLOBAL
}

/// `postgres://user:pw@host/db` -> `postgres://user:***@host/db`, for messages and logs.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.find('@') {
        Some(i) if !rest[..i].contains('/') => (&rest[..i], &rest[i..]),
        _ => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{tail}"),
        None => url.to_string(),
    }
}

/// The redactor. Cheap to clone; clones share the known values.
#[derive(Clone)]
pub struct Redactor {
    inner: Arc<RwLock<Known>>,
}

#[derive(Default)]
struct Known {
    values: HashSet<String>,
    from_text: usize,
    /// Every form of every value; `None` when no value is known.
    matcher: Option<Arc<AhoCorasick>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.read().values.len();
        write!(f, "Redactor({n} known values)")
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(std::iter::empty::<&str>())
    }
}

impl Redactor {
    /// `secrets`: values that must never leave the process (tokens, passwords).
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let r = Redactor {
            inner: Arc::new(RwLock::new(Known::default())),
        };
        r.learn(secrets);
        r
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Teaches values to mask from now on (in every form, in every output). Values shorter than
    /// [`MIN_SECRET_LEN`] are ignored. Returns how many were new.
    pub fn learn<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> usize {
        self.add(values.into_iter().map(str::trim), false)
    }

    /// Teaches this redactor everything `other` knows.
    pub fn absorb(&self, other: &Redactor) {
        if Arc::ptr_eq(&self.inner, &other.inner) {
            return;
        }
        let values: Vec<String> = other.read().values.iter().cloned().collect();
        self.learn(values.iter().map(String::as_str));
    }

    /// The number of values known (configured, taught and learned).
    pub fn known(&self) -> usize {
        self.read().values.len()
    }

    fn add<'a>(&self, values: impl Iterator<Item = &'a str>, from_text: bool) -> usize {
        let fresh: Vec<&str> = {
            let known = self.read();
            values
                .filter(|v| v.len() >= MIN_SECRET_LEN && !known.values.contains(*v))
                .collect()
        };
        if fresh.is_empty() {
            return 0;
        }
        let mut known = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut added = 0;
        for v in fresh {
            if from_text && known.from_text >= MAX_LEARNED_FROM_TEXT {
                break;
            }
            if known.values.insert(v.to_string()) {
                added += 1;
                if from_text {
                    known.from_text += 1;
                }
            }
        }
        if added > 0 {
            let mut all: Vec<String> = Vec::new();
            let mut seen: HashSet<String> = HashSet::new();
            for v in &known.values {
                for f in forms::forms(v, MIN_SECRET_LEN) {
                    if seen.insert(f.clone()) {
                        all.push(f);
                    }
                }
            }
            known.matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&all)
                .ok()
                .map(Arc::new);
        }
        added
    }

    fn matcher(&self) -> Option<Arc<AhoCorasick>> {
        self.read().matcher.clone()
    }

    /// Every known form of every known value masked; `None` when there was none.
    fn mask_known(&self, text: &str) -> Option<String> {
        let m = self.matcher()?;
        m.find(text)?;
        let mut out = String::with_capacity(text.len());
        m.replace_all_with(text, &mut out, |_, _, dst| {
            dst.push_str(MASK);
            true
        });
        Some(out)
    }

    /// The text with every secret masked. Labelled values found in it are learned.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let known = self.mask_known(text);
        let src = known.as_deref().unwrap_or(text);
        let mut learned = Vec::new();
        let shaped = patterns::mask(src, MIN_SECRET_LEN, &mut learned);
        let out = match shaped {
            Some(s) => Some(s),
            None => known,
        };
        let out = if !learned.is_empty() && self.add(learned.iter().map(String::as_str), true) > 0 {
            // The same value may stand unlabelled elsewhere in this text.
            let src = out.as_deref().unwrap_or(text);
            self.mask_known(src).or(out)
        } else {
            out
        };
        match out {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(text),
        }
    }

    /// The text with every secret masked, learning nothing: for text a person typed (command
    /// parameters, reasons, summaries). A labelled value in it is masked in this text only;
    /// learning it would let anyone who can type make any word vanish from every later output
    /// (and use up the learning budget real secrets need).
    pub fn redact_untrusted<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let known = self.mask_known(text);
        let src = known.as_deref().unwrap_or(text);
        let mut labelled = Vec::new();
        let mut out = patterns::mask(src, MIN_SECRET_LEN, &mut labelled).or(known);
        for v in labelled {
            let cur = out.as_deref().unwrap_or(text);
            if cur.contains(v.as_str()) {
                out = Some(cur.replace(v.as_str(), MASK));
            }
        }
        match out {
            Some(s) => Cow::Owned(s),
            None => Cow::Borrowed(text),
        }
    }

    /// [`Redactor::redact_json`] for values a person typed: masks, learns nothing.
    pub fn redact_json_untrusted(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.redact_untrusted(s).into_owned()),
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.redact_json_untrusted(x)).collect())
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let x = match x {
                            Value::String(_) if is_sensitive_key(k) => Value::String(MASK.into()),
                            _ => self.redact_json_untrusted(x),
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Redacts every string inside a JSON value (keys stay as they are); values under keys
    /// naming a secret are masked whatever they are.
    pub fn redact_json(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.redact(s).into_owned()),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.redact_json(x)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, x)| {
                        let x = match x {
                            Value::String(s) if is_sensitive_key(k) => {
                                if s.len() >= MIN_SECRET_LEN {
                                    self.add(std::iter::once(s.as_str()), true);
                                }
                                Value::String(MASK.into())
                            }
                            _ => self.redact_json(x),
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// A stream of lines redacted with this redactor (see [`LineRedactor`]).
    pub fn lines(&self) -> LineRedactor {
        LineRedactor {
            redactor: self.clone(),
            in_pem: false,
            pieces: String::new(),
        }
    }
}

/// Does a JSON key name a secret?
pub fn is_sensitive_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "share",
        "api_key",
        "apikey",
        "private_key",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
        || ["auth", "session", "sessionid", "session_id"]
            .iter()
            .any(|s| k.ends_with(s))
}

/// The values in a service spec's env (`KEY=value` strings) that are secrets: values of keys
/// naming one (`*PASSWORD*`, `*SECRET*`, `*TOKEN*`, `*KEY*`, `*CREDENTIAL*`, `*PASSPHRASE*`,
/// `*AUTH*`; not `*_FILE`/`*_PATH`, which name where a secret is), and the passwords inside
/// URLs and DSNs in any value.
pub fn secret_env_values<S: AsRef<str>>(env: &[S]) -> Vec<String> {
    let mut out = Vec::new();
    for kv in env {
        let Some((k, v)) = kv.as_ref().split_once('=') else {
            continue;
        };
        let v = v.trim();
        let ku = k.to_ascii_uppercase();
        let names_secret = [
            "PASSWORD",
            "PASSWD",
            "SECRET",
            "TOKEN",
            "KEY",
            "CREDENTIAL",
            "PASSPHRASE",
            "AUTH",
        ]
        .iter()
        .any(|s| ku.contains(s));
        let names_a_place = ku.ends_with("_FILE") || ku.ends_with("_PATH") || ku.ends_with("_DIR");
        if names_secret && !names_a_place && v.len() >= MIN_SECRET_LEN {
            out.push(v.to_string());
        }
        // Passwords inside URLs and DSNs, whatever the key.
        let mut found = Vec::new();
        patterns::mask(v, MIN_SECRET_LEN, &mut found);
        out.extend(found);
    }
    out.sort();
    out.dedup();
    out
}

/// Redaction of text that arrives in lines, with the state the lines share: a PEM block opened
/// on one line is masked up to its END line, and the pieces of a line Docker cut at
/// [`DOCKER_LINE_CUT`] are joined before redaction (a secret across the cut is still found).
pub struct LineRedactor {
    redactor: Redactor,
    in_pem: bool,
    pieces: String,
}

impl LineRedactor {
    /// The redacted line; `None` when there is nothing to show yet (inside a PEM block, or a
    /// piece waiting for the rest of its line). `partial`: the line was cut and goes on.
    pub fn line(&mut self, raw: &str, partial: bool) -> Option<String> {
        if partial && self.pieces.len() + raw.len() < MAX_JOINED {
            self.pieces.push_str(raw);
            return None;
        }
        let joined;
        let raw = if self.pieces.is_empty() {
            raw
        } else {
            self.pieces.push_str(raw);
            joined = std::mem::take(&mut self.pieces);
            joined.as_str()
        };
        if self.in_pem {
            let pos = raw.find("-----END ")?;
            self.in_pem = false;
            let after = &raw[pos + "-----END ".len()..];
            let rest = after.find("-----").map(|i| &after[i + 5..]).unwrap_or("");
            let rest = self.line(rest, false).unwrap_or_default();
            return (!rest.trim().is_empty()).then(|| format!("{MASK}{rest}"));
        }
        let red = self.redactor.redact(raw).into_owned();
        if patterns::opens_pem(raw) {
            self.in_pem = true;
        }
        Some(red)
    }

    /// Whatever is still waiting (pieces without their end), redacted.
    pub fn finish(&mut self) -> Option<String> {
        if self.pieces.is_empty() || self.in_pem {
            return None;
        }
        let rest = std::mem::take(&mut self.pieces);
        Some(self.redactor.redact(&rest).into_owned())
    }
}
