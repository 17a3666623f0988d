//! Reliability of the running bot: graceful shutdown lets running work finish and refuses new
//! work with a clear answer; gateway drops are resumed without losing or repeating anything,
//! also when they go on for minutes; outages of the Docker engine, OpenBao, GitHub and the
//! database leave the bot up, saying what is wrong, and it recovers when they come back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use sprocket_ops_tests::bao::BaoServer;
use sprocket_ops_tests::bot::{BotOptions, TestBot, APPROVALS};
use sprocket_ops_tests::fake_discord::{Message, Response, TestUser};
use sprocket_ops_tests::fake_github::Failure;
use sprocket_ops_tests::outage::{SwitchProxy, Upstream};
use sprocket_ops_tests::swarm::{ServiceGuard, TestService, TestSwarm};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_bump_finish_and_refuses_new_commands() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-term", "main")
                .replicas(2)
                .label("sprocket.layer", "platform"),
        )
        .await;
    swarm.wait_converged(svc.name(), T).await.unwrap();
    let mut bot = TestBot::start_with(BotOptions {
        extra_config: String::new(),
        ..Default::default()
    })
    .await;
    let dev = bot.person("dev", &["deployer"]).await;
    let bump = bot
        .discord
        .invoke(
            &dev,
            "bump",
            json!([{ "name": "service", "value": svc.name() }, { "name": "tag", "value": "v2" }]),
        )
        .await;
    bump.wait_final(T, |r| r.text().contains("rolling out"))
        .await
        .unwrap();

    bot.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let late = bot
        .discord
        .invoke(&dev, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        late.ephemeral && late.text().contains("restarting"),
        "{}",
        late.text()
    );

    let done = bump
        .wait_final(T, |r| {
            r.text().contains("completed") || r.text().contains("failed")
        })
        .await
        .unwrap();
    assert!(
        done.text().contains("completed"),
        "the running bump finished: {}",
        done.text()
    );
    assert!(
        bot.wait_stopped(T).await,
        "serve returns once the work is done"
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_gateway_drops_leave_no_command_unanswered() {
    let bot = TestBot::start_with(BotOptions {
        extra_config: "\n[limits]\ncommands_per_minute = 10000\n".into(),
        ..Default::default()
    })
    .await;
    let vic = bot.person("vera", &["viewer"]).await;
    let mut answered = 0;
    for round in 0..5 {
        if round % 2 == 1 {
            bot.discord.drop_gateway().await;
        } else if round > 0 {
            bot.discord.drop_gateway_abrupt().await;
        }
        for _ in 0..10 {
            let r = bot
                .discord
                .invoke(&vic, "whoami", json!([]))
                .await
                .response(T)
                .await
                .unwrap();
            assert!(r.text().contains("vera"), "{}", r.text());
            answered += 1;
        }
    }
    assert_eq!(answered, 50);
    assert!(
        bot.discord.gateway_connections() >= 5,
        "{}",
        bot.discord.gateway_connections()
    );
    bot.discord.assert_no_violations();
}

/// How long the long gateway-drop run lasts (seconds); `SPROCKET_RELIABILITY_SECS` overrides.
fn reliability_secs() -> u64 {
    std::env::var("SPROCKET_RELIABILITY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

async fn platform_service(swarm: &TestSwarm, prefix: &str) -> ServiceGuard {
    let svc = swarm
        .create_service(TestService::new(prefix, "main").label("sprocket.layer", "platform"))
        .await;
    swarm.wait_converged(svc.name(), T).await.unwrap();
    svc
}

async fn ask(bot: &TestBot, who: &TestUser, command: &str, options: serde_json::Value) -> Response {
    bot.discord
        .invoke(who, command, options)
        .await
        .wait_final(T, |r| !r.text().is_empty() || r.ephemeral)
        .await
        .unwrap_or_else(|e| panic!("/{command} unanswered: {e}"))
}

fn scale(service: &str, replicas: u64) -> serde_json::Value {
    json!([{ "name": "service", "value": service }, { "name": "replicas", "value": replicas }])
}

/// One full two-person cycle: alice asks to scale `service` to zero, bob approves and confirms,
/// it runs once; alice scales it back to one. Gateway drops may happen at any point.
async fn approval_cycle(
    bot: &TestBot,
    alice: &TestUser,
    bob: &TestUser,
    service: &str,
    seen: &mut HashSet<u64>,
) {
    let r = bot
        .discord
        .invoke(alice, "scale", scale(service, 0))
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .expect("the request is acknowledged");
    assert!(r.text().contains("operator"), "{}", r.text());
    let msg = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.text().contains(service) && !m.custom_ids().is_empty() && !seen.contains(&m.id),
            T,
        )
        .await
        .expect("a new approval request in the approvals channel");
    seen.insert(msg.id);
    let r = bot
        .discord
        .click(bob, &msg, &msg.approval_button("a"))
        .await
        .response(T)
        .await
        .unwrap();
    let confirm_msg = r.original.clone().expect("the confirmation message");
    let done = bot
        .discord
        .click(bob, &confirm_msg, &confirm_msg.approval_button("c"))
        .await
        .wait_final(T, |r| r.text().contains("Done"))
        .await
        .expect("the approved action runs");
    assert!(done.text().contains('0'), "{}", done.text());
    let back = bot
        .discord
        .invoke(alice, "scale", scale(service, 1))
        .await
        .wait_final(T * 2, |r| {
            r.text().contains("completed") || r.text().contains("failed")
        })
        .await
        .expect("scaling back is answered");
    assert!(back.text().contains("completed"), "{}", back.text());
    if seen.len() == 1 {
        eprintln!("first cycle: {} / {}", done.text(), back.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_drops_every_few_seconds_for_minutes_lose_no_approval_and_run_none_twice() {
    use sqlx::Connection;
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-drops").await;
    let bot = TestBot::start_with(BotOptions {
        extra_config: "\n[limits]\ncommands_per_minute = 10000\ndestructive_per_hour = 10000\n"
            .into(),
        ..Default::default()
    })
    .await;
    let alice = bot.person("alice", &["operator"]).await;
    let bob = bot.person("bob", &["operator"]).await;
    let vic = bot.person("vera", &["viewer"]).await;
    let run_for = Duration::from_secs(reliability_secs());

    // The fake Discord cuts the gateway every 3 s, alternating a clean close (resume) and an
    // abrupt one (the socket just dies), for the whole run.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let dropper = {
        let discord = bot.discord.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                    _ = stop_rx.changed() => return n,
                }
                if n.is_multiple_of(2) {
                    discord.drop_gateway().await;
                } else {
                    discord.drop_gateway_abrupt().await;
                }
                n += 1;
            }
        })
    };

    let started = Instant::now();
    let mut seen = HashSet::new();
    let (mut cycles, mut reads) = (0usize, 0usize);
    while started.elapsed() < run_for {
        approval_cycle(&bot, &alice, &bob, svc.name(), &mut seen).await;
        cycles += 1;
        assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
        // Reads in between, for about 4 s (an approval cycle every few seconds is plenty
        // and keeps the shared Swarm from being flooded with updates).
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let r = ask(&bot, &vic, "whoami", json!([])).await;
            assert!(r.text().contains("vera"), "{}", r.text());
            reads += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = stop_tx.send(true);
    let drops = dropper.await.unwrap();
    eprintln!(
        "{cycles} approval cycles and {reads} reads in {:?} with {drops} gateway drops",
        started.elapsed()
    );
    assert!(
        drops >= (run_for.as_secs() / 6).max(3),
        "the gateway really dropped repeatedly ({drops} in {run_for:?})"
    );
    assert!(
        bot.discord.gateway_connections() as u64 > drops / 2,
        "the bot reconnected after the drops ({} connections)",
        bot.discord.gateway_connections()
    );
    // Straight from the database (more rows than `audit --limit` shows at once).
    let mut db = sqlx::SqliteConnection::connect(&bot.database_url())
        .await
        .unwrap();
    let executions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE command = 'approval.confirm' \
         AND outcome = 'ok' AND detail LIKE 'Done%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        executions as usize, cycles,
        "every approval ran exactly once"
    );
    let states: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM approvals GROUP BY state ORDER BY state")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(
        states,
        vec![("done".to_string(), cycles as i64)],
        "no approval lost, pending or failed"
    );
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_outage_is_reported_changes_are_refused_and_the_bot_recovers() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-dockout").await;
    let engine = SwitchProxy::start(Upstream::Unix("/var/run/docker.sock".into())).await;
    let bot = TestBot::start_with(BotOptions {
        docker_host: Some(engine.tcp_url()),
        ..Default::default()
    })
    .await;
    let vic = bot.person("vic", &["viewer"]).await;
    let op = bot.person("opal", &["operator"]).await;
    let up = ask(&bot, &vic, "status", json!([])).await;
    assert!(up.text().contains(svc.name()), "{}", up.text());

    engine.down();
    let before = engine.accepted();
    let down = bot
        .discord
        .invoke(&vic, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains("unreachable"))
        .await
        .expect("/status says the engine is unreachable");
    assert!(down.text().contains("error id"), "{}", down.text());
    let r = ask(&bot, &op, "scale", scale(svc.name(), 2)).await;
    assert!(
        r.text().to_lowercase().contains("docker") || r.text().contains("unreachable"),
        "a change during the outage is refused naming the cause: {}",
        r.text()
    );
    assert!(
        engine.accepted() > before,
        "the bot really tried the engine"
    );

    engine.up();
    let back = bot
        .discord
        .invoke(&vic, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains(svc.name()))
        .await
        .expect("/status works again once the engine is back");
    assert!(!back.text().contains("unreachable"), "{}", back.text());
    assert_eq!(
        swarm.replicas(svc.name()).await.unwrap(),
        Some(1),
        "nothing ran during the outage"
    );
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openbao_outage_is_reported_and_vault_status_recovers() {
    let bao = BaoServer::start_dev().await;
    let front = SwitchProxy::start(Upstream::Tcp(bao.addr())).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("vault-token");
    std::fs::write(&token, bao.root_token()).unwrap();
    let bot = TestBot::start_with(BotOptions {
        extra_config: format!(
            "\n[vault]\naddress = \"{}\"\ntoken = {{ file = \"{}\" }}\n",
            front.http_url(),
            token.display()
        ),
        ..Default::default()
    })
    .await;
    let op = bot.person("otto", &["operator"]).await;
    let status = json!([{ "name": "status", "type": 1, "options": [] }]);
    let ok = ask(&bot, &op, "vault", status.clone()).await;
    assert!(
        ok.text().to_lowercase().contains("unsealed"),
        "{}",
        ok.text()
    );

    front.down();
    let r = ask(&bot, &op, "vault", status.clone()).await;
    assert!(r.text().contains("unreachable"), "{}", r.text());
    assert!(r.text().contains("error id"), "{}", r.text());
    assert!(
        !r.text().contains(&front.addr().port().to_string()),
        "no raw connection detail in the channel: {}",
        r.text()
    );
    // The bot itself is fine meanwhile.
    let who = ask(&bot, &op, "whoami", json!([])).await;
    assert!(who.text().contains("otto"), "{}", who.text());

    front.up();
    let back = bot
        .discord
        .invoke(&op, "vault", status)
        .await
        .wait_final(T, |r| r.text().to_lowercase().contains("unsealed"))
        .await
        .expect("vault status works again once OpenBao is back");
    assert!(!back.text().contains("unreachable"), "{}", back.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_outage_refuses_destructive_requests_until_github_returns() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-ghout").await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let _bob = bot.person("bob", &["operator"]).await;
    let vic = bot.person("vic", &["viewer"]).await;
    // Vic's membership is checked once while GitHub is up (it is cached for reads).
    let r = ask(&bot, &vic, "status", json!([])).await;
    assert!(r.text().contains(svc.name()), "{}", r.text());

    bot.github.set_failure(Failure::ServerError);
    let r = ask(&bot, &alice, "scale", scale(svc.name(), 0)).await;
    assert!(r.ephemeral && r.text().contains("GitHub"), "{}", r.text());
    // Reads may use the cached membership: the bot keeps answering.
    let r = ask(&bot, &vic, "status", json!([])).await;
    assert!(r.text().contains(svc.name()), "{}", r.text());

    bot.github.set_failure(Failure::None);
    let r = bot
        .discord
        .invoke(&alice, "scale", scale(svc.name(), 0))
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .expect("the request goes through once GitHub is back");
    assert!(r.text().contains("operator"), "{}", r.text());
    let posted: Vec<Message> = bot
        .discord
        .channel_messages(APPROVALS)
        .await
        .into_iter()
        .filter(|m| m.text().contains(svc.name()))
        .collect();
    assert_eq!(posted.len(), 1, "nothing was requested during the outage");
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_refuses_destructive_requests_and_the_bot_recovers() {
    use sqlx::Connection;
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-dblock").await;
    let bot = TestBot::start().await;
    let alice = bot.person("alice", &["operator"]).await;
    let _bob = bot.person("bob", &["operator"]).await;
    let vic = bot.person("vic", &["viewer"]).await;

    // Another process holds the write lock longer than the bot's busy timeout (5 s).
    let mut locker = sqlx::SqliteConnection::connect(&bot.database_url())
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut locker)
        .await
        .unwrap();
    let r = ask(&bot, &alice, "scale", scale(svc.name(), 0)).await;
    assert!(
        r.text().contains("store") || r.text().contains("database"),
        "the refusal names the cause: {}",
        r.text()
    );
    assert!(!r.text().contains("Approval requested"), "{}", r.text());
    // Read-only commands still answer (their audit row waits for the lock, then is logged).
    let r = ask(&bot, &vic, "status", json!([])).await;
    assert!(r.text().contains(svc.name()), "{}", r.text());

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    locker.close().await.unwrap();
    let r = bot
        .discord
        .invoke(&alice, "scale", scale(svc.name(), 0))
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .expect("destructive requests work again once the lock is gone");
    assert!(r.text().contains("operator"), "{}", r.text());
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}
