//! Issue 12, "one person must not change a protected layer by another command", attacked
//! through the fake Discord on the real Swarm: each test is an attack that worked before and
//! is now refused or turned into an approval request. The test bot's `layer_1` has
//! `always_requires_approval = true`, as the shipped configuration does.

use std::time::Duration;

use serde_json::{json, Value};
use sprocket_ops_tests::bot::{BotOptions, TestBot, APPROVALS};
use sprocket_ops_tests::fake_discord::{Message, Response, TestUser};
use sprocket_ops_tests::swarm::{ServiceGuard, TestService, TestSwarm};

const T: Duration = Duration::from_secs(30);
const ROLLOUT: Duration = Duration::from_secs(90);

async fn service_in(swarm: &TestSwarm, spec: TestService, layer: &str) -> ServiceGuard {
    let g = swarm
        .create_service(spec.label("sprocket.layer", layer))
        .await;
    swarm
        .wait_converged(g.name(), Duration::from_secs(60))
        .await
        .unwrap();
    g
}

async fn spec_image(swarm: &TestSwarm, name: &str) -> String {
    swarm
        .inspect(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.task_template)
        .and_then(|t| t.container_spec)
        .and_then(|c| c.image)
        .unwrap_or_default()
}

async fn force_update(swarm: &TestSwarm, name: &str) -> u64 {
    swarm
        .inspect(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.task_template)
        .and_then(|t| t.force_update)
        .unwrap_or(0)
}

/// Invokes and waits for the first answer that is not "thinking…".
async fn answer(bot: &TestBot, who: &TestUser, command: &str, options: Value) -> Response {
    bot.discord
        .invoke(who, command, options)
        .await
        .wait_final(T, |r| !r.text().is_empty())
        .await
        .unwrap()
}

fn svc_opt(name: &str) -> Value {
    json!({ "name": "service", "value": name })
}

/// The approval message posted for a request about `needle`.
async fn approval_message(bot: &TestBot, needle: &str) -> Message {
    bot.discord
        .wait_channel_message(
            APPROVALS,
            |m| m.text().contains(needle) && !m.custom_ids().is_empty(),
            T,
        )
        .await
        .expect("the request is posted in the approvals channel")
}

/// `approver` approves and confirms; returns the final answer.
async fn approve(bot: &TestBot, approver: &TestUser, msg: &Message) -> Response {
    let r = bot
        .discord
        .click(approver, msg, &msg.approval_button("a"))
        .await
        .response(T)
        .await
        .unwrap();
    let confirm = r.original.clone().expect("the confirmation message");
    bot.discord
        .click(approver, &confirm, &confirm.approval_button("c"))
        .await
        .wait_final(T, |r| {
            r.text().contains("Done") || r.text().contains("Failed")
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deployer_bumping_a_layer_1_service_gets_an_admin_approval_request_not_a_rollout() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("vault-bump", "main"), "layer_1").await;
    let bot = TestBot::start().await;
    let dev = bot.person("dev", &["deployer"]).await;
    let opal = bot.person("opal", &["operator"]).await;
    let ada = bot.person("ada", &["admin"]).await;
    let r = bot
        .discord
        .invoke(
            &dev,
            "bump",
            json!([svc_opt(svc.name()), { "name": "tag", "value": "v2" }]),
        )
        .await
        .wait_final(T, |r| {
            r.text().contains("Approval requested") || r.text().contains("completed")
        })
        .await
        .unwrap();
    assert!(
        r.text().contains("Approval requested from admin"),
        "a layer_1 bump is an approval request: {}",
        r.text()
    );
    assert!(
        spec_image(&swarm, svc.name()).await.ends_with(":main")
            || spec_image(&swarm, svc.name()).await.contains(":main@"),
        "nothing ran before the approval"
    );
    let msg = approval_message(&bot, svc.name()).await;
    assert!(msg.text().contains(":v2"), "{}", msg.text());
    // An operator (not an approver of protected_bump) cannot approve it.
    let r = bot
        .discord
        .click(&opal, &msg, &msg.approval_button("a"))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("do not allow"),
        "{}",
        r.text()
    );
    let done = approve(&bot, &ada, &msg).await;
    assert!(done.text().contains("Done"), "{}", done.text());
    assert!(
        spec_image(&swarm, svc.name()).await.contains(":v2"),
        "the approved bump ran"
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_restarting_vault_gets_an_approval_request_and_nothing_restarts() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("vault-rst", "main"), "layer_1").await;
    let bot = TestBot::start().await;
    let opal = bot.person("opal", &["operator"]).await;
    let ada = bot.person("ada", &["admin"]).await;
    let before = force_update(&swarm, svc.name()).await;
    let r = bot
        .discord
        .invoke(&opal, "restart", json!([svc_opt(svc.name())]))
        .await
        .wait_final(T, |r| {
            r.text().contains("Approval requested") || r.text().contains("completed")
        })
        .await
        .unwrap();
    assert!(
        r.text().contains("Approval requested from admin"),
        "{}",
        r.text()
    );
    assert_eq!(
        force_update(&swarm, svc.name()).await,
        before,
        "not restarted"
    );
    let msg = approval_message(&bot, svc.name()).await;
    assert!(msg.text().contains("restart"), "{}", msg.text());
    let done = approve(&bot, &ada, &msg).await;
    assert!(done.text().contains("Done"), "{}", done.text());
    assert_eq!(force_update(&swarm, svc.name()).await, before + 1);
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_operator_scaling_a_layer_1_service_up_or_to_zero_gets_an_admin_approval_request() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("traefik-scl", "main"), "layer_1").await;
    let bot = TestBot::start().await;
    let opal = bot.person("opal", &["operator"]).await;
    let _ada = bot.person("ada", &["admin"]).await;
    for n in [2, 0] {
        let r = bot
            .discord
            .invoke(
                &opal,
                "scale",
                json!([svc_opt(svc.name()), { "name": "replicas", "value": n }]),
            )
            .await
            .wait_final(T, |r| {
                r.text().contains("Approval requested") || r.text().contains("completed")
            })
            .await
            .unwrap();
        assert!(
            r.text().contains("Approval requested from admin"),
            "scale to {n}: {}",
            r.text()
        );
        assert!(
            r.text().contains(&format!("to {n} replicas")),
            "{}",
            r.text()
        );
    }
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cannot_approve_another_operators_rollback_of_a_layer_1_service() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("vault-rb", "main"), "layer_1").await;
    // A previous spec to return to, made behind the bot's back.
    let engine =
        ops_core::swarm::docker::DockerSwarm::new("unix:///var/run/docker.sock", 10).unwrap();
    let started = ops_core::swarm::SwarmApi::bump(&engine, svc.name(), "v2", None)
        .await
        .unwrap();
    assert!(started.image_after.ends_with(":v2"));
    let bot = TestBot::start().await;
    let opal = bot.person("opal", &["operator"]).await;
    let otto = bot.person("otto", &["operator"]).await;
    let ada = bot.person("ada", &["admin"]).await;
    let r = answer(
        &bot,
        &opal,
        "rollback",
        json!([{ "name": "service", "type": 1, "options": [{ "name": "name", "value": svc.name() }] }]),
    )
    .await;
    assert!(
        r.text().contains("Approval requested from admin"),
        "{}",
        r.text()
    );
    let msg = approval_message(&bot, svc.name()).await;
    let r = bot
        .discord
        .click(&otto, &msg, &msg.approval_button("a"))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("do not allow"),
        "a second operator is not enough for layer_1: {}",
        r.text()
    );
    assert!(spec_image(&swarm, svc.name()).await.contains(":v2"));
    let done = approve(&bot, &ada, &msg).await;
    assert!(done.text().contains("Done"), "{}", done.text());
    assert!(spec_image(&swarm, svc.name()).await.contains(":main"));
    bot.discord.assert_no_violations();
}

