//! `sprocket-testsvc`: the tiny, std-only service baked into the `FROM scratch` test images
//! (`sprocket-ops-testsvc:main`, `:v2`, `:broken`, built by `scripts/build-test-images.sh`).
//!
//! Everything is driven by environment variables so tests can shape its behaviour through the
//! Swarm service spec:
//!
//! | variable                  | meaning                                                          |
//! |---------------------------|------------------------------------------------------------------|
//! | `TESTSVC_VERSION`         | baked per image (`main`/`v2`/`broken`); logged, served by `/health` |
//! | `TESTSVC_PORT`            | HTTP port (default 8080)                                         |
//! | `TESTSVC_MODE`            | `normal` (default), `crash` (exit 1 at start), `crash-after`     |
//! | `TESTSVC_CRASH_AFTER_MS`  | with `crash-after`: run this long, then exit 2 (default 1000)    |
//! | `TESTSVC_LOG_INTERVAL_MS` | one stdout line per interval (default 1000, `0` = silent)        |
//! | `TESTSVC_LOG_LINES`       | extra stdout lines printed once at start, separated by a literal `\n` |
//! | `TESTSVC_LOG_FILE`        | file whose lines are printed once at start (after `LOG_LINES`)   |
//! | `TESTSVC_BURST`           | print N numbered lines at start (log volume tests)               |
//!
//! HTTP: `GET /` → 200 text, `GET /health` → 200 `{"status":"ok","version":"…"}`,
//! `GET /crash` → answers 200 then exits with code 3, anything else → 404.
//!
//! `sprocket-testsvc --healthcheck` probes `http://127.0.0.1:$TESTSVC_PORT/health` and exits
//! 0/1, usable as a Docker `HEALTHCHECK`/service health check in a scratch image (no curl).
//!
//! Signals: the binary installs no handler (the crate forbids `unsafe` code). Test services
//! run with `ContainerSpec.Init = true` (see `tests/src/swarm.rs`): the engine's `docker-init`
//! (tini) is PID 1 and forwards SIGTERM to this process, which is then not PID 1 and dies on
//! the default disposition at once — so `docker service rm` and rolling updates never wait for
//! the stop grace period and a SIGKILL. Run without an init (`docker run` without `--init`),
//! the process would be PID 1, the kernel would ignore SIGTERM, and stopping would take the
//! grace period.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::thread;
use std::time::{Duration, Instant};

/// Exit code of `TESTSVC_MODE=crash` (the `:broken` image).
const EXIT_CRASH_AT_START: i32 = 1;
/// Exit code of `TESTSVC_MODE=crash-after`.
const EXIT_CRASH_AFTER: i32 = 2;
/// Exit code after answering `GET /crash`.
const EXIT_CRASH_ENDPOINT: i32 = 3;
/// Exit code for an invalid configuration (bad env var value).
const EXIT_BAD_CONFIG: i32 = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Normal,
    Crash,
    CrashAfter(Duration),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    version: String,
    port: u16,
    mode: Mode,
    /// `None` = no periodic log lines.
    log_interval: Option<Duration>,
    log_lines: Vec<String>,
    log_file: Option<String>,
    burst: u64,
}

impl Config {
    /// Builds the configuration from a variable lookup (the real one is `std::env::var`).
    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let version = get("TESTSVC_VERSION")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "dev".to_string());
        let port = parse_num::<u16>(&get, "TESTSVC_PORT", 8080)?;
        let mode = match get("TESTSVC_MODE").as_deref().map(str::trim) {
            None | Some("") | Some("normal") => Mode::Normal,
            Some("crash") => Mode::Crash,
            Some("crash-after") => Mode::CrashAfter(Duration::from_millis(parse_num::<u64>(
                &get,
                "TESTSVC_CRASH_AFTER_MS",
                1000,
            )?)),
            Some(other) => {
                return Err(format!(
                    "TESTSVC_MODE={other:?} is not one of normal, crash, crash-after"
                ))
            }
        };
        let interval_ms = parse_num::<u64>(&get, "TESTSVC_LOG_INTERVAL_MS", 1000)?;
        let log_interval = (interval_ms > 0).then(|| Duration::from_millis(interval_ms));
        let log_lines = get("TESTSVC_LOG_LINES")
            .map(|raw| split_log_lines(&raw))
            .unwrap_or_default();
        let log_file = get("TESTSVC_LOG_FILE").filter(|f| !f.is_empty());
        let burst = parse_num::<u64>(&get, "TESTSVC_BURST", 0)?;
        Ok(Config {
            version,
            port,
            mode,
            log_interval,
            log_lines,
            log_file,
            burst,
        })
    }

    fn mode_name(&self) -> &'static str {
        match self.mode {
            Mode::Normal => "normal",
            Mode::Crash => "crash",
            Mode::CrashAfter(_) => "crash-after",
        }
    }
}

