//! The project on disk, as the real CLI keeps it: `Pulumi.yaml` (`name:`, `runtime:`) in the
//! working directory, `Pulumi.<stack>.yaml` with the stack config under `config:` as
//! `<project>:<key>: <value>` (a stack exists when its file does), plus the stand-in's own
//! `standin.json`: the resources the "program" declares and the knobs tests turn.
//!
//! YAML is read and written line by line for the flat shape Pulumi uses for plain config
//! values; other lines are kept as they are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `Pulumi.yaml`.
pub struct Project {
    pub dir: PathBuf,
    pub name: String,
}

impl Project {
    /// Reads `Pulumi.yaml` from `dir`; the error is the real CLI's.
    pub fn load(dir: &Path) -> Result<Project, String> {
        let path = dir.join("Pulumi.yaml");
        let text = std::fs::read_to_string(&path).map_err(|_| {
            format!(
                "no Pulumi.yaml project file found (searching upwards from {}). If you have not \
                 created a project yet, use `pulumi new` to do so: no project file found",
                dir.display()
            )
        })?;
        let name = top_level(&text, "name")
            .ok_or_else(|| format!("{}: project is missing a 'name' attribute", path.display()))?;
        Ok(Project {
            dir: dir.to_path_buf(),
            name,
        })
    }

    pub fn stack_file(&self, stack: &str) -> PathBuf {
        self.dir.join(format!("Pulumi.{stack}.yaml"))
    }

    /// A key as stored: `image-tag` -> `<project>:image-tag`; namespaced keys as given.
    pub fn full_key(&self, key: &str) -> String {
        if key.contains(':') {
            key.to_string()
        } else {
            format!("{}:{key}", self.name)
        }
    }

    /// The stack's config (plain values), or `None` when the stack does not exist.
    pub fn config(&self, stack: &str) -> Option<BTreeMap<String, String>> {
        let text = std::fs::read_to_string(self.stack_file(stack)).ok()?;
        Some(
            config_entries(&text)
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect(),
        )
    }

    /// Sets one plain value, keeping the rest of the file.
    pub fn set_config(&self, stack: &str, key: &str, value: &str) -> std::io::Result<()> {
        let path = self.stack_file(stack);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let entry = format!("  {key}: {}", yaml_scalar(value));
        let entries = config_entries(&text);
        if let Some((_, _, line)) = entries.iter().find(|(k, _, _)| k == key) {
            lines[*line] = entry;
        } else if let Some(header) = lines.iter().position(|l| l.trim_end() == "config:") {
            let after = entries.last().map(|(_, _, l)| *l).unwrap_or(header);
            lines.insert(after + 1, entry);
        } else {
            lines.push("config:".to_string());
            lines.push(entry);
        }
        let mut out = lines.join("\n");
        out.push('\n');
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, out)?;
        std::fs::rename(tmp, path)
    }
}

/// A top-level `key: value` of a YAML document.
fn top_level(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let v = unquote(rest.trim());
        (!v.is_empty()).then_some(v)
    })
}

/// `(key, value, line index)` of the plain entries under `config:`.
fn config_entries(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "config:" {
            inside = true;
            continue;
        }
        if !inside || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            inside = false;
            continue;
        }
        // Exactly two spaces: a key of the config map (deeper lines are structured values).
        let Some(entry) = line.strip_prefix("  ").filter(|e| !e.starts_with(' ')) else {
            continue;
        };
        if let Some((k, v)) = split_entry(entry) {
            out.push((unquote(k), unquote(v.trim()), i));
        }
    }
    out
}

/// `key: value`, where the key itself may contain `:` (`platform:image-tag: v2`).
fn split_entry(entry: &str) -> Option<(&str, &str)> {
    if let Some(quoted) = entry.strip_prefix('"') {
        let end = quoted.find('"')?;
        let rest = quoted[end + 1..].strip_prefix(':')?;
        return Some((&entry[..end + 2], rest));
    }
    let i = entry
        .find(": ")
        .or_else(|| entry.strip_suffix(':').map(|e| e.len()))?;
    Some((&entry[..i], entry.get(i + 1..).unwrap_or("")))
}

fn unquote(v: &str) -> String {
    if v.starts_with('"') {
        return serde_json::from_str(v).unwrap_or_else(|_| v.trim_matches('"').to_string());
    }
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].replace("''", "'");
    }
    v.to_string()
}

