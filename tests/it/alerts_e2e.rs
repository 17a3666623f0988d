//! Health alerts through Discord: a Swarm service whose tasks crash produces one alert message
//! in the alerts channel, and fixing it produces one resolved message. `/silence` and the
//! alert message's "Silence 1 h" button silence keys through the running watcher (audited,
//! refused for viewers, bad durations refused with nothing silenced); `/status` shows open
//! alerts, failing probes and certificates, coloured by the worst state, and says so when no
//! watcher runs.

use std::time::{Duration, Instant};

use serde_json::json;
use sprocket_ops_tests::bao::{BaoServer, BaoStorage};
use sprocket_ops_tests::bot::{BotOptions, TestBot, ALERTS};
use sprocket_ops_tests::fake_discord::{Message, Response, TestUser};
use sprocket_ops_tests::fake_github::Failure;
use sprocket_ops_tests::probe_servers;
use sprocket_ops_tests::swarm::{TestService, TestSwarm};

const T: Duration = Duration::from_secs(20);
/// An alert needs the watcher's first rounds (and the Swarm to crash a task): generous.
const ALERT_WAIT: Duration = Duration::from_secs(90);
const RED: u64 = 0xe7_4c3c;

/// `[alerts]` firing on the first failure, every second, posting at once to the alerts
/// channel; only the Swarm services matching `services` (TOML array items) are watched.
fn alerts_config(services: &str, probes: &str) -> String {
    format!(
        "\n[alerts]\nfailure_threshold = 1\nmin_duration_secs = 0\nresolve_threshold = 1\nprobe_interval_secs = 1\ngroup_wait_secs = 0\nrestart_loop_window_secs = 5\nreminder_minutes = 0\nheartbeat_minutes = 0\nroot_layers = []\nservices = [{services}]\n\n[alerts.routing]\ndefault_channel = {ALERTS}\n{probes}"
    )
}