/// Every change an admin could ask for, on a service that must never be changed from chat.
async fn assert_every_change_is_refused(bot: &TestBot, swarm: &TestSwarm, name: &str) {
    let ada = bot.person("ada", &["admin"]).await;
    let _second = bot.person("adam", &["admin"]).await;
    let image = spec_image(swarm, name).await;
    let force = force_update(swarm, name).await;
    let rollback =
        json!([{ "name": "service", "type": 1, "options": [{ "name": "name", "value": name }] }]);
    for (command, options) in [
        (
            "bump",
            json!([svc_opt(name), { "name": "tag", "value": "v2" }]),
        ),
        ("restart", json!([svc_opt(name)])),
        (
            "scale",
            json!([svc_opt(name), { "name": "replicas", "value": 2 }]),
        ),
        (
            "scale",
            json!([svc_opt(name), { "name": "replicas", "value": 0 }]),
        ),
        ("rollback", rollback.clone()),
    ] {
        let r = bot
            .discord
            .invoke(&ada, command, options)
            .await
            .wait_final(T, |r| {
                r.text().contains("refused")
                    || r.text().contains("Approval requested")
                    || r.text().contains("completed")
            })
            .await
            .unwrap();
        assert!(
            r.ephemeral
                && r.text().contains("sprocket-ops' own services")
                && r.text().contains("--break-glass"),
            "{command}: {}",
            r.text()
        );
    }
    assert_eq!(spec_image(swarm, name).await, image);
    assert_eq!(force_update(swarm, name).await, force);
    assert_eq!(swarm.replicas(name).await.unwrap(), Some(1));
    let requests = bot.discord.channel_messages(APPROVALS).await;
    assert!(
        requests.iter().all(|m| !m.text().contains(name)),
        "no approval request either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_changes_the_bots_own_service_from_chat_not_even_an_admin_with_an_approval() {
    let swarm = TestSwarm::connect().await;
    // The bot's own service, known by the label the shipped stack file sets (its layer is
    // platform here, so only the self-protection stands in the way).
    let svc = service_in(
        &swarm,
        TestService::new("ops-bot-self", "main").label("sprocket-ops.self", "true"),
        "platform",
    )
    .await;
    let bot = TestBot::start().await;
    assert_every_change_is_refused(&bot, &swarm, svc.name()).await;
    let rows = bot.audit_rows().await;
    assert!(
        rows.iter()
            .filter(|r| r.entry.outcome == ops_core::audit::Outcome::Denied)
            .count()
            >= 5,
        "each refusal is audited as denied"
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_changes_the_socket_proxy_named_in_self_services_from_chat() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("ops-proxy", "main"), "platform").await;
    let bot = TestBot::start_with(BotOptions {
        extra_config: format!("\n[self_services]\nnames = [\"{}\"]\n", svc.name()),
        ..Default::default()
    })
    .await;
    assert_every_change_is_refused(&bot, &swarm, svc.name()).await;
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bump_to_a_full_image_reference_outside_the_allow_list_is_refused_before_anything_runs() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("prod-img", "main"), "platform").await;
    let bot = TestBot::start().await;
    let dev = bot.person("dev", &["deployer"]).await;
    let before = spec_image(&swarm, svc.name()).await;
    // `[images] allowed` is empty in the test bot: tags only.
    for image in [
        "evil.example.com/miner:latest".to_string(),
        format!("{}:v2", sprocket_ops_tests::env::image_repo()),
    ] {
        let r = bot
            .discord
            .invoke(
                &dev,
                "bump",
                json!([svc_opt(svc.name()), { "name": "tag", "value": image }]),
            )
            .await
            .wait_final(T, |r| {
                r.text().contains("refused") || r.text().contains("bump ")
            })
            .await
            .unwrap();
        assert!(
            r.ephemeral && r.text().contains("refused") && r.text().contains("only tags"),
            "{image}: {}",
            r.text()
        );
        assert_eq!(spec_image(&swarm, svc.name()).await, before, "{image}");
    }
    let denied = bot
        .audit_rows()
        .await
        .into_iter()
        .filter(|r| {
            r.entry.command == "bump" && r.entry.outcome == ops_core::audit::Outcome::Denied
        })
        .count();
    assert_eq!(denied, 2, "both refusals are audited");
    // A tag stays in the service's repository and runs as before.
    let r = bot
        .discord
        .invoke(
            &dev,
            "bump",
            json!([svc_opt(svc.name()), { "name": "tag", "value": "v2" }]),
        )
        .await
        .wait_final(ROLLOUT, |r| {
            r.text().contains("completed") || r.text().contains("failed")
        })
        .await
        .unwrap();
    assert!(r.text().contains("completed"), "{}", r.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_summary_names_the_resolved_service_never_the_typed_id() {
    let swarm = TestSwarm::connect().await;
    let svc = service_in(&swarm, TestService::new("prod-byid", "main"), "platform").await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let _bob = bot.person("bob", &["operator"]).await;
    // The service typed as its id: the engine resolves it, the approver must see the name.
    let r = bot
        .discord
        .invoke(
            &alice,
            "scale",
            json!([svc_opt(svc.id()), { "name": "replicas", "value": 0 }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .unwrap();
    assert!(
        r.text().contains(svc.name()) && !r.text().contains(svc.id()),
        "{}",
        r.text()
    );
    let posted = bot
        .discord
        .wait_channel_message(APPROVALS, |m| !m.custom_ids().is_empty(), T)
        .await
        .unwrap();
    assert!(
        posted.text().contains(svc.name()) && !posted.text().contains(svc.id()),
        "the approvers see the service's name: {}",
        posted.text()
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_answer_only_the_caller_unless_public_true() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-plogs", "main")
                .label("sprocket.layer", "platform")
                .env("TESTSVC_LOG_INTERVAL_MS", "200")
                .env("TESTSVC_LOG_LINES", "hello-from-logs"),
        )
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let bot = TestBot::start_with(BotOptions {
        discord_extra: "logs_follow_secs = 3".into(),
        ..Default::default()
    })
    .await;
    let op = bot.person("olive", &["operator"]).await;
    let r = bot
        .discord
        .invoke(&op, "logs", json!([svc_opt(svc.name())]))
        .await
        .wait_final(T, |r| r.text().contains("logs:"))
        .await
        .unwrap();
    assert!(
        r.ephemeral,
        "logs are for the caller by default: {}",
        r.text()
    );
    let r = bot
        .discord
        .invoke(
            &op,
            "logs",
            json!([svc_opt(svc.name()), { "name": "public", "value": true }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("logs:"))
        .await
        .unwrap();
    assert!(!r.ephemeral, "public:true posts in the channel");
    // follow:true without public: the private answer itself streams, no thread is made.
    let r = bot
        .discord
        .invoke(
            &op,
            "logs",
            json!([svc_opt(svc.name()), { "name": "follow", "value": true }]),
        )
        .await
        .wait_final(Duration::from_secs(30), |r| {
            r.text().contains("stopped after")
        })
        .await
        .unwrap();
    assert!(r.ephemeral, "{}", r.text());
    assert!(r.text().contains("hello-from-logs"), "{}", r.text());
    assert!(
        !bot.discord
            .requests()
            .iter()
            .any(|q| q.method == "POST" && q.path.ends_with("/threads")),
        "no thread for a private follow"
    );
    bot.discord.assert_no_violations();
}
