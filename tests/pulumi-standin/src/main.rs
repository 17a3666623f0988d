//! `pulumi` stand-in for the sprocket-ops tests (the Pulumi CLI cannot be installed on the test
//! machines). It implements exactly the subset sprocket-ops runs, with the real CLI's
//! arguments, output shapes and exit codes; it follows **Pulumi CLI v3.x as of 2026-11**
//! (the exit-code mapping introduced in v3.226.1, the `PreviewDigest` of `pkg/display/json.go`
//! and the engine events of `sdk/go/common/apitype/events.go`, checked against pulumi/pulumi):
//!
//! - `pulumi version`
//! - `pulumi config get <key> --stack <s>`: the value and a newline; a missing key is
//!   `error: configuration key '<p>:<k>' not found for stack '<s>'`, exit 1.
//! - `pulumi config set <key> [--] <value> --stack <s>`: stored in `Pulumi.<s>.yaml` under
//!   `config:` as `<project>:<key>`, like the real CLI.
//! - `pulumi preview [--json] --stack <s> [--non-interactive]`: steps computed against the REAL
//!   Swarm; `--json` prints the `PreviewDigest` (4-space indented, like Go's MarshalIndent).
//! - `pulumi up (--yes|--skip-preview) --non-interactive --stack <s> [--event-log <file>]`:
//!   progress text on stdout, engine events in the file (one object a line, flushed per
//!   event), image tag and replicas applied to the real services through the Docker API.
//!   A failure is a diagnostic on the resource, `resOpFailedEvent`, `error: update failed`
//!   on the stack, exit 4. SIGINT: the step in flight finishes, the rest is skipped,
//!   `update canceled`, exit 8; a second SIGINT exits at once.
//! - Stack lock of self-managed backends: a lock file per stack while `up` runs; a second `up`
//!   fails with `error: the stack is currently locked by 1 lock(s). …`, exit 1.
//! - Exit codes: 0 success, 1 generic, 2 usage or validation (unknown flag, missing `--yes` in
//!   non-interactive mode), 4 resource error, 6 stack not found, 8 cancelled.
//!
//! The project is the working directory (or `--cwd`): `Pulumi.yaml`, `Pulumi.<stack>.yaml`
//! and `standin.json` (the resources and test knobs: see `project::Spec`).

#![forbid(unsafe_code)]

mod engine;
mod project;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use project::{Project, Spec};

/// The version this stand-in answers with.
pub const VERSION: &str = "v3.226.1";

const EXIT_GENERIC: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_RESOURCE: i32 = 4;
const EXIT_STACK_NOT_FOUND: i32 = 6;
const EXIT_CANCELLED: i32 = 8;

/// Parsed command line.
#[derive(Debug, Default)]
struct Args {
    positional: Vec<String>,
    stack: Option<String>,
    cwd: Option<PathBuf>,
    event_log: Option<PathBuf>,
    json: bool,
    yes: bool,
    skip_preview: bool,
    non_interactive: bool,
    secret: bool,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = argv.iter().peekable();
    let mut rest_positional = false;
    while let Some(arg) = it.next() {
        if rest_positional || !arg.starts_with('-') || arg == "-" {
            a.positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            rest_positional = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("flag needs an argument: {name}")),
            }
        };
        match flag {
            "--stack" | "-s" => a.stack = Some(value(flag)?),
            "--cwd" | "-C" => a.cwd = Some(PathBuf::from(value(flag)?)),
            "--event-log" => a.event_log = Some(PathBuf::from(value(flag)?)),
            "--color" => {
                value(flag)?;
            }
            "--json" | "-j" => a.json = true,
            "--yes" | "-y" => a.yes = true,
            "--skip-preview" | "-f" => a.skip_preview = true,
            "--non-interactive" => a.non_interactive = true,
            "--secret" => a.secret = true,
            "--plaintext" => {}
            other if other.starts_with("--") => return Err(format!("unknown flag: {other}")),
            other => {
                return Err(format!(
                    "unknown shorthand flag: '{}' in {other}",
                    other.chars().nth(1).unwrap_or('-')
                ))
            }
        }
    }
    Ok(a)
}

fn error(msg: &str) {
    eprintln!("error: {msg}");
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(run(argv));
    std::process::exit(code);
}

