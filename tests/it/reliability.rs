//! Reliability of the running bot: graceful shutdown lets running work finish and refuses new
//! work with a clear answer; gateway drops are resumed without losing or repeating anything.

use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot};
use sprocket_ops_tests::swarm::{TestService, TestSwarm};

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
