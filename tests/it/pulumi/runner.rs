//! The runner on its own: arguments refused before any process starts, and the CLI's output redacted.

use super::*;

/// Every Pulumi call panics: nothing may reach it.
pub(super) struct NoPulumi;

#[async_trait::async_trait]
impl PulumiApi for NoPulumi {
    async fn config_get(&self, _: &StackRef, key: &str) -> Result<Option<String>, PulumiError> {
        panic!("config get {key:?} must not run")
    }
    async fn config_set(&self, _: &StackRef, key: &str, v: &str) -> Result<(), PulumiError> {
        panic!("config set {key:?} {v:?} must not run")
    }
    async fn preview(&self, _: &StackRef) -> Result<ops_core::pulumi::PreviewSummary, PulumiError> {
        panic!("preview must not run")
    }
    async fn up(
        &self,
        _: &StackRef,
        _: ops_core::pulumi::EventSink,
    ) -> Result<ops_core::pulumi::UpOutcome, PulumiError> {
        panic!("up must not run")
    }
    async fn cancel(&self, layer: &str) -> Result<bool, PulumiError> {
        panic!("cancel {layer:?} must not run")
    }
}

#[tokio::test]
pub(super) async fn shell_metacharacters_and_option_injection_are_refused_before_any_process_starts(
) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let cfg = Config::parse(
        "t.toml",
        &format!(
            "[discord]\nguild_id = 1\nalerts_channel_id = 2\napprovals_channel_id = 3\naudit_channel_id = 4\n\
             [pulumi]\nbinary = \"/nonexistent/pulumi\"\n\
             [layers.platform]\ndirectory = {:?}\nstack = \"prod\"\nimage_tag_key = \"image-tag\"\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let (store, _) = open_store(Backend::Sqlite, dir.path()).await;
    let swarm = Arc::new(DockerSwarm::new(ops_core::config::DEFAULT_DOCKER_HOST, 30).unwrap());
    let redactor = Arc::new(Redactor::default());
    let touch = format!("$(touch {})", marker.display());
    let bad_tags = [
        "--yes",
        "-x",
        ";rm -rf /",
        touch.as_str(),
        "`id`",
        "v2 --yes",
        "v2\nrm",
        "a|b",
        "v2&&id",
        "../x",
        "",
    ];

    // Through the Deployer with a Pulumi that panics on any call.
    let d = Deployer::new(
        &cfg,
        Arc::new(NoPulumi),
        store.clone(),
        swarm.clone(),
        redactor.clone(),
    );
    for tag in bad_tags {
        let e = d
            .deploy(&req(tag, "alice"), watch_progress("platform").0)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                DeployError::InvalidArgument {
                    what: "image tag",
                    ..
                }
            ),
            "{tag:?}: {e}"
        );
    }
    for layer in [
        ";rm",
        "--yes",
        "-x",
        "$(id)",
        "platform --yes",
        "platform\n",
    ] {
        let r = DeployRequest {
            layer: layer.into(),
            ..req("v2", "alice")
        };
        let e = d
            .deploy(&r, watch_progress("platform").0)
            .await
            .unwrap_err();
        assert!(matches!(e, DeployError::UnknownLayer(_)), "{layer:?}: {e}");
    }
    assert!(store.list_deploys(None, 10).await.unwrap().is_empty());

    // Through the real runner: a spawn would fail (the binary does not exist), so an
    // `InvalidArgument` proves the refusal came first.
    let runner = PulumiRunner::new(&cfg.pulumi, redactor.clone());
    let stack = StackRef::from_layer("platform", &cfg.layers["platform"]);
    for key in ["--yes", "-x", ";rm", "$(id)", "a b", "k\n", ""] {
        let e = runner.config_set(&stack, key, "v2").await.unwrap_err();
        assert!(
            matches!(
                e,
                PulumiError::InvalidArgument {
                    what: "config key",
                    ..
                }
            ),
            "{key:?}: {e}"
        );
    }
    for value in ["v2\nrm", "a\0b", ""] {
        let e = runner
            .config_set(&stack, "image-tag", value)
            .await
            .unwrap_err();
        assert!(
            matches!(e, PulumiError::InvalidArgument { .. }),
            "{value:?}: {e}"
        );
    }
    for s in ["-x", "--yes", "prod;rm", "prod prod"] {
        let bad = StackRef {
            stack: s.into(),
            ..stack.clone()
        };
        assert!(
            matches!(
                runner.preview(&bad).await,
                Err(PulumiError::InvalidArgument { what: "stack", .. })
            ),
            "{s:?}"
        );
    }
    let e = runner
        .config_set(&stack, "image-tag", "v2")
        .await
        .unwrap_err();
    assert!(
        matches!(e, PulumiError::Spawn { .. }),
        "a valid call reaches the spawn: {e}"
    );
    assert!(!marker.exists());

    // With the stand-in, a value starting with `-` goes after `--` and is stored as written.
    std::fs::write(
        dir.path().join("Pulumi.yaml"),
        "name: platform\nruntime: nodejs\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("Pulumi.prod.yaml"),
        "config:\n  platform:image-tag: main\n",
    )
    .unwrap();
    let real = PulumiRunner::new(
        &ops_core::config::PulumiConfig {
            binary: pulumi_standin(),
            ..cfg.pulumi.clone()
        },
        redactor,
    );
    real.config_set(&stack, "note", "-x; $(id)").await.unwrap();
    assert_eq!(
        real.config_get(&stack, "note").await.unwrap().as_deref(),
        Some("-x; $(id)")
    );
    assert_eq!(real.config_get(&stack, "missing").await.unwrap(), None);
    assert!(!marker.exists());
}

#[tokio::test]
pub(super) async fn the_runner_redacts_a_planted_secret_from_the_cli_output() {
    let f = Fixture::new(
        Backend::Sqlite,
        json!({
            "stderr_message": format!("warning: plugin said {PLANTED} (token=abcdef0123456789)"),
            "fail_preview": format!("provider auth failed for {PLANTED}"),
        }),
    )
    .await;
    let e = f.runner().preview(&f.stack()).await.unwrap_err();
    let PulumiError::Failed { code, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*code, Some(4));
    let everything = format!("{e}\n{}\n{}", e.detail(), e.errors().join("\n"));
    eprintln!("preview failure as reported:\n{everything}");
    assert!(!everything.contains(PLANTED), "{everything}");
    assert!(!everything.contains("abcdef0123456789"), "{everything}");
    assert!(e.detail().contains(MASK), "{everything}");
    assert!(
        e.errors()
            .iter()
            .any(|x| x.contains(&format!("provider auth failed for {MASK}"))),
        "{everything}"
    );
    // The same through a deploy: the config is put back, the error is redacted.
    let e = f
        .deployer
        .deploy(&req("v2", "alice"), watch_progress("platform").0)
        .await
        .unwrap_err();
    assert!(!format!("{e} {:?}", e.errors()).contains(PLANTED));
    assert!(f.stack_yaml().contains("platform:image-tag: main"));
    f.finish().await;
}
