//! Layer deploys from the command line (for when Discord is down): `sprocket-ops deploy`,
//! `history` and `locks` through the real binary, driving the Pulumi stand-in (argv only) against
//! the real Swarm, audited with the OS user; bad input exits 64 before any process starts; a
//! preview with a replace is refused without `--break-glass` and runs with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{docker_service_ps, RemoveByName, ServiceGuard, TestSwarm};

const OS_USER: &str = "oncall-cli-deploy";

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

/// A Swarm with this test's own layer label, two services on `:main`, and a config whose
/// `platform` layer is those services, deployed by `pulumi` from `<dir>/platform`.
struct Setup {
    _swarm: TestSwarm,
    services: Vec<ServiceGuard>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    async fn new(test: &str, pulumi: &Path, resource_knobs: serde_json::Value) -> Setup {
        let swarm = TestSwarm::connect().await;
        let label = format!("sprocket.cli-deploy.{}.{test}", env::run_id());
        let services = swarm.platform_services(&label, "clidep", 2).await;
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), pulumi, &label, &services);
        write_project(&dir.path().join("platform"), &services, resource_knobs);
        Setup {
            _swarm: swarm,
            services,
            dir,
            config,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        run(&self.config, args)
    }

    fn stack_yaml(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("platform/Pulumi.prod.yaml")).unwrap()
    }
}

fn write_config(dir: &Path, pulumi: &Path, label: &str, services: &[ServiceGuard]) -> PathBuf {
    std::fs::copy(
        env::workspace_root().join("permissions.toml"),
        dir.join("permissions.toml"),
    )
    .unwrap();
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    let text = format!(
        r#"permissions_file = "permissions.toml"
layer_order = ["layer_1", "platform"]

[discord]
guild_id = 1
alerts_channel_id = 2
approvals_channel_id = 3
audit_channel_id = 4

[database]
url = "sqlite://{dir}/ops.db"

[docker]
layer_label = "{label}"

[pulumi]
binary = {pulumi:?}

[layers.layer_1]
directory = "{dir}/layer_1"
stack = "layer_1"
services = ["traefik*"]
always_requires_approval = true

[layers.platform]
directory = "{dir}/platform"
stack = "prod"
image_tag_key = "image-tag"
services = {names}
timeout_secs = 300
"#,
        dir = dir.display(),
        pulumi = pulumi.display().to_string(),
        names = serde_json::to_string(&names).unwrap(),
    );
    let path = dir.join("sprocket-ops.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The stand-in's project: `Pulumi.yaml`, the stack config on `main`, and `standin.json` with
/// the services as resources `svc0`, `svc1`, … (`resource_knobs` merged into each).
fn write_project(dir: &Path, services: &[ServiceGuard], resource_knobs: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Pulumi.yaml"), "name: platform\nruntime: nodejs\n").unwrap();
    std::fs::write(
        dir.join("Pulumi.prod.yaml"),
        "config:\n  platform:image-tag: main\n",
    )
    .unwrap();
    let resources: Vec<_> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut r = json!({
                "type": "docker:index/service:Service",
                "name": format!("svc{i}"),
                "service_name": s.name(),
                "image_repo": env::image_repo(),
            });
            for (k, v) in resource_knobs.as_object().into_iter().flatten() {
                r[k] = v.clone();
            }
            r
        })
        .collect();
    std::fs::write(
        dir.join("standin.json"),
        json!({ "resources": resources }).to_string(),
    )
    .unwrap();
}

fn run(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env::bot_binary())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("DISCORD_TOKEN")
        .env_remove("SUDO_USER")
        .env("USER", OS_USER)
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn both(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o))
}

