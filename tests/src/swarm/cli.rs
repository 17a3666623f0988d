//! `docker service ls` and `docker service ps` read through the Docker CLI (JSON lines), for comparing with what the bot reports.

use super::*;

/// One line of `docker service ls --format '{{json .}}'`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServiceLsRow {
    /// Short (12 character) service id, as the CLI prints it.
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    /// `replicated` or `global`.
    #[serde(rename = "Mode")]
    pub mode: String,
    /// `running/desired`, e.g. `2/2` (may carry a suffix such as ` (max 1 per node)`).
    #[serde(rename = "Replicas")]
    pub replicas: String,
    /// Image without digest, e.g. `sprocket-ops-testsvc:main`.
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Ports", default)]
    pub ports: String,
}

impl ServiceLsRow {
    /// `(running, desired)` parsed from [`Self::replicas`].
    pub fn replica_counts(&self) -> Option<(u64, u64)> {
        let head = self.replicas.split_whitespace().next()?;
        let (running, desired) = head.split_once('/')?;
        Some((running.parse().ok()?, desired.parse().ok()?))
    }
}

/// One line of `docker service ps --no-trunc --format '{{json .}}' <service>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ServicePsRow {
    #[serde(rename = "ID")]
    pub id: String,
    /// `<service>.<slot>`.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "Node")]
    pub node: String,
    /// e.g. `Running`, `Shutdown`.
    #[serde(rename = "DesiredState")]
    pub desired_state: String,
    /// e.g. `Running 2 seconds ago`, `Failed 1 second ago`.
    #[serde(rename = "CurrentState")]
    pub current_state: String,
    /// e.g. `task: non-zero exit (1)` (the quotes `--no-trunc` adds are removed).
    #[serde(rename = "Error", deserialize_with = "unquoted")]
    pub error: String,
    #[serde(rename = "Ports", default)]
    pub ports: String,
}

/// `docker service ps --no-trunc` prints the error column as a quoted Go string.
pub(super) fn unquoted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
        if let Ok(inner) = serde_json::from_str::<String>(&raw) {
            return Ok(inner);
        }
        return Ok(raw[1..raw.len() - 1].to_string());
    }
    Ok(raw)
}

/// Runs `docker <args>` (argv, no shell) and parses each stdout line as JSON. Panics when the
/// CLI fails or prints something unparsable: the tests rely on this view.
pub(super) fn docker_json_lines<T: serde::de::DeserializeOwned>(args: &[&str]) -> Vec<T> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")));
    if !out.status.success() {
        panic!(
            "`docker {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_json_lines(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("`docker {}`: {e}", args.join(" ")))
}

pub(super) fn parse_json_lines<T: serde::de::DeserializeOwned>(
    text: &str,
) -> anyhow::Result<Vec<T>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("unparsable line {l:?}")))
        .collect()
}

/// The Docker CLI's own `docker service ls` (every service on the swarm).
pub fn docker_service_ls() -> Vec<ServiceLsRow> {
    docker_json_lines(&["service", "ls", "--format", "{{json .}}"])
}

/// The Docker CLI's `docker service ps --no-trunc <name>` (current and historical tasks).
pub fn docker_service_ps(name: &str) -> Vec<ServicePsRow> {
    docker_json_lines(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{json .}}",
        name,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_and_valid() {
        let name = service_name(
            "My Fancy_Service/with-a-very-long-prefix",
            "123456-abcdef",
            42,
        );
        assert!(name.len() <= 63, "{name}");
        assert!(name.starts_with("my-fancy-service-with-a"), "{name}");
        assert!(name.ends_with("-123456-abcdef-42"), "{name}");
        assert_eq!(service_name("--", "r", 1), "svc-r-1");
    }

    #[test]
    fn spec_carries_labels_image_and_policies() {
        let spec = TestService::new("web", "broken")
            .replicas(2)
            .label("app", "web")
            .env("TESTSVC_BURST", "10")
            .rollback_on_update_failure()
            .restart_condition("on-failure")
            .to_spec("web-r-1", "img:broken", "r");
        let labels = spec.labels.clone().unwrap();
        assert_eq!(labels[TEST_LABEL], "r");
        assert_eq!(labels["app"], "web");
        assert!(labels[CREATED_LABEL].parse::<u64>().is_ok());
        let task = spec.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.image.as_deref(), Some("img:broken"));
        assert_eq!(c.env, Some(vec!["TESTSVC_BURST=10".to_string()]));
        assert_eq!(c.stop_grace_period, Some(1_000_000_000));
        assert_eq!(
            c.init,
            Some(true),
            "docker-init forwards SIGTERM to testsvc"
        );
        let restart = task.restart_policy.unwrap();
        assert_eq!(
            restart.condition,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        assert_eq!(
            restart.max_attempts,
            Some(3),
            "broken defaults to 3 attempts"
        );
        assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(2));
        assert_eq!(
            spec.update_config.unwrap().failure_action,
            Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK)
        );
        let main = TestService::new("web", "main").to_spec("n", "img:main", "r");
        assert_eq!(
            main.task_template
                .unwrap()
                .restart_policy
                .unwrap()
                .max_attempts,
            None
        );
    }

    #[test]
    fn parses_cli_rows() {
        let ls: Vec<ServiceLsRow> = parse_json_lines(
            r#"{"ID":"j6z8f8b6aq5c","Image":"sprocket-ops-testsvc:main","Mode":"replicated","Name":"tsvc","Ports":"","Replicas":"2/2"}"#,
        )
        .unwrap();
        assert_eq!(ls[0].name, "tsvc");
        assert_eq!(ls[0].replica_counts(), Some((2, 2)));
        let ps: Vec<ServicePsRow> = parse_json_lines(
            "{\"CurrentState\":\"Failed 1 second ago\",\"DesiredState\":\"Shutdown\",\"Error\":\"\\\"task: non-zero exit (1)\\\"\",\"ID\":\"x\",\"Image\":\"i:broken\",\"Name\":\"tsvc.1\",\"Node\":\"vm\",\"Ports\":\"\"}\n",
        )
        .unwrap();
        assert_eq!(ps[0].error, "task: non-zero exit (1)");
        assert!(parse_json_lines::<ServiceLsRow>("not json").is_err());
    }

    #[test]
    fn image_comparison_ignores_digest() {
        assert!(same_image("a:main@sha256:abc", "a:main"));
        assert!(!same_image("a:main", "a:v2"));
    }
}
