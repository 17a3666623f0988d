//! The Docker CLI as tests use it: run a command and keep its output, or insist that it
//! succeeds, and [`Cleanup`], which removes what a test made (in reverse order) when dropped,
//! also while a failed test unwinds. Only argv, never a shell.

use std::process::{Command, Output};
use std::time::Duration;

/// `docker <args>`, its output kept whatever the exit status.
pub fn docker(args: &[&str]) -> Output {
    docker_env(args, &[])
}

/// `docker <args>` with extra environment variables (for `docker stack deploy`'s `${VAR}`).
pub fn docker_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

/// `docker <args>`, which must succeed; its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    check(args, docker(args))
}

/// [`docker_env`], which must succeed; its trimmed stdout.
pub fn docker_env_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    check(args, docker_env(args, env))
}

fn check(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes what a test created (in reverse order) when dropped, through the Docker CLI. Each
/// entry is the argv of a removal command; one that fails because its object is still in use
/// (a network with containers, a secret of a service being removed) is retried for a while.
#[derive(Default)]
pub struct Cleanup(Vec<Vec<String>>);

impl Cleanup {
    pub fn push(&mut self, args: &[&str]) {
        self.0.push(args.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some(args) = self.0.pop() {
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            for attempt in 0..80 {
                let out = docker(&argv);
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.success() || err.contains("not found") || err.contains("No such") {
                    break;
                }
                if attempt == 79 {
                    eprintln!("cleanup: `docker {}`: {}", argv.join(" "), err.trim());
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}
