//! Health alerts through Discord: a Swarm service whose tasks crash produces one alert message
//! in the alerts channel, and fixing it produces one resolved message.

use std::time::Duration;

use sprocket_ops_tests::bot::{BotOptions, TestBot, ALERTS};
use sprocket_ops_tests::swarm::{TestService, TestSwarm};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_service_raises_one_alert_and_its_fix_one_resolved_message() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(
            TestService::new("prod-alert", "broken")
                .restart_max_attempts(50)
                .restart_delay(Duration::from_millis(500)),
        )
        .await;
    let bot = TestBot::start_with(BotOptions {
        extra_config: format!(
            "\n[alerts]\nfailure_threshold = 1\nmin_duration_secs = 0\nresolve_threshold = 1\nprobe_interval_secs = 1\ngroup_wait_secs = 0\nrestart_loop_window_secs = 5\nreminder_minutes = 0\nheartbeat_minutes = 0\nservices = [\"{}\"]\n\n[alerts.routing]\ndefault_channel = {ALERTS}\n",
            svc.name()
        ),
        ..Default::default()
    })
    .await;
    let firing = bot
        .discord
        .wait_channel_message(
            ALERTS,
            |m| m.text().contains(svc.name()),
            Duration::from_secs(60),
        )
        .await
        .expect("an alert for the crashing service");
    assert!(
        !firing.text().to_lowercase().contains("resolved"),
        "{}",
        firing.text()
    );

    // Fix it: the same service on the good image.
    let docker = swarm.docker();
    let current = swarm.inspect(svc.name()).await.unwrap();
    let mut spec = current.spec.unwrap();
    let mut tt = spec.task_template.unwrap();
    let mut cs = tt.container_spec.unwrap();
    cs.image = Some(sprocket_ops_tests::env::test_image("main"));
    tt.container_spec = Some(cs);
    spec.task_template = Some(tt);
    docker
        .update_service(
            svc.name(),
            spec,
            bollard::query_parameters::UpdateServiceOptions {
                version: current.version.and_then(|v| v.index).unwrap() as i32,
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let resolved = bot
        .discord
        .wait_channel_message(
            ALERTS,
            |m| m.text().to_lowercase().contains("resolved") && m.text().contains(svc.name()),
            Duration::from_secs(90),
        )
        .await
        .expect("a resolved message");
    assert_ne!(resolved.id, firing.id);
    let alerts: Vec<_> = bot
        .discord
        .channel_messages(ALERTS)
        .await
        .into_iter()
        .filter(|m| m.text().contains(svc.name()) && !m.text().to_lowercase().contains("resolved"))
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "one firing message, no duplicates: {:?}",
        alerts.iter().map(|m| m.text()).collect::<Vec<_>>()
    );
    bot.discord.assert_no_violations();
}
