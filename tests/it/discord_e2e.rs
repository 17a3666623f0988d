//! End to end through Discord's wire protocol: the real serenity/poise bot against the fake
//! Discord and fake GitHub, with the real Swarm and a real SQLite store. `/status` equals
//! `docker service ls`; identity, roles and refusals follow permissions.toml; every request
//! the bot sends is valid against Discord's OpenAPI spec.

use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot, OFFTOPIC};
use sprocket_ops_tests::fake_discord::Response;
use sprocket_ops_tests::fake_github::Failure;
use sprocket_ops_tests::swarm::{docker_service_ls, TestService, TestSwarm};

const T: Duration = Duration::from_secs(20);

fn refused(r: &Response) -> bool {
    r.text().contains("Not allowed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_through_discord_shows_exactly_what_docker_service_ls_shows() {
    let swarm = TestSwarm::connect().await;
    let web = swarm
        .create_service(
            TestService::new("prod-e2e", "main")
                .replicas(2)
                .label("sprocket.layer", "platform"),
        )
        .await;
    let api = swarm
        .create_service(
            TestService::new("prod-e2e", "v2")
                .replicas(1)
                .label("sprocket.layer", "platform"),
        )
        .await;
    swarm.wait_converged(web.name(), T).await.unwrap();
    swarm.wait_converged(api.name(), T).await.unwrap();

    let bot = TestBot::start().await;
    let viewer = bot.person("vera", &["viewer"]).await;
    let r = bot
        .discord
        .invoke(
            &viewer,
            "status",
            json!([{ "name": "layer", "value": "platform" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains(api.name()))
        .await
        .unwrap();
    assert_eq!(r.kind, 5, "status defers at once, then answers");
    let text = r.text();
    let ls = docker_service_ls();
    for name in [web.name(), api.name()] {
        let row = ls
            .iter()
            .find(|row| row.name == name)
            .expect("the CLI lists the service");
        let line = format!("`{}` {} `{}`", row.name, row.replicas, row.image);
        assert!(text.contains(&line), "status lacks {line:?}:\n{text}");
    }
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_shows_login_teams_and_included_roles() {
    let bot = TestBot::start().await;
    let dora = bot.person("dora", &["deployer"]).await;
    let r = bot
        .discord
        .invoke(&dora, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.ephemeral);
    let text = r.text();
    for want in [
        "dora",
        "sprocketbot/deployers",
        "deployer",
        "operator",
        "viewer",
    ] {
        assert!(text.contains(want), "whoami lacks {want}:\n{text}");
    }
    assert!(!text.contains("admin"), "{text}");
    let stranger = sprocket_ops_tests::fake_discord::TestUser::new(4242, "stranger");
    let r = bot
        .discord
        .invoke(&stranger, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.text().contains("not linked"), "{}", r.text());
    bot.discord.assert_no_violations();
}

/// Every command x every role (and no role, and an unlinked user) is allowed or refused exactly
/// as permissions.toml says: the expectation is computed from the file, not written by hand.
/// Valid options for each command, so the matrix tests authorisation, not parsing. Allowed
/// invocations really run: they target a throwaway service and change nothing lasting.
fn sample_options(command: &str, service: &str) -> serde_json::Value {
    match command {
        "logs" | "restart" => json!([{ "name": "service", "value": service }]),
        "bump" => {
            json!([{ "name": "service", "value": service }, { "name": "tag", "value": "main" }])
        }
        "scale" => {
            json!([{ "name": "service", "value": service }, { "name": "replicas", "value": 1 }])
        }
        "rollback" => {
            json!([{ "name": "service", "type": 1, "options": [{ "name": "name", "value": service }] }])
        }
        "cancel" | "unlock" | "history" => json!([{ "name": "layer", "value": "platform" }]),
        "deploy" => json!([{ "name": "layer_2", "type": 1, "options": [] }]),
        c if c.starts_with("vault_") => {
            json!([{ "name": c.trim_start_matches("vault_"), "type": 1, "options": [] }])
        }
        _ => json!([]),
    }
}

/// The slash command a permissions.toml key is invoked as (`vault_status` is `/vault status`).
fn slash_name(command: &str) -> &str {
    if command.starts_with("vault_") {
        "vault"
    } else {
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix_follows_permissions_toml() {
    let swarm = TestSwarm::connect().await;
    let svc = swarm
        .create_service(TestService::new("prod-matrix", "main").label("sprocket.layer", "platform"))
        .await;
    swarm.wait_converged(svc.name(), T).await.unwrap();
    let bot = TestBot::start_with(BotOptions {
        extra_config: "\n[limits]\ncommands_per_minute = 1000\n".into(),
        ..Default::default()
    })
    .await;
    bot.github.set_device_expires_in(1);
    let roles: Vec<String> = bot.permissions.role_names().map(str::to_string).collect();
    let mut people = vec![(
        None,
        sprocket_ops_tests::fake_discord::TestUser::new(4343, "unlinked"),
    )];
    people.push((Some(String::new()), bot.person("norole", &[]).await));
    for role in &roles {
        people.push((
            Some(role.clone()),
            bot.person(&format!("has-{role}"), &[role]).await,
        ));
    }
    let commands: Vec<(String, String)> = bot
        .permissions
        .commands()
        .map(|(c, r)| (c.to_string(), r.to_string()))
        .collect();
    let mut checked = 0;
    for (command, needed) in &commands {
        for (role, user) in &people {
            let held = match role {
                None => vec!["everyone".to_string()],
                Some(r) if r.is_empty() => vec!["everyone".to_string()],
                Some(r) => {
                    let mut teams = std::collections::BTreeSet::new();
                    teams.extend(bot.permissions.teams_of_role(r).iter().cloned());
                    bot.permissions.roles_for(&teams).into_iter().collect()
                }
            };
            let expected = held.contains(needed);
            let r = bot
                .discord
                .invoke(
                    user,
                    slash_name(command),
                    sample_options(command, svc.name()),
                )
                .await
                .response(T)
                .await
                .unwrap();
            assert_eq!(
                !refused(&r),
                expected,
                "/{command} as {} (role {role:?}) should be {}: {}",
                user.name,
                if expected { "allowed" } else { "refused" },
                r.text()
            );
            if !expected {
                assert!(r.ephemeral, "refusals are ephemeral");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, commands.len() * people.len());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_membership_grants_nothing_and_github_outage_is_explained() {
    let bot = TestBot::start().await;
    let paul = bot.person("paul", &[]).await;
    bot.github
        .set_membership("sprocketbot", "engineering", "paul", "pending");
    let r = bot
        .discord
        .invoke(&paul, "status", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(refused(&r) && r.text().contains("viewer"), "{}", r.text());

    // GitHub down and nothing cached: refused, saying why.
    let gail = bot.person("gail", &["viewer"]).await;
    bot.github.set_failure(Failure::ServerError);
    let r = bot
        .discord
        .invoke(&gail, "status", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(refused(&r) && r.text().contains("GitHub"), "{}", r.text());
    bot.github.set_failure(Failure::None);
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_specific_ephemeral_error_and_runs_nothing() {
    let bot = TestBot::start().await;
    let vic = bot.person("vic", &["operator"]).await;
    let r = bot
        .discord
        .invoke(
            &vic,
            "status",
            json!([{ "name": "layer", "value": "platfrom" }]),
        )
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.ephemeral, "{r:?}");
    assert!(r.text().contains("did you mean platform"), "{}", r.text());
    let r = bot
        .discord
        .invoke(
            &vic,
            "audit",
            json!([{ "name": "since", "value": "5 fortnights" }]),
        )
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.ephemeral && r.text().contains("unit"), "{}", r.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_says_when_to_retry() {
    let bot = TestBot::start_with(BotOptions {
        extra_config: "\n[limits]\ncommands_per_minute = 2\n".into(),
        ..Default::default()
    })
    .await;
    let vic = bot.person("rita", &["viewer"]).await;
    for _ in 0..2 {
        let r = bot
            .discord
            .invoke(&vic, "status", json!([]))
            .await
            .wait_final(T, |r| r.text().contains("platform"))
            .await
            .unwrap();
        assert!(!refused(&r), "{}", r.text());
    }
    let r = bot
        .discord
        .invoke(&vic, "status", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.ephemeral && r.text().contains("retry in"), "{}", r.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_outside_allowed_channels_are_refused() {
    let perms =
        std::fs::read_to_string(sprocket_ops_tests::env::workspace_root().join("permissions.toml"))
            .unwrap()
            .replace("channels = []", "channels = [2000]");
    let bot = TestBot::start_with(BotOptions {
        permissions: Some(perms),
        ..Default::default()
    })
    .await;
    let vic = bot.person("cleo", &["viewer"]).await;
    let r = bot
        .discord
        .invoke_in(OFFTOPIC, &vic, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("not accepted in this channel"),
        "{}",
        r.text()
    );
    let r = bot
        .discord
        .invoke_in(2000, &vic, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.text().contains("cleo"), "{}", r.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_unreachable_is_reported_and_the_bot_keeps_answering() {
    let bot = TestBot::start_with(BotOptions {
        docker_host: Some("unix:///nonexistent/docker.sock".into()),
        ..Default::default()
    })
    .await;
    let vic = bot.person("una", &["viewer"]).await;
    for _ in 0..2 {
        let r = bot
            .discord
            .invoke(&vic, "status", json!([]))
            .await
            .wait_final(T, |r| r.text().contains("unreachable"))
            .await
            .unwrap();
        assert!(r.text().contains("error id"), "{}", r.text());
        assert!(
            !r.text().contains("nonexistent"),
            "no raw engine detail in the channel: {}",
            r.text()
        );
    }
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_device_flow_then_roles_apply() {
    let bot = TestBot::start().await;
    bot.github.set_device_interval(0);
    bot.github.add_user("lena", 8_123);
    bot.github
        .set_membership("sprocketbot", "oncall", "lena", "active");
    let lena = sprocket_ops_tests::fake_discord::TestUser::new(777_001, "lena-discord");
    let link = bot.discord.invoke(&lena, "link", json!([])).await;
    let r = link
        .wait_final(T, |r| r.text().contains("enter the code"))
        .await
        .unwrap();
    assert!(r.ephemeral);
    let code = bot
        .github
        .pending_user_codes()
        .pop()
        .expect("a device code was issued");
    assert!(r.text().contains(&code), "{}", r.text());
    bot.github.approve_device(&code, "lena");
    let r = link
        .wait_final(T, |r| r.text().contains("Linked to GitHub account `lena`"))
        .await
        .unwrap();
    for token in bot.github.user_tokens() {
        assert!(!r.text().contains(&token));
        for req in bot.discord.requests() {
            assert!(
                !req.body
                    .map(|b| b.to_string())
                    .unwrap_or_default()
                    .contains(&token),
                "a user token reached Discord"
            );
        }
    }
    let r = bot
        .discord
        .invoke(&lena, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.text().contains("operator"), "{}", r.text());
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_commands_and_denials_in_discord_and_the_cli() {
    let bot = TestBot::start().await;
    let olga = bot.person("olga", &["operator"]).await;
    let nobody = bot.person("nobody", &[]).await;
    let r = bot
        .discord
        .invoke(&nobody, "status", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(refused(&r));
    bot.discord
        .invoke(&olga, "whoami", json!([]))
        .await
        .response(T)
        .await
        .unwrap();
    let r = bot
        .discord
        .invoke(&olga, "audit", json!([]))
        .await
        .wait_final(T, |r| r.text().contains("Audit log"))
        .await
        .unwrap();
    let text = r.text();
    assert!(text.contains("whoami") && text.contains("denied"), "{text}");

    let out = std::process::Command::new(sprocket_ops_tests::env::bot_binary())
        .args(["--config"])
        .arg(bot.config_path())
        .args(["audit", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let denied = rows
        .iter()
        .find(|r| r["command"] == "status" && r["outcome"] == "denied")
        .expect("the denial is audited");
    assert_eq!(denied["actor"]["github_login"], "nobody");
    let olga_id = olga.id.to_string();
    assert!(rows
        .iter()
        .any(|r| r["command"] == "whoami" && r["actor"]["id"].as_str() == Some(olga_id.as_str())));
    bot.discord.assert_no_violations();
}

/// A slow GitHub must not cost the interaction: Discord's 3 s deadline is enforced by the fake
/// (a late callback is a violation), so the bot defers first and finishes the check after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_github_check_still_acknowledges_within_discords_deadline() {
    let bot = TestBot::start().await;
    bot.discord
        .set_callback_deadline(Some(Duration::from_secs(3)));
    let sam = bot.person("sam", &["viewer"]).await;
    bot.github
        .set_failure(Failure::Hang(Duration::from_secs(4)));
    let r = bot
        .discord
        .invoke(&sam, "status", json!([]))
        .await
        .wait_final(T, |r| r.text().contains("platform"))
        .await
        .unwrap();
    assert_eq!(r.kind, 5, "deferred");
    bot.github.set_failure(Failure::None);
    bot.discord.assert_no_violations();
}
