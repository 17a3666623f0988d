//! The shipped stack's configs and secrets: stale ones removed, the deploy config checked against the stack.

use super::*;

/// Removes the configs and secrets of crashed runs: labelled by a test, created more than
/// [`STALE_AFTER`] ago. (Docker refuses to remove one a service still uses.)
pub(super) async fn remove_stale_configs_and_secrets(swarm: &TestSwarm) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stale = |labels: Option<&HashMap<String, String>>| {
        labels
            .and_then(|l| l.get(CREATED_LABEL))
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|t| now.saturating_sub(t) > STALE_AFTER.as_secs())
    };
    let filters = HashMap::from([("label", vec![CREATED_LABEL])]);
    let docker = swarm.docker();
    let configs = docker
        .list_configs(Some(
            ListConfigsOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .unwrap_or_default();
    for c in configs {
        if stale(c.spec.as_ref().and_then(|s| s.labels.as_ref())) {
            if let Some(id) = c.id {
                let _ = docker.delete_config(&id).await;
            }
        }
    }
    let secrets = docker
        .list_secrets(Some(
            ListSecretsOptionsBuilder::new().filters(&filters).build(),
        ))
        .await
        .unwrap_or_default();
    for s in secrets {
        if stale(s.spec.as_ref().and_then(|s| s.labels.as_ref())) {
            if let Some(id) = s.id {
                let _ = docker.delete_secret(&id).await;
            }
        }
    }
}

/// The task stopped for good (its restart policy is `none`).
pub(super) fn task_ended(t: &bollard::models::Task) -> bool {
    matches!(
        t.status.as_ref().and_then(|s| s.state),
        Some(TaskState::FAILED | TaskState::REJECTED | TaskState::COMPLETE | TaskState::SHUTDOWN)
    )
}

/// deploy/sprocket-ops.toml is a valid config and agrees with the stack file: its secrets are
/// the stack's secret targets, its Docker host is the stack's proxy, its database is on /data.
#[test]
pub(super) fn image_deploy_config_matches_the_stack() {
    let root = env::workspace_root();
    let text = std::fs::read_to_string(root.join("deploy/sprocket-ops.toml")).expect("toml");
    let cfg = ops_core::config::Config::parse("deploy/sprocket-ops.toml", &text)
        .unwrap_or_else(|e| panic!("deploy/sprocket-ops.toml is invalid: {e}"));
    let stack = std::fs::read_to_string(root.join("deploy/sprocket-ops.stack.yml")).expect("yml");
    assert_eq!(cfg.docker.host, "tcp://socket-proxy:2375");
    assert!(
        stack.contains("\n  socket-proxy:\n"),
        "the stack has the proxy service"
    );
    assert!(cfg.database.url.starts_with("sqlite:///data/"));
    assert!(stack.contains("sprocket-ops-data:/data"));
    for target in SECRETS {
        assert!(
            text.contains(&format!("{{ file = \"/run/secrets/{target}\" }}")),
            "the config reads /run/secrets/{target}"
        );
        assert!(
            stack.contains(&format!("target: {target}\n")),
            "the stack mounts the secret {target}"
        );
    }
    assert!(stack.contains("target: /etc/sprocket-ops/sprocket-ops.toml"));
    assert!(stack.contains("target: /etc/sprocket-ops/permissions.toml"));
    assert_eq!(
        cfg.permissions_file,
        std::path::Path::new("permissions.toml")
    );
    // The port the image's HEALTHCHECK probes.
    assert!(cfg.http.listen.ends_with(":9464"), "{}", cfg.http.listen);
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    let healthcheck = format!(
        "CMD [{}]",
        IMAGE_HEALTHCHECK[1..]
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        dockerfile.contains(&healthcheck),
        "Dockerfile: {healthcheck}"
    );
    assert!(stack.contains(&format!(
        "test: [{}]",
        IMAGE_HEALTHCHECK
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )));
}
