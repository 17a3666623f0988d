//! Writing `BENCHMARKS.md`: the results table, the machine facts and the caveats.

use super::*;

pub(super) const GENERAL_CAVEATS: &str = "\
All numbers come from one run on the machine described above: a 2-core virtual machine shared \
with other builds and test runs (see the load averages, taken before and after each \
benchmark), so absolute times are noisy and comparisons are the meaningful part. Comparisons \
against the Docker CLI interleave the two commands run by run so that load changes hit both. \
The benchmark program and `sprocket-ops` are release builds (`cargo build --release`); the \
Docker engine, the fake Discord and the fake GitHub run on the same two cores as the code \
under test. Targets are checked by this program and reported, never asserted by a timed test.";

pub(super) const METHOD_ACK_NORMAL: &str = "\
The real bot runs in-process (the `TestBot` harness: serenity/poise against the fake Discord \
and fake GitHub on 127.0.0.1, a SQLite store, the real Docker engine) with \
`[limits] commands_per_minute = 10000` so rate limits never answer. One viewer sends 5 \
warm-up `/status` (not counted: the first fills the GitHub membership cache), then 200 \
`/status` with at most 50 in flight; an interaction leaves the in-flight set only when its \
deferred message has been filled, so the bot is busy with Docker calls while new \
interactions arrive (the harness polls each in-flight interaction every 20 ms rather than using \
the fake's event-driven waits, whose wake-ups of 50 waiters on every state change would load \
the same cores and the fake's lock). The first 50 interactions are dispatched together; the \
split between them and the other 150 is listed below. The latency is the fake's `Response::latency()`: from the moment the \
INTERACTION_CREATE frame was written to the gateway socket to the moment the interaction \
callback request arrived. p50/p99 are nearest-rank. Caveat: the fake Discord (including its \
OpenAPI validation of every request) shares the process and the two cores with the bot, so \
its work is inside the measured time; a real Discord adds network round trips that are not. \
The fake sets TCP_NODELAY on its sockets, as production servers do: without it (up to commit \
969f38c) Nagle's algorithm held gateway frames written in a burst behind the bot's 40 ms \
delayed ACK, which put the p99 of both 1a and 1b at about 45 ms whatever the bot did.";

pub(super) const METHOD_ACK_STALL: &str = "\
As 1a, but the bot's `[docker] host` is `tcp://127.0.0.1:<port>` of a listener in the \
benchmark that accepts connections and never answers, so every Docker call behind `/status` \
hangs until the bot's `docker.timeout_secs` (default 10 s). The bot defers before calling \
Docker, so the acknowledgement should not depend on Docker at all. Each of the 50 in-flight \
slots is held until its deferred message reports the failure or for at most 15 s (what one \
stalled command needs: the 10 s timeout plus margin), so about 50 commands are stuck in \
Docker calls while new interactions arrive; the warm-up commands are not waited for. The \
number of commands that answered within those 15 s is reported as an observation (it is not \
part of the target).";

pub(super) const METHOD_IDLE: &str = "\
The release `sprocket-ops serve` binary is spawned with a config like the test bot's \
(tokens from `{ file = … }`, SQLite in a temp dir, `[http] listen = \"127.0.0.1:0\"`, Docker \
on the local socket) pointing at a fake Discord and a fake GitHub run by the benchmark. Once \
the bot has registered its slash commands (after READY), the benchmark waits 3 s and reads \
`VmRSS` (the target) and `VmHWM` (peak so far) from `/proc/<pid>/status`, then kills it. \
Caveat: one sample; RSS depends on the allocator's arenas and thread count, which depend on \
the number of cores (tokio starts one worker per core).";

pub(super) const METHOD_STATUS: &str = "\
50 services of `sprocket-ops-testsvc:main` with 1 replica each (labelled for the platform \
layer and for cleanup) are created and waited for until `docker service ls` shows all at \
1/1 twice in a row, plus 5 s to settle. Then `sprocket-ops status --json` (release binary, config with a temp \
SQLite database: each run also writes its audit row) and `docker service ls` are run \
alternately, 2 warm-ups each then 10 timed runs each (each round also times two floors of \
ours for the diagnosis: `check-config`, which starts and reads the config only, and `audit \
--limit 1`, which also opens the database and writes an audit row); wall time from spawn to exit is \
measured by the benchmark. The ratio is median(ours) / median(docker). `status` reports more \
than `docker service ls`: failing tasks with their errors and the nodes, so it makes more \
Docker API calls. Caveat: the swarm is shared, so services of concurrent test runs are \
listed by both commands too (the count is given below); both pay process start-up.";