/// An HTTP probe against `url`, in the platform layer.
fn http_probe(name: &str, url: &str) -> String {
    format!(
        "\n[[alerts.probes]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"{url}\"\nlayer = \"platform\"\nseverity = \"critical\"\ntimeout_secs = 2\n"
    )
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

fn opts(name: &str, value: &str) -> serde_json::Value {
    json!({ "name": name, "value": value })
}

async fn silence(bot: &TestBot, user: &TestUser, key: &str, duration: &str) -> Response {
    bot.discord
        .invoke(
            user,
            "silence",
            json!([opts("key", key), opts("duration", duration)]),
        )
        .await
        .response(T)
        .await
        .unwrap()
}

/// `/silence` without options: the ephemeral list of active silences.
async fn list_silences(bot: &TestBot, user: &TestUser) -> Response {
    bot.discord
        .invoke(user, "silence", json!([]))
        .await
        .wait_final(T, |r| r.text().contains("Active silences"))
        .await
        .unwrap()
}

async fn alert_message(bot: &TestBot, needle: &str) -> Message {
    bot.discord
        .wait_channel_message(
            ALERTS,
            |m| m.text().contains(needle) && !m.text().to_lowercase().contains("resolved"),
            ALERT_WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("an alert naming {needle}: {e}"))
}

async fn crashing_service(
    swarm: &TestSwarm,
    prefix: &str,
) -> sprocket_ops_tests::swarm::ServiceGuard {
    swarm
        .create_service(
            TestService::new(prefix, "broken")
                .restart_max_attempts(50)
                .restart_delay(Duration::from_millis(500)),
        )
        .await
}

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
    // Counted once the post returned to the bot, which is just after the fake received it.
    let counted = Instant::now() + T;
    while bot
        .metric("sprocket_ops_alerts_total{severity=\"critical\"}")
        .await
        < 1.0
    {
        assert!(
            Instant::now() < counted,
            "the announced alert is counted: {}",
            bot.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_command_silences_a_firing_probe_audited_and_refuses_bad_durations_and_viewers() {
    let port = closed_port().await;
    let probe = format!("closed-{port}");
    let key = format!("probe:{probe}");
    let bot = TestBot::start_with(BotOptions {
        extra_config: alerts_config(
            &format!("\"no-such-service-{port}\""),
            &http_probe(&probe, &format!("http://127.0.0.1:{port}/")),
        ),
        // The shared Swarm's services stay out of this test's platform layer.
        platform_services: Some(vec![format!("no-such-service-{port}")]),
        layer_label: Some(format!("sprocket.test.alsil-{port}")),
        ..Default::default()
    })
    .await;
    let olga = bot.person("olga", &["operator"]).await;
    let vera = bot.person("vera", &["viewer"]).await;
    alert_message(&bot, &key).await;

    // Bad durations: a specific ephemeral error each; nothing is silenced.
    for (duration, why) in [
        ("0m", "zero"),
        ("8d", "longest silence, 7d"),
        ("5w", "unit must be s, m, h or d"),
        ("30", "has no unit"),
        ("soon", "is not a duration"),
    ] {
        let r = silence(&bot, &olga, "probe:*", duration).await;
        assert!(r.ephemeral, "{duration}: {}", r.text());
        assert!(r.text().contains(why), "{duration}: {}", r.text());
    }
    let r = silence(&bot, &olga, "a key with spaces", "1h").await;
    assert!(
        r.ephemeral && r.text().contains("may not contain"),
        "{}",
        r.text()
    );
    // A viewer may not silence.
    let r = silence(&bot, &vera, "probe:*", "1h").await;
    assert!(
        r.ephemeral && r.text().contains("Not allowed"),
        "{}",
        r.text()
    );
    let r = list_silences(&bot, &olga).await;
    assert!(r.ephemeral);
    assert!(r.text().contains("Active silences (0)"), "{}", r.text());
    assert!(
        r.text().contains(&key),
        "the open alert is listed: {}",
        r.text()
    );

    // A glob, for two hours: answered in the channel with what it matches now.
    let before = now_ms();
    let r = bot
        .discord
        .invoke(
            &olga,
            "silence",
            json!([opts("key", "probe:closed-*"), opts("duration", "2h")]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Silenced"))
        .await
        .unwrap();
    assert!(!r.ephemeral, "a silence is announced: {}", r.text());
    let text = r.text();
    assert!(
        text.contains(&key),
        "it names the open alert it matches: {text}"
    );
    assert!(
        text.contains(":R>"),
        "until, as a Discord timestamp: {text}"
    );
    let r = list_silences(&bot, &olga).await;
    assert!(
        r.text().contains("Active silences (1)") && r.text().contains("probe:closed-*"),
        "{}",
        r.text()
    );

    // /status lists the silence and marks the alert; a silence is not a fix, so the failing
    // probe still colours it red (the layer has no services: only the probe decides).
    let r = bot
        .discord
        .invoke(&vera, "status", json!([opts("layer", "platform")]))
        .await
        .wait_final(T, |r| r.text().contains("Sprocket platform status"))
        .await
        .unwrap();
    let text = r.text();
    assert!(
        text.contains("Silences (1)") && text.contains("🔕 `probe:closed-*` until <t:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("`{key}` firing")) && text.contains("🔕"),
        "{text}"
    );
    assert_eq!(
        r.messages()[0].embeds[0]["color"].as_u64(),
        Some(RED),
        "silenced is not healthy: {text}"
    );

    // Audited: who, which pattern, until when; the viewer's refusal as denied.
    let rows = bot.audit_rows().await;
    let row = rows
        .iter()
        .find(|r| r.entry.command == "silence" && r.entry.params["pattern"] == "probe:closed-*")
        .expect("the silence is audited");
    assert_eq!(row.entry.outcome.as_str(), "ok");
    assert_eq!(row.entry.actor.id, olga.id.to_string());
    let until = row.entry.params["until_ms"].as_i64().unwrap();
    let two_hours = 2 * 3_600_000;
    assert!(
        until >= before + two_hours - 60_000 && until <= before + two_hours + 60_000,
        "{until}"
    );
    assert!(rows.iter().any(|r| r.entry.command == "silence"
        && r.entry.outcome.as_str() == "denied"
        && r.entry.actor.id == vera.id.to_string()));
    assert!(
        !rows
            .iter()
            .any(|r| r.entry.command == "silence" && r.entry.params["pattern"] == "probe:*"),
        "refused input is neither run nor audited as a silence"
    );
    bot.discord.assert_no_violations();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_button_on_a_real_alert_message_silences_its_keys_for_an_hour() {
    let swarm = TestSwarm::connect().await;
    let svc = crashing_service(&swarm, "prod-alsil").await;
    let bot = TestBot::start_with(BotOptions {
        extra_config: alerts_config(&format!("\"{}\"", svc.name()), ""),
        ..Default::default()
    })
    .await;
    let olga = bot.person("olga", &["operator"]).await;
    let vera = bot.person("vera", &["viewer"]).await;
    let firing = alert_message(&bot, svc.name()).await;
    let button = firing
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("alsil:"))
        .unwrap_or_else(|| panic!("a silence button on the alert: {:?}", firing.components));
    assert!(button.len() <= 100);

    // A viewer's click: refused, nothing silenced.
    let r = bot
        .discord
        .click(&vera, &firing, &button)
        .await
        .wait_final(T, |r| r.text().contains("Not allowed"))
        .await
        .unwrap();
    assert!(r.ephemeral);
    assert!(list_silences(&bot, &olga)
        .await
        .text()
        .contains("Active silences (0)"));

    // An operator's click: the message's keys silenced for an hour, confirmed to them alone.
    let before = now_ms();
    let r = bot
        .discord
        .click(&olga, &firing, &button)
        .await
        .wait_final(T, |r| r.text().contains("Silenced for 1 h"))
        .await
        .unwrap();
    assert!(r.ephemeral);
    assert!(
        r.text().contains(svc.name()),
        "names the keys: {}",
        r.text()
    );
    let list = list_silences(&bot, &olga).await.text();
    assert!(
        list.contains("Active silences (1)") && list.contains(svc.name()),
        "{list}"
    );
    // Everyone sees who silenced it, on the alert message itself.
    let deadline = Instant::now() + T;
    loop {
        let m = bot.discord.message(firing.id).expect("the alert message");
        if m.content.contains("Silenced by") {
            assert!(
                m.content.contains(&format!("<@{}>", olga.id)),
                "{}",
                m.content
            );
            assert!(m.text().contains(svc.name()), "the alert itself stays");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alert message was not marked: {}",
            m.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = bot.audit_rows().await;
    let row = rows
        .iter()
        .find(|r| {
            r.entry.command == "silence"
                && r.entry.params["via"] == "button"
                && r.entry.outcome.as_str() == "ok"
        })
        .expect("the click is audited");
    assert_eq!(row.entry.actor.id, olga.id.to_string());
    assert!(row.entry.params["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k.as_str().is_some_and(|k| k.contains(svc.name()))));
    let until = row.entry.params["until_ms"].as_i64().unwrap();
    assert!(
        until >= before + 3_600_000 - 60_000 && until <= before + 3_600_000 + 60_000,
        "{until}"
    );

    // A button for a notification the bot does not know (forged, or from before a restart).
    let r = bot
        .discord
        .click(&olga, &firing, "alsil:987654321")
        .await
        .wait_final(T, |r| r.text().contains("no longer known"))
        .await
        .unwrap();
    assert!(r.ephemeral && r.text().contains("/silence"), "{}", r.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_open_alerts_failing_probes_certificates_and_the_worst_colour() {
    let swarm = TestSwarm::connect().await;
    let svc = crashing_service(&swarm, "prod-alstat").await;
    let port = closed_port().await;
    let cert =
        probe_servers::tls_server("status-test", Duration::from_secs(3 * 86_400 + 3_600)).await;
    let probes = format!(
        "{}\n[[alerts.probes]]\nname = \"cert-{port}\"\nkind = \"tls\"\ntarget = \"{}\"\nserver_name = \"localhost\"\nlayer = \"platform\"\n",
        http_probe(&format!("closed-{port}"), &format!("http://127.0.0.1:{port}/")),
        cert.target()
    );
    let bot = TestBot::start_with(BotOptions {
        extra_config: alerts_config(&format!("\"{}\"", svc.name()), &probes),
        ..Default::default()
    })
    .await;
    let vera = bot.person("vera", &["viewer"]).await;
    alert_message(&bot, svc.name()).await;

    // The watcher publishes after each round: ask until everything is there.
    let want = [
        "Open alerts".to_string(),
        svc.name().to_string(),
        format!("❌ `closed-{port}` (http, critical)"),
        "Certificates".to_string(),
        "expires in 3 days".to_string(),
    ];
    let deadline = Instant::now() + ALERT_WAIT;
    let r = loop {
        let r = bot
            .discord
            .invoke(&vera, "status", json!([]))
            .await
            .wait_final(T, |r| r.text().contains("Sprocket platform status"))
            .await
            .unwrap();
        if want.iter().all(|w| r.text().contains(w.as_str())) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "status lacks some of {want:?}:\n{}",
            r.text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let first = &r.messages()[0];
    assert_eq!(first.embeds[0]["color"].as_u64(), Some(RED), "{}", r.text());
    assert!(r.text().contains("firing"), "{}", r.text());

    // Without a watcher, /status says so instead of looking fine.
    let plain = TestBot::start().await;
    let vic = plain.person("vic", &["operator"]).await;
    let r = plain
        .discord
        .invoke(&vic, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains("Sprocket platform status"))
        .await
        .unwrap();
    assert!(r.text().contains("alerts: not running"), "{}", r.text());
    let r = plain
        .discord
        .invoke(
            &vic,
            "silence",
            json!([opts("key", "probe:*"), opts("duration", "1h")]),
        )
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        r.ephemeral
            && r.text().contains("not running")
            && r.text().contains("nothing was silenced"),
        "{}",
        r.text()
    );
    bot.discord.assert_no_violations();
    plain.discord.assert_no_violations();
}

/// With `[vault]` and no `vault_seal` probe, `/status` asks Vault itself: a sealed Vault is red.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_asks_vault_directly_and_a_sealed_vault_is_red() {
    let mut bao = BaoServer::start_sealed(BaoStorage::InMemory).await;
    bao.init(5, 3).await;
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("vault-token");
    std::fs::write(&token, "not-needed-for-seal-status").unwrap();
    let bot = TestBot::start_with(BotOptions {
        extra_config: format!(
            "\n[vault]\naddress = \"{}\"\ntoken = {{ file = \"{}\" }}\n",
            bao.url(),
            token.display()
        ),
        ..Default::default()
    })
    .await;
    let vera = bot.person("vera", &["viewer"]).await;
    let r = bot
        .discord
        .invoke(&vera, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains("Sprocket platform status"))
        .await
        .unwrap();
    let text = r.text();
    assert!(text.contains("Vault"), "{text}");
    assert!(text.contains("sealed: 0/3 unseal shares given"), "{text}");
    assert_eq!(
        r.messages()[0].embeds[0]["color"].as_u64(),
        Some(RED),
        "{text}"
    );
    assert!(text.contains("alerts: not running"), "{text}");
    bot.discord.assert_no_violations();
}

/// The live role check of a silence (command or button) may outlast Discord's 3 s: the fake
/// enforces the deadline, GitHub answers after 4 s, and both still complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_acknowledges_within_discords_deadline_when_github_is_slow() {
    let port = closed_port().await;
    let probe = format!("slowgh-{port}");
    let key = format!("probe:{probe}");
    let bot = TestBot::start_with(BotOptions {
        extra_config: alerts_config(
            &format!("\"no-such-service-{port}\""),
            &http_probe(&probe, &format!("http://127.0.0.1:{port}/")),
        ),
        ..Default::default()
    })
    .await;
    let olga = bot.person("olga", &["operator"]).await;
    let firing = alert_message(&bot, &key).await;
    let button = firing
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("alsil:"))
        .expect("a silence button");
    bot.discord
        .set_callback_deadline(Some(Duration::from_secs(3)));
    bot.github
        .set_failure(Failure::Hang(Duration::from_secs(4)));

    let r = bot
        .discord
        .invoke(
            &olga,
            "silence",
            json!([opts("key", &key), opts("duration", "30m")]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Silenced"))
        .await
        .unwrap();
    assert_eq!(r.kind, 5, "deferred while GitHub is slow");
    let r = bot
        .discord
        .click(&olga, &firing, &button)
        .await
        .wait_final(T, |r| r.text().contains("Silenced for 1 h"))
        .await
        .unwrap();
    assert_eq!(r.kind, 5, "the click is deferred at once");
    assert!(r.ephemeral);
    bot.github.set_failure(Failure::None);
    bot.discord.assert_no_violations();
}
