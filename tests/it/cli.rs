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
