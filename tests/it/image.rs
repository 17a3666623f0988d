//! The container image (Dockerfile + `scripts/build-image.sh`) and the deploy files: the image
//! prints its version, is configured as documented (non-root, HEALTHCHECK through `probe`, no
//! shell needed), resolves names through glibc's NSS in an otherwise empty filesystem, and runs
//! as a Swarm service that connects to (the fake) Discord, turns healthy and answers `/healthz`,
//! and stays healthy (not replaced) through a Discord outage longer than its healthcheck window.
//!
//! The image is built by `scripts/test.sh` before `cargo test` (`bash scripts/build-image.sh`:
//! a release build, several minutes the first time on 2 cores, incremental afterwards), which
//! exports `SPROCKET_OPS_IMAGE`; without it the tests use `sprocket-ops:latest` and fail, naming
//! the script, when that image does not exist. They never build it themselves.
//!
//! The Swarm service uses the `host` network, because the fake Discord listens on 127.0.0.1 of
//! this process; it reaches it by the name `fake-discord.test` (an extra `/etc/hosts` entry of
//! the service), so the bot's own name resolution is exercised. Services, configs, secrets,
//! containers and networks made here carry `sprocket-ops.test=<run id>` and are removed when
//! the test ends, passed or failed.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bollard::models::{
    HealthConfig, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListConfigsOptionsBuilder, ListSecretsOptionsBuilder};
use sprocket_ops_tests::docker_cli::{docker, docker_ok, Cleanup};
use sprocket_ops_tests::env;
use sprocket_ops_tests::fake_discord::FakeDiscord;
use sprocket_ops_tests::swarm::{TestSwarm, CREATED_LABEL, STALE_AFTER, TEST_LABEL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod stack;
use stack::*;

/// Set by `scripts/test.sh` to the image it built (`sprocket-ops:latest`).
const IMAGE_VAR: &str = "SPROCKET_OPS_IMAGE";
/// What `scripts/build-image.sh` tags.
const DEFAULT_IMAGE: &str = "sprocket-ops:latest";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The image's own HEALTHCHECK (Dockerfile).
const IMAGE_HEALTHCHECK: [&str; 5] = [
    "CMD",
    "/sprocket-ops",
    "probe",
    "--url",
    "http://127.0.0.1:9464/healthz",
];
/// The four Docker secrets of deploy/sprocket-ops.stack.yml, by their file name in /run/secrets.
const SECRETS: [&str; 4] = [
    "discord_token",
    "github_token",
    "vault_token",
    "pulumi_passphrase",
];

/// The image under test, built at most once per process (see the module documentation).
fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let prebuilt = std::env::var(IMAGE_VAR)
                .ok()
                .filter(|v| !v.trim().is_empty());
            // Built by scripts/test.sh (step 3c); the test never starts a shell itself.
            let image = prebuilt.unwrap_or_else(|| DEFAULT_IMAGE.to_string());
            let out = docker(&["image", "inspect", "--format", "{{.Id}}", &image]);
            assert!(
                out.status.success(),
                "image {image} does not exist ({}): build it with `bash scripts/build-image.sh` \
                 (scripts/test.sh does)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            image
        })
        .clone()
}

/// The name of something this test run creates.
fn resource_name(what: &str) -> String {
    format!("sprocket-ops-it-{}-{what}", env::run_id())
}

fn test_labels() -> HashMap<String, String> {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    HashMap::from([
        (TEST_LABEL.to_string(), env::run_id()),
        (CREATED_LABEL.to_string(), created.to_string()),
    ])
}

/// A free TCP port on 127.0.0.1 (bound and released: the service binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// GET `http://127.0.0.1:{port}{path}`: (status, body).
async fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in {head:?}"))?;
    Ok((status, body.to_string()))
}

