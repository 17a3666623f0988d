//! Unit tests of the Pulumi runner: the argv contract, injection refused, bounded output, no
//! process for a missing directory or bad arguments.

use super::*;

#[test]
fn argv_is_exactly_the_cli_contract() {
    assert_eq!(
        config_set_args("prod", "image-tag", "v2").unwrap(),
        ["config", "set", "image-tag", "v2", "--stack", "prod"]
    );
    assert_eq!(
        config_set_args("prod", "note", "-starts-with-dash").unwrap(),
        [
            "config",
            "set",
            "note",
            "--stack",
            "prod",
            "--",
            "-starts-with-dash"
        ]
    );
    assert_eq!(
        preview_args("prod").unwrap(),
        ["preview", "--json", "--stack", "prod", "--non-interactive"]
    );
    assert_eq!(
        up_args("layer_1", Path::new("/tmp/e.jsonl")).unwrap(),
        [
            "up",
            "--yes",
            "--skip-preview",
            "--non-interactive",
            "--stack",
            "layer_1",
            "--event-log",
            "/tmp/e.jsonl"
        ]
    );
    assert_eq!(
        config_get_args("prod", "platform:image-tag").unwrap(),
        ["config", "get", "platform:image-tag", "--stack", "prod"]
    );
}

#[test]
fn injection_is_refused() {
    for bad_name in [
        "--yes", "-x", ";rm", "$(id)", "a b", "a\nb", "", "`id`", "..",
    ] {
        assert!(
            matches!(
                config_set_args("prod", bad_name, "v2"),
                Err(PulumiError::InvalidArgument { .. })
            ),
            "key {bad_name:?}"
        );
        assert!(preview_args(bad_name).is_err(), "stack {bad_name:?}");
    }
    for bad_value in ["a\nb", "a\0b", "", "tab\there"] {
        assert!(
            config_set_args("prod", "k", bad_value).is_err(),
            "value {bad_value:?}"
        );
    }
    let e = config_set_args("prod", "--yes", "v2").unwrap_err();
    assert_eq!(
        e.to_string(),
        "refused config key \"--yes\": must not start with `-` (it would be read as an option)"
    );
    let long = shown(&"x".repeat(100));
    assert!(long.chars().count() <= 41, "{long}");
}

#[tokio::test]
async fn bounded_reader_keeps_head_and_tail() {
    let data: Vec<u8> = (0..(TAIL * 3)).map(|i| (i % 251) as u8).collect();
    let b = read_bounded(Some(&data[..]), 10).await;
    assert_eq!(b.head, &data[..10]);
    assert_eq!(b.tail.len(), TAIL);
    assert_eq!(b.dropped, TAIL * 3 - 10 - TAIL);
    assert_eq!(*b.tail.back().unwrap(), *data.last().unwrap());
}

#[tokio::test]
async fn nothing_starts_for_a_missing_directory_or_bad_arguments() {
    let runner = PulumiRunner::new(
        &PulumiConfig {
            binary: PathBuf::from("/nonexistent/pulumi"),
            ..PulumiConfig::default()
        },
        Arc::new(Redactor::default()),
    );
    let stack = StackRef {
        layer: "platform".into(),
        directory: PathBuf::from("/nonexistent/dir"),
        stack: "prod".into(),
        timeout: Duration::from_secs(5),
    };
    let e = runner.preview(&stack).await.unwrap_err();
    assert!(
        matches!(
            e,
            PulumiError::InvalidArgument {
                what: "project directory",
                ..
            }
        ),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let stack = StackRef {
        directory: dir.path().to_path_buf(),
        ..stack
    };
    let e = runner
        .config_set(&stack, "image-tag", "v2\nrm")
        .await
        .unwrap_err();
    assert!(matches!(e, PulumiError::InvalidArgument { .. }), "{e}");
    // A valid call reaches the spawn, which fails: the binary does not exist.
    let e = runner
        .config_set(&stack, "image-tag", "v2")
        .await
        .unwrap_err();
    assert!(matches!(e, PulumiError::Spawn { .. }), "{e}");
    assert!(!runner.cancel("platform").await.unwrap(), "nothing runs");
}
