//! `/deploy platform image:v2` end to end: the real bot through the fake Discord drives the
//! Pulumi stand-in (argv only), which applies the change to the real Swarm; the message follows
//! the deploy and reports it; a second deploy of the same layer is refused naming the holder;
//! injected arguments are refused before any process starts; history records the deploy; a
//! failed apply shows its redacted diagnostics and its "Request rollback" button rolls back
//! after a second engineer's approval; a bot killed mid-deploy leaves no stuck lock; Discord
//! failing mid-deploy neither stops the deploy nor loses its final report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ops_core::deploy::DeployState;
use ops_core::redact::MASK;
use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot, APPROVALS, AUDIT};
use sprocket_ops_tests::env;
use sprocket_ops_tests::fake_discord::{Message, Response, TestUser};
use sprocket_ops_tests::outage::{SwitchProxy, Upstream};
use sprocket_ops_tests::swarm::{docker_service_ps, ServiceGuard, TestSwarm};

pub(crate) const T: Duration = Duration::from_secs(120);

pub(crate) fn standin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = env::workspace_root().join("target/debug/pulumi");
    assert!(p.is_file(), "the pulumi stand-in is missing: run `cargo build -p pulumi-standin` (scripts/test.sh does)");
    p
}

pub(crate) fn write_project(dir: &Path, services: &[&ServiceGuard], knobs: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Pulumi.yaml"), "name: platform\nruntime: nodejs\n").unwrap();
    std::fs::write(
        dir.join("Pulumi.prod.yaml"),
        "config:\n  platform:image-tag: main\n",
    )
    .unwrap();
    write_spec(dir, services, knobs);
}

/// `standin.json`: the services as resources `svc0`, `svc1`, … plus the knobs.
pub(crate) fn write_spec(dir: &Path, services: &[&ServiceGuard], knobs: serde_json::Value) {
    let resources: Vec<_> = services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({ "type": "docker:index/service:Service", "name": format!("svc{i}"), "service_name": s.name(), "image_repo": env::image_repo() })
        })
        .collect();
    let mut spec = json!({ "resources": resources });
    for (k, v) in knobs.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    std::fs::write(dir.join("standin.json"), spec.to_string()).unwrap();
}

pub(crate) async fn setup(
    test: &str,
    knobs: serde_json::Value,
) -> (TestSwarm, Vec<ServiceGuard>, TestBot) {
    let swarm = TestSwarm::connect().await;
    // A label of this test's own: concurrent tests never see each other's services.
    let label = format!("sprocket.deploy-e2e.{}.{test}", env::run_id());
    let guards = swarm.platform_services(&label, "dep", 2).await;
    let names: Vec<String> = guards.iter().map(|g| g.name().to_string()).collect();
    let bot = TestBot::start_with(BotOptions {
        pulumi_binary: Some(standin()),
        layer_label: Some(label),
        platform_services: Some(names),
        ..Default::default()
    })
    .await;
    let refs: Vec<&ServiceGuard> = guards.iter().collect();
    write_project(&bot.dir.path().join("platform"), &refs, knobs);
    (swarm, guards, bot)
}

