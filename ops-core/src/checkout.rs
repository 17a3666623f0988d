//! The infra checkout a layer deploys from, as an approval binds it: the commit (`git
//! rev-parse HEAD`) and the dirty state (`git status --porcelain`, the diff of tracked files
//! against HEAD and the contents of untracked files, hashed). Git runs with argv only, never a
//! shell, with `GIT_OPTIONAL_LOCKS=0` so reading never writes the index.
//!
//! A directory outside any git work tree is `not a git checkout` (nothing to bind but the
//! preview); a checkout git cannot read (a broken repository, `safe.directory` refusing
//! another user's checkout) is an error, so the deploy is refused (fail closed). Git not
//! installed is recorded as such (the preview values still bind).

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::process::Command;

/// What the checkout was when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct CheckoutState {
    /// `HEAD`'s full commit id; `None` outside a git checkout.
    pub commit: Option<String>,
    /// Uncommitted changes (tracked or untracked files).
    pub dirty: bool,
    /// SHA-256 over the commit, the status, the diff and untracked contents (`none` outside
    /// a checkout; a checkout without git installed is an error, never unbound): any difference voids an approval.
    pub fingerprint: String,
}

/// Why the checkout could not be read (the detail is for the log).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the infra checkout of this layer could not be read with git")]
pub struct CheckoutError {
    pub detail: String,
}

impl CheckoutState {
    /// For people: `commit 1a2b3c4d5e6f (clean)`, `… with uncommitted changes`.
    pub fn describe(&self) -> String {
        match (&self.commit, self.dirty) {
            (Some(c), false) => format!("commit {} (clean)", short(c)),
            (Some(c), true) => format!(
                "commit {} with uncommitted changes (fingerprint {})",
                short(c),
                short(&self.fingerprint)
            ),
            (None, _) => "not a git checkout".to_string(),
        }
    }
}

fn short(s: &str) -> &str {
    &s[..s.len().min(12)]
}

async fn git(dir: &Path, args: &[&str]) -> Result<std::process::Output, std::io::Error> {
    let mut cmd = Command::new("git");
    // Never the bot's environment (its Discord, GitHub and Vault tokens): PATH and HOME only.
    cmd.env_clear();
    for keep in ["PATH", "HOME"] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.args(["-c", "core.fsmonitor=false", "-c", "core.quotepath=off"])
        .args(args)
        .current_dir(dir)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
}

fn failed(what: &str, out: &std::process::Output) -> CheckoutError {
    CheckoutError {
        detail: format!(
            "git {what}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(500)
                .collect::<String>()
        ),
    }
}