async fn run(argv: Vec<String>) -> i32 {
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            error(&e);
            return EXIT_USAGE;
        }
    };
    let words: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    if words.first() == Some(&"version") {
        println!("{VERSION}");
        return 0;
    }
    let dir = match &args.cwd {
        Some(d) => d.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let project = match Project::load(&dir) {
        Ok(p) => p,
        Err(e) => {
            error(&e);
            return EXIT_GENERIC;
        }
    };
    let spec = match Spec::load(&dir) {
        Ok(s) => s,
        Err(e) => {
            error(&e);
            return EXIT_GENERIC;
        }
    };
    if let Some(m) = &spec.stderr_message {
        eprintln!("{m}");
    }
    if let Some(path) = &spec.env_dump {
        // What the process (and so its plugins) was given: `K=V` lines.
        let env: String = std::env::vars_os()
            .map(|(k, v)| format!("{}={}\n", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        if let Err(e) = std::fs::write(path, env) {
            error(&format!("cannot write {}: {e}", path.display()));
            return EXIT_GENERIC;
        }
    }
    let Some(stack) = args.stack.clone() else {
        error("no stack selected; please use `pulumi stack select` or pass --stack");
        return EXIT_STACK_NOT_FOUND;
    };
    let Some(config) = project.config(&stack) else {
        error(&format!("no stack named '{stack}' found"));
        return EXIT_STACK_NOT_FOUND;
    };
    match words.as_slice() {
        ["config", "get", key] => {
            let full = project.full_key(key);
            match config.get(&full) {
                Some(v) => {
                    println!("{v}");
                    0
                }
                None => {
                    error(&format!(
                        "configuration key '{full}' not found for stack '{stack}'"
                    ));
                    EXIT_GENERIC
                }
            }
        }
        ["config", "set", key, value] => {
            if args.secret {
                error("the stand-in does not store secrets");
                return EXIT_USAGE;
            }
            match project.set_config(&stack, &project.full_key(key), value) {
                Ok(()) => 0,
                Err(e) => {
                    error(&format!("saving the stack config: {e}"));
                    EXIT_GENERIC
                }
            }
        }
        ["config", "set", _] => {
            error("value must be specified in non-interactive mode");
            EXIT_USAGE
        }
        ["preview"] => preview(&args, &project, &stack, &spec, &config).await,
        ["up"] => up(&args, &project, &stack, &spec, &config).await,
        _ => {
            error(&format!(
                "unknown command \"{}\" for \"pulumi\"",
                args.positional.join(" ")
            ));
            EXIT_USAGE
        }
    }
}

/// The image tag the program reads, or the program's error.
fn tag_of(
    project: &Project,
    config: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    let key = project.full_key("image-tag");
    config.get(&key).cloned().ok_or_else(|| {
        format!(
            "Missing required configuration variable '{key}'\n    please set a value using the command `pulumi config set image-tag <value>`"
        )
    })
}

fn change_summary(steps: &[engine::Step]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    // The stack resource itself is `same`.
    m.insert("same".into(), json!(1));
    for s in steps {
        let n = m.get(s.op).and_then(|v| v.as_u64()).unwrap_or(0);
        m.insert(s.op.to_string(), json!(n + 1));
    }
    m
}

async fn preview(
    args: &Args,
    project: &Project,
    stack: &str,
    spec: &Spec,
    config: &std::collections::BTreeMap<String, String>,
) -> i32 {
    let started = Instant::now();
    if spec.preview_delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(spec.preview_delay_ms)).await;
    }
    let stack_urn = engine::stack_urn(stack, &project.name);
    let mut diagnostics = Vec::new();
    let mut steps = Vec::new();
    let mut failed = false;
    match tag_of(project, config) {
        Err(e) => {
            diagnostics
                .push(json!({"urn": stack_urn, "message": format!("{e}\n"), "severity": "error"}));
            failed = true;
        }
        Ok(tag) => match engine::docker().await {
            Err(e) => {
                diagnostics.push(
                    json!({"urn": stack_urn, "message": format!("{e}\n"), "severity": "error"}),
                );
                failed = true;
            }
            Ok(docker) => {
                match engine::plan(&docker, project, stack, &spec.resources, &tag).await {
                    Ok(s) => steps = s,
                    Err(e) => {
                        diagnostics.push(json!({"urn": stack_urn, "message": format!("{e}\n"), "severity": "error"}));
                        failed = true;
                    }
                }
            }
        },
    }
    if let Some(msg) = &spec.fail_preview {
        let urn = steps
            .first()
            .map(|s| s.urn.clone())
            .unwrap_or(stack_urn.clone());
        diagnostics.push(json!({"urn": urn, "prefix": "error: ", "message": format!("{msg}\n"), "severity": "error"}));
        failed = true;
    }
    if let (Some(w), Some(first)) = (&spec.warning, steps.iter().find(|s| s.op != "same")) {
        diagnostics.push(json!({"urn": first.urn, "prefix": "warning: ", "message": format!("{w}\n"), "severity": "warning"}));
    }
    if failed {
        diagnostics
            .push(json!({"urn": stack_urn, "message": "preview failed\n", "severity": "error"}));
    }
    let shown: Vec<&engine::Step> = steps.iter().filter(|s| s.op != "same").collect();
    if args.json {
        let cfg: serde_json::Map<String, serde_json::Value> =
            config.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let mut doc = json!({
            "config": cfg,
            "duration": started.elapsed().as_nanos() as u64,
            "changeSummary": change_summary(&steps),
        });
        if !shown.is_empty() {
            doc["steps"] = json!(shown
                .iter()
                .map(|s| engine::preview_step(s, stack, &project.name))
                .collect::<Vec<_>>());
        }
        if !diagnostics.is_empty() {
            doc["diagnostics"] = json!(diagnostics);
        }
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&doc, &mut ser).expect("JSON serializes");
        println!("{}", String::from_utf8_lossy(&out));
    } else {
        println!("Previewing update ({stack})\n");
        for s in &shown {
            println!(
                " {}   {}  {}  {}",
                symbol(s.op),
                s.res.kind,
                s.res.name,
                s.op
            );
        }
        for d in &diagnostics {
            println!(
                "    {}: {}",
                d["severity"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("").trim()
            );
        }
        println!("\nResources:\n    {} to change", shown.len());
    }
    if failed {
        EXIT_RESOURCE
    } else {
        0
    }
}