fn parse_num<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, String> {
    match get(name) {
        None => Ok(default),
        Some(raw) if raw.trim().is_empty() => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|_| format!("{name}={raw:?} is not a valid number")),
    }
}

/// Splits `TESTSVC_LOG_LINES` on the two-character escape `\n` (a literal backslash + `n`,
/// since env values set through a service spec rarely carry real newlines) and on real
/// newlines too. Empty pieces are kept so tests can count lines exactly, except a single
/// trailing separator.
fn split_log_lines(raw: &str) -> Vec<String> {
    if raw.is_empty() {
        return Vec::new();
    }
    let normalised = raw.replace("\\n", "\n");
    let trimmed = normalised.strip_suffix('\n').unwrap_or(&normalised);
    trimmed.split('\n').map(str::to_string).collect()
}

fn health_body(version: &str) -> String {
    format!(
        "{{\"status\":\"ok\",\"version\":\"{}\"}}",
        json_escape(version)
    )
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// What to do with one HTTP request.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Exit the process with this code after the reply has been sent.
    exit_after: Option<i32>,
}

/// Routes a request line such as `GET /health HTTP/1.1`.
fn route(request_line: &str, version: &str) -> Reply {
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let text = |status, body: &str| Reply {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_string(),
        exit_after: None,
    };
    if method != "GET" && method != "HEAD" {
        return text(405, "method not allowed\n");
    }
    match path {
        "/" => text(200, &format!("sprocket-testsvc {version}\n")),
        "/health" => Reply {
            status: 200,
            content_type: "application/json",
            body: health_body(version),
            exit_after: None,
        },
        "/crash" => Reply {
            exit_after: Some(EXIT_CRASH_ENDPOINT),
            ..text(200, "crashing\n")
        },
        _ => text(404, "not found\n"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Unknown",
    }
}

fn render(reply: &Reply, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
    out
}

fn handle(stream: TcpStream, version: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // Drain the headers (bodies are ignored: every route is a GET).
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => break,
            Ok(_) if header == "\r\n" || header == "\n" => break,
            Ok(_) => {}
        }
    }
    let reply = route(request_line.trim_end(), version);
    let head_only = request_line.starts_with("HEAD ");
    let mut stream = stream;
    let _ = stream.write_all(&render(&reply, head_only));
    let _ = stream.flush();
    if let Some(code) = reply.exit_after {
        let _ = stream.shutdown(std::net::Shutdown::Both);
        eprintln!("testsvc: GET /crash received, exiting with code {code}");
        exit(code);
    }
}

/// `--healthcheck`: GET /health on localhost; exit 0 when it answers 200.
fn healthcheck(port: u16) -> i32 {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        Ok(resp.starts_with("HTTP/1.1 200"))
    };
    match attempt() {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("testsvc healthcheck: /health did not answer 200");
            1
        }
        Err(e) => {
            eprintln!("testsvc healthcheck: {e}");
            1
        }
    }
}

fn print_startup_lines(cfg: &Config) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in &cfg.log_lines {
        let _ = writeln!(out, "{line}");
    }
    if let Some(path) = &cfg.log_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    let _ = writeln!(out, "{line}");
                }
            }
            Err(e) => eprintln!("testsvc: cannot read TESTSVC_LOG_FILE {path}: {e}"),
        }
    }
    for i in 1..=cfg.burst {
        let _ = writeln!(out, "burst line {i}/{}", cfg.burst);
    }
    let _ = out.flush();
}

