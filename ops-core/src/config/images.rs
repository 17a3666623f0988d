//! `[images]` and `[self_services]`: which repositories a full image reference may name (as
//! [`RepoPattern`] globs) and which services are sprocket-ops' own. `protect` turns them into
//! the policy.

use serde::Deserialize;

use crate::base::{glob_match, valid_service_name};

/// The service names `docker stack deploy -c deploy/sprocket-ops.stack.yml sprocket-ops` gives.
pub const DEFAULT_SELF_SERVICES: &[&str] = &["sprocket-ops_bot", "sprocket-ops_socket-proxy"];
/// The service label that marks one of sprocket-ops' own services (value `true`).
pub const DEFAULT_SELF_LABEL: &str = "sprocket-ops.self";

/// `[self_services]`: sprocket-ops' own services.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfServicesConfig {
    /// Exact service names.
    #[serde(default = "default_self_names")]
    pub names: Vec<String>,
    /// A service label; services where it is `true` are sprocket-ops' own too.
    #[serde(default = "default_self_label")]
    pub label: String,
}

fn default_self_names() -> Vec<String> {
    DEFAULT_SELF_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_self_label() -> String {
    DEFAULT_SELF_LABEL.to_string()
}

impl Default for SelfServicesConfig {
    fn default() -> Self {
        SelfServicesConfig {
            names: default_self_names(),
            label: default_self_label(),
        }
    }
}

impl SelfServicesConfig {
    /// `(key, message)` for the first invalid entry.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, n) in self.names.iter().enumerate() {
            if !valid_service_name(n) {
                return Err((
                    format!("self_services.names[{i}]"),
                    format!("`{}` is not a Swarm service name", n.escape_debug()),
                ));
            }
        }
        let l = &self.label;
        if l.is_empty() || l.len() > 128 || l.chars().any(|c| c.is_whitespace() || c == '=') {
            return Err((
                "self_services.label".into(),
                "must be a label key: 1-128 characters, no spaces or `=`".into(),
            ));
        }
        Ok(())
    }
}

/// `[images]`: which repositories a full image reference may name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Globs over `registry/path` (`ghcr.io/sprocketbot/*`); empty: tags only.
    #[serde(default)]
    pub allowed: Vec<String>,
}

impl ImagesConfig {
    /// `(key, message)` for the first pattern that is not a valid repository glob.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, p) in self.allowed.iter().enumerate() {
            RepoPattern::parse(p).map_err(|m| (format!("images.allowed[{i}]"), m))?;
        }
        Ok(())
    }
}

/// A repository glob, normalised like references: `*` matches within one path segment, a
/// whole segment `**` matches one or more segments; the registry host is written out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPattern(String);

impl RepoPattern {
    pub fn parse(p: &str) -> Result<RepoPattern, String> {
        if p.is_empty() {
            return Err("a pattern must not be empty".into());
        }
        if let Some(c) = p.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '*'))
        }) {
            return Err(format!(
                "`{}` is not allowed: a pattern is a repository like `ghcr.io/sprocketbot/*` (no tag, no digest)",
                c.escape_debug()
            ));
        }
        if p.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("`{p}` must be lowercase"));
        }
        let segs: Vec<&str> = p.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(format!("`{p}` has an empty path segment"));
        }
        if let Some(s) = segs.iter().find(|s| s.contains("**") && **s != "**") {
            return Err(format!("`{s}`: `**` must be a whole path segment"));
        }
        let host = segs.len() > 1
            && (segs[0].contains(['.', ':']) || segs[0] == "localhost")
            && !segs[0].contains('*');
        if segs.len() > 1 && segs[0].contains('*') {
            return Err(format!(
                "`{p}`: the registry host cannot be a glob; write it out (docker.io for Docker Hub)"
            ));
        }
        let path = if host { &segs[1..] } else { &segs[..] };
        if path.iter().any(|s| s.contains(':')) {
            return Err(format!(
                "`{p}` names a tag: a pattern names repositories (write it without `:tag`)"
            ));
        }
        let (registry, path) = if host {
            let h = if segs[0] == "index.docker.io" {
                "docker.io"
            } else {
                segs[0]
            };
            (h, path.to_vec())
        } else {
            ("docker.io", path.to_vec())
        };
        let mut path = path.join("/");
        if registry == "docker.io" && !path.contains('/') {
            path = format!("library/{path}");
        }
        Ok(RepoPattern(format!("{registry}/{path}")))
    }

    /// Whether the normalised repository `repo` (see [`repository_of`]) matches.
    pub fn matches(&self, repo: &str) -> bool {
        let pat: Vec<&str> = self.0.split('/').collect();
        let repo: Vec<&str> = repo.split('/').collect();
        match_segments(&pat, &repo)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn match_segments(pat: &[&str], repo: &[&str]) -> bool {
    match pat.split_first() {
        None => repo.is_empty(),
        Some((&"**", rest)) => (1..=repo.len()).any(|i| match_segments(rest, &repo[i..])),
        Some((p, rest)) => {
            repo.first().is_some_and(|r| glob_match(p, r)) && match_segments(rest, &repo[1..])
        }
    }
}
