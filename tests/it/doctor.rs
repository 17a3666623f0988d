//! A newcomer's path through the binary: a missing configuration file says what to do, and
//! `doctor` checks the live environment (secrets present but never printed, layer directories,
//! `pulumi version`, Docker, Vault), one line per problem, exit 1 on any; against the real
//! engine, a real OpenBao and the Pulumi stand-in it passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sprocket_ops_tests::bao::BaoServer;
use sprocket_ops_tests::env;

const SECRET_VALUE: &str = "doctor-discord-token-value-8c1f";

fn standin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = env::workspace_root().join("target/debug/pulumi");
    assert!(
        p.is_file(),
        "the pulumi stand-in is missing: run `cargo build -p pulumi-standin` (scripts/test.sh does)"
    );
    p
}

/// The example config in `dir`, with these replacements, and the repository's permissions.
fn config(dir: &Path, replace: &[(&str, String)]) -> PathBuf {
    let root = env::workspace_root();
    std::fs::copy(root.join("permissions.toml"), dir.join("permissions.toml")).unwrap();
    let mut text = std::fs::read_to_string(root.join("sprocket-ops.example.toml")).unwrap();
    for (from, to) in replace {
        assert!(text.contains(from), "the example config has {from}");
        text = text.replace(from, to);
    }
    let path = dir.join("sprocket-ops.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(cfg: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env::bot_binary());
    cmd.arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("DISCORD_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .env_remove("VAULT_TOKEN")
        .env_remove("SPROCKET_OPS_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn layer_dirs(dir: &Path, which: &[&str]) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for (layer, placeholder) in [
        ("layer_1", "/srv/sprocket-infra/layer_1"),
        ("layer_2", "/srv/sprocket-infra/layer_2"),
        ("platform", "/srv/sprocket-infra/platform"),
    ] {
        let d = dir.join("infra").join(layer);
        if which.contains(&layer) {
            std::fs::create_dir_all(&d).unwrap();
        }
        v.push((placeholder, d.display().to_string()));
    }
    v
}

#[test]
fn a_missing_config_file_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("sprocket-ops.toml");
    let out = run(&missing, &["status"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("copy sprocket-ops.example.toml") && err.contains("--config"),
        "{err}"
    );
    assert!(!err.contains("entity not found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // The config is there, its permissions file is not.
    let cfg = config(dir.path(), &[]);
    std::fs::remove_file(dir.path().join("permissions.toml")).unwrap();
    let out = run(&cfg, &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("permissions_file") && err.contains("copy the repository's permissions.toml"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_each_problem_on_one_line_and_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on this port: Vault does not answer.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let vault = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut replace = layer_dirs(dir.path(), &["layer_1"]);
    replace.extend([
        (
            "url = \"sqlite://sprocket-ops.db\"",
            format!("url = \"sqlite://{}/ops.db\"", dir.path().display()),
        ),
        (
            "binary = \"pulumi\"",
            "binary = \"/nonexistent/pulumi\"".to_string(),
        ),
        (
            "unix:///var/run/docker.sock",
            "unix:///nonexistent/docker.sock".to_string(),
        ),
        ("http://127.0.0.1:8200", vault.clone()),
    ]);
    let cfg = config(dir.path(), &replace);
    let out = run(&cfg, &["doctor"], &[("DISCORD_TOKEN", SECRET_VALUE)]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(!all.contains(SECRET_VALUE), "a secret was printed: {all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    for want in [
        "problem: github.token: environment variable GITHUB_TOKEN is not set",
        "problem: vault.token: environment variable VAULT_TOKEN is not set",
        "problem: layers.layer_2.directory:",
        "problem: layers.platform.directory:",
        "problem: pulumi.binary: cannot run `/nonexistent/pulumi version`",
        "problem: docker.host unix:///nonexistent/docker.sock:",
        &format!("problem: vault.address {vault}:"),
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "no `{want}` in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), 7, "{problems:#?}");
    assert!(stdout.contains("ok: discord.token is present"), "{stdout}");
    assert!(stdout.contains("ok: layers.layer_1.directory"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("doctor: 7 problem(s)"),
        "{all}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_against_the_engine_a_real_openbao_and_the_pulumi_standin() {
    let bao = BaoServer::start_dev().await;
    let dir = tempfile::tempdir().unwrap();
    let mut replace = layer_dirs(dir.path(), &["layer_1", "layer_2", "platform"]);
    replace.extend([
        (
            "url = \"sqlite://sprocket-ops.db\"",
            format!("url = \"sqlite://{}/ops.db\"", dir.path().display()),
        ),
        (
            "binary = \"pulumi\"",
            format!("binary = \"{}\"", standin().display()),
        ),
        ("http://127.0.0.1:8200", bao.url()),
    ]);
    let cfg = config(dir.path(), &replace);
    let out = run(
        &cfg,
        &["doctor"],
        &[
            ("DISCORD_TOKEN", SECRET_VALUE),
            ("GITHUB_TOKEN", "doctor-github-token"),
            ("VAULT_TOKEN", bao.root_token()),
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(!all.contains(SECRET_VALUE), "{all}");
    assert!(!all.contains(bao.root_token()), "{all}");
    assert!(!all.contains("problem:"), "{all}");
    for want in [
        "version` runs:",
        "ok: Docker answers at unix:///var/run/docker.sock",
        &format!("ok: Vault answers at {} (unsealed)", bao.url()),
        "doctor: no problems",
    ] {
        assert!(all.contains(want), "no `{want}` in {all}");
    }
    // The database was neither created nor opened.
    assert!(!dir.path().join("ops.db").exists());
}
