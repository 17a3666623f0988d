//! Attacks on who a person is and on how often they may ask, through the fake Discord and the
//! fake GitHub (the real bot, a real SQLite store, the real Swarm where a request is needed):
//! a GitHub login renamed and handed to another account, a static link whose login is claimed,
//! floods of refused commands and clicks against the GitHub quota, clicks and forms from
//! channels outside the allow-list, and refusals after a slow GitHub check.

use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bot::{BotOptions, TestBot, APPROVALS, OFFTOPIC};
use sprocket_ops_tests::fake_discord::{FakeDiscord, Message, Response, TestUser};
use sprocket_ops_tests::fake_github::{Failure, API_PREFIX};
use sprocket_ops_tests::swarm::{ServiceGuard, TestService, TestSwarm};

const T: Duration = Duration::from_secs(30);

async fn platform_service(swarm: &TestSwarm, name: &str) -> ServiceGuard {
    let g = swarm
        .create_service(TestService::new(name, "main").label("sprocket.layer", "platform"))
        .await;
    swarm
        .wait_converged(g.name(), Duration::from_secs(60))
        .await
        .unwrap();
    g
}

/// `who` asks for `service` to be scaled to 0 (from `channel`); returns the posted request.
async fn request_scale_to_zero(
    bot: &TestBot,
    who: &TestUser,
    service: &str,
    channel: u64,
) -> Message {
    bot.discord
        .invoke_in(
            channel,
            who,
            "scale",
            json!([{ "name": "service", "value": service }, { "name": "replicas", "value": 0 }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .unwrap();
    bot.discord
        .wait_channel_message(
            APPROVALS,
            |m| m.text().contains(service) && !m.custom_ids().is_empty(),
            T,
        )
        .await
        .expect("the request is posted in the approvals channel")
}

/// Every message the person sees for this interaction is ephemeral (none is public).
fn all_ephemeral(r: &Response) -> bool {
    !r.messages().is_empty() && r.messages().iter().all(|m| m.is_ephemeral())
}

/// The attack: one person holds two GitHub accounts. From the one with the operator role they
/// ask to scale a service to 0; then they free the second account's login and rename the first
/// account to it. The second account's link still names that login, roles are read by login,
/// and "never the requester" compares ids: the old code let the second account approve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_renamed_onto_another_linked_account_cannot_approve_its_owners_request() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-idswap").await;
    let bot = TestBot::start().await;
    let mallory = bot.person("mallory", &["operator"]).await;
    let alt = bot.person("mal-alt", &[]).await;
    // Someone else who could approve, so the request can be made at all.
    bot.person("otto", &["operator"]).await;
    let msg = request_scale_to_zero(&bot, &mallory, svc.name(), FakeDiscord::CHANNEL_ID).await;

    bot.github.rename_user("mal-alt", "mal-b");
    bot.github.rename_user("mallory", "mal-alt");

    let r = bot
        .discord
        .click(&alt, &msg, &msg.approval_button("a"))
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        all_ephemeral(&r) && r.text().contains("/link again") && r.text().contains("mal-b"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains("Approve:"),
        "no confirmation offered: {}",
        r.text()
    );
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

/// The attack: a `static_links` login is renamed, and someone else claims the freed login
/// (and the roles of their own account). The static link must stay bound to the account it
/// named at start-up, and be refused once its login no longer names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_static_link_login_is_refused_not_bound_to_the_new_owner() {
    let discord_id = 880_001;
    let mut bot = TestBot::start_with(BotOptions {
        extra_config: format!("\n[github.static_links]\n\"{discord_id}\" = \"sam\"\n"),
        ..Default::default()
    })
    .await;
    bot.github.add_user("sam", 8_001);
    // Restarted now that the account exists: start-up resolves the static link.
    bot.github.clear_requests();
    bot.restart().await;
    let path = format!("{API_PREFIX}/users/sam");
    let deadline = std::time::Instant::now() + T;
    while bot.github.requests_to(&path).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "static links are resolved at start-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    bot.github.rename_user("sam", "sam-old");
    bot.github.add_user("sam", 8_002);
    bot.github
        .set_membership("sprocketbot", "oncall", "sam", "active");
    let sam = TestUser::new(discord_id, "sam-discord");
    let r = bot
        .discord
        .invoke(
            &sam,
            "restart",
            json!([{ "name": "service", "value": "prod-nothing" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Not allowed"))
        .await
        .unwrap();
    assert!(
        all_ephemeral(&r) && r.text().contains("/link again") && r.text().contains("sam-old"),
        "{}",
        r.text()
    );
    bot.discord.assert_no_violations();
}

/// The attack: a person without the role floods destructive commands and approval clicks
/// (live GitHub checks). The Discord id is rate-limited before identity is resolved and
/// refusals are remembered, so 200 refused invocations make at most a handful of GitHub calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_refused_commands_and_clicks_do_not_spend_the_github_quota() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-flood").await;
    let bot = TestBot::start().await;
    let rhea = bot.person("rhea", &["operator"]).await;
    bot.person("otto", &["operator"]).await;
    let vick = bot.person("vick", &["viewer"]).await;
    let msg = request_scale_to_zero(&bot, &rhea, svc.name(), FakeDiscord::CHANNEL_ID).await;
    let approve = msg.approval_button("a");
    bot.github.clear_requests();

    for i in 0..200 {
        let r = if i % 2 == 0 {
            bot.discord
                .invoke(
                    &vick,
                    "scale",
                    json!([{ "name": "service", "value": svc.name() }, { "name": "replicas", "value": 0 }]),
                )
                .await
                .wait_final(T, |r| !r.text().trim().is_empty())
                .await
                .unwrap()
        } else {
            bot.discord
                .click(&vick, &msg, &approve)
                .await
                .wait_final(T, |r| !r.text().trim().is_empty())
                .await
                .unwrap()
        };
        let text = r.text();
        assert!(
            all_ephemeral(&r)
                && (text.contains("operator")
                    || text.contains("do not allow")
                    || text.contains("rate limited")),
            "invocation {i}: {text}"
        );
    }
    let calls = bot.github.requests_to(API_PREFIX);
    assert!(
        calls.len() <= 8,
        "{} GitHub calls for 200 refused invocations: {:?}",
        calls.len(),
        calls.iter().map(|c| c.path.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

/// The attack: clicks and forms sent from a channel outside `[allow] channels` (a message
/// posted there before the allow-list changed, or a forged interaction). Slash commands were
/// refused there; buttons and modals were not checked at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clicks_and_forms_outside_the_allowed_channels_are_refused() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-allowlist").await;
    let perms =
        std::fs::read_to_string(sprocket_ops_tests::env::workspace_root().join("permissions.toml"))
            .unwrap()
            .replace("channels = []", "channels = [2100]");
    let bot = TestBot::start_with(BotOptions {
        permissions: Some(perms),
        ..Default::default()
    })
    .await;
    bot.discord.add_channel(2100, "ops");
    let ana = bot.person("ana", &["operator"]).await;
    let ben = bot.person("ben", &["operator"]).await;
    // Requested from the allowed channel; posted in the approvals channel, where the bot's
    // own buttons are accepted.
    let msg = request_scale_to_zero(&bot, &ana, svc.name(), 2100).await;
    let approve = msg.approval_button("a");
    bot.github.clear_requests();

    let r = bot
        .discord
        .click_in(OFFTOPIC, &ben, &msg, &approve)
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        all_ephemeral(&r) && r.text().contains("not accepted in this channel"),
        "{}",
        r.text()
    );
    let r = bot
        .discord
        .submit_modal(
            &ben,
            "vault:modal:0123456789abcdef",
            &[("share", "c2hhcmU=")],
        )
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        all_ephemeral(&r) && r.text().contains("not accepted in this channel"),
        "{}",
        r.text()
    );
    assert!(
        bot.github.requests_to(API_PREFIX).is_empty(),
        "refused before anyone asked GitHub"
    );
    // The same button in the approvals channel works.
    let r = bot
        .discord
        .click(&ben, &msg, &approve)
        .await
        .response(T)
        .await
        .unwrap();
    assert!(r.text().contains("Approve:"), "{}", r.text());
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}

/// The attack: a slow GitHub makes the bot defer publicly before the role check ends; the
/// refusal then replaced the public "thinking" message, for the whole channel to see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_a_slow_role_check_is_still_ephemeral() {
    let bot = TestBot::start().await;
    bot.discord
        .set_callback_deadline(Some(Duration::from_secs(3)));
    let vera = bot.person("vera", &["viewer"]).await;
    bot.github
        .set_failure(Failure::Hang(Duration::from_secs(4)));
    let r = bot
        .discord
        .invoke(
            &vera,
            "restart",
            json!([{ "name": "service", "value": "prod-web" }]),
        )
        .await
        .wait_final(T, |r| r.text().contains("Not allowed"))
        .await
        .unwrap();
    assert!(
        all_ephemeral(&r) && r.text().contains("operator"),
        "the refusal is for vera only: {r:?}"
    );
    bot.github.set_failure(Failure::None);
    bot.discord.assert_no_violations();
}

/// The attack: a slow GitHub during an approval click. The click was answered only after the
/// live check, past Discord's 3 s, so the refusal never arrived; now the click is acknowledged
/// in time and the refusal follows, ephemeral.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_refused_after_a_slow_role_check_is_acknowledged_and_ephemeral() {
    let swarm = TestSwarm::connect().await;
    let svc = platform_service(&swarm, "prod-slowclick").await;
    let bot = TestBot::start().await;
    let rhea = bot.person("rhea", &["operator"]).await;
    bot.person("otto", &["operator"]).await;
    let vera = bot.person("vera", &["viewer"]).await;
    let msg = request_scale_to_zero(&bot, &rhea, svc.name(), FakeDiscord::CHANNEL_ID).await;
    bot.discord
        .set_callback_deadline(Some(Duration::from_secs(3)));
    bot.github
        .set_failure(Failure::Hang(Duration::from_secs(4)));
    let r = bot
        .discord
        .click(&vera, &msg, &msg.approval_button("a"))
        .await
        .wait_final(T, |r| r.text().contains("do not allow"))
        .await
        .unwrap();
    let refusal: Vec<&Message> = r
        .followups
        .iter()
        .filter(|m| m.text().contains("do not allow"))
        .collect();
    assert!(
        !refusal.is_empty() && refusal.iter().all(|m| m.is_ephemeral()),
        "{r:?}"
    );
    bot.github.set_failure(Failure::None);
    assert_eq!(swarm.replicas(svc.name()).await.unwrap(), Some(1));
    bot.discord.assert_no_violations();
}
