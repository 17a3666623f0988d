//! Self-test of the fake Discord: a minimal real poise bot (independent of the sprocket-ops
//! bot code), connected exactly as production connects (`HttpBuilder::proxy` +
//! `ratelimiter_disabled(true)` + `ClientBuilder::new_with_http`), runs slash commands, a
//! deferred embed, a channel message with a button handled by the global event handler, a
//! modal round trip, autocomplete, an attachment, message edits, a thread, and a gateway
//! resume; plus unit tests that the OpenAPI validation really fires and that every payload
//! the fake emits deserializes into serenity's own types. Every wait has a deadline.

use std::time::{Duration, Instant};

use poise::serenity_prelude as serenity;
use serde_json::{json, Value};
use sprocket_ops_tests::fake_discord::{model, openapi, FakeDiscord, TestUser};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Ctx<'a> = poise::Context<'a, (), Error>;

/// Deadline for anything the bot should do promptly (generous for a loaded 2-core machine).
const T: Duration = Duration::from_secs(10);

/// Replies "pong".
#[poise::command(slash_command)]
async fn ping(ctx: Ctx<'_>) -> Result<(), Error> {
    ctx.say("pong").await?;
    Ok(())
}

/// Defers, then sends an embed.
#[poise::command(slash_command)]
async fn report(ctx: Ctx<'_>, #[description = "Subject"] what: String) -> Result<(), Error> {
    ctx.defer().await?;
    let embed = serenity::CreateEmbed::new()
        .title("Report")
        .description(format!("about {what}"))
        .field("status", "green", true)
        .footer(serenity::CreateEmbedFooter::new("sprocket"));
    ctx.send(poise::CreateReply::default().embed(embed)).await?;
    Ok(())
}

