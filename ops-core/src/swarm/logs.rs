//! Service logs: the query, the lines as the engine sends them (stdout and stderr told apart),
//! and [`collect_logs`], the bounded collector every log passes before anyone sees it.
//!
//! The collector redacts EVERY line before it is stored, filtered or counted (so a `grep` for
//! part of a secret cannot tell whether it is there) through one [`LineRedactor`] per stream
//! (multi-line PEM blocks are swallowed up to their END line; the pieces of a line Docker cut
//! at 16 KiB are joined first), and keeps only the LAST `max_bytes` of each stream, like
//! `tail`: memory stays bounded however large the log is.

use std::collections::VecDeque;

use futures::{Stream, StreamExt};

use super::SwarmError;
use crate::redact::{LineRedactor, Redactor};

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of a service's output, without its newline. Raw: not yet redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: LogStream,
    pub text: String,
    /// The engine cut this line (at 16 KiB): it goes on in the next line of the same stream.
    pub partial: bool,
}

/// What to ask the engine for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only lines since this UNIX time (seconds).
    pub since: Option<i64>,
    /// Only the last `n` lines (of each task).
    pub tail: Option<u64>,
    /// Keep the stream open for new lines (the caller bounds it in time).
    pub follow: bool,
    /// Prefix each line with the engine's RFC 3339 timestamp.
    pub timestamps: bool,
}

/// The redacted, bounded result of [`collect_logs`].
#[derive(Debug, Clone, Default)]
pub struct CollectedLogs {
    /// The last lines (at most `max_bytes`), joined with `\n`.
    pub stdout: String,
    pub stderr: String,
    /// Lines were dropped (or a line shortened) to stay within `max_bytes`.
    pub truncated: bool,
    /// Lines that matched the filter (kept or dropped).
    pub lines: usize,
    /// Lines read from the engine.
    pub scanned: usize,
    /// The stream ended with this error: what was collected before it is kept.
    pub error: Option<SwarmError>,
}

/// The last `max` bytes of one stream, as whole lines (a single longer line keeps its end).
struct Tail {
    lines: VecDeque<String>,
    /// Sum of `len + 1` (the joining newline) over `lines`: never above `max`.
    bytes: usize,
    max: usize,
    truncated: bool,
    redactor: LineRedactor,
}

impl Tail {
    fn new(max: usize, redactor: &Redactor) -> Tail {
        Tail {
            lines: VecDeque::new(),
            bytes: 0,
            max,
            truncated: false,
            redactor: redactor.lines(),
        }
    }

    fn push(&mut self, mut line: String) {
        if line.len() + 1 > self.max {
            // This line alone fills the budget: keep its end, on a character boundary.
            let mut start = line.len() + 1 - self.max.max(1);
            while !line.is_char_boundary(start) {
                start += 1;
            }
            line.drain(..start);
            self.lines.clear();
            self.bytes = 0;
            self.truncated = true;
            if self.max == 0 {
                return;
            }
        }
        let cost = line.len() + 1;
        while self.bytes + cost > self.max {
            match self.lines.pop_front() {
                Some(old) => {
                    self.bytes -= old.len() + 1;
                    self.truncated = true;
                }
                None => break,
            }
        }
        self.bytes += cost;
        self.lines.push_back(line);
    }

    fn text(&self) -> String {
        let mut out = String::with_capacity(self.bytes);
        for (i, l) in self.lines.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(l);
        }
        out
    }
}