/// A YAML scalar for `value`: plain when unambiguous, else double-quoted.
fn yaml_scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '@' | '+'))
        && !value.starts_with(['-', '.', '@'])
        && value.parse::<f64>().is_err()
        && !matches!(
            value.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~"
        );
    if plain {
        value.to_string()
    } else {
        serde_json::to_string(value).expect("a string serializes")
    }
}

/// `standin.json`: what the program declares, and the knobs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
    /// Work time of each resource step during `up`, in milliseconds.
    #[serde(default)]
    pub step_delay_ms: u64,
    /// `up` fails on this resource (by name) with `fail_message`, as a provider error.
    #[serde(default)]
    pub fail_resource: Option<String>,
    #[serde(default)]
    pub fail_message: Option<String>,
    /// Work time of `preview` before it answers, in milliseconds (a real Pulumi takes seconds
    /// to minutes per preview).
    #[serde(default)]
    pub preview_delay_ms: u64,
    /// The event log's shape: `"current"` (default) or `"v3.100"`, as an older CLI wrote it:
    /// no `sequence` on any event, no `isPreview`, `PolicyPacks` or `maybeCorrupt` in the
    /// summary, no `color` in diagnostics, no `steps` in a failed step.
    #[serde(default)]
    pub event_log_shape: Option<String>,
    /// `preview` fails with this provider error.
    #[serde(default)]
    pub fail_preview: Option<String>,
    /// Printed on stderr by every command (stands for noisy plugin output).
    #[serde(default)]
    pub stderr_message: Option<String>,
    /// Another process holds the stack lock.
    #[serde(default)]
    pub locked: bool,
    /// A warning diagnostic on the first changing resource, in preview and up.
    #[serde(default)]
    pub warning: Option<String>,
    /// Every command writes its environment here (`K=V` lines): what plugins would inherit.
    #[serde(default)]
    pub env_dump: Option<std::path::PathBuf>,
}

/// One resource of the program.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// `docker:index/service:Service` (the only type the stand-in applies).
    #[serde(rename = "type")]
    pub kind: String,
    /// The Pulumi resource name (the last part of the URN).
    pub name: String,
    /// The Swarm service it manages.
    pub service_name: String,
    /// The image is `{image_repo}:{<project>:image-tag}`.
    pub image_repo: String,
    #[serde(default = "one")]
    pub replicas: u64,
    /// Plan a replacement (delete and create) whatever differs.
    #[serde(default)]
    pub force_replace: bool,
    /// The program no longer declares it: plan a delete.
    #[serde(default)]
    pub delete: bool,
    /// Labels of a service the stand-in creates.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u64 {
    1
}

impl Spec {
    pub fn load(dir: &Path) -> Result<Spec, String> {
        let path = dir.join("standin.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{}: invalid stand-in spec: {e}", path.display())),
            Err(_) => Ok(Spec::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_keeps_other_lines() {
        let dir = std::env::temp_dir().join(format!("standin-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Pulumi.yaml"), "name: platform\nruntime: nodejs\n").unwrap();
        std::fs::write(
            dir.join("Pulumi.prod.yaml"),
            "encryptionsalt: v1:abc\nconfig:\n  platform:hostname: example.org\n  platform:image-tag: main\n  platform:obj:\n    a: 1\n",
        )
        .unwrap();
        let p = Project::load(&dir).unwrap();
        assert_eq!(p.full_key("image-tag"), "platform:image-tag");
        assert_eq!(p.config("prod").unwrap()["platform:image-tag"], "main");
        p.set_config("prod", "platform:image-tag", "v2").unwrap();
        p.set_config("prod", "platform:note", "-x y").unwrap();
        let text = std::fs::read_to_string(dir.join("Pulumi.prod.yaml")).unwrap();
        assert!(
            text.starts_with("encryptionsalt: v1:abc\nconfig:\n"),
            "{text}"
        );
        assert!(text.contains("  platform:image-tag: v2\n"), "{text}");
        assert!(text.contains("  platform:note: \"-x y\"\n"), "{text}");
        assert!(text.contains("    a: 1"), "{text}");
        let cfg = p.config("prod").unwrap();
        assert_eq!(cfg["platform:note"], "-x y");
        assert_eq!(cfg["platform:hostname"], "example.org");
        assert!(p.config("nope").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
