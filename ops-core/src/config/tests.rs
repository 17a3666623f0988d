//! Unit tests of the configuration: the example parses, every invalid key is named.

use super::*;

pub(crate) const EXAMPLE: &str = include_str!("../../../sprocket-ops.example.toml");

#[test]
fn example_config_is_valid() {
    let cfg = Config::parse("example.toml", EXAMPLE).unwrap();
    assert_eq!(cfg.layer_order, ["layer_1", "layer_2", "platform"]);
    assert_eq!(cfg.layers["platform"].stack, "prod");
    assert_eq!(
        cfg.layers["platform"].image_tag_key.as_deref(),
        Some("image-tag")
    );
}

/// Data-driven: (edit to the example, expected key, expected words in the message).
#[test]
fn bad_configs_name_the_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "lock_ttl_secs = 3600",
            "lock_ttl_secs = 3600\npass_env = [\"AWS_REGION\", \"DISCORD_TOKEN\"]",
            "pulumi.pass_env",
            "own secrets",
        ),
        (
            "guild_id = 1000",
            "guild_id = 0",
            "discord.guild_id",
            "not 0",
        ),
        (
            "guild_id = 1000",
            "guild_id = \"abc\"",
            "discord.guild_id",
            "invalid type",
        ),
        (
            "[docker]",
            "[docker]\nsocket = 1",
            "docker.socket",
            "unknown field",
        ),
        (
            "host = \"unix:///var/run/docker.sock\"",
            "host = \"ftp://x\"",
            "docker.host",
            "must start with",
        ),
        (
            "url = \"sqlite://sprocket-ops.db\"",
            "url = \"mysql://x\"",
            "database.url",
            "sqlite",
        ),
        (
            "stack = \"prod\"",
            "stack = \"-rm\"",
            "layers.platform.stack",
            "not a valid",
        ),
        (
            "[layers.platform]",
            "[layers.Platform]",
            "layers.Platform",
            "layer name",
        ),
        (
            "layer_order = [\"layer_1\", \"layer_2\", \"platform\"]",
            "layer_order = [\"layer_9\"]",
            "layer_order[0]",
            "unknown layer",
        ),
        (
            "membership_ttl_secs = 300",
            "membership_ttl_secs = 0",
            "github.membership_ttl_secs",
            "between",
        ),
        (
            "\"111111111111111111\" = \"alice-gh\"",
            "\"abc\" = \"alice\"",
            "github.static_links.abc",
            "Discord user id",
        ),
        (
            "\"111111111111111111\" = \"alice-gh\"",
            "\"1\" = \"-bad\"",
            "github.static_links.1",
            "not a GitHub login",
        ),
        (
            "oauth_base_url = \"https://github.com\"",
            "oauth_base_url = \"github.com\"",
            "github.oauth_base_url",
            "http",
        ),
    ];
    for (from, to, key, words) in cases {
        assert!(EXAMPLE.contains(from), "example lacks {from}");
        let text = EXAMPLE.replacen(from, to, 1);
        let e = Config::parse("x.toml", &text).expect_err(to);
        assert_eq!(&e.key, key, "for {to}: {e}");
        assert!(e.message.contains(words), "for {to}: {e}");
        assert_eq!(e.file, "x.toml");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
}

#[test]
fn optional_sections_are_validated() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "listen = \"127.0.0.1:9464\"",
            "listen = \"nowhere\"",
            "http.listen",
        ),
        (
            "address = \"http://127.0.0.1:8200\"",
            "address = \"vault\"",
            "vault.address",
        ),
        (
            "\"platform/ballchasing\",",
            "\"../etc\",",
            "vault.secret_paths[4]",
        ),
        (
            "ceremony_idle_minutes = 10",
            "ceremony_idle_minutes = 0",
            "vault.ceremony_idle_minutes",
        ),
    ];
    for (from, to, key) in cases {
        assert!(EXAMPLE.contains(from), "example lacks {from}");
        let e = Config::parse("x.toml", &EXAMPLE.replacen(from, to, 1)).expect_err(to);
        assert_eq!(&e.key, key, "{e}");
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let e = Config::parse("x.toml", "[discord]\nguild_id = 1\nbroken line\n").unwrap_err();
    assert_eq!(e.key, "line 3", "{e}");
}

#[test]
fn missing_file_is_a_config_error() {
    let e = Config::load(Path::new("/nonexistent/sprocket.toml")).unwrap_err();
    assert_eq!(e.key, "(file)");
}