pub(crate) fn deploy_opts(tag: &str) -> serde_json::Value {
    json!([{ "name": "platform", "type": 1, "options": [{ "name": "image", "value": tag }] }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_platform_image_v2_sets_the_tag_applies_verifies_and_reports() {
    let (_swarm, guards, bot) = setup("v2", json!({})).await;
    let dev = bot.person("dana", &["deployer"]).await;
    let deploy = bot.discord.invoke(&dev, "deploy", deploy_opts("v2")).await;
    let r = deploy
        .wait_final(T, |r| {
            r.text().contains("succeeded") || r.text().contains("failed")
        })
        .await
        .unwrap();
    let text = r.text();
    assert!(
        text.contains("Deploy platform: succeeded") && text.contains("main → v2"),
        "{text}"
    );
    // No progress page ever claimed the ending: that is the final report's alone.
    let premature: Vec<String> = bot
        .discord
        .requests()
        .into_iter()
        .filter(|q| q.path.contains(deploy.token()))
        .filter_map(|q| q.body.map(|b| b.to_string()))
        .filter(|b| b.contains(r#""name":"Phase""#) && b.contains(r#""value":"succeeded""#))
        .collect();
    assert!(premature.is_empty(), "{premature:?}");
    let yaml = std::fs::read_to_string(bot.dir.path().join("platform/Pulumi.prod.yaml")).unwrap();
    assert!(yaml.contains("image-tag: v2"), "{yaml}");
    for g in &guards {
        let running: Vec<_> = docker_service_ps(g.name())
            .into_iter()
            .filter(|t| t.current_state.starts_with("Running"))
            .collect();
        assert!(
            !running.is_empty() && running.iter().all(|t| t.image.ends_with(":v2")),
            "{running:?}"
        );
    }
    let r = bot
        .discord
        .invoke(
            &dev,
            "history",
            json!([{ "name": "layer", "value": "platform" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("succeeded"))
        .await
        .unwrap();
    assert!(
        r.text().contains("main → v2") && r.text().contains("dana"),
        "{}",
        r.text()
    );
    assert_eq!(
        bot.metric("sprocket_ops_deploys_total{layer=\"platform\",result=\"succeeded\"}")
            .await,
        1.0,
        "{}",
        bot.metrics().await
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deploy_of_the_same_layer_is_refused_naming_the_holder() {
    let (_swarm, _guards, bot) = setup("lock", json!({ "step_delay_ms": 6000 })).await;
    let dev = bot.person("dana", &["deployer"]).await;
    let other = bot.person("otto", &["deployer"]).await;
    let first = bot.discord.invoke(&dev, "deploy", deploy_opts("v2")).await;
    first
        .wait_final(T, |r| {
            r.text().contains("applying") || r.text().contains("previewing")
        })
        .await
        .unwrap();
    let r = bot
        .discord
        .invoke(&other, "deploy", deploy_opts("v2"))
        .await
        .wait_final(T, |r| r.text().contains("failed"))
        .await
        .unwrap();
    assert!(
        r.text().contains("dana"),
        "names who holds the lock: {}",
        r.text()
    );
    let done = first
        .wait_final(T, |r| {
            r.text().contains("succeeded") || r.text().contains(": failed")
        })
        .await
        .unwrap();
    assert!(done.text().contains("succeeded"), "{}", done.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_arguments_are_refused_before_any_process_starts() {
    let (_swarm, _guards, bot) = setup("inject", json!({})).await;
    let dev = bot.person("dana", &["deployer"]).await;
    for tag in ["--yes", ";rm -rf /", "$(id)", "v2 --stack other", "a\nb"] {
        let r = bot
            .discord
            .invoke(&dev, "deploy", deploy_opts(tag))
            .await
            .wait_final(T, |r| {
                r.text().contains("failed") || r.text().contains("refused")
            })
            .await
            .unwrap();
        assert!(r.text().contains("refused"), "{tag:?}: {}", r.text());
    }
    let yaml = std::fs::read_to_string(bot.dir.path().join("platform/Pulumi.prod.yaml")).unwrap();
    assert!(yaml.contains("image-tag: main"), "nothing ran: {yaml}");
    bot.discord.assert_no_violations();
}

pub(crate) fn platform_dir(bot: &TestBot) -> PathBuf {
    bot.dir.path().join("platform")
}

/// Every running task of every service runs `:tag`.
pub(crate) fn assert_running_tag(guards: &[ServiceGuard], tag: &str) {
    for g in guards {
        let running: Vec<_> = docker_service_ps(g.name())
            .into_iter()
            .filter(|t| t.current_state.starts_with("Running"))
            .collect();
        assert!(
            !running.is_empty()
                && running
                    .iter()
                    .all(|t| t.image.ends_with(&format!(":{tag}"))),
            "{} should run :{tag}: {running:?}",
            g.name()
        );
    }
}

/// The button of an approval message whose custom id has `kind` as its third part.
pub(crate) async fn click(bot: &TestBot, who: &TestUser, m: &Message, custom_id: &str) -> Response {
    bot.discord
        .click(who, m, custom_id)
        .await
        .response(T)
        .await
        .unwrap()
}

pub(crate) async fn deploy_until_done(bot: &TestBot, who: &TestUser, tag: &str) -> Response {
    bot.discord
        .invoke(who, "deploy", deploy_opts(tag))
        .await
        .wait_final(T, |r| {
            r.text().contains(": succeeded") || r.text().contains(": failed")
        })
        .await
        .unwrap()
}

/// The secrets planted in the failing apply's provider error: the bot's own Discord token (a
/// literal the redactor knows) and a `password=` pair (a pattern it knows).
const PLANTED_PASSWORD: &str = "hunter2-deploy-e2e";
const BOT_TOKEN: &str = "test-discord-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_apply_shows_redacted_diagnostics_and_its_rollback_button_rolls_back_after_approval(
) {
    let (swarm, guards, bot) = setup("rollback", json!({})).await;
    let dana = bot.person("dana", &["deployer"]).await;
    let pat = bot.person("pat", &["deployer"]).await;
    let vic = bot.person("vic", &["viewer"]).await;
    let r = deploy_until_done(&bot, &dana, "v2").await;
    assert!(
        r.text().contains("Deploy platform: succeeded"),
        "{}",
        r.text()
    );
    assert_running_tag(&guards, "v2");

    // The next deploy fails on the second resource, after the first one changed.
    let refs: Vec<&ServiceGuard> = guards.iter().collect();
    write_spec(
        &platform_dir(&bot),
        &refs,
        json!({
            "fail_resource": "svc1",
            "fail_message": format!(
                "pulling {}:main: unauthorized: password={PLANTED_PASSWORD} (auth {BOT_TOKEN})",
                env::image_repo()
            ),
        }),
    );
    let failed = deploy_until_done(&bot, &dana, "main").await;
    let text = failed.text();
    eprintln!("failed deploy as shown in Discord:\n{text}");
    assert!(text.contains("Deploy platform: failed"), "{text}");
    assert!(text.contains("Diagnostics"), "{text}");
    assert!(
        text.contains(&format!(
            "svc1: pulling {}:main: unauthorized: password={MASK}",
            env::image_repo()
        )),
        "the provider error is shown, redacted: {text}"
    );
    assert!(text.contains("update failed"), "{text}");
    for secret in [PLANTED_PASSWORD, BOT_TOKEN] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
        let leaked: Vec<_> = bot
            .discord
            .requests()
            .into_iter()
            .filter(|q| {
                q.body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains(secret))
            })
            .map(|q| q.path)
            .collect();
        assert!(leaked.is_empty(), "{secret} reached Discord: {leaked:?}");
    }
    // The failed apply changed the first service: the Swarm is now mixed.
    for g in &guards {
        swarm
            .wait_converged(g.name(), Duration::from_secs(90))
            .await
            .unwrap();
    }
    assert_running_tag(&guards[..1], "main");
    assert_running_tag(&guards[1..], "v2");

    let report = failed.original.clone().expect("the deploy message");
    let button = report
        .custom_ids()
        .into_iter()
        .find(|id| id == "deployrb:platform")
        .unwrap_or_else(|| panic!("no Request rollback button: {:?}", report.custom_ids()));
    // The click is acknowledged first (ephemerally), then answered by an edit.
    let answered = |r: &Response| !r.text().is_empty();
    let r = bot
        .discord
        .click(&vic, &report, &button)
        .await
        .wait_final(T, answered)
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("Not allowed"),
        "a viewer cannot request a rollback: {}",
        r.text()
    );
    let r = bot
        .discord
        .click(&dana, &report, &button)
        .await
        .wait_final(T, answered)
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("Rollback requested"),
        "{}",
        r.text()
    );
    let request = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.text().contains("back to image `v2`") && !m.custom_ids().is_empty(),
            T,
        )
        .await
        .expect("the rollback request is posted in the approvals channel");
    assert!(request.text().contains("dana"), "{}", request.text());
    // Approvers see what will change, and the full redacted preview as a `.txt` file.
    let shown = request.text();
    assert!(shown.contains("What will change"), "{shown}");
    assert!(
        shown.contains("infra checkout: not a git checkout"),
        "{shown}"
    );
    assert!(shown.contains("image tag: main → v2"), "{shown}");
    assert!(
        shown.contains(
            "update svc0 (docker:index/service:Service): taskSpec.containerSpec.image (update)"
        ),
        "changed resources and properties: {shown}"
    );
    let (file, body) = request
        .attachments
        .iter()
        .find(|(name, _)| name.ends_with(".txt"))
        .unwrap_or_else(|| panic!("no preview attached: {:?}", request.attachments));
    assert!(file.starts_with("preview-layer_rollback-"), "{file}");
    let body = String::from_utf8_lossy(body);
    assert!(
        body.contains("Steps:") && body.contains("urn:pulumi:prod::platform::"),
        "{body}"
    );
    assert!(
        body.contains("changed: taskSpec.containerSpec.image (update)"),
        "{body}"
    );
    assert!(body.contains("(values are not shown)"), "{body}");
    for secret in [PLANTED_PASSWORD, BOT_TOKEN] {
        assert!(!body.contains(secret), "{secret} in the attachment: {body}");
    }
    assert_running_tag(&guards[..1], "main");

    let approve = request.approval_button("a");
    let r = click(&bot, &dana, &request, &approve).await;
    assert!(
        r.ephemeral && r.text().contains("own request"),
        "the requester never approves: {}",
        r.text()
    );
    let r = click(&bot, &pat, &request, &approve).await;
    let confirm_msg = r.original.clone().expect("a confirmation");
    let confirm = confirm_msg.approval_button("c");
    let done = bot
        .discord
        .click(&pat, &confirm_msg, &confirm)
        .await
        .wait_final(T, |r| {
            r.text().contains("Done")
                || r.text().contains("Failed")
                || r.text().contains("Not executed")
        })
        .await
        .unwrap();
    assert!(
        done.text().contains("Done") && done.text().contains("tag `v2`"),
        "{}",
        done.text()
    );
    assert_running_tag(&guards, "v2");
    let yaml = std::fs::read_to_string(platform_dir(&bot).join("Pulumi.prod.yaml")).unwrap();
    assert!(yaml.contains("image-tag: v2"), "{yaml}");
    let h = bot
        .discord
        .invoke(
            &vic,
            "history",
            json!([{ "name": "layer", "value": "platform" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Deploys of platform"))
        .await
        .unwrap();
    let text = h.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("→")).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains("succeeded") && lines[0].contains("main → v2"),
        "the rollback is the newest deploy: {lines:?}"
    );
    assert!(
        lines[0].contains("approved by pat"),
        "history names who approved: {lines:?}"
    );
    assert!(
        lines[1].contains("failed") && lines[1].contains("v2 → main"),
        "{lines:?}"
    );
    bot.discord.assert_no_violations();
}

/// The stand-in's backend lock of the platform stack (a file while `up` runs, as pulumi's
/// self-managed backends have), holding the pid of the `pulumi` that took it.
fn standin_lock(bot: &TestBot) -> PathBuf {
    platform_dir(bot).join(".pulumi/locks/platform/prod/standin.json")
}

fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // `pid (comm) Z …`: a zombie is dead, only not reaped yet.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// `kill -KILL <pid>` (argv, no shell) and wait until the process is gone.
async fn kill_and_wait(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -KILL {pid}: {status}");
    for _ in 0..200 {
        if process_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} still runs 10 s after SIGKILL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_killed_mid_deploy_leaves_no_stuck_lock_after_its_restart() {
    // 6 s per step: the apply is still running when the bot is killed.
    let (_swarm, guards, mut bot) = setup("crash", json!({ "step_delay_ms": 6000 })).await;
    let dana = bot.person("dana", &["deployer"]).await;
    let otto = bot.person("otto", &["deployer"]).await;
    let vic = bot.person("vic", &["viewer"]).await;

    // The in-process bot cannot be killed like a process (its tasks would go on running), so
    // this test runs the real `sprocket-ops serve` binary on the same config and database.
    bot.stop().await;
    let connections = bot.discord.gateway_connections();
    let log_path = bot.dir.path().join("serve.log");
    let mut child = tokio::process::Command::new(env::bot_binary())
        .arg("--config")
        .arg(bot.config_path())
        .arg("serve")
        .env_remove("DISCORD_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning sprocket-ops serve");
    let serve_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    if let Err(e) = bot
        .discord
        .wait_gateway_connections(connections + 1, T)
        .await
    {
        panic!("the bot process did not connect: {e}\n{}", serve_log());
    }
    let first = bot.discord.invoke(&dana, "deploy", deploy_opts("v2")).await;
    if let Err(e) = first.wait_final(T, |r| r.text().contains("applying")).await {
        panic!("{e}\n{}", serve_log());
    }
    let lock = standin_lock(&bot);
    let mut pulumi_pid = None;
    for _ in 0..400 {
        let holder: serde_json::Value = std::fs::read_to_string(&lock)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if let Some(pid) = holder["pid"].as_u64() {
            pulumi_pid = Some(pid as u32);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pulumi_pid = pulumi_pid.expect("pulumi up runs and holds its stack lock");
    assert!(!process_gone(pulumi_pid));

    // The crash: the bot and its pulumi die at once, as when the bot's container dies.
    child.kill().await.unwrap();
    let _ = child.wait().await;
    kill_and_wait(pulumi_pid).await;
    assert!(lock.exists(), "the killed pulumi left its backend lock");

    // Restart (in-process) on the same database: recovery marks the deploy interrupted,
    // releases the layer lock and says so in the audit channel.
    bot.restart().await;
    let told = bot
        .discord
        .wait_channel_message(
            AUDIT,
            |m| m.text().contains("was interrupted by a restart"),
            T,
        )
        .await
        .expect("the restart announces the interrupted deploy");
    assert!(
        told.text().contains("`platform`") && told.text().contains("dana"),
        "{}",
        told.text()
    );
    // The deploy's own message says so too: edited with the bot token, its buttons gone.
    let own = first
        .wait_final(T, |r| r.text().contains("Deploy platform: interrupted"))
        .await
        .expect("the interrupted deploy's own message is edited after the restart");
    assert!(
        own.text().contains("pulumi") && own.text().contains("dana"),
        "{}",
        own.text()
    );
    assert!(
        own.original
            .as_ref()
            .is_some_and(|m| m.custom_ids().is_empty()),
        "no buttons are left on the interrupted deploy's message"
    );
    let locks = bot
        .discord
        .invoke(&vic, "locks", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        locks.text().contains("No layer is locked"),
        "no stuck lock: {}",
        locks.text()
    );
    let h = bot
        .discord
        .invoke(
            &vic,
            "history",
            json!([{ "name": "layer", "value": "platform" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Deploys of platform"))
        .await
        .unwrap();
    assert!(
        h.text().contains("interrupted") && h.text().contains("dana"),
        "{}",
        h.text()
    );

    // A new deploy runs: pulumi's own lock, left by the killed process, is reported plainly.
    let r = deploy_until_done(&bot, &otto, "v2").await;
    assert!(
        r.text().contains("Deploy platform: failed")
            && r.text()
                .contains("stack `prod` is locked by another update"),
        "{}",
        r.text()
    );
    let locks = bot
        .discord
        .invoke(&vic, "locks", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        locks.text().contains("No layer is locked"),
        "{}",
        locks.text()
    );

    // Once the operator clears pulumi's lock (`pulumi cancel`), the deploy goes through.
    std::fs::remove_file(&lock).unwrap();
    let refs: Vec<&ServiceGuard> = guards.iter().collect();
    write_spec(&platform_dir(&bot), &refs, json!({}));
    let r = deploy_until_done(&bot, &otto, "v2").await;
    assert!(
        r.text().contains("Deploy platform: succeeded"),
        "{}",
        r.text()
    );
    assert_running_tag(&guards, "v2");
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_failing_mid_deploy_neither_stops_it_nor_loses_its_final_report() {
    // 6 s per step: Discord goes away while pulumi applies.
    let (_swarm, guards, mut bot) = setup("edits", json!({ "step_delay_ms": 6000 })).await;
    let dana = bot.person("dana", &["deployer"]).await;
    let vic = bot.person("vic", &["viewer"]).await;

    // The bot's REST calls go through a front this test can take down; the gateway stays up.
    let fake_url = bot.discord.api_base_url();
    let fake_addr: std::net::SocketAddr = fake_url
        .trim_start_matches("http://")
        .parse()
        .expect("the fake's REST address");
    let front = SwitchProxy::start(Upstream::Tcp(fake_addr)).await;
    bot.stop().await;
    let config = std::fs::read_to_string(bot.config_path()).unwrap();
    let needle = format!("api_base_url = \"{fake_url}\"");
    assert!(config.contains(&needle), "{config}");
    std::fs::write(
        bot.config_path(),
        config.replace(&needle, &format!("api_base_url = \"{}\"", front.http_url())),
    )
    .unwrap();
    let connections = bot.discord.gateway_connections();
    bot.restart().await;
    bot.discord
        .wait_gateway_connections(connections + 1, T)
        .await
        .unwrap();

    let deploy = bot.discord.invoke(&dana, "deploy", deploy_opts("v2")).await;
    deploy
        .wait_final(T, |r| r.text().contains("applying"))
        .await
        .unwrap();
    let before = front.accepted();
    front.down();
    // Down until the bot has tried Discord again (a progress edit) and failed.
    for _ in 0..600 {
        if front.accepted() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        front.accepted() > before,
        "the bot did not try to edit the deploy message while Discord was down"
    );
    // Still down when the deploy ends: it ends all the same, and its report waits for Discord.
    let store = ops_core::store::connect(&bot.database_url(), None)
        .await
        .unwrap();
    let mut ended = None;
    for _ in 0..1200 {
        let last = store.list_deploys(Some("platform"), 1).await.unwrap();
        if let Some(d) = last.first().filter(|d| d.state != DeployState::Running) {
            ended = Some(d.state);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended, Some(DeployState::Succeeded), "the deploy went on");
    let tried = front.accepted();
    for _ in 0..600 {
        if front.accepted() > tried {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        front.accepted() > tried,
        "the bot did not retry its final report while Discord was down"
    );
    front.up();

    let done = deploy
        .wait_final(T, |r| {
            r.text().contains(": succeeded") || r.text().contains(": failed")
        })
        .await
        .unwrap();
    assert!(
        done.text().contains("Deploy platform: succeeded"),
        "{}",
        done.text()
    );
    assert_running_tag(&guards, "v2");
    let locks = bot
        .discord
        .invoke(&vic, "locks", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        locks.text().contains("No layer is locked"),
        "{}",
        locks.text()
    );
    bot.discord.assert_no_violations();
}
