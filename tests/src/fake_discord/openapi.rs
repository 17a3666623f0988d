//! Validation of every REST request the bot sends against Discord's official OpenAPI 3.1
//! description (discord/discord-api-spec), read at runtime from `../shared/specs` (or the file
//! named by `DISCORD_OPENAPI_SPEC`); the spec is never copied into this repository.
//!
//! The spec is loaded and parsed once per process. For each operation (method + path template)
//! the request-body schema is compiled once into a `jsonschema` validator whose root document is
//! the operation's schema plus the spec's `components`, so `#/components/...` references resolve.
//! One deliberate widening: `SnowflakeType` also accepts non-negative integers, as Discord does
//! (serenity sends new attachments as `{"id": 0}`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

/// Env var overriding the location of the Discord OpenAPI spec.
pub const SPEC_ENV: &str = "DISCORD_OPENAPI_SPEC";

/// Default location of the spec, relative to this crate.
pub const DEFAULT_SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/specs/discord-openapi.json"
);

/// Longest validator message kept per error (the messages embed the offending instance).
const MAX_MESSAGE_LEN: usize = 600;

/// One `(method, path template)` operation of the spec.
struct Operation {
    method: String,
    template: String,
    segments: Vec<Option<String>>,
    literal_count: usize,
}

/// The parsed spec plus its route table.
pub struct Spec {
    doc: Value,
    operations: Vec<Operation>,
}

/// Where the spec is read from.
pub fn spec_path() -> PathBuf {
    std::env::var_os(SPEC_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SPEC_PATH))
}

/// The process-wide spec. Panics (so tests fail, never skip) when the file is missing or broken.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "fake Discord: cannot read the Discord OpenAPI spec at {} ({e}). It is expected at \
                 ../shared/specs/discord-openapi.json next to the workspace, or set {SPEC_ENV} to \
                 its path. Request validation is mandatory, so the test fails.",
                path.display()
            )
        });
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "fake Discord: the OpenAPI spec at {} is not valid JSON: {e}",
                path.display()
            )
        });
        Spec::new(doc)
    })
}

impl Spec {
    fn new(doc: Value) -> Spec {
        let mut operations = Vec::new();
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .expect("fake Discord: the OpenAPI spec has no `paths` object");
        for (template, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let segments: Vec<Option<String>> = template
                .trim_start_matches('/')
                .split('/')
                .map(|s| {
                    if s.starts_with('{') && s.ends_with('}') {
                        None
                    } else {
                        Some(s.to_string())
                    }
                })
                .collect();
            let literal_count = segments.iter().filter(|s| s.is_some()).count();
            for method in ["get", "put", "post", "patch", "delete"] {
                if item.contains_key(method) {
                    operations.push(Operation {
                        method: method.to_string(),
                        template: template.clone(),
                        segments: segments.clone(),
                        literal_count,
                    });
                }
            }
        }
        Spec { doc, operations }
    }

    /// The best-matching path template for `path` (no `/api/v10` prefix, no query), if any,
    /// and whether `method` is defined on it. Literal segments beat parameters
    /// (`/messages/@original` over `/messages/{message_id}`).
    pub fn match_route(&self, method: &str, path: &str) -> Option<(String, bool)> {
        let method = method.to_ascii_lowercase();
        let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(&Operation, bool)> = None;
        for op in &self.operations {
            if op.segments.len() != actual.len() {
                continue;
            }
            let matches = op.segments.iter().zip(&actual).all(|(s, a)| match s {
                Some(lit) => lit == a,
                None => !a.is_empty(),
            });
            if !matches {
                continue;
            }
            let same_method = op.method == method;
            let better = match best {
                None => true,
                Some((b, b_same)) => (op.literal_count, same_method) > (b.literal_count, b_same),
            };
            if better {
                best = Some((op, same_method));
            }
        }
        best.map(|(op, same)| (op.template.clone(), same))
    }

