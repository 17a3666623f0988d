//! The Swarm commands and the two-person approval flow end to end: the real bot through the
//! fake Discord, the real Swarm, the fake GitHub. Bumps converge or are reported as rolled back;
//! scaling to zero and rollbacks wait for a second engineer, never the requester, and execute
//! exactly once however many clicks arrive; logs never leak a planted secret.

use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bot::{TestBot, APPROVALS, AUDIT};
use sprocket_ops_tests::fake_discord::{Message, Response, TestUser};
use sprocket_ops_tests::fake_github::Failure;
use sprocket_ops_tests::swarm::{docker_service_ps, ServiceGuard, TestService, TestSwarm};

const T: Duration = Duration::from_secs(30);
const ROLLOUT: Duration = Duration::from_secs(90);

fn finished(r: &Response) -> bool {
    let t = r.text();
    t.contains("completed")
        || t.contains("failed")
        || t.contains("paused")
        || t.contains("still in progress")
}

async fn platform_service(swarm: &TestSwarm, spec: TestService) -> ServiceGuard {
    let g = swarm
        .create_service(spec.label("sprocket.layer", "platform"))
        .await;
    swarm
        .wait_converged(g.name(), Duration::from_secs(60))
        .await
        .unwrap();
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bump_main_to_v2_converges_and_is_reported_with_the_new_image() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-bump", "main").replicas(2)).await;
    let bot = TestBot::start().await;
    let dev = bot.person("dev", &["deployer"]).await;
    let r = bot
        .discord
        .invoke(
            &dev,
            "bump",
            json!([{ "name": "service", "value": svc.name() }, { "name": "tag", "value": "v2" }]),
        )
        .await
        .wait_final(ROLLOUT, finished)
        .await
        .unwrap();
    let text = r.text();
    assert!(text.contains("completed") && text.contains(":v2"), "{text}");
    let running: Vec<_> = docker_service_ps(svc.name())
        .into_iter()
        .filter(|t| t.current_state.starts_with("Running"))
        .collect();
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(
        running.iter().all(|t| t.image.ends_with(":v2")),
        "{running:?}"
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bump_to_a_broken_image_is_reported_as_rolled_back_never_as_success() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(
        &swarm,
        TestService::new("prod-broken", "main")
            .rollback_on_update_failure()
            .update_monitor(Duration::from_secs(2)),
    )
    .await;
    let bot = TestBot::start().await;
    let dev = bot.person("dev", &["deployer"]).await;
    let r = bot
        .discord
        .invoke(&dev, "bump", json!([{ "name": "service", "value": svc.name() }, { "name": "tag", "value": "broken" }]))
        .await
        .wait_final(ROLLOUT, finished)
        .await
        .unwrap();
    let text = r.text();
    assert!(
        text.contains("failed: Swarm rolled it back") && !text.contains("✅"),
        "{text}"
    );
    let embed = &r.messages()[0].embeds[0];
    assert_eq!(embed["color"], 0xe74c3c, "a failed deploy is red");
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_and_restart_change_the_real_service_and_bad_names_get_suggestions() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-scale", "main")).await;
    let bot = TestBot::start().await;
    let op = bot.person("opal", &["operator"]).await;
    let r = bot
        .discord
        .invoke(
            &op,
            "scale",
            json!([{ "name": "service", "value": svc.name() }, { "name": "replicas", "value": 2 }]),
        )
        .await
        .wait_final(ROLLOUT, finished)
        .await
        .unwrap();
    assert!(r.text().contains("completed"), "{}", r.text());
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(2));

    let before = swarm.inspect(svc.name()).await.unwrap();
    let force = |s: &bollard::models::Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.force_update)
            .unwrap_or(0)
    };
    let r = bot
        .discord
        .invoke(
            &op,
            "restart",
            json!([{ "name": "service", "value": svc.name() }]),
        )
        .await
        .wait_final(ROLLOUT, finished)
        .await
        .unwrap();
    assert!(r.text().contains("completed"), "{}", r.text());
    assert_eq!(
        force(&swarm.inspect(svc.name()).await.unwrap()),
        force(&before) + 1
    );

    let typo = format!("{}x", svc.name());
    let r = bot
        .discord
        .invoke(
            &op,
            "restart",
            json!([{ "name": "service", "value": typo }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("no service named"))
        .await
        .unwrap();
    assert!(
        r.text().contains(svc.name()),
        "the closest match is suggested: {}",
        r.text()
    );

    let r = bot
        .discord
        .autocomplete(
            &op,
            "restart",
            json!([{ "name": "service", "value": "prod-scale", "focused": true }]),
        )
        .await
        .response(T)
        .await
        .unwrap();
    let choices = r
        .choices
        .expect("autocomplete answers with choices")
        .to_string();
    assert!(choices.contains(svc.name()), "{choices}");
    bot.discord.assert_no_violations();
}

/// The approval message the bot posted for a request, once it shows up.
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

async fn request_scale_to_zero(bot: &TestBot, who: &TestUser, service: &str) -> Message {
    let r = bot
        .discord
        .invoke(
            who,
            "scale",
            json!([{ "name": "service", "value": service }, { "name": "replicas", "value": 0 }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .unwrap();
    assert!(r.text().contains("operator"), "{}", r.text());
    approval_message(bot, service).await
}

async fn click_text(bot: &TestBot, who: &TestUser, m: &Message, custom_id: &str) -> Response {
    bot.discord
        .click(who, m, custom_id)
        .await
        .response(T)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_to_zero_waits_for_a_second_engineer_never_the_requester() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-zero", "main")).await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let alice_alt = bot.second_account("alice", 7001).await;
    let vic = bot.person("vic", &["viewer"]).await;
    let bob = bot.person("bob", &["operator"]).await;
    let msg = request_scale_to_zero(&bot, &alice, svc.name()).await;
    assert_eq!(
        swarm.replicas(svc.name()).await.unwrap(),
        Some(1),
        "nothing runs before the approval"
    );
    let approve = msg.approval_button("a");

    for (who, why) in [
        (&alice, "own request"),
        (&alice_alt, "own request"),
        (&vic, "do not allow"),
    ] {
        let r = click_text(&bot, who, &msg, &approve).await;
        assert!(
            r.ephemeral && r.text().contains(why),
            "{}: {}",
            who.name,
            r.text()
        );
    }
    let forged = approve.replacen(":a:", ":c:", 1);
    let r = click_text(&bot, &bob, &msg, &forged).await;
    assert!(
        r.ephemeral && r.text().contains("not valid"),
        "{}",
        r.text()
    );

    let r = click_text(&bot, &bob, &msg, &approve).await;
    assert!(
        r.ephemeral && r.text().contains("Approve"),
        "asks for a confirmation: {}",
        r.text()
    );
    let confirm_msg = r.original.clone().expect("the confirmation message");
    let confirm = confirm_msg.approval_button("c");
    let done = bot
        .discord
        .click(&bob, &confirm_msg, &confirm)
        .await
        .wait_final(T, |r| r.text().contains("Done"))
        .await
        .unwrap();
    assert!(done.text().contains("0"), "{}", done.text());
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(0));
    let posted = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.id == msg.id && m.text().contains("done"),
            T,
        )
        .await
        .unwrap();
    assert!(
        posted.custom_ids().is_empty(),
        "decided requests have no buttons"
    );
    bot.discord
        .wait_channel_message(AUDIT, |m| m.text().contains("executed"), T)
        .await
        .expect("the execution is announced in the audit channel");
    let audit = bot.discord.channel_messages(AUDIT).await;
    let lines: Vec<String> = audit.iter().map(|m| m.text()).collect();
    assert!(
        lines.iter().any(|l| l.contains("requested approval")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("bob approved")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("executed")), "{lines:?}");
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_confirmations_execute_once_even_when_replayed_after_a_reconnect() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-race", "main")).await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let mut approvers = Vec::new();
    for i in 0..100 {
        approvers.push(bot.person(&format!("op{i}"), &["operator"]).await);
    }
    let msg = request_scale_to_zero(&bot, &alice, svc.name()).await;
    let r = click_text(&bot, &approvers[0], &msg, &msg.approval_button("a")).await;
    let confirm_msg = r.original.clone().unwrap();
    let confirm = confirm_msg.approval_button("c");
    let mut clicks = Vec::new();
    for who in &approvers {
        clicks.push(bot.discord.click(who, &confirm_msg, &confirm).await);
    }
    let mut executed = 0;
    let mut refused = 0;
    for c in clicks {
        let r = c.response(T).await.unwrap();
        if r.text().contains("Approved: executing") {
            executed += 1;
        } else {
            assert!(
                r.text().contains("already decided") || r.text().contains("Already executed"),
                "{}",
                r.text()
            );
            refused += 1;
        }
    }
    assert_eq!((executed, refused), (1, 99));
    bot.discord.drop_gateway().await;
    bot.discord.wait_gateway_connections(2, T).await.unwrap();
    let r = click_text(&bot, &approvers[1], &confirm_msg, &confirm).await;
    assert!(r.text().contains("already decided"), "{}", r.text());

    let out = std::process::Command::new(sprocket_ops_tests::env::bot_binary())
        .arg("--config")
        .arg(bot.config_path())
        .args(["audit", "--json", "--limit", "1000"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["command"] == "approval.confirm"
                && r["outcome"] == "ok"
                && r["detail"].as_str().unwrap_or("").starts_with("Done")
        })
        .count();
    assert_eq!(runs, 1, "exactly one execution is audited");
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(0));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_survives_a_restart_and_rollback_returns_to_the_previous_image() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-rb", "main")).await;
    let mut bot = TestBot::start().await;
    let dev = bot.person("dev", &["deployer"]).await;
    let bob = bot.person("bob", &["operator"]).await;
    let r = bot
        .discord
        .invoke(
            &dev,
            "bump",
            json!([{ "name": "service", "value": svc.name() }, { "name": "tag", "value": "v2" }]),
        )
        .await
        .wait_final(ROLLOUT, finished)
        .await
        .unwrap();
    assert!(r.text().contains("completed"), "{}", r.text());
    let r = bot
        .discord
        .invoke(&dev, "rollback", json!([{ "name": "service", "type": 1, "options": [{ "name": "name", "value": svc.name() }] }]))
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .unwrap();
    assert!(
        r.text().contains(":main"),
        "names the image it returns to: {}",
        r.text()
    );
    let msg = approval_message(&bot, svc.name()).await;

    bot.restart().await;

    let r = click_text(&bot, &bob, &msg, &msg.approval_button("a")).await;
    let confirm_msg = r.original.clone().expect("confirmation after a restart");
    let done = bot
        .discord
        .click(&bob, &confirm_msg, &confirm_msg.approval_button("c"))
        .await
        .wait_final(T, |r| {
            r.text().contains("Done") || r.text().contains("Failed")
        })
        .await
        .unwrap();
    assert!(done.text().contains("Done"), "{}", done.text());
    let image = swarm
        .inspect(svc.name())
        .await
        .unwrap()
        .spec
        .and_then(|s| s.task_template)
        .and_then(|t| t.container_spec)
        .and_then(|c| c.image)
        .unwrap();
    assert!(image.contains(":main"), "{image}");
    bot.discord.assert_no_violations();
}

/// Regression: an approved action cut short by a restart stayed "approved, executing" in its
/// approvals-channel message forever. The restart now marks it failed, edits that message and
/// tells the audit channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_interrupted_by_a_restart_shows_failed_in_its_approval_message() {
    use ops_core::approvals::ApprovalState;
    use sqlx::Connection;
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-intr", "main")).await;
    let mut bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let _bob = bot.person("bob", &["operator"]).await;
    let msg = request_scale_to_zero(&bot, &alice, svc.name()).await;

    // The crash: the request had been approved and its action was executing when the bot died
    // (set in the store directly: killing the bot at that exact moment is not repeatable).
    bot.stop().await;
    let mut db = sqlx::SqliteConnection::connect(&bot.database_url())
        .await
        .unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM approvals WHERE state = 'pending'")
        .fetch_all(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    assert_eq!(ids.len(), 1, "one pending request: {ids:?}");
    let store = ops_core::store::connect(&bot.database_url(), None)
        .await
        .unwrap();
    let now = ops_core::ops::now_ms();
    for (from, to) in [
        (ApprovalState::Pending, ApprovalState::Approved),
        (ApprovalState::Approved, ApprovalState::Executing),
    ] {
        assert!(store
            .transition_approval(&ids[0], from, to, now)
            .await
            .unwrap());
    }

    bot.restart().await;
    let told = bot
        .discord
        .wait_channel_message(AUDIT, |m| m.text().contains("interrupted by a restart"), T)
        .await
        .expect("the restart tells the audit channel");
    assert!(
        told.text().contains("scale") && told.text().contains("alice"),
        "{}",
        told.text()
    );
    let edited = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.id == msg.id && !m.text().contains("waiting for approval"),
            T,
        )
        .await
        .expect("the approval message is edited");
    assert!(
        edited.text().contains("failed") && edited.text().contains("interrupted"),
        "the approval message shows the failure: {}",
        edited.text()
    );
    assert!(edited.custom_ids().is_empty(), "no buttons are left");
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_failing_refuses_destructive_requests_and_approvals() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-gh", "main")).await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let bob = bot.person("bob", &["operator"]).await;
    let msg = request_scale_to_zero(&bot, &alice, svc.name()).await;
    bot.github.set_failure(Failure::ServerError);
    let r = click_text(&bot, &bob, &msg, &msg.approval_button("a")).await;
    assert!(r.ephemeral && r.text().contains("GitHub"), "{}", r.text());
    let r = bot
        .discord
        .invoke(
            &alice,
            "scale",
            json!([{ "name": "service", "value": svc.name() }, { "name": "replicas", "value": 0 }]),
        )
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.ephemeral && r.text().contains("GitHub"), "{}", r.text());
    bot.github.set_failure(Failure::None);
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_refuses_clicks_and_loses_its_buttons() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-exp", "main")).await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let bob = bot.person("bob", &["operator"]).await;
    let msg = request_scale_to_zero(&bot, &alice, svc.name()).await;
    let pool = sqlx::SqlitePool::connect(&bot.database_url())
        .await
        .unwrap();
    sqlx::query("UPDATE approvals SET expires_at_ms = 0")
        .execute(&pool)
        .await
        .unwrap();
    let r = click_text(&bot, &bob, &msg, &msg.approval_button("a")).await;
    assert!(
        r.ephemeral && (r.text().contains("expired")),
        "{}",
        r.text()
    );
    let edited = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.id == msg.id && m.text().contains("expired"),
            Duration::from_secs(25),
        )
        .await
        .unwrap();
    assert!(edited.custom_ids().is_empty());
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_leak_planted_secrets_inline_or_as_attachments() {
    let swarm = TestSwarm::connect().await;
    let bot = TestBot::start().await;
    // A configured secret of the bot (its GitHub org token) in every encoding, plus secret shapes.
    let token = bot.github.org_token().to_string();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&token);
    let url: String = token
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let json_esc = serde_json::to_string(&token).unwrap();
    let planted = [
        format!("raw {token}"),
        format!("b64 {b64}"),
        format!("url {url}"),
        format!("json {{\"t\":{json_esc}}}"),
        "DB_PASSWORD=hunter2-planted".to_string(),
        "gh ghp_plantedPlantedPlanted0123456789".to_string(),
        "-----BEGIN PRIVATE KEY-----".to_string(),
        "MIIplantedKeyBody".to_string(),
        "-----END PRIVATE KEY-----".to_string(),
    ];
    let svc = swarm
        .create_service(
            TestService::new("prod-logs", "main")
                .label("sprocket.layer", "platform")
                .env("TESTSVC_LOG_INTERVAL_MS", "0")
                .env("TESTSVC_LOG_LINES", &planted.join("\\n"))
                .env("TESTSVC_BURST", "3000"),
        )
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let op = bot.person("olive", &["operator"]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for tail in [Some(5000), Some(5)] {
        let mut opts = vec![json!({ "name": "service", "value": svc.name() })];
        if let Some(t) = tail {
            opts.push(json!({ "name": "tail", "value": t }));
        }
        opts.push(json!({ "name": "since", "value": "1h" }));
        let r = bot
            .discord
            .invoke(&op, "logs", serde_json::Value::Array(opts))
            .await
            .wait_final(T, |r| r.text().contains("logs:"))
            .await
            .unwrap();
        if tail == Some(5000) {
            let m = &r.messages()[0];
            assert!(
                !m.attachments.is_empty(),
                "3000 lines go out as an attachment: {}",
                r.text()
            );
        }
    }
    let secrets = [
        token.as_str(),
        b64.as_str(),
        url.as_str(),
        "hunter2-planted",
        "ghp_plantedPlanted",
        "MIIplantedKeyBody",
    ];
    let mut seen_bytes = 0;
    for req in bot.discord.requests() {
        let body = req.body.map(|b| b.to_string()).unwrap_or_default();
        for s in secrets {
            assert!(
                !body.contains(s),
                "{s} reached Discord in {} {}",
                req.method,
                req.path
            );
        }
        for (name, bytes) in &req.attachments {
            seen_bytes += bytes.len();
            let text = String::from_utf8_lossy(bytes);
            for s in secrets {
                assert!(
                    !text.contains(s),
                    "{s} reached Discord in attachment {name}"
                );
            }
        }
    }
    assert!(
        seen_bytes > 10_000,
        "the attachment carried the log ({seen_bytes} bytes)"
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_redacted_lines_into_a_thread_and_stops_by_itself() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-follow", "main")
                .label("sprocket.layer", "platform")
                .env("TESTSVC_LOG_INTERVAL_MS", "200")
                .env("TESTSVC_LOG_LINES", "token=followsecret123"),
        )
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let bot = TestBot::start_with(sprocket_ops_tests::bot::BotOptions {
        discord_extra: "logs_follow_secs = 5".into(),
        ..Default::default()
    })
    .await;
    let op = bot.person("olive", &["operator"]).await;
    let r = bot
        .discord
        .invoke(&op, "logs", json!([{ "name": "service", "value": svc.name() }, { "name": "follow", "value": true }, { "name": "public", "value": true }]))
        .await
        .wait_final(T, |r| r.text().contains("Following"))
        .await
        .unwrap();
    let anchor = r.messages()[0].id;
    // A thread made from a message has that message's id.
    let last = bot
        .discord
        .wait_channel_message(
            anchor,
            |m| m.text().contains("stopped after"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(last.text().contains("token="), "{}", last.text());
    let edits = bot
        .discord
        .requests()
        .iter()
        .filter(|q| {
            q.method == "PATCH" && q.path.contains(&format!("/channels/{anchor}/messages/"))
        })
        .count();
    assert!(
        (2..=6).contains(&edits),
        "edited at most every 2 s over 5 s: {edits}"
    );
    for q in bot.discord.requests() {
        assert!(!q
            .body
            .map(|b| b.to_string())
            .unwrap_or_default()
            .contains("followsecret123"));
    }
    bot.discord.assert_no_violations();
}

/// Issue 12 through Discord: the request shows what will change and the spec version it is
/// bound to; someone changes the service with the Docker CLI before the approval; the approval
/// is void, nothing is applied, and both the approver's answer and the request say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_to_zero_whose_service_changed_before_the_approval_is_void_and_says_why() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, TestService::new("prod-void", "main").replicas(2)).await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let bob = bot.person("bob", &["operator"]).await;
    let msg = request_scale_to_zero(&bot, &alice, svc.name()).await;
    let shown = msg.text();
    assert!(shown.contains("What will change"), "{shown}");
    assert!(shown.contains("replicas: 2 → 0"), "{shown}");
    assert!(shown.contains("spec version"), "{shown}");

    // Someone changes the service in between (a new env var), with the Docker CLI.
    let out = std::process::Command::new("docker")
        .args([
            "service",
            "update",
            "--detach",
            "--env-add",
            "HOTFIX=1",
            svc.name(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let r = click_text(&bot, &bob, &msg, &msg.approval_button("a")).await;
    assert!(
        r.text().contains("replicas: 2 → 0"),
        "the confirmation shows it: {}",
        r.text()
    );
    let confirm_msg = r.original.clone().expect("the confirmation message");
    let confirm = confirm_msg.approval_button("c");
    let done = bot
        .discord
        .click(&bob, &confirm_msg, &confirm)
        .await
        .wait_final(T, |r| {
            r.text().contains("Not executed") || r.text().contains("Done")
        })
        .await
        .unwrap();
    let text = done.text();
    assert!(text.contains("Not executed (void)"), "{text}");
    assert!(
        text.contains("changed since the request"),
        "says why: {text}"
    );
    assert!(text.contains("nothing was applied"), "{text}");
    assert_eq!(
        swarm.replicas(svc.name()).await.unwrap(),
        Some(2),
        "nothing was applied"
    );
    let posted = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.id == msg.id && m.text().contains("void: what would run changed"),
            T,
        )
        .await
        .expect("the request says void");
    assert!(
        posted.text().contains("changed since the request"),
        "{}",
        posted.text()
    );
    bot.discord.assert_no_violations();
}
