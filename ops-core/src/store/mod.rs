//! Persistence: the SQL implementation of every domain's repository trait, behind one
//! [`Store`]: SQLite by default (a file, created on first run), Postgres supported. Runtime
//! queries with `$n` placeholders (both backends accept them) and an embedded migration folder
//! per backend, so nothing needs a database at build time. Only the `bot` crate opens it.

mod alerts;
mod sql;

use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

pub use crate::approvals::ApprovalStore;
pub use crate::audit::AuditLog;
pub use crate::base::StoreError;
pub use crate::deploy::{
    DeployRecord, DeployState, DeployStore, LayerLock, LOCK_HEARTBEAT_MS, LOCK_STALE_MS,
};
pub use crate::identity::{Link, LinkStore};
use crate::redact::redact_url_password;
use crate::secret::Secret;

pub use sql::{PgStore, SqliteStore};

/// Everything sprocket-ops persists, on one backend: each domain's repository trait
/// ([`AuditLog`], [`LinkStore`], [`ApprovalStore`], [`DeployStore`]; the alert engine's
/// [`AlertStore`](crate::alerts::AlertStore) is reached through [`Backend::alerts`]). The
/// domains hold only their own trait; [`Backend`] (opened by the `bot` crate) hands out this
/// one, which coerces to each.
pub trait Store: AuditLog + LinkStore + ApprovalStore + DeployStore + Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
}

/// Opens (creating a SQLite file if needed) and migrates the store named by `url`.
pub async fn connect(url: &str, password: Option<&Secret>) -> Result<Arc<dyn Store>, StoreError> {
    Ok(open(url, password).await?.store())
}

/// An opened store with its concrete backend, for the parts that need more than [`Store`]
/// (the alert state store is implemented on the same pools).
#[derive(Clone)]
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PgStore>),
}

impl Backend {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }

    pub fn alerts(&self) -> Arc<dyn crate::alerts::store::AlertStore> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(p) => p.clone(),
        }
    }
}

/// Opens (creating a SQLite file if needed) and migrates the store named by `url`.
pub async fn open(url: &str, password: Option<&Secret>) -> Result<Backend, StoreError> {
    open_with(url, password, None).await
}

/// [`open`] with at most `max_connections` pooled connections (default 4 for SQLite, 8 for
/// Postgres). A one-shot CLI command passes 1: one connection opened, migrated and used.
pub async fn open_with(
    url: &str,
    password: Option<&Secret>,
    max_connections: Option<u32>,
) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::BadUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.unwrap_or(4).max(1))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", redact_url_password(url))))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Backend::Sqlite(Arc::new(SqliteStore::new(pool))))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut opts = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::BadUrl(redact_url_password(url)))?;
        if let Some(pw) = password {
            opts = opts.password(pw.expose());
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(8).max(1))
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Open(format!("{}: {e}", redact_url_password(url))))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))?;
        Ok(Backend::Postgres(Arc::new(PgStore::new(pool))))
    } else {
        Err(StoreError::BadUrl(
            "expected sqlite:// or postgres://".to_string(),
        ))
    }
}