#[test]
fn image_prints_its_version_and_is_configured_as_documented() {
    let image = image();
    let out = docker(&["run", "--rm", &image, "--version"]);
    assert!(
        out.status.success(),
        "docker run {image} --version: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sprocket-ops {VERSION}")
    );

    let config: serde_json::Value = serde_json::from_str(&docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config}}",
        &image,
    ]))
    .expect("image config JSON");
    assert_eq!(config["User"], "10001:10001", "{config:#}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/sprocket-ops"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["serve", "--config", "/etc/sprocket-ops/sprocket-ops.toml"])
    );
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(IMAGE_HEALTHCHECK),
        "exec form: the image has no shell"
    );
    assert!(
        config["ExposedPorts"].get("9464/tcp").is_some(),
        "{config:#}"
    );
    assert_eq!(
        config["Labels"]["org.opencontainers.image.version"],
        VERSION
    );
    assert_eq!(
        config["Labels"]["org.opencontainers.image.title"],
        "sprocket-ops"
    );

    let bytes: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &image])
        .parse()
        .expect("image size");
    eprintln!("{image}: {:.1} MB", bytes as f64 / 1e6);
    assert!(
        bytes < 120_000_000,
        "a scratch image of one binary should stay small, not {bytes} bytes"
    );

    // The CLI works without a config file for what needs none, and fails cleanly when the
    // config the default CMD names is missing (exit 64, one line).
    let out = docker(&["run", "--rm", &image]);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/etc/sprocket-ops/sprocket-ops.toml"),
        "the error names the file: {err}"
    );
}