fn symbol(op: &str) -> &'static str {
    match op {
        "create" => "+",
        "update" => "~",
        "delete" => "-",
        "replace" => "+-",
        _ => " ",
    }
}

/// The stack lock of a self-managed backend, removed when dropped.
struct StackLock {
    path: PathBuf,
}

impl StackLock {
    fn take(project: &Project, stack: &str) -> Result<StackLock, String> {
        let dir = project
            .dir
            .join(".pulumi")
            .join("locks")
            .join(&project.name)
            .join(stack);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let path = dir.join("standin.json");
        let body = json!({"pid": std::process::id(), "username": std::env::var("USER").unwrap_or_default(), "hostname": "localhost", "timestamp": engine::unix_secs()});
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                use std::io::Write;
                let _ = f.write_all(body.to_string().as_bytes());
                Ok(StackLock { path })
            }
            Err(_) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder: serde_json::Value = serde_json::from_str(&holder).unwrap_or_default();
                Err(locked_message(
                    &format!("file://{}", path.display()),
                    &format!(
                        "{}@{} (pid {})",
                        holder["username"].as_str().unwrap_or("?"),
                        holder["hostname"].as_str().unwrap_or("?"),
                        holder["pid"]
                    ),
                ))
            }
        }
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn locked_message(url: &str, by: &str) -> String {
    format!(
        "the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the lock file with `pulumi cancel`.\n  {url}: created by {by}"
    )
}