/// Reads `lines` to the end, redacting every line with `redactor`, keeping those that contain
/// `grep` (a plain, case-sensitive substring, matched against the REDACTED line) and only the
/// last `max_bytes` of stdout and of stderr each. A follow stream never ends by itself: bound
/// it in time first (e.g. `take_until` a timer).
pub async fn collect_logs(
    lines: impl Stream<Item = Result<LogLine, SwarmError>>,
    grep: Option<&str>,
    max_bytes: usize,
    redactor: &Redactor,
) -> CollectedLogs {
    let mut out = Tail::new(max_bytes, redactor);
    let mut err = Tail::new(max_bytes, redactor);
    let mut matched = 0;
    let mut scanned = 0;
    let mut error = None;
    let mut lines = std::pin::pin!(lines);
    while let Some(item) = lines.next().await {
        let line = match item {
            Ok(l) => l,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        scanned += 1;
        let tail = match line.stream {
            LogStream::Stdout => &mut out,
            LogStream::Stderr => &mut err,
        };
        let Some(red) = tail.redactor.line(&line.text, line.partial) else {
            continue;
        };
        if grep.is_some_and(|g| !red.contains(g)) {
            continue;
        }
        matched += 1;
        tail.push(red);
    }
    for tail in [&mut out, &mut err] {
        if let Some(red) = tail.redactor.finish() {
            if grep.is_none_or(|g| red.contains(g)) {
                matched += 1;
                tail.push(red);
            }
        }
    }
    CollectedLogs {
        stdout: out.text(),
        stderr: err.text(),
        truncated: out.truncated || err.truncated,
        lines: matched,
        scanned,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::MASK;

    fn line(stream: LogStream, text: &str) -> Result<LogLine, SwarmError> {
        Ok(LogLine {
            stream,
            text: text.to_string(),
            partial: false,
        })
    }

    async fn collect(
        items: Vec<Result<LogLine, SwarmError>>,
        grep: Option<&str>,
        max: usize,
        r: &Redactor,
    ) -> CollectedLogs {
        collect_logs(futures::stream::iter(items), grep, max, r).await
    }

    const SECRET: &str = "s3cr3t-Value/42";

    #[tokio::test]
    async fn every_line_is_redacted_and_streams_stay_apart() {
        use base64::Engine;
        let r = Redactor::new([SECRET]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
        let items = vec![
            line(LogStream::Stdout, "starting"),
            line(LogStream::Stdout, &format!("raw {SECRET}")),
            line(LogStream::Stderr, &format!("b64 {b64}")),
            line(LogStream::Stdout, "password=hunter2-planted ok"),
            line(LogStream::Stdout, "-----BEGIN RSA PRIVATE KEY-----"),
            line(LogStream::Stdout, "MIIEowIBAAKCAQEAplanted"),
            line(LogStream::Stderr, "stderr between the key lines"),
            line(LogStream::Stdout, "abcdefplanted=="),
            line(LogStream::Stdout, "-----END RSA PRIVATE KEY----- tail"),
            line(LogStream::Stdout, "done"),
        ];
        let c = collect(items, None, 4096, &r).await;
        for bad in [SECRET, b64.as_str(), "hunter2", "MIIEow", "abcdefplanted"] {
            assert!(
                !c.stdout.contains(bad) && !c.stderr.contains(bad),
                "{bad}: {c:?}"
            );
        }
        assert_eq!(
            c.stdout,
            format!("starting\nraw {MASK}\npassword={MASK} ok\n{MASK}\n{MASK} tail\ndone")
        );
        assert_eq!(
            c.stderr,
            format!("b64 {MASK}\nstderr between the key lines")
        );
        assert_eq!((c.scanned, c.lines, c.truncated), (10, 8, false));
    }

    #[tokio::test]
    async fn grep_sees_only_redacted_text() {
        let r = Redactor::new([SECRET]);
        let items = vec![
            line(LogStream::Stdout, &format!("token {SECRET}")),
            line(LogStream::Stdout, "GET /health 200"),
            line(LogStream::Stderr, "GET /crash 200"),
        ];
        let c = collect(items.clone(), Some("s3cr3t"), 1024, &r).await;
        assert_eq!(
            (c.lines, c.stdout.as_str()),
            (0, ""),
            "no oracle for secrets"
        );
        let c = collect(items, Some("GET"), 1024, &r).await;
        assert_eq!(c.lines, 2);
        assert_eq!(c.stdout, "GET /health 200");
        assert_eq!(c.stderr, "GET /crash 200");
    }

    #[tokio::test]
    async fn only_the_last_bytes_are_kept() {
        let r = Redactor::default();
        let items: Vec<_> = (1..=10_000)
            .map(|i| line(LogStream::Stdout, &format!("line {i}")))
            .chain([line(LogStream::Stderr, "one error")])
            .collect();
        let c = collect(items, None, 100, &r).await;
        assert!(c.truncated);
        assert!(c.stdout.len() <= 100, "{}", c.stdout.len());
        assert!(c.stdout.ends_with("line 9999\nline 10000"), "{}", c.stdout);
        assert!(c.stdout.starts_with("line "), "whole lines: {}", c.stdout);
        assert_eq!(c.stderr, "one error");
        assert_eq!(c.lines, 10_001);
    }

    #[tokio::test]
    async fn a_huge_line_keeps_its_end_on_a_char_boundary() {
        let r = Redactor::default();
        let long = format!("{}end", "é".repeat(100));
        let c = collect(vec![line(LogStream::Stdout, &long)], None, 10, &r).await;
        assert!(c.truncated);
        assert!(
            c.stdout.len() <= 10 && c.stdout.ends_with("end"),
            "{}",
            c.stdout
        );
        let c = collect(vec![line(LogStream::Stdout, "x")], None, 0, &r).await;
        assert_eq!((c.stdout.as_str(), c.truncated), ("", true));
    }

    #[tokio::test]
    async fn an_error_keeps_what_came_before() {
        let r = Redactor::default();
        let items = vec![
            line(LogStream::Stdout, "before"),
            Err(SwarmError::Unreachable {
                detail: "gone".into(),
            }),
            line(LogStream::Stdout, "never read"),
        ];
        let c = collect(items, None, 100, &r).await;
        assert_eq!(c.stdout, "before");
        assert!(matches!(c.error, Some(SwarmError::Unreachable { .. })));
    }

    #[tokio::test]
    async fn a_pem_block_on_one_line_is_left_to_the_redactor() {
        let r = Redactor::default();
        let one = "k=-----BEGIN PRIVATE KEY-----\\nMIIsecret\\n-----END PRIVATE KEY----- after";
        let c = collect(
            vec![
                line(LogStream::Stdout, one),
                line(LogStream::Stdout, "next"),
            ],
            None,
            1000,
            &r,
        )
        .await;
        assert!(!c.stdout.contains("MIIsecret"), "{}", c.stdout);
        assert!(c.stdout.ends_with("after\nnext"), "{}", c.stdout);
    }
}
