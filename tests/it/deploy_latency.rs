//! What a real Pulumi's latency and its other CLI versions break, end to end through the fake
//! Discord with the Pulumi stand-in on the real Swarm: a slow preview behind the failed deploy's
//! "Request rollback" button still acknowledges the click within Discord's 3 s deadline; the
//! approved rollback is followed live (progress edits, then the final report) on a reply to the
//! approval message and for the requester where they asked; an event log in an older CLI's
//! shape (no `sequence`, no `isPreview`) still counts the steps; a 300-character tag makes no
//! embed Discord would reject.

use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bot::APPROVALS;
use sprocket_ops_tests::fake_discord::FakeDiscord;
use sprocket_ops_tests::swarm::ServiceGuard;

use crate::deploy_e2e::{
    assert_running_tag, click, deploy_opts, deploy_until_done, platform_dir, setup, write_spec, T,
};

/// The stand-in's `preview` takes this long: past Discord's 3 s deadline on its own.
const SLOW_PREVIEW_MS: u64 = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_preview_behind_request_rollback_is_acknowledged_in_time_and_the_approved_run_is_followed_live(
) {
    let (_swarm, guards, bot) = setup("latency", json!({})).await;
    let dana = bot.person("dana", &["deployer"]).await;
    let pat = bot.person("pat", &["deployer"]).await;
    let r = deploy_until_done(&bot, &dana, "v2").await;
    assert!(r.text().contains("succeeded"), "{}", r.text());
    let refs: Vec<&ServiceGuard> = guards.iter().collect();
    write_spec(
        &platform_dir(&bot),
        &refs,
        json!({ "fail_resource": "svc1", "fail_message": "pulling: unauthorized" }),
    );
    let failed = deploy_until_done(&bot, &dana, "main").await;
    assert!(failed.text().contains("failed"), "{}", failed.text());

    // From now on pulumi is slow, as a real one is: each preview takes 4 s, each step 2.5 s.
    write_spec(
        &platform_dir(&bot),
        &refs,
        json!({ "preview_delay_ms": SLOW_PREVIEW_MS, "step_delay_ms": 2500 }),
    );
    bot.discord
        .set_callback_deadline(Some(Duration::from_secs(3)));
    let report = failed.original.clone().expect("the deploy message");
    let clicked = bot.discord.click(&dana, &report, "deployrb:platform").await;
    let ack = clicked.response(T).await.unwrap();
    assert!(
        ack.latency() < Duration::from_secs(3),
        "acknowledged after {:?}",
        ack.latency()
    );
    assert!(ack.ephemeral, "the acknowledgement is ephemeral");
    let r = clicked
        .wait_final(T, |r| {
            r.text().contains("Rollback requested") || r.text().contains("failed")
        })
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("Rollback requested"),
        "{}",
        r.text()
    );
    let request = bot
        .discord
        .wait_channel_message(
            APPROVALS,
            |m| m.text().contains("back to image `v2`") && !m.custom_ids().is_empty(),
            T,
        )
        .await
        .expect("the rollback request is posted");
    let approve = request.approval_button("a");
    let r = click(&bot, &pat, &request, &approve).await;
    let confirm_msg = r.original.clone().expect("a confirmation");
    let confirm = confirm_msg.approval_button("c");
    let done = bot
        .discord
        .click(&pat, &confirm_msg, &confirm)
        .await
        .wait_final(T, |r| {
            r.text().contains("Done") || r.text().contains("Failed") || r.text().contains("void")
        })
        .await
        .unwrap();
    assert!(done.text().contains("Done"), "{}", done.text());
    assert_running_tag(&guards, "v2");

    // The run was followed: in the approvals channel (a reply to the request) and where the
    // requester asked (the failed deploy's channel), each with progress edits, then the report.
    for channel in [APPROVALS, FakeDiscord::CHANNEL_ID] {
        let run = bot
            .discord
            .wait_channel_message(
                channel,
                |m| m.text().contains("approved request") && m.text().contains("Deploy platform"),
                T,
            )
            .await
            .unwrap_or_else(|e| panic!("no run message in {channel}: {e}"));
        let text = run.text();
        assert!(
            text.contains("Deploy platform: succeeded") && text.contains("Steps\n1 done"),
            "the final report in {channel} (svc0 rolled back; svc1 never left v2): {text}"
        );
        let edits: Vec<String> = bot
            .discord
            .requests()
            .into_iter()
            .filter(|q| q.path.ends_with(&format!("/messages/{}", run.id)))
            .filter_map(|q| q.body.map(|b| b.to_string()))
            .collect();
        assert!(
            edits
                .iter()
                .any(|b| b.contains(r#""value":"applying""#) || b.contains(r#""value":"verifying"#)),
            "live progress edits in {channel}: {edits:?}"
        );
        if channel == FakeDiscord::CHANNEL_ID {
            assert!(text.contains(&format!("<@{}>", dana.id)), "{text}");
        }
    }
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_pulumi_writes_an_older_event_log_still_counts_its_steps() {
    let (_swarm, guards, bot) = setup("oldlog", json!({ "event_log_shape": "v3.100" })).await;
    let dana = bot.person("dana", &["deployer"]).await;
    let r = deploy_until_done(&bot, &dana, "v2").await;
    let text = r.text();
    assert!(
        text.contains("Deploy platform: succeeded") && text.contains("2 done"),
        "the steps of an event log without `sequence` count: {text}"
    );
    assert_running_tag(&guards, "v2");
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_character_tag_makes_no_embed_discord_would_reject() {
    let (_swarm, _guards, bot) = setup("longtag", json!({})).await;
    let dana = bot.person("dana", &["deployer"]).await;
    let tag = "t".repeat(300);
    let r = bot
        .discord
        .invoke(&dana, "deploy", deploy_opts(&tag))
        .await
        .wait_final(T, |r| {
            r.text().contains(": failed") || r.text().contains(": succeeded")
        })
        .await
        .unwrap();
    assert!(r.text().contains("refused"), "{}", r.text());
    bot.discord.assert_no_violations();
}