#[test]
fn image_resolves_names_through_nss_in_a_scratch_filesystem() {
    let image = image();
    let target_image = env::test_image("main");
    let network = resource_name("dns");
    let target = resource_name("dns-target");
    let mut cleanup = Cleanup::default();
    let run = env::run_id();
    docker_ok(&[
        "network",
        "create",
        "--label",
        &format!("{TEST_LABEL}={run}"),
        &network,
    ]);
    cleanup.push(&["network", "rm", &network]);
    docker_ok(&[
        "run",
        "--detach",
        "--init",
        "--name",
        &target,
        "--network",
        &network,
        "--label",
        &format!("{TEST_LABEL}={run}"),
        &target_image,
    ]);
    cleanup.push(&["rm", "--force", &target]);

    // Docker's embedded DNS (127.0.0.11, glibc's `dns` source) resolves the container name.
    let url = format!("http://{target}:8080/health");
    let mut last = None;
    for _ in 0..40 {
        let out = docker(&[
            "run",
            "--rm",
            "--network",
            &network,
            &image,
            "probe",
            "--url",
            &url,
        ]);
        if out.status.success() {
            last = None;
            break;
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(250));
    }
    if let Some(out) = last {
        panic!(
            "probe {url} from the image failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // /etc/hosts (`--add-host`, glibc's `files` source) resolves too; here to the same target.
    let ip = docker_ok(&[
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &target,
    ]);
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        &network,
        "--add-host",
        &format!("svc.sprocket-ops.test:{ip}"),
        &image,
        "probe",
        "--url",
        "http://svc.sprocket-ops.test:8080/health",
    ]);
    assert!(
        out.status.success(),
        "probe through --add-host failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // An unresolvable name is a probe failure (exit 1, Docker's "unhealthy"), not a hang.
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        &network,
        &image,
        "probe",
        "--url",
        "http://no-such-host.invalid:8080/health",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_runs_as_a_swarm_service_that_turns_healthy() {
    let image = tokio::task::spawn_blocking(image)
        .await
        .expect("image build");
    let swarm = TestSwarm::connect().await;
    let discord = FakeDiscord::start().await;
    for (id, name) in [(2001, "alerts"), (2002, "approvals"), (2003, "audit")] {
        discord.add_channel(id, name);
    }
    let discord_port = discord
        .api_base_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("fake Discord port");
    let http_port = free_port();

    // The deploy config, pointed at this test's Discord and ports (so the deploy file is what
    // the container validates and runs, secrets from /run/secrets included).
    let root = env::workspace_root();
    let deploy = std::fs::read_to_string(root.join("deploy/sprocket-ops.toml"))
        .expect("deploy/sprocket-ops.toml");
    let mut cfg: toml::Table = toml::from_str(&deploy).expect("deploy config is TOML");
    let set = |cfg: &mut toml::Table, section: &str, key: &str, value: toml::Value| {
        cfg.get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .unwrap_or_else(|| panic!("deploy config has no [{section}]"))
            .insert(key.to_string(), value);
    };
    set(
        &mut cfg,
        "discord",
        "api_base_url",
        format!("http://fake-discord.test:{discord_port}").into(),
    );
    set(
        &mut cfg,
        "discord",
        "guild_id",
        (FakeDiscord::GUILD_ID as i64).into(),
    );
    set(
        &mut cfg,
        "http",
        "listen",
        format!("127.0.0.1:{http_port}").into(),
    );
    // No engine and no Vault in this test: addresses that fail at once, never a DNS lookup.
    set(&mut cfg, "docker", "host", "tcp://127.0.0.1:9".into());
    set(&mut cfg, "vault", "address", "http://127.0.0.1:9".into());
    // The shipped probes name production hosts: none of them in a test (traffic stays on
    // loopback); the watcher itself still runs.
    set(&mut cfg, "alerts", "probes", toml::Value::Array(Vec::new()));
    let config_text = toml::to_string(&cfg).expect("config TOML");

    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let run = env::run_id();
    remove_stale_configs_and_secrets(&swarm).await;
    let labels = test_labels();
    let label_args: Vec<String> = labels
        .iter()
        .flat_map(|(k, v)| ["--label".to_string(), format!("{k}={v}")])
        .collect();
    let create = |kind: &str, name: &str, path: &str| -> String {
        let mut args: Vec<&str> = vec![kind, "create"];
        args.extend(label_args.iter().map(String::as_str));
        args.extend([name, path]);
        docker_ok(&args)
    };
    let mut cleanup = Cleanup::default();
    let service = resource_name("svc");
    // Removal order is the reverse of this: the service first, then its configs and secrets.
    let mut configs = Vec::new();
    for (file, text) in [
        ("sprocket-ops.toml", config_text),
        (
            "permissions.toml",
            std::fs::read_to_string(root.join("permissions.toml")).expect("permissions.toml"),
        ),
    ] {
        let name = resource_name(&file.replace('.', "-"));
        let path = write(file, &text);
        let id = create("config", &name, &path);
        cleanup.push(&["config", "rm", &name]);
        configs.push(TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(format!("/etc/sprocket-ops/{file}")),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o444),
            }),
            config_id: Some(id),
            config_name: Some(name),
            ..Default::default()
        });
    }
    let mut secrets = Vec::new();
    for target in SECRETS {
        let name = resource_name(&target.replace('_', "-"));
        let value = match target {
            "discord_token" => "test-discord-token",
            _ => "not-used-in-this-test",
        };
        let path = write(target, value);
        let id = create("secret", &name, &path);
        cleanup.push(&["secret", "rm", &name]);
        secrets.push(TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(target.to_string()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(0o444),
            }),
            secret_id: Some(id),
            secret_name: Some(name),
        });
    }

    let second = 1_000_000_000i64;
    let spec = ServiceSpec {
        name: Some(service.clone()),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.clone()),
                labels: Some(HashMap::from([(TEST_LABEL.to_string(), run.clone())])),
                // The image's CMD: serve --config /etc/sprocket-ops/sprocket-ops.toml.
                hosts: Some(vec!["127.0.0.1 fake-discord.test".to_string()]),
                configs: Some(configs),
                secrets: Some(secrets),
                init: Some(true),
                stop_grace_period: Some(10 * second),
                // The image's HEALTHCHECK, on this test's port and checked every second.
                health_check: Some(HealthConfig {
                    test: Some(
                        [
                            "CMD",
                            "/sprocket-ops",
                            "probe",
                            "--url",
                            &format!("http://127.0.0.1:{http_port}/healthz"),
                        ]
                        .map(String::from)
                        .to_vec(),
                    ),
                    interval: Some(second),
                    timeout: Some(5 * second),
                    retries: Some(3),
                    start_period: Some(0),
                    start_interval: None,
                }),
                ..Default::default()
            }),
            // The fake Discord listens on this host's 127.0.0.1.
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some("host".into()),
                ..Default::default()
            }]),
            // A crash shows as a failed task (and its logs), not as a restart loop.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        ..Default::default()
    };
    swarm
        .docker()
        .create_service(spec, None)
        .await
        .unwrap_or_else(|e| panic!("creating service {service}: {e}"));
    cleanup.push(&["service", "rm", &service]);

    let diagnose = |why: String| -> String {
        let ps = docker(&["service", "ps", "--no-trunc", &service]);
        let logs = docker(&["service", "logs", "--raw", "--tail", "60", &service]);
        format!(
            "{why}\n--- docker service ps ---\n{}\n--- docker service logs ---\n{}{}",
            String::from_utf8_lossy(&ps.stdout),
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr),
        )
    };

    // The bot in the container connects to the fake Discord (by name) and registers commands;
    // a task that fails first (a config it rejects, a crash) ends the wait at once.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if discord
            .wait_commands_registered(Duration::from_secs(1))
            .await
            .is_ok()
        {
            break;
        }
        let tasks = swarm.tasks(&service).await.expect("tasks");
        if tasks.iter().any(task_ended) || Instant::now() > deadline {
            panic!(
                "{}",
                diagnose("the containerised bot did not register its commands".into())
            );
        }
    }

    // Swarm reports the task RUNNING only once its container is healthy.
    let deadline = Instant::now() + Duration::from_secs(60);
    let container_id = loop {
        let tasks = swarm.tasks(&service).await.expect("tasks");
        let running = tasks.iter().find_map(|t| {
            let status = t.status.as_ref()?;
            (status.state == Some(TaskState::RUNNING))
                .then(|| status.container_status.as_ref()?.container_id.clone())
                .flatten()
        });
        if let Some(id) = running {
            break id;
        }
        if tasks.iter().any(task_ended) || Instant::now() > deadline {
            panic!(
                "{}",
                diagnose("the task did not become RUNNING (healthy)".into())
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let health: serde_json::Value = serde_json::from_str(&docker_ok(&[
        "inspect",
        "--format",
        "{{json .State.Health}}",
        &container_id,
    ]))
    .expect("health JSON");
    assert_eq!(health["Status"], "healthy", "{health:#}");
    let last_probe = health["Log"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last_probe["ExitCode"], 0, "{health:#}");

    // The process runs as the image's user, not root.
    let pid = docker_ok(&["inspect", "--format", "{{.State.Pid}}", &container_id]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "10001"),
        "{uid_line}"
    );

    // The endpoint itself, from outside the container.
    let (status, body) = http_get(http_port, "/healthz").await.expect("GET /healthz");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["version"], VERSION);
    assert_eq!(v["checks"]["gateway"], "ok");
    assert_eq!(v["checks"]["store"], "ok");
    let (status, metrics) = http_get(http_port, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sprocket_ops_gateway_connected 1"),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "sprocket_ops_build_info{{version=\"{VERSION}\"}} 1"
    )));
    // Registering the commands went through Discord's REST API: those requests were timed.
    let rest_requests: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("sprocket_ops_discord_rest_request_duration_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no REST latency count in {metrics}"));
    assert!(rest_requests > 0, "{metrics}");
    assert_eq!(
        http_get(http_port, "/nope").await.expect("GET /nope").0,
        404
    );

    // A Discord outage longer than the healthcheck window (every second, 3 retries): the bot
    // is alive but not ready, and Swarm leaves the task alone (a restart would kill a running
    // deploy and bring Discord back no sooner).
    discord.set_gateway_down(true).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(http_port, "/healthz").await.expect("GET /healthz");
        let v: serde_json::Value = serde_json::from_str(&body).expect("healthz JSON");
        if v["checks"]["gateway"] == "not connected" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway never went down: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(10) {
        let (status, body) = http_get(http_port, "/healthz").await.expect("GET /healthz");
        assert_eq!(status, 200, "liveness during the outage: {body}");
        let (status, body) = http_get(http_port, "/readyz").await.expect("GET /readyz");
        assert_eq!(status, 503, "readiness during the outage: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let health: serde_json::Value = serde_json::from_str(&docker_ok(&[
        "inspect",
        "--format",
        "{{json .State.Health}}",
        &container_id,
    ]))
    .expect("health JSON");
    assert_eq!(health["Status"], "healthy", "{health:#}");
    assert_eq!(health["FailingStreak"], 0, "{health:#}");
    let tasks = swarm.tasks(&service).await.expect("tasks");
    assert!(
        !tasks.iter().any(task_ended),
        "{}",
        diagnose("Swarm replaced the task during the outage".into())
    );
    let (_, metrics) = http_get(http_port, "/metrics").await.expect("GET /metrics");
    assert!(
        metrics.contains("sprocket_ops_gateway_connected 0"),
        "{metrics}"
    );
    discord.set_gateway_down(false).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while http_get(http_port, "/readyz")
        .await
        .map(|r| r.0)
        .unwrap_or(0)
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "{}",
            diagnose("the bot did not reconnect after the outage".into())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    discord.assert_no_violations();

    drop(cleanup);
    let gone = docker(&["service", "inspect", &service]);
    assert!(!gone.status.success(), "the service was removed");
}
