//! What may change which service, decided from the configuration before anything runs (issue
//! 12, "one person must not change a protected layer by another command"). Pure: no I/O.
//!
//! - A service of a layer with `always_requires_approval` changes only through an approval:
//!   bump, restart, scale and rollback become the actions `protected_bump`,
//!   `protected_restart`, `protected_scale` and `protected_rollback` (permissions.toml).
//! - sprocket-ops' own services (the bot and its socket proxy) are never changed from chat or
//!   the CLI's normal path, approved or not: only the CLI's `--break-glass`. They are the
//!   services named in `[self_services] names` (default: the names `docker stack deploy -c
//!   deploy/sprocket-ops.stack.yml sprocket-ops` gives them) and every service carrying the
//!   label `[self_services] label` (default `sprocket-ops.self`) with the value `true` (the
//!   shipped stack file sets it, so a stack deployed under another name is covered too).
//! - `[images] allowed`: the repositories a full image reference may name, as globs over the
//!   normalised repository (`registry/path`, Docker Hub as `docker.io/library/…`). A bare tag
//!   keeps the service's current repository and is always allowed; an empty list allows tags
//!   only.

use std::collections::BTreeSet;
use std::str::FromStr;

use oci_spec::distribution::Reference;
use serde::Deserialize;

use crate::layers::{glob_match, LayerMap};
use crate::swarm::{ImageTarget, ServiceInfo};

/// The service names `docker stack deploy -c deploy/sprocket-ops.stack.yml sprocket-ops` gives.
pub const DEFAULT_SELF_SERVICES: &[&str] = &["sprocket-ops_bot", "sprocket-ops_socket-proxy"];
/// The service label that marks one of sprocket-ops' own services (value `true`).
pub const DEFAULT_SELF_LABEL: &str = "sprocket-ops.self";

/// The approval action of each change to a service of a protected layer.
pub const PROTECTED_BUMP: &str = "protected_bump";
pub const PROTECTED_RESTART: &str = "protected_restart";
pub const PROTECTED_SCALE: &str = "protected_scale";
pub const PROTECTED_ROLLBACK: &str = "protected_rollback";

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
            if !crate::swarm::valid_service_name(n) {
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

/// `registry/path` of a reference, normalised as the engine does (`web` is
/// `docker.io/library/web`, registry hosts lowercase); `None` when it is not a reference.
pub fn repository_of(reference: &str) -> Option<String> {
    let r = Reference::from_str(reference).ok()?;
    Some(format!(
        "{}/{}",
        r.registry().to_ascii_lowercase(),
        r.repository()
    ))
}

/// The image allow-list.
#[derive(Debug, Clone, Default)]
pub struct ImagePolicy {
    allowed: Vec<RepoPattern>,
}

impl ImagePolicy {
    /// From validated patterns (an invalid one is dropped: the policy only gets stricter).
    pub fn new(patterns: &[String]) -> ImagePolicy {
        ImagePolicy {
            allowed: patterns
                .iter()
                .filter_map(|p| RepoPattern::parse(p).ok())
                .collect(),
        }
    }

    /// `Ok` for a tag (it stays in the service's repository) and for a reference whose
    /// repository matches a pattern; else the refusal, safe to show.
    pub fn check(&self, target: &ImageTarget) -> Result<(), String> {
        let ImageTarget::Reference(r) = target else {
            return Ok(());
        };
        let Some(repo) = repository_of(r) else {
            return Err(format!("`{r}` is not an image reference"));
        };
        if self.allowed.iter().any(|p| p.matches(&repo)) {
            return Ok(());
        }
        Err(if self.allowed.is_empty() {
            format!(
                "refused: `{r}` is a full image reference and only tags are allowed here (`[images] allowed` is empty); give a tag like `v2`, which keeps the service's repository"
            )
        } else {
            format!(
                "refused: `{repo}` is not an allowed repository (`[images] allowed`: {}); give a tag like `v2`, which keeps the service's repository",
                self.allowed
                    .iter()
                    .map(|p| format!("`{}`", p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

/// The policy as configured.
#[derive(Debug, Clone)]
pub struct Protection {
    layers: LayerMap,
    protected_layers: BTreeSet<String>,
    self_names: BTreeSet<String>,
    self_label: String,
    pub images: ImagePolicy,
}

impl Protection {
    pub fn from_config(cfg: &crate::config::Config) -> Protection {
        Protection {
            layers: LayerMap::from_config(cfg),
            protected_layers: cfg
                .layers
                .iter()
                .filter(|(_, l)| l.always_requires_approval)
                .map(|(n, _)| n.clone())
                .collect(),
            self_names: cfg.self_services.names.iter().cloned().collect(),
            self_label: cfg.self_services.label.clone(),
            images: ImagePolicy::new(&cfg.images.allowed),
        }
    }

    /// Whether `s` is one of sprocket-ops' own services (by name or by label).
    pub fn is_self(&self, s: &ServiceInfo) -> bool {
        self.self_names.contains(&s.name)
            || s.labels.get(&self.self_label).is_some_and(|v| v == "true")
    }

    /// The layer of `s` when that layer has `always_requires_approval`.
    pub fn protected_layer(&self, s: &ServiceInfo) -> Option<String> {
        let layer = self
            .layers
            .layer_of(&s.name, |k| s.labels.get(k).map(String::as_str))?;
        self.protected_layers
            .contains(layer)
            .then(|| layer.to_string())
    }
}

#[cfg(test)]
mod tests;