async fn up(
    args: &Args,
    project: &Project,
    stack: &str,
    spec: &Spec,
    config: &std::collections::BTreeMap<String, String>,
) -> i32 {
    if args.non_interactive && !args.yes && !args.skip_preview {
        error("--yes or --skip-preview must be passed in to proceed when running in non-interactive mode");
        return EXIT_USAGE;
    }
    if spec.locked {
        error(&locked_message(
            &format!(
                "file://{}/.pulumi/locks/{}/{stack}/other.json",
                project.dir.display(),
                project.name
            ),
            "someone@elsewhere (pid 4242)",
        ));
        return EXIT_GENERIC;
    }
    let lock = match StackLock::take(project, stack) {
        Ok(l) => l,
        Err(e) => {
            error(&e);
            return EXIT_GENERIC;
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        let lock_path = lock.path.clone();
        let mut sigint =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
                Ok(s) => s,
                Err(e) => {
                    error(&format!("installing the interrupt handler: {e}"));
                    return EXIT_GENERIC;
                }
            };
        let count = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            while sigint.recv().await.is_some() {
                if count.fetch_add(1, Ordering::SeqCst) == 0 {
                    println!("^C received; cancelling. If you would like to terminate immediately, press ^C again.");
                    cancel.store(true, Ordering::SeqCst);
                } else {
                    println!("^C received; terminating");
                    let _ = std::fs::remove_file(&lock_path);
                    std::process::exit(EXIT_CANCELLED);
                }
            }
        });
    }
    let code = run_update(args, project, stack, spec, config, &cancel).await;
    drop(lock);
    code
}

async fn run_update(
    args: &Args,
    project: &Project,
    stack: &str,
    spec: &Spec,
    config: &std::collections::BTreeMap<String, String>,
    cancel: &AtomicBool,
) -> i32 {
    let started = Instant::now();
    let mut log = match engine::EventLog::open(args.event_log.as_deref()) {
        Ok(l) => l.older_shape(spec.event_log_shape.as_deref() == Some("v3.100")),
        Err(e) => {
            error(&e);
            return EXIT_GENERIC;
        }
    };
    let stack_urn = engine::stack_urn(stack, &project.name);
    println!("Updating ({stack})\n");
    println!("     Type                 Name                 Status");
    let prelude: serde_json::Map<String, serde_json::Value> =
        config.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    log.emit("preludeEvent", json!({"config": prelude}));
    log.emit(
        "resourcePreEvent",
        json!({"metadata": engine::stack_metadata(stack, &project.name)}),
    );

    let mut changes = serde_json::Map::new();
    changes.insert("same".into(), json!(1));
    let mut failure: Option<String> = None;
    let mut cancelled = false;
    let planned = match tag_of(project, config) {
        Err(e) => Err(e),
        Ok(tag) => match engine::docker().await {
            Err(e) => Err(e),
            Ok(docker) => engine::plan(&docker, project, stack, &spec.resources, &tag)
                .await
                .map(|steps| (docker, steps)),
        },
    };
    match planned {
        Err(e) => {
            log.emit(
                "diagnosticEvent",
                json!({"urn": stack_urn, "prefix": "error: ", "message": format!("{e}\n"), "color": "never", "severity": "error"}),
            );
            failure = Some(e);
        }
        Ok((docker, steps)) => {
            let mut warned = false;
            for (i, step) in steps.iter().enumerate() {
                if step.op == "same" {
                    let n = changes.get("same").and_then(|v| v.as_u64()).unwrap_or(0);
                    changes.insert("same".into(), json!(n + 1));
                    continue;
                }
                if cancel.load(Ordering::SeqCst) {
                    cancelled = true;
                    break;
                }
                let meta = engine::metadata(step, stack, &project.name);
                log.emit("resourcePreEvent", json!({"metadata": meta}));
                if let (Some(w), false) = (&spec.warning, warned) {
                    warned = true;
                    log.emit(
                        "diagnosticEvent",
                        json!({"urn": step.urn, "prefix": "warning: ", "message": format!("{w}\n"), "color": "never", "severity": "warning"}),
                    );
                }
                let step_started = Instant::now();
                // The step's work: it finishes even when an interrupt arrives meanwhile.
                tokio::time::sleep(Duration::from_millis(spec.step_delay_ms)).await;
                let result = if spec.fail_resource.as_deref() == Some(step.res.name.as_str()) {
                    Err(spec.fail_message.clone().unwrap_or_else(|| {
                        format!("updating service {}: failed", step.res.service_name)
                    }))
                } else {
                    engine::apply(&docker, step).await
                };
                match result {
                    Ok(()) => {
                        log.emit("resOutputsEvent", json!({"metadata": meta}));
                        let n = changes.get(step.op).and_then(|v| v.as_u64()).unwrap_or(0);
                        changes.insert(step.op.to_string(), json!(n + 1));
                        println!(
                            " {}   {:<20} {:<20} {} ({}s)",
                            symbol(step.op),
                            step.res.kind,
                            step.res.name,
                            past(step.op),
                            step_started.elapsed().as_secs()
                        );
                    }
                    Err(e) => {
                        log.emit(
                            "diagnosticEvent",
                            json!({"urn": step.urn, "prefix": "error: ", "message": format!("{e}\n"), "color": "never", "severity": "error"}),
                        );
                        log.emit(
                            "resOpFailedEvent",
                            json!({"metadata": meta, "status": 0, "steps": i + 1}),
                        );
                        println!(
                            " {}   {:<20} {:<20} **{} failed** 1 error",
                            symbol(step.op),
                            step.res.kind,
                            step.res.name,
                            verb(step.op)
                        );
                        failure = Some(e);
                        break;
                    }
                }
            }
            if failure.is_none() && cancel.load(Ordering::SeqCst) {
                cancelled = true;
            }
        }
    }
    let (code, stack_error) = if let Some(e) = &failure {
        println!(
            "\nDiagnostics:\n  pulumi:pulumi:Stack ({}-{stack}):\n    error: update failed\n\n  {}",
            project.name,
            e.trim()
        );
        (EXIT_RESOURCE, Some("update failed"))
    } else if cancelled {
        (EXIT_CANCELLED, Some("update canceled"))
    } else {
        log.emit(
            "resOutputsEvent",
            json!({"metadata": engine::stack_metadata(stack, &project.name)}),
        );
        (0, None)
    };
    if let Some(msg) = stack_error {
        log.emit(
            "diagnosticEvent",
            json!({"urn": stack_urn, "message": format!("{msg}\n"), "color": "never", "severity": "error"}),
        );
    }
    let duration = started.elapsed().as_secs();
    log.emit(
        "summaryEvent",
        json!({"maybeCorrupt": false, "durationSeconds": duration, "resourceChanges": changes, "PolicyPacks": {}, "isPreview": false}),
    );
    log.emit("cancelEvent", json!({}));
    println!("\nResources:");
    for (op, n) in &changes {
        if op == "same" {
            println!("    {n} unchanged");
        } else {
            println!("    {} {n} {}", symbol(op), past(op));
        }
    }
    println!("\nDuration: {duration}s");
    if let Some(msg) = stack_error {
        error(msg);
    }
    code
}

