//! The SQL behind [`Store`], written once and instantiated for SQLite and Postgres: both accept
//! `$n` placeholders and the same DDL types through their own migration folders.

use async_trait::async_trait;
use sqlx::{Pool, Postgres, Row, Sqlite};

use super::{Store, StoreError};
use crate::audit::{Actor, AuditEntry, AuditFilter, AuditRecord, Frontend, Outcome};

fn query_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

const INSERT_AUDIT: &str = "INSERT INTO audit_log (at_ms, frontend, actor_id, actor_name, github_login, command, params, outcome, detail, error_id, duration_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id";

const LIST_AUDIT: &str = "SELECT id, at_ms, frontend, actor_id, actor_name, github_login, command, params, outcome, detail, error_id, duration_ms \
     FROM audit_log WHERE ($1 IS NULL OR actor_id = $1) AND at_ms >= $2 ORDER BY id DESC LIMIT $3";

fn audit_from_row<R: Row>(row: &R) -> Result<AuditRecord, sqlx::Error>
where
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    for<'r> &'r str: sqlx::ColumnIndex<R>,
{
    let frontend = match row.try_get::<String, _>("frontend")?.as_str() {
        "cli" => Frontend::Cli,
        _ => Frontend::Discord,
    };
    let params: String = row.try_get("params")?;
    Ok(AuditRecord {
        id: row.try_get("id")?,
        entry: AuditEntry {
            at_ms: row.try_get("at_ms")?,
            actor: Actor {
                frontend,
                id: row.try_get("actor_id")?,
                name: row.try_get("actor_name")?,
                github_login: row.try_get("github_login")?,
            },
            command: row.try_get("command")?,
            params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
            outcome: Outcome::parse(&row.try_get::<String, _>("outcome")?),
            detail: row.try_get("detail")?,
            error_id: row.try_get("error_id")?,
            duration_ms: row.try_get("duration_ms")?,
        },
    })
}

macro_rules! sql_store {
    ($name:ident, $db:ty, $backend:literal) => {
        #[doc = concat!("The store on ", $backend, ".")]
        pub struct $name {
            pool: Pool<$db>,
        }

        impl $name {
            pub fn new(pool: Pool<$db>) -> Self {
                Self { pool }
            }
            /// The pool, for test assertions on raw rows.
            pub fn pool(&self) -> &Pool<$db> {
                &self.pool
            }
        }

        #[async_trait]
        impl Store for $name {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn append_audit(&self, e: &AuditEntry) -> Result<i64, StoreError> {
                let row = sqlx::query(INSERT_AUDIT)
                    .bind(e.at_ms)
                    .bind(e.actor.frontend.as_str())
                    .bind(&e.actor.id)
                    .bind(&e.actor.name)
                    .bind(&e.actor.github_login)
                    .bind(&e.command)
                    .bind(e.params.to_string())
                    .bind(e.outcome.as_str())
                    .bind(&e.detail)
                    .bind(&e.error_id)
                    .bind(e.duration_ms)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(query_err)?;
                row.try_get::<i64, _>("id").map_err(query_err)
            }

            async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
                let limit = if f.limit == 0 { 50 } else { f.limit.min(1000) };
                let rows = sqlx::query(LIST_AUDIT)
                    .bind(&f.actor_id)
                    .bind(f.since_ms.unwrap_or(0))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(query_err)?;
                rows.iter()
                    .map(|r| audit_from_row(r).map_err(query_err))
                    .collect()
            }
        }
    };
}

sql_store!(SqliteStore, Sqlite, "sqlite");
sql_store!(PgStore, Postgres, "postgres");
