//! `/deploy platform image:v2` end to end: the real bot through the fake Discord drives the
//! Pulumi stand-in (argv only), which applies the change to the real Swarm; the message follows
//! the deploy and reports it; a second deploy of the same layer is refused naming the holder;
//! injected arguments are refused before any process starts; history records the deploy.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot};
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{docker_service_ps, ServiceGuard, TestService, TestSwarm};

const T: Duration = Duration::from_secs(120);

fn standin() -> PathBuf {
    if let Some(p) = std::env::var_os("SPROCKET_TEST_PULUMI").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = env::workspace_root().join("target/debug/pulumi");
    assert!(p.is_file(), "the pulumi stand-in is missing: run `cargo build -p pulumi-standin` (scripts/test.sh does)");
    p
}

fn write_project(dir: &Path, services: &[&ServiceGuard], knobs: serde_json::Value) {
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
            json!({ "type": "docker:index/service:Service", "name": format!("svc{i}"), "service_name": s.name(), "image_repo": env::image_repo() })
        })
        .collect();
    let mut spec = json!({ "resources": resources });
    for (k, v) in knobs.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    std::fs::write(dir.join("standin.json"), spec.to_string()).unwrap();
}

async fn setup(test: &str, knobs: serde_json::Value) -> (TestSwarm, Vec<ServiceGuard>, TestBot) {
    let swarm = TestSwarm::connect().await;
    // A label of this test's own: concurrent tests never see each other's services.
    let label = format!("sprocket.deploy-e2e.{}.{test}", env::run_id());
    let mut guards = Vec::new();
    for _ in 0..2 {
        guards.push(
            swarm
                .create_service(TestService::new("dep", "main").label(&label, "platform"))
                .await,
        );
    }
    for g in &guards {
        swarm
            .wait_converged(g.name(), Duration::from_secs(60))
            .await
            .unwrap();
    }
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

fn deploy_opts(tag: &str) -> serde_json::Value {
    json!([{ "name": "platform", "type": 1, "options": [{ "name": "image", "value": tag }] }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_platform_image_v2_sets_the_tag_applies_verifies_and_reports() {
    let (_swarm, guards, bot) = setup("v2", json!({})).await;
    let dev = bot.person("dana", &["deployer"]).await;
    let r = bot
        .discord
        .invoke(&dev, "deploy", deploy_opts("v2"))
        .await
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