fn past(op: &str) -> &'static str {
    match op {
        "create" => "created",
        "update" => "updated",
        "delete" => "deleted",
        "replace" => "replaced",
        _ => "unchanged",
    }
}

fn verb(op: &str) -> &'static str {
    match op {
        "create" => "creating",
        "update" => "updating",
        "delete" => "deleting",
        "replace" => "replacing",
        _ => "reading",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_the_cli_subset() {
        let a = parse_args(&argv(&[
            "config",
            "set",
            "image-tag",
            "v2",
            "--stack",
            "prod",
        ]))
        .unwrap();
        assert_eq!(a.positional, ["config", "set", "image-tag", "v2"]);
        assert_eq!(a.stack.as_deref(), Some("prod"));
        let a = parse_args(&argv(&["config", "set", "k", "--stack=prod", "--", "-x"])).unwrap();
        assert_eq!(a.positional, ["config", "set", "k", "-x"]);
        let a = parse_args(&argv(&[
            "up",
            "--yes",
            "--skip-preview",
            "--non-interactive",
            "--stack",
            "prod",
            "--event-log",
            "/tmp/e",
        ]))
        .unwrap();
        assert!(a.yes && a.skip_preview && a.non_interactive);
        assert_eq!(a.event_log.as_deref(), Some(Path::new("/tmp/e")));
        assert_eq!(
            parse_args(&argv(&["config", "set", "k", "-x"])).unwrap_err(),
            "unknown shorthand flag: 'x' in -x"
        );
        assert_eq!(
            parse_args(&argv(&["up", "--bogus"])).unwrap_err(),
            "unknown flag: --bogus"
        );
        assert!(parse_args(&argv(&["up", "--stack"])).is_err());
    }
}