fn main() {
    let cfg = match Config::from_lookup(|k| std::env::var(k).ok()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("testsvc: invalid configuration: {e}");
            exit(EXIT_BAD_CONFIG);
        }
    };
    if std::env::args().nth(1).as_deref() == Some("--healthcheck") {
        exit(healthcheck(cfg.port));
    }
    eprintln!(
        "testsvc starting version={} mode={} port={}",
        cfg.version,
        cfg.mode_name(),
        cfg.port
    );
    println!("testsvc version={}", cfg.version);

    if cfg.mode == Mode::Crash {
        eprintln!(
            "testsvc: ERROR: TESTSVC_MODE=crash, refusing to start (version={})",
            cfg.version
        );
        exit(EXIT_CRASH_AT_START);
    }

    print_startup_lines(&cfg);

    let listener = match TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, cfg.port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("testsvc: ERROR: cannot listen on port {}: {e}", cfg.port);
            exit(EXIT_CRASH_AT_START);
        }
    };
    let version = cfg.version.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let version = version.clone();
            thread::spawn(move || handle(stream, &version));
        }
    });

    let started = Instant::now();
    let crash_at = match cfg.mode {
        Mode::CrashAfter(after) => Some(started + after),
        _ => None,
    };
    let mut ticks: u64 = 0;
    let mut next_log = cfg.log_interval.map(|i| started + i);
    loop {
        // A short fixed poll keeps both the crash deadline and the log interval accurate
        // to ~20 ms without any timer machinery.
        thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if crash_at.is_some_and(|at| now >= at) {
            eprintln!(
                "testsvc: ERROR: crash-after {} ms elapsed, exiting with code {EXIT_CRASH_AFTER}",
                now.duration_since(started).as_millis()
            );
            exit(EXIT_CRASH_AFTER);
        }
        if let (Some(at), Some(interval)) = (next_log, cfg.log_interval) {
            if now >= at {
                ticks += 1;
                println!(
                    "testsvc tick {ticks} version={} uptime_ms={}",
                    cfg.version,
                    now.duration_since(started).as_millis()
                );
                next_log = Some(at + interval);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.version, "dev");
        assert_eq!(c.port, 8080);
        assert_eq!(c.mode, Mode::Normal);
        assert_eq!(c.log_interval, Some(Duration::from_millis(1000)));
        assert!(c.log_lines.is_empty());
        assert_eq!(c.log_file, None);
        assert_eq!(c.burst, 0);
    }

    #[test]
    fn parses_every_variable() {
        let c = cfg(&[
            ("TESTSVC_VERSION", "v2"),
            ("TESTSVC_PORT", "9090"),
            ("TESTSVC_MODE", "crash-after"),
            ("TESTSVC_CRASH_AFTER_MS", "250"),
            ("TESTSVC_LOG_INTERVAL_MS", "0"),
            ("TESTSVC_LOG_LINES", "a\\nb"),
            ("TESTSVC_LOG_FILE", "/secrets.txt"),
            ("TESTSVC_BURST", "5000"),
        ])
        .unwrap();
        assert_eq!(c.version, "v2");
        assert_eq!(c.port, 9090);
        assert_eq!(c.mode, Mode::CrashAfter(Duration::from_millis(250)));
        assert_eq!(c.log_interval, None);
        assert_eq!(c.log_lines, vec!["a", "b"]);
        assert_eq!(c.log_file.as_deref(), Some("/secrets.txt"));
        assert_eq!(c.burst, 5000);
    }

    #[test]
    fn crash_mode_and_bad_values() {
        assert_eq!(cfg(&[("TESTSVC_MODE", "crash")]).unwrap().mode, Mode::Crash);
        assert_eq!(
            cfg(&[("TESTSVC_MODE", "crash-after")]).unwrap().mode,
            Mode::CrashAfter(Duration::from_millis(1000))
        );
        assert!(cfg(&[("TESTSVC_MODE", "explode")]).is_err());
        assert!(cfg(&[("TESTSVC_PORT", "99999")]).is_err());
        assert!(cfg(&[("TESTSVC_BURST", "lots")]).is_err());
        // Empty values fall back to defaults rather than failing.
        assert_eq!(cfg(&[("TESTSVC_PORT", "")]).unwrap().port, 8080);
    }

    #[test]
    fn log_lines_split_on_literal_escape_and_newlines() {
        assert_eq!(
            split_log_lines("one\\ntwo\\nthree"),
            vec!["one", "two", "three"]
        );
        assert_eq!(split_log_lines("x\ny\\n"), vec!["x", "y"]);
        assert_eq!(split_log_lines("a\\n\\nb"), vec!["a", "", "b"]);
        assert!(split_log_lines("").is_empty());
    }

    #[test]
    fn health_body_is_exact_json() {
        assert_eq!(health_body("main"), r#"{"status":"ok","version":"main"}"#);
        assert_eq!(health_body("a\"b"), r#"{"status":"ok","version":"a\"b"}"#);
    }

    #[test]
    fn routes() {
        let r = route("GET /health HTTP/1.1", "v2");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, r#"{"status":"ok","version":"v2"}"#);
        assert_eq!(r.exit_after, None);
        assert_eq!(route("GET / HTTP/1.1", "v2").status, 200);
        assert_eq!(route("GET /health?x=1 HTTP/1.1", "v2").status, 200);
        let crash = route("GET /crash HTTP/1.1", "v2");
        assert_eq!((crash.status, crash.exit_after), (200, Some(3)));
        assert_eq!(route("GET /nope HTTP/1.1", "v2").status, 404);
        assert_eq!(route("POST /health HTTP/1.1", "v2").status, 405);
        assert_eq!(route("", "v2").status, 405);
    }

    #[test]
    fn rendered_response_has_length_and_body() {
        let r = route("GET /health HTTP/1.1", "main");
        let text = String::from_utf8(render(&r, false)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 32\r\n"));
        assert!(text.ends_with(r#"{"status":"ok","version":"main"}"#));
        let head = String::from_utf8(render(&r, true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn serves_http_on_an_ephemeral_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            handle(s, "main");
        });
        assert_eq!(healthcheck(port), 0);
    }
}
