//! The `sprocket-ops` binary as an operator uses it when Discord is down: the same operations
//! against the real Swarm, audited the same way, with clear errors and sysexits codes for bad
//! input (64 config, 69 engine unavailable, 73 database).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{docker_service_ls, TestService, TestSwarm};

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let root = env::workspace_root();
    std::fs::copy(root.join("permissions.toml"), dir.join("permissions.toml")).unwrap();
    let text = std::fs::read_to_string(root.join("sprocket-ops.example.toml"))
        .unwrap()
        .replace(
            "url = \"sqlite://sprocket-ops.db\"",
            &format!("url = \"sqlite://{}/ops.db\"", dir.display()),
        )
        + extra;
    let path = dir.join("sprocket-ops.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env::bot_binary())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("DISCORD_TOKEN")
        .env("USER", "oncall-cli")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_status_json_matches_docker_service_ls_and_changes_are_audited() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-cli", "main")
                .replicas(2)
                .label("sprocket.layer", "platform"),
        )
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");

    let out = run(&cfg, &["status", "--json", "--layer", "platform"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mine = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == svc.name())
        .cloned()
        .expect("listed");
    let row = docker_service_ls()
        .into_iter()
        .find(|r| r.name == svc.name())
        .unwrap();
    assert_eq!(
        format!("{}/{}", mine["running"], mine["desired"]),
        row.replicas
    );
    assert_eq!(mine["image"], row.image);
    assert_eq!(mine["layer"], "platform");

    let out = run(&cfg, &["scale", svc.name(), "1"]);
    assert!(
        out.status.success() && text(&out).contains("completed"),
        "{}",
        text(&out)
    );
    let out = run(&cfg, &["scale", svc.name(), "0"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("--break-glass"), "{}", text(&out));
    let out = run(
        &cfg,
        &[
            "scale",
            svc.name(),
            "0",
            "--break-glass",
            "discord is down, incident 42",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let spec = swarm.inspect(svc.name()).await.unwrap().spec.unwrap();
    assert_eq!(spec.mode.unwrap().replicated.unwrap().replicas, Some(0));

    let out = run(&cfg, &["bump", svc.name(), ";rm -rf /"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("invalid image reference"),
        "{}",
        text(&out)
    );

    let out = run(&cfg, &["audit", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let commands: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["command"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for want in [
        ("status", "ok"),
        ("scale", "ok"),
        ("break_glass.scale_to_zero", "ok"),
        ("bump", "error"),
    ] {
        assert!(
            commands.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {commands:?}"
        );
    }
    let glass = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["command"] == "break_glass.scale_to_zero")
        .unwrap();
    assert_eq!(glass["actor"]["name"], "oncall-cli");
    assert_eq!(
        glass["params"]["break_glass"],
        "discord is down, incident 42"
    );
}

#[test]
fn cli_bad_input_exits_with_specific_codes_and_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("guild_id = 1000", "guild_id = \"x\""),
    )
    .unwrap();
    let out = run(&bad, &["check-config"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml: discord.guild_id:"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let out = run(&cfg, &["serve"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out).contains("DISCORD_TOKEN"), "{}", text(&out));

    let other = tempfile::tempdir().unwrap();
    let nowhere = config(other.path(), "");
    let unwritable = std::fs::read_to_string(&nowhere).unwrap().replace(
        &format!("sqlite://{}/ops.db", nowhere.parent().unwrap().display()),
        "sqlite:///proc/nonexistent/ops.db",
    );
    let unwritable_path = dir.path().join("unwritable.toml");
    std::fs::write(&unwritable_path, unwritable).unwrap();
    let out = run(&unwritable_path, &["status"]);
    assert_eq!(out.status.code(), Some(73), "{}", text(&out));

    let docker_down = config(dir.path(), "");
    let text_cfg = std::fs::read_to_string(&docker_down).unwrap().replace(
        "unix:///var/run/docker.sock",
        "unix:///nonexistent/docker.sock",
    );
    std::fs::write(&docker_down, text_cfg).unwrap();
    let out = run(&docker_down, &["status"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(text(&out).contains("unreachable"), "{}", text(&out));

    let out = run(&cfg, &["status", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&cfg, &["status", "--layer", "platfrom"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out).contains("did you mean platform"),
        "{}",
        text(&out)
    );
}

fn spec_image(svc: &bollard::models::Service) -> String {
    svc.spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.container_spec.as_ref())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn force_update(svc: &bollard::models::Service) -> u64 {
    svc.spec
        .as_ref()
        .and_then(|s| s.task_template.as_ref())
        .and_then(|t| t.force_update)
        .unwrap_or(0)
}

/// The audit rows as `(command, outcome)`.
fn audit_commands(cfg: &Path) -> Vec<(String, String)> {
    let out = run(cfg, &["audit", "--json", "--limit", "1000"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["command"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Issue 12: the CLI's normal path changed `layer_1` services (Vault, Traefik, the socket
/// proxy) with no approval; the example config's layer_1 has `always_requires_approval`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_bump_restart_and_scale_of_a_layer_1_service_need_break_glass() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(TestService::new("vault-cli", "main").label("sprocket.layer", "layer_1"))
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let before = swarm.inspect(svc.name()).await.unwrap();
    for args in [
        vec!["bump", svc.name(), "v2"],
        vec!["restart", svc.name()],
        vec!["scale", svc.name(), "2"],
    ] {
        let out = run(&cfg, &args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("needs a second engineer's approval")
                && text(&out).contains("--break-glass")
                && text(&out).contains("layer_1"),
            "{args:?}: {}",
            text(&out)
        );
    }
    let after = swarm.inspect(svc.name()).await.unwrap();
    assert_eq!(spec_image(&after), spec_image(&before), "not bumped");
    assert_eq!(force_update(&after), force_update(&before), "not restarted");
    assert_eq!(
        swarm.replicas(svc.name()).await.unwrap(),
        Some(1),
        "not scaled"
    );

    let out = run(
        &cfg,
        &[
            "bump",
            svc.name(),
            "v2",
            "--break-glass",
            "discord is down, incident 12",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let after = swarm.inspect(svc.name()).await.unwrap();
    assert!(spec_image(&after).contains(":v2"), "{}", spec_image(&after));
    let commands = audit_commands(&cfg);
    for want in [
        ("bump", "denied"),
        ("restart", "denied"),
        ("scale", "denied"),
        ("break_glass.protected_bump", "ok"),
    ] {
        assert!(
            commands.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {commands:?}"
        );
    }
}

/// Issue 12: the bot's own service and its socket proxy were changed by the CLI's normal path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_never_changes_sprocket_ops_own_services_without_break_glass() {
    let swarm = TestSwarm::connect().await;
    let bot_svc = swarm
        .create_service(
            TestService::new("ops-bot-cli", "main")
                .label("sprocket.layer", "platform")
                .label("sprocket-ops.self", "true"),
        )
        .await;
    let proxy = swarm
        .create_service(
            TestService::new("ops-proxy-cli", "main").label("sprocket.layer", "platform"),
        )
        .await;
    for s in [&bot_svc, &proxy] {
        swarm
            .wait_converged(s.name(), Duration::from_secs(60))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "\n[self_services]\nnames = [\"{}\"]\nlabel = \"sprocket-ops.self\"\n",
            proxy.name()
        ),
    );
    for name in [bot_svc.name(), proxy.name()] {
        let before = swarm.inspect(name).await.unwrap();
        for args in [
            vec!["bump", name, "v2"],
            vec!["restart", name],
            vec!["scale", name, "2"],
            vec!["scale", name, "0"],
        ] {
            let out = run(&cfg, &args);
            assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
            assert!(
                text(&out).contains("sprocket-ops' own services")
                    && text(&out).contains("--break-glass"),
                "{args:?}: {}",
                text(&out)
            );
        }
        let after = swarm.inspect(name).await.unwrap();
        assert_eq!(spec_image(&after), spec_image(&before));
        assert_eq!(force_update(&after), force_update(&before));
        assert_eq!(swarm.replicas(name).await.unwrap(), Some(1));
    }
    let out = run(
        &cfg,
        &[
            "restart",
            proxy.name(),
            "--break-glass",
            "proxy wedged, incident 13",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let commands = audit_commands(&cfg);
    assert!(
        commands.contains(&(
            "break_glass.protected_restart".to_string(),
            "ok".to_string()
        )),
        "{commands:?}"
    );
    assert!(
        commands.iter().filter(|(_, o)| o == "denied").count() >= 8,
        "{commands:?}"
    );
}

/// Issue 12: any image could be deployed by naming a full reference; `[images] allowed`
/// is checked at load (exit 64 on a bad glob) and before anything runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refuses_a_full_image_reference_outside_the_allow_list_and_a_bad_glob() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-cli-img", "main").label("sprocket.layer", "platform"),
        )
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = config(
        dir.path(),
        "\n[images]\nallowed = [\"ghcr.io/Sprocket/*:v2\"]\n",
    );
    let out = run(&bad, &["check-config"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("images.allowed[0]"), "{}", text(&out));

    let cfg = config(
        dir.path(),
        "\n[images]\nallowed = [\"ghcr.io/sprocketbot/*\"]\n",
    );
    let before = spec_image(&swarm.inspect(svc.name()).await.unwrap());
    let out = run(&cfg, &["bump", svc.name(), "evil.example.com/miner:latest"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("refused") && text(&out).contains("ghcr.io/sprocketbot/*"),
        "{}",
        text(&out)
    );
    let out = run(
        &cfg,
        &[
            "bump",
            svc.name(),
            "evil.example.com/miner:latest",
            "--break-glass",
            "break glass does not widen the allow-list",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        spec_image(&swarm.inspect(svc.name()).await.unwrap()),
        before
    );
    assert!(audit_commands(&cfg).contains(&("bump".to_string(), "denied".to_string())));
}