pub(super) const METHOD_LOGS: &str = "\
One service with `TESTSVC_BURST=20000` and `TESTSVC_LOG_INTERVAL_MS=0` prints 20,000 numbered \
lines at start (after two secret-shaped lines); the benchmark waits until `docker service \
logs` shows all of them. `sprocket-ops logs <service> --tail 10000` (which demultiplexes the \
stream and runs every line through the redactor) and `docker service logs --tail 10000 \
<service>` are run alternately, 1 warm-up each then 5 timed runs each, both under GNU \
`/usr/bin/time -f %M` (peak RSS of the measured process; the same small wrapper cost on both \
sides); stdout is read by the benchmark. The ratio is median(ours) / median(docker). The \
10,000-line tail window holds no secret, so a separate `--tail 100000 --grep DB_PASSWORD` run \
checks that redaction really applies.";

pub(super) const METHOD_LOGS_LEARNED: &str = "\
As benchmark 4, with 50 secret-like env values (`APP_SECRET_00` … `APP_SECRET_49`) in the \
service's spec: `logs` reads the spec first, so the redactor knows all 50 (each in every form: \
raw, base64/base64url at three alignments, URL, JSON, shell, hex: about a thousand patterns in \
one Aho-Corasick automaton) and runs every line of the tail through it; two of the values are \
printed before the burst.";

pub(super) const METHOD_BUMP: &str = "\
The real bot in-process (`TestBot`), a deployer `/bump`s a 1-replica platform service \
alternately to `v2` and back to `main`, 5 times (update config: stop-first, parallelism 1, \
monitor 2 s). For each run the Swarm completion time is the service's \
`UpdateStatus.CompletedAt` (RFC 3339, the engine's wall clock, read with bollard after the \
rollout) and the message time is when the fake Discord received the first request for that \
interaction whose body says \"✅ completed\" (its `Instant`, converted to wall-clock time with \
an (Instant, SystemTime) pair taken before the first bump). The delay is message − \
CompletedAt; the target is on the maximum. Caveat: both clocks are this machine's; the bot \
polls the service every 250 ms, which bounds the expected delay from below.";

pub(super) fn render(reports: &[Report], facts: &[(String, String)], load_end: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `bash scripts/bench.sh` (program: `tests/src/bin/bench/main.rs`); \
         overwritten on every run. Do not edit by hand.\n"
    );
    let _ = writeln!(md, "## Machine and build\n");
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in facts {
        let _ = writeln!(md, "| {k} | {} |", v.replace('|', "\\|"));
    }
    let _ = writeln!(md, "| load average at end (1, 5, 15 min) | {load_end} |");
    let _ = writeln!(md, "\n## Results\n");
    let _ = writeln!(
        md,
        "| # | benchmark | result | target | verdict | load (1 min) start → end |\n\
         |---|---|---|---|---|---|"
    );
    for r in reports {
        let verdict = match &r.verdict {
            Verdict::Pass => "**PASS**".to_string(),
            Verdict::Miss => "**MISS**".to_string(),
            Verdict::Error(_) => "**ERROR**".to_string(),
            Verdict::Skipped => "skipped".to_string(),
        };
        let l = |s: &str| s.split_whitespace().next().unwrap_or("?").to_string();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} → {} |",
            r.id,
            r.title,
            r.result,
            r.target,
            verdict,
            l(&r.load_start),
            l(&r.load_end)
        );
    }
    let _ = writeln!(md, "\n## Method and caveats\n");
    let _ = writeln!(md, "{GENERAL_CAVEATS}\n");
    for r in reports {
        let _ = writeln!(md, "### {}. {}\n", r.id, r.title);
        let _ = writeln!(md, "{}\n", r.method);
        let _ = writeln!(
            md,
            "- target: {}; took {:.1} s; load average {} → {}",
            r.target,
            r.took.as_secs_f64(),
            r.load_start,
            r.load_end
        );
        if let Verdict::Error(e) = &r.verdict {
            let _ = writeln!(md, "- ERROR: {}", clip(e, 1500));
        }
        for d in &r.details {
            let _ = writeln!(md, "- {d}");
        }
        let _ = writeln!(md);
    }
    md
}
