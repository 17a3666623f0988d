//! Break-glass from the CLI (issue 12), through the real binary against the real Swarm and the
//! fake Discord: no row, no action (an audit log that refuses the row means nothing runs);
//! the row is written before the action, with the real uid and `SUDO_USER`; the next `serve`
//! start posts every break-glass action since the last post to the audit channel.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use sprocket_ops_tests::bot::{TestBot, AUDIT};
use sprocket_ops_tests::env;
use sprocket_ops_tests::swarm::{TestService, TestSwarm};

fn cli(cfg: &Path, args: &[&str]) -> Output {
    Command::new(env::bot_binary())
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("DISCORD_TOKEN")
        .env("USER", "root-shell")
        .env("SUDO_USER", "alice-sudo")
        .env("SUDO_UID", "1000")
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// This process's real uid, as the kernel reports it (the CLI child has the same).
fn real_uid() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap()
        .parse()
        .unwrap()
}

async fn replicas(swarm: &TestSwarm, name: &str) -> Option<i64> {
    swarm
        .inspect(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.mode)
        .and_then(|m| m.replicated)
        .and_then(|r| r.replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_with_an_unwritable_audit_log_changes_nothing() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(TestService::new("prod-bg-norow", "main"))
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let mut bot = TestBot::start().await;
    bot.stop().await;
    // The audit log refuses every new row (a full disk, a broken database, an attacker).
    let pool = sqlx::SqlitePool::connect(&bot.database_url())
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER test_audit_refused BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let out = cli(
        &bot.config_path(),
        &[
            "scale",
            svc.name(),
            "0",
            "--break-glass",
            "discord is down, incident 7001",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no row, no action"), "{}", text(&out));
    assert_eq!(
        replicas(&swarm, svc.name()).await,
        Some(1),
        "nothing ran without its audit row"
    );
    svc.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_is_audited_before_it_runs_as_the_real_uid_and_the_next_start_posts_it() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(TestService::new("prod-bg-post", "main"))
        .await;
    swarm
        .wait_converged(svc.name(), Duration::from_secs(60))
        .await
        .unwrap();
    let mut bot = TestBot::start().await;
    bot.stop().await;

    let out = cli(
        &bot.config_path(),
        &[
            "scale",
            svc.name(),
            "0",
            "--break-glass",
            "discord is down, incident 7101",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(replicas(&swarm, svc.name()).await, Some(0));

    // Two rows: `started` before the action, then its result.
    let rows = bot.audit_rows().await;
    let glass: Vec<_> = rows
        .iter()
        .filter(|r| r.entry.command == "break_glass.scale_to_zero")
        .collect();
    assert_eq!(glass.len(), 2, "{glass:?}");
    let (done, started) = (glass[0], glass[1]); // newest first
    assert!(started.id < done.id);
    assert_eq!(
        (started.entry.outcome.as_str(), done.entry.outcome.as_str()),
        ("started", "ok")
    );
    let op = &started.entry.params["operator"];
    assert_eq!(op["uid"].as_u64(), Some(real_uid()), "{op}");
    assert_eq!(op["sudo_user"], "alice-sudo", "{op}");
    assert_eq!(op["sudo_uid"], "1000", "{op}");
    assert_eq!(
        started.entry.params["break_glass"],
        "discord is down, incident 7101"
    );
    // The row is older than the change it allowed.
    let updated = swarm.inspect(svc.name()).await.unwrap().updated_at.unwrap();
    let updated_ms = chrono::DateTime::parse_from_rfc3339(&updated)
        .unwrap()
        .timestamp_millis();
    assert!(
        started.entry.at_ms <= updated_ms,
        "row at {} after the update at {updated_ms}",
        started.entry.at_ms
    );

    // The next start tells the audit channel.
    bot.restart().await;
    let posted = bot
        .discord
        .wait_channel_message(
            AUDIT,
            |m| m.text().contains("incident 7101"),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .text();
    for want in [
        "break-glass",
        "scale_to_zero",
        svc.name(),
        "sudo by alice-sudo",
        &format!("uid {}", real_uid()),
        "started",
        "ok",
    ] {
        assert!(posted.contains(want), "{want:?} in {posted}");
    }

    // Only what came since the last post is posted at the start after.
    bot.stop().await;
    let out = cli(
        &bot.config_path(),
        &[
            "scale",
            svc.name(),
            "0",
            "--break-glass",
            "second outage, incident 7102",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    bot.restart().await;
    let second = bot
        .discord
        .wait_channel_message(
            AUDIT,
            |m| m.text().contains("incident 7102"),
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .text();
    assert!(!second.contains("incident 7101"), "{second}");
    let firsts = bot
        .discord
        .channel_messages(AUDIT)
        .await
        .iter()
        .filter(|m| m.text().contains("incident 7101"))
        .count();
    assert_eq!(firsts, 1, "the first action was posted once");
    bot.discord.assert_no_violations();
    svc.remove().await.unwrap();
}
