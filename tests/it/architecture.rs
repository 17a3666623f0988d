//! The crate boundaries of ARCHITECTURE.md, enforced: each invariant is stated as an absence and
//! checked against `cargo metadata` (the resolved dependency graph) and the sources.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use sprocket_ops_tests::env::workspace_root;

struct Graph {
    /// package name -> names of its normal (non-dev) dependencies.
    deps: HashMap<String, BTreeSet<String>>,
}

/// The host target triple, so metadata only resolves packages built here.
fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

fn graph() -> Graph {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--filter-platform"])
        .arg(host_triple())
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let names: HashMap<&str, &str> = v["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut deps = HashMap::new();
    for node in v["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let name = names[node["id"].as_str().unwrap_or("")].to_string();
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| names[d["pkg"].as_str().unwrap_or("")].to_string())
            .collect();
        deps.entry(name)
            .or_insert_with(BTreeSet::new)
            .extend(normal);
    }
    Graph { deps }
}

impl Graph {
    fn direct(&self, pkg: &str) -> &BTreeSet<String> {
        &self.deps[pkg]
    }

    fn closure(&self, pkg: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![pkg.to_string()];
        while let Some(p) = stack.pop() {
            for d in self.deps.get(&p).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }
}

/// (crate, forbidden, transitively?) — the table in ARCHITECTURE.md.
const FORBIDDEN: &[(&str, &str, bool)] = &[
    ("ops-core", "serenity", true),
    ("ops-core", "poise", true),
    ("ops-core", "commands", true),
    ("ops-core", "sprocket-ops", true),
    ("commands", "bollard", false),
    ("commands", "vaultrs", false),
    ("commands", "sqlx", false),
    ("commands", "sprocket-ops", true),
];

#[test]
fn crate_boundaries_hold_in_the_dependency_graph() {
    let g = graph();
    for (krate, forbidden, transitive) in FORBIDDEN {
        let set = if *transitive {
            g.closure(krate)
        } else {
            g.direct(krate).clone()
        };
        assert!(
            !set.contains(*forbidden),
            "ARCHITECTURE.md invariant broken: {krate} must not depend on {forbidden}{}",
            if *transitive {
                " (even indirectly)"
            } else {
                " directly"
            }
        );
    }
}

/// The check above must be able to fail: the bot does depend on poise, ops-core on bollard.
#[test]
fn boundary_check_sees_real_edges() {
    let g = graph();
    assert!(g.closure("sprocket-ops").contains("serenity"));
    assert!(g.direct("ops-core").contains("bollard"));
    assert!(g.direct("commands").contains("poise"));
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir)
        .expect("readable source dir")
        .flatten()
    {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn ops_core_sources_never_name_discord_libraries_and_every_module_has_a_header() {
    for krate in ["ops-core", "commands", "bot"] {
        let mut files = Vec::new();
        rust_files(&workspace_root().join(krate).join("src"), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable");
            assert!(
                text.starts_with("//!"),
                "{} lacks a //! header",
                f.display()
            );
            if krate == "ops-core" {
                for word in ["serenity", "poise"] {
                    assert!(!text.contains(word), "{} names {word}", f.display());
                }
            }
            if f.ends_with("lib.rs") || f.ends_with("main.rs") {
                assert!(text.contains("#![forbid(unsafe_code)]"), "{}", f.display());
            }
            assert!(
                !text.contains("Command::new(\"sh\")") && !text.contains("Command::new(\"bash\")"),
                "{} starts a shell",
                f.display()
            );
        }
    }
}

/// ARCHITECTURE.md: no secret reaches a log line and `pulumi` never inherits the bot's
/// environment. The binary's log goes through the redacting writer only, and the Pulumi runner
/// clears the environment of the processes it starts.
#[test]
fn the_log_writer_redacts_and_pulumi_starts_with_an_empty_environment() {
    let root = workspace_root();
    let main = std::fs::read_to_string(root.join("bot/src/main.rs")).expect("main.rs");
    assert!(
        main.contains("logging::Redacting::new(std::io::stderr)")
            && !main.contains(".with_writer(std::io::stderr)"),
        "bot/src/main.rs writes log records to stderr without the redacting writer"
    );
    // Every process the bot starts (pulumi, git, doctor's `pulumi version`) clears its
    // environment first, so no child inherits DISCORD_TOKEN, GITHUB_TOKEN or VAULT_TOKEN.
    let mut checked = 0;
    for krate in ["ops-core", "commands", "bot"] {
        let mut files = Vec::new();
        rust_files(&root.join(krate).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable");
            let text = text.split("#[cfg(test)]").next().unwrap_or(&text);
            let spawns = text.matches("Command::new(").count();
            checked += spawns;
            assert_eq!(
                spawns,
                text.matches(".env_clear()").count(),
                "{}: every process it starts clears its environment first",
                f.display()
            );
        }
    }
    assert!(
        checked >= 3,
        "the scan found the pulumi, git and doctor spawns"
    );
}

/// "No slash command, button click or modal submit reaches the store or GitHub before the
/// allow-list and the Discord id's rate limit": the global check spends the rate limit, and the
/// event handler runs the gate before every component and modal handler.
#[test]
fn clicks_and_forms_are_gated_before_their_handlers() {
    let read = |p: &str| std::fs::read_to_string(workspace_root().join(p)).expect(p);
    let serve = read("bot/src/serve.rs");
    let at = |needle: &str| {
        serve
            .find(needle)
            .unwrap_or_else(|| panic!("bot/src/serve.rs lacks {needle}"))
    };
    for handler in [
        "handle_share_click(",
        "handle_rollback_click(",
        "handle_silence_click(",
        "approval_ui::handle_component(",
    ] {
        assert!(
            at("gate_component(") < at(handler),
            "{handler} runs before the gate"
        );
    }
    assert!(at("gate_modal(") < at("handle_share_modal("));
    let lib = read("commands/src/lib.rs");
    let check = &lib[lib
        .find("pub async fn channel_check")
        .expect("channel_check")..];
    let check = &check[..check.find("\n}\n").expect("end of channel_check")];
    assert!(
        check.contains(".admit("),
        "channel_check spends the Discord id's rate limit"
    );
    assert!(
        lib.contains(".admit(user.id.get())"),
        "the gate spends it too"
    );
}

/// `ident` in `docker.ident(` / `docker .ident (` occurrences of `text`.
fn docker_calls(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("docker") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "docker".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix('.') else {
            continue;
        };
        let name: String = after
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let tail = after.trim_start()[name.len()..].trim_start();
        if !name.is_empty() && tail.starts_with('(') {
            out.push(name);
        }
    }
    out
}

#[test]
fn the_bot_calls_the_engine_only_with_requests_the_docker_allow_list_admits() {
    use ops_core::swarm::allowlist::AllowList;
    // Each bollard method the bot calls, and a request it sends (bollard's own spelling).
    let requests: &[(&str, &str, &str)] = &[
        ("negotiate_version", "GET", "/version"),
        ("list_services", "GET", "/v1.41/services?status=true"),
        ("list_tasks", "GET", "/v1.41/tasks"),
        ("list_nodes", "GET", "/v1.41/nodes"),
        (
            "update_service",
            "POST",
            "/v1.41/services/abc123/update?version=7",
        ),
        (
            "service_logs",
            "GET",
            "/v1.41/services/abc123/logs?stdout=true",
        ),
        ("events", "GET", "/v1.41/events"),
    ];
    // Methods that send nothing.
    let local = ["clone", "client_version"];
    let rules = AllowList::shipped();
    for (method_name, m, p) in requests {
        assert!(
            rules.check(m, p).is_ok(),
            "{method_name}: {m} {p} is not on the allow-list"
        );
    }
    let mut seen = BTreeSet::new();
    for krate in ["ops-core", "commands", "bot"] {
        let mut files = Vec::new();
        rust_files(&workspace_root().join(krate).join("src"), &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).expect("readable");
            let text = text.split("#[cfg(test)]").next().unwrap_or(&text);
            if text.contains("Docker::connect") {
                assert!(
                    f.ends_with("ops-core/src/swarm/docker.rs"),
                    "{} connects to the engine outside the Swarm adapter",
                    f.display()
                );
            }
            for call in docker_calls(text) {
                assert!(
                    local.contains(&call.as_str())
                        || requests.iter().any(|(name, _, _)| *name == call),
                    "{} calls docker.{call}(): add its request to \
                     ops-core/src/swarm/docker_api_allow.txt (reviewed) and to this list",
                    f.display()
                );
                seen.insert(call);
            }
            if text.contains(".negotiate_version()") {
                seen.insert("negotiate_version".to_string());
            }
        }
    }
    for needed in [
        "list_services",
        "update_service",
        "events",
        "negotiate_version",
    ] {
        assert!(
            seen.contains(needed),
            "the scan found no {needed}: {seen:?}"
        );
    }
}