    /// The operation object for `(method, template)`.
    fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        self.doc
            .get("paths")?
            .get(template)?
            .get(method.to_ascii_lowercase())
    }

    /// The request-body schema of an operation: for multipart requests the schema of a
    /// `payload_json` part when the spec declares one, else the `application/json` schema.
    fn body_schema(&self, method: &str, template: &str, multipart: bool) -> Option<Value> {
        let content = self
            .operation(method, template)?
            .get("requestBody")?
            .get("content")?;
        if multipart {
            if let Some(s) = content
                .get("multipart/form-data")
                .and_then(|m| m.get("schema"))
                .and_then(find_payload_json_schema)
            {
                return Some(s);
            }
        }
        content.get("application/json")?.get("schema").cloned()
    }

    fn body_required(&self, method: &str, template: &str) -> bool {
        self.operation(method, template)
            .and_then(|op| op.get("requestBody"))
            .and_then(|rb| rb.get("required"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    fn has_body(&self, method: &str, template: &str) -> bool {
        self.operation(method, template)
            .is_some_and(|op| op.get("requestBody").is_some())
    }

    /// A root schema document for `schema` in which `#/components/...` resolves.
    fn root_for(&self, schema: &Value) -> Value {
        let mut root = Map::new();
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("allOf".into(), json!([schema]));
        let mut components = self.doc.get("components").cloned().unwrap_or(Value::Null);
        // Discord accepts snowflakes in request bodies as strings or integers; serenity sends
        // new attachments as `{"id": 0}`. The spec only allows strings, so widen it.
        if let Some(snowflake) = components.pointer_mut("/schemas/SnowflakeType") {
            let original = snowflake.take();
            *snowflake = json!({"anyOf": [original, {"type": "integer", "minimum": 0}]});
        }
        root.insert("components".into(), components);
        Value::Object(root)
    }
}

fn find_payload_json_schema(schema: &Value) -> Option<Value> {
    if let Some(p) = schema.get("properties").and_then(|p| p.get("payload_json")) {
        return Some(p.clone());
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            for s in list {
                if let Some(found) = find_payload_json_schema(s) {
                    return Some(found);
                }
            }
        }
    }
    None
}

type ValidatorCache = Mutex<HashMap<String, Option<Arc<Compiled>>>>;

/// A compiled operation schema plus, for a top-level union of `$ref`s, one validator per
/// branch (used only to explain a failure).
struct Compiled {
    whole: jsonschema::Validator,
    branches: Vec<(String, jsonschema::Validator)>,
}

fn compile(spec: &Spec, schema: &Value) -> Result<Compiled, String> {
    let build = |s: &Value| {
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&spec.root_for(s))
            .map_err(|e| format!("cannot compile schema: {e}"))
    };
    let whole = build(schema)?;
    let mut branches = Vec::new();
    for key in ["anyOf", "oneOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            for branch in list {
                let name = branch
                    .get("$ref")
                    .and_then(Value::as_str)
                    .map(|r| r.rsplit('/').next().unwrap_or(r).to_string())
                    .unwrap_or_else(|| "inline".into());
                branches.push((name, build(branch)?));
            }
        }
    }
    Ok(Compiled { whole, branches })
}

fn compiled(
    spec: &Spec,
    method: &str,
    template: &str,
    multipart: bool,
) -> Result<Option<Arc<Compiled>>, String> {
    static CACHE: OnceLock<ValidatorCache> = OnceLock::new();
    let key = format!("{} {template} {multipart}", method.to_ascii_uppercase());
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = cache.get(&key) {
        return Ok(v.clone());
    }
    let v = match spec.body_schema(method, template, multipart) {
        Some(schema) => Some(Arc::new(compile(spec, &schema)?)),
        None => None,
    };
    cache.insert(key, v.clone());
    Ok(v)
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_MESSAGE_LEN {
        let mut cut = MAX_MESSAGE_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

fn errors_of(v: &jsonschema::Validator, body: &Value) -> Vec<String> {
    v.iter_errors(body)
        .map(|e| {
            let at = e.instance_path.to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            truncate(format!("at {at}: {e}"))
        })
        .collect()
}

/// Validates one request against the spec. `path` is the path after `/api/v10` (no query);
/// `body` the JSON body (or the multipart `payload_json`), `None` when the request had none.
/// Returns the violations (empty when the request conforms).
pub fn validate_request(
    method: &str,
    path: &str,
    body: Option<&Value>,
    multipart: bool,
) -> Vec<String> {
    let spec = spec();
    let method_uc = method.to_ascii_uppercase();
    let Some((template, method_ok)) = spec.match_route(method, path) else {
        return vec![format!(
            "{method_uc} {path}: no such route in the Discord OpenAPI spec"
        )];
    };
    if !method_ok {
        return vec![format!(
            "{method_uc} {path}: the spec has {template} but not with method {method_uc}"
        )];
    }
    let route = format!("{method_uc} {template}");
    let Some(body) = body else {
        if spec.body_required(method, &template) {
            return vec![format!(
                "{route}: the spec requires a request body, none was sent"
            )];
        }
        return Vec::new();
    };
    if !spec.has_body(method, &template) {
        return vec![format!(
            "{route}: a request body was sent but the operation takes none"
        )];
    }
    let compiled = match compiled(spec, method, &template, multipart) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return vec![format!(
                "{route}: the spec has no application/json body schema for this operation"
            )]
        }
        Err(e) => return vec![format!("{route}: {e}")],
    };
    let errors = errors_of(&compiled.whole, body);
    if errors.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = errors
        .into_iter()
        .map(|e| format!("{route}: {e}"))
        .collect();
    // For a union, explain with the branch that came closest: one whose discriminator
    // (`type`) accepts the body, with the fewest errors.
    if let Some((name, branch_errors)) = compiled
        .branches
        .iter()
        .map(|(name, v)| (name, errors_of(v, body)))
        .min_by_key(|(_, e)| (e.iter().any(|e| e.starts_with("at /type:")), e.len()))
    {
        for e in branch_errors {
            out.push(format!("{route}: closest union branch {name}: {e}"));
        }
    }
    out
}