/// Every service runs `:tag` on all its running tasks, waited for generously (the deploy's
/// own verification already waited; this reads the engine independently).
async fn wait_running_tag(services: &[&str], tag: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut wrong = Vec::new();
        for name in services {
            let running: Vec<_> = docker_service_ps(name)
                .into_iter()
                .filter(|t| t.current_state.starts_with("Running"))
                .collect();
            if running.is_empty()
                || !running
                    .iter()
                    .all(|t| t.image.ends_with(&format!(":{tag}")))
            {
                wrong.push(format!("{name}: {running:?}"));
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "should run :{tag}: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The audit rows of the OS user, newest first, read through the CLI.
fn audit_rows(cfg: &Path) -> Vec<serde_json::Value> {
    let out = run(
        cfg,
        &["audit", "--json", "--user", OS_USER, "--limit", "100"],
    );
    assert!(out.status.success(), "{}", both(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_platform_image_v2_converges_the_services_reports_audits_and_lists_history() {
    let s = Setup::new("v2", &standin(), json!({})).await;
    let names: Vec<&str> = s.services.iter().map(|g| g.name()).collect();

    let out = s.run(&["deploy", "platform", "--image", "v2"]);
    assert!(out.status.success(), "{}", both(&out));
    let report = stdout(&out);
    assert!(
        report.contains("deployed platform tag v2 (was main): succeeded"),
        "{}",
        both(&out)
    );
    assert!(report.contains("services converged: 2"), "{report}");
    for n in &names {
        assert!(report.contains(n), "{n} in the report: {report}");
    }
    let deploy_id = report
        .lines()
        .find_map(|l| l.strip_prefix("deploy id: "))
        .expect("the report names the deploy id")
        .to_string();
    // Progress went to stderr: the phases, and the steps of the apply.
    let progress = stderr(&out);
    for phase in [
        "platform: previewing",
        "platform: applying",
        "platform: verifying",
    ] {
        assert!(progress.contains(phase), "{phase}: {progress}");
    }
    assert!(progress.contains("2/2 steps"), "{progress}");
    wait_running_tag(&names, "v2").await;
    assert!(s.stack_yaml().contains("platform:image-tag: v2"));

    let rows = audit_rows(&s.config);
    let row = rows
        .iter()
        .find(|r| r["command"] == "deploy")
        .unwrap_or_else(|| panic!("a deploy audit row: {rows:?}"));
    assert_eq!(row["actor"]["name"], OS_USER, "{row}");
    assert_eq!(row["actor"]["frontend"], "cli", "{row}");
    assert_eq!(row["outcome"], "ok", "{row}");
    assert_eq!(row["params"]["layer"], "platform", "{row}");
    assert_eq!(row["params"]["image"], "v2", "{row}");

    let out = s.run(&["history", "platform", "--json"]);
    assert!(out.status.success(), "{}", both(&out));
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["id"], deploy_id.as_str());
    assert_eq!(history[0]["state"], "succeeded");
    assert_eq!(history[0]["requester"], OS_USER);
    assert_eq!(history[0]["image_before"], "main");
    assert_eq!(history[0]["image_after"], "v2");
    let out = s.run(&["history", "platform"]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains(&deploy_id) && stdout(&out).contains("main -> v2"),
        "{}",
        both(&out)
    );

    let out = s.run(&["locks"]);
    assert!(out.status.success(), "{}", both(&out));
    assert_eq!(stdout(&out), "no layer locks held\n", "released");
    let rows = audit_rows(&s.config);
    for cmd in ["history", "locks"] {
        assert!(
            rows.iter()
                .any(|r| r["command"] == cmd && r["outcome"] == "ok"),
            "{cmd} audited: {rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_of_an_unknown_layer_exits_64_naming_the_closest() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-pulumi");
    let cfg = write_config(dir.path(), &missing, "sprocket.layer", &[]);
    for args in [
        &["deploy", "platfrom", "--image", "v2"][..],
        &["history", "platfrom"][..],
    ] {
        let out = run(&cfg, args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", both(&out));
        assert!(
            stderr(&out).contains("did you mean platform"),
            "{args:?}: {}",
            both(&out)
        );
    }
    // --image only where the layer has an image tag setting.
    let out = run(&cfg, &["deploy", "layer_1", "--image", "v2"]);
    assert_eq!(out.status.code(), Some(64), "{}", both(&out));
    assert!(
        stderr(&out).contains("no image tag setting"),
        "{}",
        both(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_refuses_shell_metacharacters_in_image_before_any_process_starts() {
    // The configured pulumi does not exist: any attempt to start it would fail differently.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-pulumi");
    let s = Setup::new("inject", &missing, json!({})).await;
    let before = s.stack_yaml();
    for tag in [
        ";rm -rf /",
        "$(id)",
        "--yes",
        "v2 --stack other",
        "a|b",
        "`id`",
    ] {
        let out = s.run(&["deploy", "platform", "--image", tag]);
        assert_eq!(out.status.code(), Some(64), "{tag:?}: {}", both(&out));
        let err = stderr(&out);
        assert!(err.contains("refused image tag"), "{tag:?}: {err}");
        assert!(
            !err.contains("no-such-pulumi"),
            "{tag:?}: no process: {err}"
        );
    }
    assert_eq!(s.stack_yaml(), before, "no config set ran");
    // The control: a valid tag does try to start the configured pulumi, and fails for that.
    let out = s.run(&["deploy", "platform", "--image", "v2"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    assert!(
        stderr(&out).contains("the Pulumi CLI could not be started"),
        "{}",
        both(&out)
    );
    let names: Vec<&str> = s.services.iter().map(|g| g.name()).collect();
    wait_running_tag(&names, "main").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_with_a_replace_is_refused_without_break_glass_and_runs_with_it() {
    let s = Setup::new("replace", &standin(), json!({ "force_replace": true })).await;
    let _cleanup: Vec<RemoveByName> = s
        .services
        .iter()
        .map(|g| RemoveByName(g.name().to_string()))
        .collect();
    let names: Vec<&str> = s.services.iter().map(|g| g.name()).collect();

    let out = s.run(&["deploy", "platform", "--image", "v2"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = stderr(&out);
    assert!(
        err.contains("needs a second engineer's approval")
            && err.contains("Nothing was applied")
            && err.contains("--break-glass"),
        "{err}"
    );
    assert!(
        s.stack_yaml().contains("platform:image-tag: main"),
        "the tag was put back"
    );
    wait_running_tag(&names, "main").await;
    for g in &s.services {
        let ids: Vec<String> = docker_service_ls_ids(g.name());
        assert_eq!(ids, vec![g.id().to_string()], "not replaced");
    }

    let out = s.run(&[
        "deploy",
        "platform",
        "--image",
        "v2",
        "--break-glass",
        "Discord is down during the incident",
    ]);
    assert!(out.status.success(), "{}", both(&out));
    assert!(
        stdout(&out).contains("deployed platform tag v2"),
        "{}",
        both(&out)
    );
    assert!(stdout(&out).contains("2 to replace"), "{}", both(&out));
    wait_running_tag(&names, "v2").await;
    for g in &s.services {
        let ids = docker_service_ls_ids(g.name());
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_ne!(ids[0], g.id(), "{} was replaced", g.name());
    }

    let rows = audit_rows(&s.config);
    let bg = rows
        .iter()
        .find(|r| r["command"] == "break_glass.layer_deploy_destructive")
        .unwrap_or_else(|| panic!("a break-glass audit row: {rows:?}"));
    assert_eq!(bg["outcome"], "ok", "{bg}");
    assert_eq!(
        bg["params"]["break_glass"], "Discord is down during the incident",
        "{bg}"
    );
    let deploys: Vec<_> = rows.iter().filter(|r| r["command"] == "deploy").collect();
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    assert_eq!(deploys[0]["outcome"], "ok", "newest first");
    assert_eq!(deploys[1]["outcome"], "denied", "the refusal");
}

/// The id of the service named `name` now, if there is one.
fn docker_service_ls_ids(name: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["service", "inspect", "--format", "{{.ID}}", name])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Merges top-level knobs (`step_delay_ms`, …) into the stand-in's `standin.json`.
fn set_spec_knobs(s: &Setup, knobs: serde_json::Value) {
    let path = s.dir.path().join("platform/standin.json");
    let mut spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (k, v) in knobs.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    std::fs::write(&path, spec.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_deploy_ctrl_c_cancels_after_the_step_in_flight_and_exits_1() {
    let s = Setup::new("ctrlc", &standin(), json!({})).await;
    set_spec_knobs(&s, json!({ "step_delay_ms": 3000 }));
    let mut child = Command::new(env::bot_binary())
        .arg("--config")
        .arg(&s.config)
        .args(["deploy", "platform", "--image", "v2"])
        .env_remove("DISCORD_TOKEN")
        .env("USER", OS_USER)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    // stderr line by line, on a thread (the progress lines).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let in_flight = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no resource in flight: {seen:?}"));
        seen.push(line.clone());
        if let Some((_, res)) = line.split_once(", now ") {
            break res.trim().to_string();
        }
    };
    // Ctrl-C, as a terminal sends it; an impatient second one must not hurt.
    for _ in 0..2 {
        let kill = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after Ctrl-C"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(1), "stdout {out}\nstderr {seen:?}");
    assert!(out.starts_with("cancelled"), "{out}");
    assert!(
        seen.iter()
            .any(|l| l.contains("cancelling the deploy of platform")),
        "{seen:?}"
    );

    // The step in flight finished; the next one did not start.
    let index: usize = in_flight
        .strip_prefix("svc")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("a stand-in resource: {in_flight}"));
    let names_where = |flight: bool| -> Vec<&str> {
        s.services
            .iter()
            .enumerate()
            .filter(|(i, _)| (*i == index) == flight)
            .map(|(_, g)| g.name())
            .collect()
    };
    wait_running_tag(&names_where(true), "v2").await;
    wait_running_tag(&names_where(false), "main").await;

    let out = s.run(&["history", "platform", "--json"]);
    assert!(out.status.success(), "{}", both(&out));
    let history: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history[0]["state"], "cancelled", "{history:?}");
    let out = s.run(&["locks"]);
    assert_eq!(stdout(&out), "no layer locks held\n", "{}", both(&out));
    let rows = audit_rows(&s.config);
    let row = rows
        .iter()
        .find(|r| r["command"] == "deploy")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row["outcome"], "error", "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starting_during_a_cli_deploy_keeps_its_lock_and_does_not_interrupt_it() {
    let s = Setup::new("live", &standin(), json!({})).await;
    set_spec_knobs(&s, json!({ "step_delay_ms": 3000 }));
    let mut child = Command::new(env::bot_binary())
        .arg("--config")
        .arg(&s.config)
        .args(["deploy", "platform", "--image", "v2"])
        .env_remove("DISCORD_TOKEN")
        .env("USER", OS_USER)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no resource in flight: {seen:?}"));
        seen.push(line.clone());
        if line.contains(", now ") {
            break;
        }
    }

    // The bot starts now, on the same store: its start-up recovery, as `serve` runs it.
    let (cfg, perms) = sprocket_ops::app::load_config(&s.config).unwrap_or_else(|e| panic!("{e}"));
    let secrets =
        sprocket_ops::app::Secrets::resolve(&cfg, false).unwrap_or_else(|e| panic!("{e}"));
    let ops =
        sprocket_ops::app::build_ops(&cfg, perms, &secrets, sprocket_ops::app::Purpose::Serve)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let interrupted = ops.deployer.recover_interrupted().await.unwrap();
    assert!(
        interrupted.is_empty(),
        "a live CLI deploy was marked interrupted: {interrupted:?}"
    );
    let locks = ops.deployer.locks().await.unwrap();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(
        (locks[0].layer.as_str(), locks[0].owner.as_str()),
        ("platform", OS_USER)
    );
    assert!(
        locks[0].process.contains(&format!(":{}:", child.id())),
        "the lock names the CLI's process: {:?}",
        locks[0].process
    );
    let running = ops.deployer.history("platform", 1).await.unwrap();
    assert_eq!(running[0].state, ops_core::deploy::DeployState::Running);

    // The CLI deploy ends as if nothing had happened.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "the deploy hangs");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert!(status.success(), "{seen:?}");
    let h = ops.deployer.history("platform", 1).await.unwrap();
    assert_eq!(h[0].id, running[0].id);
    assert_eq!(
        h[0].state,
        ops_core::deploy::DeployState::Succeeded,
        "{h:?}"
    );
    assert!(ops.deployer.locks().await.unwrap().is_empty());
}