// ---- Module rules inside ops-core (ARCHITECTURE.md, "Module rules") ----

/// `text` without its test code (`#[cfg(test)] mod name { ... }` blocks) and comments, so doc
/// links and tests do not count as imports.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let head = after.trim_start();
        let head = head.strip_prefix("pub(crate) ").unwrap_or(head);
        let open = head.find('{');
        let semi = head.find(';');
        match (head.strip_prefix("mod "), open, semi) {
            (Some(_), Some(o), s) if s.is_none_or(|s| o < s) => {
                // Skip the balanced block.
                let start = after.len() - head.len() + o + 1;
                let mut depth = 1;
                let mut end = after.len();
                for (j, c) in after[start..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = start + j + 1;
                        break;
                    }
                }
                rest = &after[end..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file of test code only: `tests.rs`, `testing.rs` and anything under `tests/` or `testing/`.
fn is_test_file(path: &Path) -> bool {
    path.components().any(|c| {
        let c = c.as_os_str();
        c == "tests" || c == "testing" || c == "tests.rs" || c == "testing.rs"
    })
}

/// The non-test sources of ops-core: (path below `src/`, top-level module, code).
fn ops_core_sources() -> Vec<(String, String, String)> {
    let src = workspace_root().join("ops-core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("below src").to_path_buf();
        if is_test_file(&rel) {
            continue;
        }
        let first = rel
            .components()
            .next()
            .expect("a path")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        let text = std::fs::read_to_string(&f).expect("readable");
        out.push((
            rel.to_string_lossy().into_owned(),
            first,
            non_test_code(&text),
        ));
    }
    out
}

/// The top-level modules `code` names through `crate::` paths.
fn crate_paths(code: &str) -> BTreeSet<String> {
    code.match_indices("crate::")
        .filter(|(i, _)| {
            !code[..*i]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// ops-core's module graph: top-level module -> the top-level modules it imports.
fn module_graph() -> HashMap<String, BTreeSet<String>> {
    let mut g: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (_, module, code) in ops_core_sources() {
        if module == "lib" {
            continue;
        }
        let deps = crate_paths(&code);
        let entry = g.entry(module.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != module));
    }
    g
}

/// One cycle of `g`, if it has one (depth-first search, the path back to a grey node).
fn find_cycle(g: &HashMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &HashMap<String, BTreeSet<String>>,
        state: &mut HashMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if !g.contains_key(d) {
                continue;
            }
            match state.get(d.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(d, g, state, path) {
                        return Some(c);
                    }
                }
                1 => {
                    let at = path.iter().position(|p| p == d).expect("on the path");
                    let mut cycle = path[at..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = HashMap::new();
    let mut names: Vec<&String> = g.keys().collect();
    names.sort();
    for n in names {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn ops_core_modules_import_no_circle() {
    let g = module_graph();
    assert!(
        g.len() > 15 && g["ops"].contains("store") && g["deploy"].contains("pulumi"),
        "the scan sees the modules and their imports: {g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!(
            "ARCHITECTURE.md invariant broken: ops-core modules import in a circle: {}",
            cycle.join(" -> ")
        );
    }
    // The check can fail.
    let mut looped = g.clone();
    looped.get_mut("base").expect("base").insert("ops".into());
    assert!(find_cycle(&looped).is_some());
}

/// The leaf (`ops_core::base`) imports nothing from the crate, so everything may use it.
#[test]
fn the_leaf_imports_nothing_from_the_crate() {
    let sources = ops_core_sources();
    let leaf: Vec<_> = sources.iter().filter(|(_, m, _)| m == "base").collect();
    assert!(leaf.len() >= 3, "the scan found the leaf's files");
    for (path, _, code) in leaf {
        let named: Vec<String> = crate_paths(code)
            .into_iter()
            .filter(|m| m != "base")
            .collect();
        assert!(
            named.is_empty(),
            "ops-core/src/{path} (the leaf) imports crate::{named:?}"
        );
    }
}

/// The `ops` facade is the top: the modules below it never import it. The facade is `ops`
/// and the modules that add methods to `Ops` (`services`, `breakglass`, `approval_click`).
#[test]
fn nothing_below_the_facade_imports_it() {
    const FACADE: &[&str] = &["lib", "ops", "services", "breakglass", "approval_click"];
    let mut below = 0;
    for (path, module, code) in ops_core_sources() {
        if FACADE.contains(&module.as_str()) {
            continue;
        }
        below += 1;
        let named = crate_paths(&code);
        assert!(
            !named.contains("ops") && !code.contains("crate::Ops"),
            "ops-core/src/{path} imports the `ops` facade"
        );
        for f in FACADE.iter().filter(|f| **f != "lib") {
            assert!(
                !named.contains(*f),
                "ops-core/src/{path} imports the facade module `{f}`"
            );
        }
    }
    assert!(below > 50, "the scan found the modules below the facade");
}

/// Only the `bot` crate opens the store (`store::open`, `open_with`, `connect`); the rest is
/// handed a `Store` or a domain's repository trait. Test code may open its own.
#[test]
fn only_the_bot_opens_the_store() {
    let root = workspace_root();
    let mut opened_in_bot = false;
    for krate in ["ops-core", "commands", "bot"] {
        let src = root.join(krate).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let rel = f.strip_prefix(&src).expect("below src");
            if is_test_file(rel) || rel.starts_with("store") {
                continue;
            }
            let code = non_test_code(&std::fs::read_to_string(&f).expect("readable"));
            let opens = ["store::open(", "store::open_with(", "store::connect("]
                .iter()
                .any(|c| code.contains(c));
            if krate == "bot" {
                opened_in_bot |= opens;
            } else {
                assert!(!opens, "{} opens the store; only `bot` does", f.display());
            }
        }
    }
    assert!(
        opened_in_bot,
        "the scan found where the bot opens the store"
    );
}

/// Only the test crate depends on the `sprocket-ops` binary crate (its library is the bot).
#[test]
fn only_the_tests_depend_on_the_binary_crate() {
    let g = graph();
    let dependents: BTreeSet<&String> = g
        .deps
        .iter()
        .filter(|(_, deps)| deps.contains("sprocket-ops"))
        .map(|(name, _)| name)
        .collect();
    assert!(
        dependents.iter().all(|d| *d == "sprocket-ops-tests"),
        "ARCHITECTURE.md invariant broken: {dependents:?} depend on sprocket-ops"
    );
}

/// No source file in the workspace is over 800 lines: a longer one is split into rooms.
#[test]
fn no_source_file_is_over_800_lines() {
    let root = workspace_root();
    let mut long = Vec::new();
    let mut seen = 0;
    for dir in ["ops-core", "commands", "bot", "tests"] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        for f in files {
            let rel = f.strip_prefix(&root).expect("below the root");
            let rel = rel.to_string_lossy().replace('\\', "/");
            if rel.contains("/target/") {
                continue;
            }
            seen += 1;
            let lines = std::fs::read_to_string(&f)
                .expect("readable")
                .lines()
                .count();
            if lines > 800 {
                long.push(format!("{rel} ({lines} lines)"));
            }
        }
    }
    assert!(seen > 100, "the scan found the sources");
    assert!(long.is_empty(), "split these files: {long:?}");
}