/// Reads the checkout containing `dir`.
pub async fn read(dir: &Path) -> Result<CheckoutState, CheckoutError> {
    if !dir.is_dir() {
        return Err(CheckoutError {
            detail: format!("{} is not a directory", dir.display()),
        });
    }
    let head = match git(dir, &["rev-parse", "--verify", "HEAD"]).await {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Fail closed: a checkout whose commit cannot be read cannot be bound to an
            // approval. Only a directory outside any git checkout binds the preview alone.
            if dir.ancestors().any(|d| d.join(".git").exists()) {
                return Err(CheckoutError {
                    detail: format!(
                        "{} is a git checkout but git is not installed: its commit cannot be bound to approvals (install git beside pulumi)",
                        dir.display()
                    ),
                });
            }
            return Ok(CheckoutState {
                commit: None,
                dirty: false,
                fingerprint: "none".into(),
            });
        }
        Err(e) => {
            return Err(CheckoutError {
                detail: format!("git could not be started in {}: {e}", dir.display()),
            })
        }
    };
    if !head.status.success() {
        let err = String::from_utf8_lossy(&head.stderr);
        if err.contains("not a git repository") {
            return Ok(CheckoutState {
                commit: None,
                dirty: false,
                fingerprint: "none".into(),
            });
        }
        return Err(failed("rev-parse HEAD", &head));
    }
    let commit = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let status = git(
        dir,
        &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
    )
    .await
    .map_err(|e| CheckoutError {
        detail: format!("git status: {e}"),
    })?;
    if !status.status.success() {
        return Err(failed("status", &status));
    }
    let mut h = Sha256::new();
    h.update(b"sprocket-ops checkout v1\0");
    h.update(commit.as_bytes());
    h.update([0u8]);
    h.update(&status.stdout);
    h.update([0u8]);
    let dirty = !status.stdout.is_empty();
    if dirty {
        let diff = git(
            dir,
            &["diff", "HEAD", "--binary", "--no-ext-diff", "--no-color"],
        )
        .await
        .map_err(|e| CheckoutError {
            detail: format!("git diff: {e}"),
        })?;
        if !diff.status.success() {
            return Err(failed("diff HEAD", &diff));
        }
        h.update(&diff.stdout);
        h.update([0u8]);
        let top = git(dir, &["rev-parse", "--show-toplevel"])
            .await
            .map_err(|e| CheckoutError {
                detail: format!("git rev-parse --show-toplevel: {e}"),
            })?;
        let top = std::path::PathBuf::from(String::from_utf8_lossy(&top.stdout).trim());
        // Untracked files: `?? path` entries, NUL-separated; their contents count too.
        for entry in status.stdout.split(|b| *b == 0) {
            if let Some(path) = entry.strip_prefix(b"?? ") {
                let path = top.join(String::from_utf8_lossy(path).as_ref());
                h.update(path.to_string_lossy().as_bytes());
                h.update([0u8]);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => h.update(&bytes),
                    Err(_) => h.update(b"(unreadable)"),
                }
                h.update([0u8]);
            }
        }
    }
    Ok(CheckoutState {
        commit: Some(commit),
        dirty,
        fingerprint: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git is needed by this test");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    #[tokio::test]
    async fn commit_and_every_uncommitted_change_change_the_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(read(dir).await.unwrap().describe(), "not a git checkout");
        run(dir, &["init", "-q"]);
        run(dir, &["config", "user.email", "t@example.org"]);
        run(dir, &["config", "user.name", "t"]);
        std::fs::write(dir.join("Pulumi.yaml"), "name: p\n").unwrap();
        run(dir, &["add", "."]);
        run(dir, &["commit", "-qm", "one"]);
        let clean = read(dir).await.unwrap();
        assert!(!clean.dirty && clean.commit.is_some(), "{clean:?}");
        assert_eq!(clean, read(dir).await.unwrap(), "stable");
        assert!(clean.describe().ends_with("(clean)"));

        std::fs::write(dir.join("Pulumi.yaml"), "name: p\n# a\n").unwrap();
        let edit_a = read(dir).await.unwrap();
        assert!(edit_a.dirty && edit_a.commit == clean.commit);
        std::fs::write(dir.join("Pulumi.yaml"), "name: p\n# b\n").unwrap();
        let edit_b = read(dir).await.unwrap();
        assert_ne!(edit_a.fingerprint, edit_b.fingerprint, "another edit");
        std::fs::write(dir.join("Pulumi.yaml"), "name: p\n").unwrap();
        assert_eq!(read(dir).await.unwrap(), clean, "edit undone");

        std::fs::write(dir.join("new.ts"), "x").unwrap();
        let untracked_x = read(dir).await.unwrap();
        std::fs::write(dir.join("new.ts"), "y").unwrap();
        let untracked_y = read(dir).await.unwrap();
        assert!(untracked_x.dirty);
        assert_ne!(untracked_x.fingerprint, untracked_y.fingerprint);
        std::fs::remove_file(dir.join("new.ts")).unwrap();

        std::fs::write(dir.join("Pulumi.yaml"), "name: q\n").unwrap();
        run(dir, &["commit", "-qam", "two"]);
        let next = read(dir).await.unwrap();
        assert!(!next.dirty);
        assert_ne!(next.commit, clean.commit);
        assert_ne!(next.fingerprint, clean.fingerprint);
    }
}
