//! The unseal ceremony, seal and secrets through Discord against a real OpenBao: key holders
//! submit shares through modals; progress is shown, shares never are; the planted shares reach
//! no request the bot sends, no audit row and no byte of the database.

use std::time::Duration;

use serde_json::json;
use sprocket_ops_tests::bao::{BaoServer, BaoStorage};
use sprocket_ops_tests::bot::{BotOptions, TestBot, ALERTS, APPROVALS};
use sprocket_ops_tests::fake_discord::{Message, Response, TestUser};

const T: Duration = Duration::from_secs(30);

async fn bot_with_vault(bao: &BaoServer, token: &str, dir_token: &std::path::Path) -> TestBot {
    std::fs::write(dir_token, token).unwrap();
    TestBot::start_with(BotOptions {
        extra_config: format!(
            "\n[vault]\naddress = \"{}\"\ntoken = {{ file = \"{}\" }}\nsecret_paths = [\"secret/platform/ballchasing\", \"secret/platform/chatwoot\"]\n",
            bao.url(),
            dir_token.display()
        ),
        ..Default::default()
    })
    .await
}

fn sub(name: &str) -> serde_json::Value {
    json!([{ "name": name, "type": 1, "options": [] }])
}

async fn submit_share(bot: &TestBot, who: &TestUser, ceremony: &Message, share: &str) -> Response {
    let id = ceremony
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("vault:share:"))
        .expect("share button");
    let opened = bot
        .discord
        .click(who, ceremony, &id)
        .await
        .response(T)
        .await
        .unwrap();
    let modal = opened
        .modal
        .clone()
        .unwrap_or_else(|| panic!("no modal for {}: {}", who.name, opened.text()));
    let modal_id = modal["custom_id"].as_str().unwrap().to_string();
    // The submit is deferred (ephemerally) and then answered.
    bot.discord
        .submit_modal(who, &modal_id, &[("share", share)])
        .await
        .wait_final(T, |r| !r.text().trim().is_empty())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_holders_unseal_vault_through_modals_and_no_share_is_ever_kept() {
    let mut bao = BaoServer::start_sealed(BaoStorage::InMemory).await;
    let init = bao.init(5, 3).await;
    let tokdir = tempfile::tempdir().unwrap();
    let bot = bot_with_vault(&bao, &init.root_token, &tokdir.path().join("vault-token")).await;
    let kate = bot.person("kate", &["keyholder"]).await;
    let ken = bot.person("ken", &["keyholder"]).await;
    let kim = bot.person("kim", &["keyholder"]).await;
    let olaf = bot.person("olaf", &["operator"]).await;

    let r = bot
        .discord
        .invoke(&olaf, "vault", sub("status"))
        .await
        .wait_final(T, |r| r.text().contains("Sealed"))
        .await
        .unwrap();
    assert!(r.text().contains("3 of 5"), "{}", r.text());

    let r = bot
        .discord
        .invoke(&kate, "vault", sub("unseal"))
        .await
        .wait_final(T, |r| r.text().contains("ceremony"))
        .await
        .unwrap();
    let ceremony = r.messages()[0].clone();

    // Not a key holder: refused before any form.
    let id = ceremony
        .custom_ids()
        .into_iter()
        .find(|c| c.starts_with("vault:share:"))
        .unwrap();
    let r = bot
        .discord
        .click(&olaf, &ceremony, &id)
        .await
        .response(T)
        .await
        .unwrap();
    assert!(
        r.ephemeral && r.text().contains("not a key holder"),
        "{}",
        r.text()
    );

    let r = submit_share(&bot, &kate, &ceremony, "definitely not a share!!").await;
    assert!(
        r.ephemeral && r.text().contains("malformed") && r.text().contains("0 of 3"),
        "{}",
        r.text()
    );
    let r = submit_share(&bot, &kate, &ceremony, &init.keys_base64[0]).await;
    assert!(r.text().contains("1 of 3"), "{}", r.text());
    let r = submit_share(&bot, &kate, &ceremony, &init.keys_base64[1]).await;
    assert!(r.text().contains("already gave a share"), "{}", r.text());
    let r = submit_share(&bot, &ken, &ceremony, &init.keys_hex[1]).await;
    assert!(r.text().contains("2 of 3"), "{}", r.text());
    let deadline = std::time::Instant::now() + T;
    loop {
        let shown = bot.discord.message(ceremony.id).unwrap();
        let t = shown.text();
        if t.contains("kate") && t.contains("ken") && t.contains("2 of 3") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the ceremony message shows who and how many: {t}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = submit_share(&bot, &kim, &ceremony, &init.keys_base64[2]).await;
    assert!(r.text().contains("unsealed"), "{}", r.text());
    assert_eq!(bao.seal_status_raw().await["sealed"], false);
    bot.discord
        .wait_channel_message(ALERTS, |m| m.text().contains("Vault unsealed"), T)
        .await
        .unwrap();

    // Seal needs a key holder's approval.
    let r = bot
        .discord
        .invoke(&olaf, "vault", sub("seal"))
        .await
        .wait_final(T, |r| r.text().contains("Approval requested"))
        .await
        .unwrap();
    assert!(r.text().contains("keyholder"), "{}", r.text());
    let msg = bot
        .discord
        .wait_channel_message(APPROVALS, |m| m.text().contains("seal Vault"), T)
        .await
        .unwrap();
    let approve = msg
        .custom_ids()
        .into_iter()
        .find(|c| c.split(':').nth(2) == Some("a"))
        .unwrap();
    let r = bot
        .discord
        .click(&kim, &msg, &approve)
        .await
        .response(T)
        .await
        .unwrap();
    let confirm_msg = r.original.unwrap();
    let confirm = confirm_msg.custom_ids().pop().unwrap();
    bot.discord
        .click(&kim, &confirm_msg, &confirm)
        .await
        .wait_final(T, |r| r.text().contains("Done"))
        .await
        .unwrap();
    assert_eq!(bao.seal_status_raw().await["sealed"], true);

    // No share anywhere the bot writes.
    let mut planted: Vec<String> = init
        .keys_base64
        .iter()
        .chain(init.keys_hex.iter())
        .cloned()
        .collect();
    planted.push("definitely not a share!!".into());
    for req in bot.discord.requests() {
        let body = req.body.map(|b| b.to_string()).unwrap_or_default();
        for p in &planted {
            assert!(
                !body.contains(p.as_str()),
                "a share reached Discord in {} {}",
                req.method,
                req.path
            );
        }
    }
    let db = std::fs::read(bot.dir.path().join("ops.db")).unwrap();
    let wal = std::fs::read(bot.dir.path().join("ops.db-wal")).unwrap_or_default();
    for p in &planted {
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "a share is in the database file"
            );
        }
    }
    let log = bao.server_log();
    for p in &planted {
        assert!(!log.contains(p.as_str()), "a share is in OpenBao's own log");
    }
    bot.discord.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_secrets_reports_presence_from_metadata_only() {
    let bao = BaoServer::start_dev().await;
    bao.kv2_put(
        "secret",
        "platform/ballchasing",
        &json!({ "token": "planted-ballchasing-token" }),
    )
    .await;
    let tokdir = tempfile::tempdir().unwrap();
    let bot = bot_with_vault(&bao, bao.root_token(), &tokdir.path().join("vault-token")).await;
    let op = bot.person("otto", &["operator"]).await;
    let r = bot
        .discord
        .invoke(&op, "vault", sub("secrets"))
        .await
        .wait_final(T, |r| r.text().contains("missing"))
        .await
        .unwrap();
    let text = r.text();
    assert!(
        text.contains("✅ `secret/platform/ballchasing` updated"),
        "{text}"
    );
    assert!(
        text.contains("❌ `secret/platform/chatwoot` missing"),
        "{text}"
    );
    assert!(!text.contains("planted-ballchasing-token"));
    bot.discord.assert_no_violations();
}