/// Posts a message with a button into the channel, answers ephemerally.
#[poise::command(slash_command)]
async fn post(ctx: Ctx<'_>) -> Result<(), Error> {
    let button = serenity::CreateButton::new("approve:1")
        .label("Approve")
        .style(serenity::ButtonStyle::Success);
    serenity::ChannelId::new(FakeDiscord::CHANNEL_ID)
        .send_message(
            ctx,
            serenity::CreateMessage::new()
                .content("Approve deploy?")
                .components(vec![serenity::CreateActionRow::Buttons(vec![button])]),
        )
        .await?;
    ctx.send(
        poise::CreateReply::default()
            .content("posted")
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

/// Posts, edits the posted message, opens a thread on it and posts there.
#[poise::command(slash_command)]
async fn edits(ctx: Ctx<'_>) -> Result<(), Error> {
    let channel = serenity::ChannelId::new(FakeDiscord::CHANNEL_ID);
    let mut msg = channel.say(ctx, "step 1").await?;
    msg.edit(ctx, serenity::EditMessage::new().content("step 2"))
        .await?;
    let thread = channel
        .create_thread_from_message(ctx, msg.id, serenity::CreateThread::new("deploy log"))
        .await?;
    thread.id.say(ctx, "in thread").await?;
    let reply = ctx.say("working").await?;
    reply
        .edit(ctx, poise::CreateReply::default().content("done"))
        .await?;
    Ok(())
}

/// Replies with a file attachment.
#[poise::command(slash_command)]
async fn file(ctx: Ctx<'_>) -> Result<(), Error> {
    let attachment = serenity::CreateAttachment::bytes(b"hello file".to_vec(), "log.txt");
    ctx.send(
        poise::CreateReply::default()
            .content("here")
            .attachment(attachment),
    )
    .await?;
    ctx.send(
        poise::CreateReply::default()
            .content("and a follow-up")
            .ephemeral(true),
    )
    .await?;
    Ok(())
}

#[derive(Debug, poise::Modal)]
#[name = "Why?"]
struct ReasonModal {
    #[name = "Reason"]
    reason: String,
}

/// Shows a modal and echoes the submitted reason.
#[poise::command(slash_command)]
async fn reason(ctx: poise::ApplicationContext<'_, (), Error>) -> Result<(), Error> {
    let data = poise::execute_modal(ctx, None::<ReasonModal>, Some(T)).await?;
    match data {
        Some(m) => ctx.say(format!("reason: {}", m.reason)).await?,
        None => ctx.say("no reason").await?,
    };
    Ok(())
}

async fn complete_service(_ctx: Ctx<'_>, partial: &str) -> serenity::CreateAutocompleteResponse {
    let choices = ["web", "worker", "db"]
        .into_iter()
        .filter(|s| s.starts_with(partial))
        .map(serenity::AutocompleteChoice::from)
        .collect();
    serenity::CreateAutocompleteResponse::new().set_choices(choices)
}

/// Service operations (subcommands + autocomplete).
#[poise::command(slash_command, subcommands("status"))]
async fn service(_ctx: Ctx<'_>) -> Result<(), Error> {
    Ok(())
}

/// Status of a service.
#[poise::command(slash_command)]
async fn status(
    ctx: Ctx<'_>,
    #[description = "Service"]
    #[autocomplete = "complete_service"]
    name: String,
    #[description = "Replicas"] replicas: Option<u32>,
) -> Result<(), Error> {
    ctx.say(format!("{name}: {} replicas", replicas.unwrap_or(1)))
        .await?;
    Ok(())
}

/// Global event handler: answers the "approve:" buttons.
async fn on_event(
    framework: poise::FrameworkContext<'_, (), Error>,
    event: &serenity::FullEvent,
) -> Result<(), Error> {
    if let serenity::FullEvent::InteractionCreate {
        interaction: serenity::Interaction::Component(c),
    } = event
    {
        if c.data.custom_id.starts_with("approve:") {
            let msg = serenity::CreateInteractionResponseMessage::new()
                .content(format!("Approved by {}", c.user.name))
                .components(vec![]);
            c.create_response(
                framework.serenity_context,
                serenity::CreateInteractionResponse::UpdateMessage(msg),
            )
            .await?;
        }
    }
    Ok(())
}

/// A running fake plus the bot connected to it; the bot task is aborted on drop.
struct Harness {
    fake: FakeDiscord,
    bot: tokio::task::JoinHandle<()>,
    alice: TestUser,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.bot.abort();
    }
}

async fn start() -> Harness {
    let fake = FakeDiscord::start().await;
    let framework = poise::Framework::<(), Error>::builder()
        .options(poise::FrameworkOptions {
            commands: vec![
                ping(),
                report(),
                post(),
                edits(),
                file(),
                reason(),
                service(),
            ],
            initialize_owners: false,
            event_handler: |framework, event| Box::pin(on_event(framework, event)),
            ..Default::default()
        })
        .setup(|ctx, _ready, framework| {
            Box::pin(async move {
                poise::builtins::register_in_guild(
                    ctx,
                    &framework.options().commands,
                    serenity::GuildId::new(FakeDiscord::GUILD_ID),
                )
                .await?;
                Ok(())
            })
        })
        .build();
    let http = serenity::HttpBuilder::new("fake-bot-token")
        .proxy(fake.api_base_url())
        .ratelimiter_disabled(true)
        .build();
    let intents = serenity::GatewayIntents::non_privileged();
    let mut client = serenity::ClientBuilder::new_with_http(http, intents)
        .framework(framework)
        .await
        .expect("build serenity client");
    let bot = tokio::spawn(async move {
        if let Err(e) = client.start().await {
            eprintln!("bot stopped: {e}");
        }
    });
    fake.wait_ready(T).await.expect("gateway READY");
    let registered = fake
        .wait_commands_registered(T)
        .await
        .expect("commands registered");
    assert!(
        registered.iter().any(|c| c["name"] == "ping"),
        "{registered:?}"
    );
    Harness {
        fake,
        bot,
        alice: TestUser::new(7001, "alice"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_slash_say() {
    let h = start().await;
    let i = h.fake.invoke(&h.alice, "ping", json!([])).await;
    let r = i.response(T).await.expect("ping answered");
    assert_eq!(r.kind, 4);
    assert!(!r.ephemeral);
    assert_eq!(
        r.original.as_ref().map(|m| m.content.as_str()),
        Some("pong")
    );
    assert!(r.latency() < T);
    // The answer is in the channel too, and every request was recorded.
    let msgs = h.fake.channel_messages(FakeDiscord::CHANNEL_ID).await;
    assert!(msgs.iter().any(|m| m.content == "pong"));
    let reqs = h.fake.requests();
    assert!(reqs
        .iter()
        .any(|r| r.method == "GET" && r.path == "/api/v10/gateway"));
    assert!(reqs.iter().any(|r| r.route.as_deref()
        == Some("/interactions/{interaction_id}/{interaction_token}/callback")
        && r.body.as_ref().is_some_and(|b| b["type"] == 4)));
    h.fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_deferred_embed() {
    let h = start().await;
    let i = h
        .fake
        .invoke(
            &h.alice,
            "report",
            json!([{"name": "what", "value": "disk"}]),
        )
        .await;
    let first = i.response(T).await.expect("report acknowledged");
    assert_eq!(first.kind, 5);
    let r = i
        .wait_final(T, |r| {
            r.original.as_ref().is_some_and(|m| !m.embeds.is_empty())
        })
        .await
        .expect("embed arrives");
    let original = r.original.expect("original");
    assert_eq!(original.embeds[0]["title"], "Report");
    let text = original.text();
    assert!(
        text.contains("about disk") && text.contains("green") && text.contains("sprocket"),
        "{text}"
    );
    assert_eq!(
        original.flags & model::FLAG_LOADING,
        0,
        "loading flag cleared"
    );
    h.fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_button_click() {
    let h = start().await;
    let i = h.fake.invoke(&h.alice, "post", json!([])).await;
    let r = i.response(T).await.expect("post answered");
    assert_eq!(r.kind, 4);
    assert!(r.ephemeral);
    // Ephemeral replies are not part of the channel listing.
    let posted = h
        .fake
        .wait_channel_message(
            FakeDiscord::CHANNEL_ID,
            |m| m.custom_ids().contains(&"approve:1".to_string()),
            T,
        )
        .await
        .expect("button message");
    assert!(h
        .fake
        .channel_messages(FakeDiscord::CHANNEL_ID)
        .await
        .iter()
        .all(|m| m.content != "posted"));
    let bob = TestUser::new(7002, "bob");
    let click = h.fake.click(&bob, &posted, "approve:1").await;
    let r = click.response(T).await.expect("click answered");
    assert_eq!(r.kind, 7);
    let updated = r.original.expect("clicked message");
    assert_eq!(updated.id, posted.id);
    assert_eq!(updated.content, "Approved by bob");
    assert!(updated.custom_ids().is_empty());
    let now = h.fake.message(posted.id).expect("still there");
    assert_eq!(now.content, "Approved by bob");
    h.fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_modal_round_trip() {
    let h = start().await;
    let i = h.fake.invoke(&h.alice, "reason", json!([])).await;
    let r = i.response(T).await.expect("modal shown");
    assert_eq!(r.kind, 9);
    let modal = r.modal.expect("modal data");
    let custom_id = modal["custom_id"]
        .as_str()
        .expect("modal custom_id")
        .to_string();
    let field = modal["components"][0]["components"][0]["custom_id"]
        .as_str()
        .expect("text input custom_id")
        .to_string();
    let submit = h
        .fake
        .submit_modal(&h.alice, &custom_id, &[(&field, "disk full")])
        .await;
    let ack = submit.response(T).await.expect("modal submit acknowledged");
    assert_eq!(ack.kind, 6);
    let r = i
        .wait_final(T, |r| {
            r.followups.iter().any(|m| m.content == "reason: disk full")
        })
        .await
        .expect("reason echoed");
    assert_eq!(r.kind, 9);
    h.fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_gateway_resume() {
    let h = start().await;
    assert_eq!(h.fake.gateway_connections(), 1);
    h.fake.drop_gateway().await;
    h.fake
        .wait_gateway_connections(2, T)
        .await
        .expect("bot reconnects");
    let (identifies, resumes) = h.fake.gateway_sessions();
    assert_eq!(
        (identifies, resumes),
        (1, 1),
        "serenity resumed the session"
    );
    let i = h.fake.invoke(&h.alice, "ping", json!([])).await;
    let r = i.response(T).await.expect("ping after resume");
    assert_eq!(r.original.map(|m| m.content), Some("pong".to_string()));
    // An abrupt drop (no close frame) is survived too.
    h.fake.drop_gateway_abrupt().await;
    h.fake
        .wait_gateway_connections(3, T)
        .await
        .expect("bot reconnects after abrupt drop");
    let i = h.fake.invoke(&h.alice, "ping", json!([])).await;
    i.response(T).await.expect("ping after abrupt drop");
    h.fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_unanswered_interaction_is_an_error() {
    let h = start().await;
    let started = Instant::now();
    let i = h.fake.invoke(&h.alice, "nosuchcommand", json!([])).await;
    let err = i
        .response(Duration::from_millis(800))
        .await
        .expect_err("nobody answers");
    assert!(started.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(msg.contains("/nosuchcommand"), "{msg}");
    // Answering it by hand (id + token) with `?with_response=true` gives the callback object.
    let path = format!(
        "/api/v10/interactions/{}/{}/callback?&with_response=true",
        i.id(),
        i.token()
    );
    let answer = raw_http(
        &h.fake.api_base_url(),
        "POST",
        &path,
        r#"{"type":4,"data":{"content":"late"}}"#,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"response_message_id\""), "{answer}");
    let r = i.response(T).await.expect("answered by hand");
    assert_eq!(r.original.map(|m| m.content), Some("late".to_string()));
    h.fake.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_edits_threads_files_autocomplete_subcommands() {
    let h = start().await;
    // Message edits, a thread from a message, an interaction reply edit.
    let i = h.fake.invoke(&h.alice, "edits", json!([])).await;
    let r = i
        .wait_final(T, |r| {
            r.original.as_ref().is_some_and(|m| m.content == "done")
        })
        .await
        .expect("edits finished");
    assert_eq!(r.kind, 4);
    let posted = h
        .fake
        .wait_channel_message(FakeDiscord::CHANNEL_ID, |m| m.content == "step 2", T)
        .await
        .expect("edited channel message");
    assert!(posted.raw["edited_timestamp"].is_string());
    let in_thread = h
        .fake
        .wait_channel_message(posted.id, |m| m.content == "in thread", T)
        .await
        .expect("thread message (thread id = message id)");
    assert_eq!(in_thread.channel_id, posted.id);

    // A multipart reply with a file, then an ephemeral follow-up.
    let i = h.fake.invoke(&h.alice, "file", json!([])).await;
    let r = i
        .wait_final(T, |r| r.followups.len() == 1)
        .await
        .expect("file + follow-up");
    let original = r.original.expect("original");
    assert_eq!(
        original.attachments,
        vec![("log.txt".to_string(), b"hello file".to_vec())]
    );
    assert!(r.followups[0].is_ephemeral());
    let req = h
        .fake
        .requests()
        .into_iter()
        .find(|r| !r.attachments.is_empty())
        .expect("multipart request recorded");
    assert_eq!(req.body.as_ref().map(|b| b["type"].clone()), Some(json!(4)));

    // Autocomplete on a subcommand option, then the subcommand itself.
    let a = h
        .fake
        .autocomplete(
            &h.alice,
            "service status",
            json!([{"name": "name", "value": "w", "focused": true}]),
        )
        .await;
    let r = a.response(T).await.expect("autocomplete answered");
    assert_eq!(r.kind, 8);
    let names: Vec<&str> = r
        .choices
        .as_ref()
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, vec!["web", "worker"]);
    let i = h
        .fake
        .invoke(
            &h.alice,
            "service status",
            json!([{"name": "name", "value": "web"}, {"name": "replicas", "value": 3}]),
        )
        .await;
    let r = i.response(T).await.expect("subcommand answered");
    assert_eq!(
        r.original.map(|m| m.content),
        Some("web: 3 replicas".to_string())
    );
    h.fake.assert_no_violations();
}

#[test]
fn fake_discord_validator_fires() {
    let path = "/interactions/123/tok/callback";
    let bad =
        openapi::validate_request("POST", path, Some(&json!({"type": "not-a-number"})), false);
    assert!(
        !bad.is_empty(),
        "an invalid callback body must be a violation"
    );
    assert!(
        bad[0].contains("/interactions/{interaction_id}/{interaction_token}/callback"),
        "{bad:?}"
    );
    let good = openapi::validate_request(
        "POST",
        path,
        Some(&json!({"type": 4, "data": {"content": "hi", "flags": 64}})),
        false,
    );
    assert!(good.is_empty(), "{good:?}");
    let too_long = openapi::validate_request(
        "POST",
        "/channels/1/messages",
        Some(&json!({"content": "x".repeat(4001)})),
        false,
    );
    // The spec allows 4000 characters of content (Discord's classic limit is 2000).
    assert!(
        !too_long.is_empty(),
        "content over the spec's 4000 chars must be a violation"
    );
    let attachment = openapi::validate_request(
        "POST",
        "/channels/1/messages",
        Some(&json!({"content": "f", "attachments": [{"id": 0, "filename": "a.txt"}]})),
        true,
    );
    assert!(
        attachment.is_empty(),
        "integer attachment ids are accepted: {attachment:?}"
    );
    let bad_embed = openapi::validate_request(
        "PATCH",
        "/webhooks/42/tok/messages/@original",
        Some(&json!({"embeds": [{"title": "x".repeat(300)}]})),
        false,
    );
    assert!(
        !bad_embed.is_empty(),
        "embed title over 256 chars must be a violation"
    );
    assert!(!openapi::validate_request("GET", "/no/such/route", None, false).is_empty());
    assert!(!openapi::validate_request("PUT", "/gateway", None, false).is_empty());
    assert!(openapi::validate_request("GET", "/gateway", None, false).is_empty());
    // `@original` matches the literal template, not `{message_id}`.
    let (template, _) = openapi::spec()
        .match_route("PATCH", "/webhooks/42/tok/messages/@original")
        .expect("route");
    assert_eq!(
        template,
        "/webhooks/{webhook_id}/{webhook_token}/messages/@original"
    );
}

/// A minimal HTTP/1.1 request to the fake (no serenity), returning the raw response text.
async fn raw_http(base_url: &str, method: &str, path: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base_url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_discord_violations_are_recorded() {
    let fake = FakeDiscord::start().await;
    // Raw HTTP, no serenity: an invalid callback body and an unknown route.
    let url = fake.api_base_url();
    let resp = raw_http(
        &url,
        "POST",
        "/api/v10/interactions/1/x/callback",
        r#"{"type":"not-a-number"}"#,
    )
    .await;
    assert!(resp.contains("404"), "{resp}");
    let resp = raw_http(&url, "GET", "/api/v10/nothing/here?&a=1", "").await;
    assert!(resp.contains("Unknown route"), "{resp}");
    let v = fake.violations();
    assert!(
        v.iter()
            .any(|v| v.contains("callback") && v.contains("not-a-number")),
        "{v:?}"
    );
    assert!(v.iter().any(|v| v.contains("/nothing/here")), "{v:?}");
    let reqs = fake.requests();
    assert_eq!(reqs[1].query.as_deref(), Some("&a=1"));
    let panicked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.assert_no_violations()));
    assert!(panicked.is_err());
}

#[test]
fn fake_discord_payloads_deserialize_in_serenity() {
    let app = FakeDiscord::APPLICATION_ID;
    let body = json!({
        "content": "hi",
        "embeds": [{"title": "t", "fields": [{"name": "a", "value": "b"}]}],
        "components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "L", "custom_id": "c"}]}],
    });
    let msg = model::message(model::NewMessage {
        id: model::snowflake(),
        channel_id: FakeDiscord::CHANNEL_ID,
        app_id: app,
        kind: 0,
        webhook: false,
        body: &body,
        extra_flags: 0,
        attachments: vec![model::attachment(
            5,
            "http://x",
            1,
            "a.txt",
            3,
            None,
            Some("text/plain"),
        )],
    });
    serde_json::from_value::<serenity::Message>(msg.clone()).expect("Message");
    let channel = model::channel(2000, 1000, 0, "ops", None, None);
    serde_json::from_value::<serenity::GuildChannel>(channel.clone()).expect("GuildChannel");
    let thread = model::channel(3000, 1000, 11, "t", Some(2000), Some(app));
    serde_json::from_value::<serenity::GuildChannel>(thread.clone()).expect("thread");
    let guild = model::guild_create(1000, app, vec![channel.clone()], vec![thread]);
    serde_json::from_value::<serenity::Guild>(guild.clone()).expect("Guild");
    let ready = model::ready(app, 1000, "s", "ws://x/gw", Some(json!([0, 1])));
    serde_json::from_value::<serenity::Ready>(ready.clone()).expect("Ready");
    let frame = json!({"op": 0, "t": "READY", "s": 1, "d": ready});
    assert!(matches!(
        serde_json::from_value::<serenity::GatewayEvent>(frame),
        Ok(serenity::GatewayEvent::Dispatch(
            _,
            serenity::Event::Ready(_)
        ))
    ));
    let frame = json!({"op": 0, "t": "GUILD_CREATE", "s": 2, "d": guild});
    assert!(matches!(
        serde_json::from_value::<serenity::GatewayEvent>(frame),
        Ok(serenity::GatewayEvent::Dispatch(
            _,
            serenity::Event::GuildCreate(_)
        ))
    ));

    let member = model::member(7, "alice", &[5], model::DEFAULT_MEMBER_PERMISSIONS);
    let partial = json!({"id": "2000", "type": 0, "name": "ops", "permissions": "0"});
    let make = |kind: u8, data: Value, message: Option<Value>| {
        let d = model::interaction(model::InteractionSpec {
            id: model::snowflake(),
            app_id: app,
            kind,
            token: "tok",
            guild_id: 1000,
            channel: partial.clone(),
            member: member.clone(),
            attachment_size_limit: 10 << 20,
            data,
            message,
        });
        json!({"op": 0, "t": "INTERACTION_CREATE", "s": 1, "d": d})
    };
    let frames = [
        make(
            2,
            json!({"id": "9", "name": "ping", "type": 1, "options": [{"name": "sub", "type": 1, "options": [{"name": "x", "type": 3, "value": "v"}]}]}),
            None,
        ),
        make(
            3,
            json!({"custom_id": "c", "component_type": 2}),
            Some(msg.clone()),
        ),
        make(
            4,
            json!({"id": "9", "name": "ping", "type": 1, "options": [{"name": "x", "type": 3, "value": "v", "focused": true}]}),
            None,
        ),
        make(
            5,
            json!({"custom_id": "m", "components": [{"type": 1, "components": [{"type": 4, "custom_id": "f", "value": "v"}]}]}),
            None,
        ),
    ];
    for f in frames {
        match serde_json::from_value::<serenity::GatewayEvent>(f.clone()) {
            Ok(serenity::GatewayEvent::Dispatch(_, serenity::Event::InteractionCreate(_))) => {}
            other => panic!("serenity does not see INTERACTION_CREATE in {f}: {other:?}"),
        }
    }
}
