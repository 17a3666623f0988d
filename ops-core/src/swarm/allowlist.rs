//! The Docker Engine API allow-list: which (method, path) requests `sprocket-ops docker-proxy`
//! lets through to the engine. The rules ship in `docker_api_allow.txt` (compiled in, see
//! [`AllowList::shipped`]); a request is admitted only when its path is canonical (no
//! %-escape, no empty, `.` or `..` segment) and one rule matches its method and its whole
//! path, an optional API version prefix (`/v1.41`) taken off first. Pure: no I/O.

use regex::Regex;

/// The shipped rules, as reviewed in the repository.
pub const SHIPPED_RULES: &str = include_str!("docker_api_allow.txt");

/// One rule: a method and an anchored path expression.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: String,
    pub pattern: String,
    regex: Regex,
}

/// Why a rule file is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("line {line}: expected `METHOD /path-regex`")]
    Malformed { line: usize },
    #[error("line {line}: unknown method `{method}`")]
    Method { line: usize, method: String },
    #[error("line {line}: the path expression must start with `/`")]
    NotAPath { line: usize },
    #[error("line {line}: invalid expression: {detail}")]
    Regex { line: usize, detail: String },
    #[error("the allow-list has no rule")]
    Empty,
}

/// Why a request was refused (shown in the 403 body and the proxy's log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the path is not canonical (only [A-Za-z0-9/._-], no empty, `.` or `..` segment)")]
    NotCanonical,
    #[error("{method} {path} is not on the allow-list")]
    NotAllowed { method: String, path: String },
}

/// The parsed rules.
#[derive(Debug, Clone)]
pub struct AllowList {
    rules: Vec<Rule>,
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

impl AllowList {
    /// The rules compiled into the binary.
    pub fn shipped() -> AllowList {
        AllowList::parse(SHIPPED_RULES).expect("the shipped docker_api_allow.txt is valid")
    }

    /// Parses `METHOD REGEX` lines; `#` starts a comment line, blank lines are skipped.
    pub fn parse(text: &str) -> Result<AllowList, AllowListError> {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut parts = l.split_whitespace();
            let (Some(method), Some(pattern), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(AllowListError::Malformed { line });
            };
            if !METHODS.contains(&method) {
                return Err(AllowListError::Method {
                    line,
                    method: method.to_string(),
                });
            }
            if !pattern.starts_with('/') {
                return Err(AllowListError::NotAPath { line });
            }
            let regex =
                Regex::new(&format!("^(?:{pattern})$")).map_err(|e| AllowListError::Regex {
                    line,
                    detail: e.to_string(),
                })?;
            rules.push(Rule {
                method: method.to_string(),
                pattern: pattern.to_string(),
                regex,
            });
        }
        if rules.is_empty() {
            return Err(AllowListError::Empty);
        }
        Ok(AllowList { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Admits `method` on `path_and_query` (`/v1.41/services?status=true`), or says why not.
    pub fn check(&self, method: &str, path_and_query: &str) -> Result<&Rule, Refused> {
        let path = path_and_query
            .split_once('?')
            .map(|(p, _)| p)
            .unwrap_or(path_and_query);
        if !canonical(path) {
            return Err(Refused::NotCanonical);
        }
        let unversioned = strip_version(path);
        self.rules
            .iter()
            .find(|r| r.method == method && r.regex.is_match(unversioned))
            .ok_or_else(|| Refused::NotAllowed {
                method: method.chars().take(16).collect(),
                path: path.chars().take(200).collect(),
            })
    }
}

/// Only `[A-Za-z0-9/._-]`, starting with `/`, no empty, `.` or `..` segment (a bare `/` has
/// one empty segment and is refused too).
fn canonical(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
        && path[1..]
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// `/v1.41/services` -> `/services`; a path without a version prefix is returned as it is.
fn strip_version(path: &str) -> &str {
    let Some(rest) = path.strip_prefix("/v") else {
        return path;
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (version, tail) = rest.split_at(end);
    let valid = version.split_once('.').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit())
    });
    if valid && !tail.is_empty() {
        tail
    } else {
        path
    }
}

#[cfg(test)]
mod tests;
