//! [`AlertStore`] on the SQL stores ([`SqliteStore`], [`PgStore`]; tables from migration 0004):
//! per-key rows are upserted as the engine changes them; the engine-wide part (silences,
//! outbox, cursors) is one row. SQL runs through `sqlx::query` at runtime with `$n`
//! placeholders on both backends.

use async_trait::async_trait;
use sqlx::Row;

use super::{PgStore, SqliteStore};
use crate::alerts::engine::{AlertState, EngineMeta, EngineState, Notification};
use crate::alerts::store::{AlertStore, AlertStoreError};
use crate::base::now_ms;

fn db(e: sqlx::Error) -> AlertStoreError {
    AlertStoreError::Db {
        detail: e.to_string(),
    }
}

fn corrupt(e: serde_json::Error) -> AlertStoreError {
    AlertStoreError::Corrupt {
        detail: e.to_string(),
    }
}

const UPSERT_KEY: &str = "INSERT INTO alert_state (key, state, updated_at_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms";
const DELETE_KEY: &str = "DELETE FROM alert_state WHERE key = $1";
const UPSERT_META: &str = "INSERT INTO alert_meta (id, state, updated_at_ms) VALUES (1, $1, $2) \
     ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at_ms = excluded.updated_at_ms";
const SELECT_KEYS: &str = "SELECT state FROM alert_state ORDER BY key";
const SELECT_META: &str = "SELECT state FROM alert_meta WHERE id = 1";
const INSERT_NOTIFICATION: &str = "INSERT INTO alert_notifications \
     (notification_id, at_ms, kind, channel, severity, body) VALUES ($1, $2, $3, $4, $5, $6)";
const SELECT_NOTIFICATIONS: &str = "SELECT body FROM alert_notifications ORDER BY id";

macro_rules! sql_alert_store {
    ($name:ident) => {
        #[async_trait]
        impl AlertStore for $name {
            async fn load_state(&self) -> Result<EngineState, AlertStoreError> {
                let mut state = EngineState::default();
                for row in sqlx::query(SELECT_KEYS)
                    .fetch_all(self.pool())
                    .await
                    .map_err(db)?
                {
                    let json: String = row.try_get("state").map_err(db)?;
                    let a: AlertState = serde_json::from_str(&json).map_err(corrupt)?;
                    state.alerts.insert(a.key.clone(), a);
                }
                if let Some(row) = sqlx::query(SELECT_META)
                    .fetch_optional(self.pool())
                    .await
                    .map_err(db)?
                {
                    let json: String = row.try_get("state").map_err(db)?;
                    state.meta = serde_json::from_str::<EngineMeta>(&json).map_err(corrupt)?;
                }
                Ok(state)
            }

            async fn save_state(
                &self,
                state: &EngineState,
                keys: &[String],
            ) -> Result<(), AlertStoreError> {
                let now = now_ms();
                let mut tx = self.pool().begin().await.map_err(db)?;
                for key in keys {
                    match state.alerts.get(key) {
                        Some(a) => {
                            sqlx::query(UPSERT_KEY)
                                .bind(key)
                                .bind(serde_json::to_string(a).map_err(corrupt)?)
                                .bind(now)
                                .execute(&mut *tx)
                                .await
                                .map_err(db)?;
                        }
                        None => {
                            sqlx::query(DELETE_KEY)
                                .bind(key)
                                .execute(&mut *tx)
                                .await
                                .map_err(db)?;
                        }
                    }
                }
                sqlx::query(UPSERT_META)
                    .bind(serde_json::to_string(&state.meta).map_err(corrupt)?)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                tx.commit().await.map_err(db)
            }

            async fn record_notification(&self, n: &Notification) -> Result<(), AlertStoreError> {
                sqlx::query(INSERT_NOTIFICATION)
                    .bind(i64::try_from(n.id).unwrap_or(i64::MAX))
                    .bind(n.at_ms)
                    .bind(n.kind.as_str())
                    .bind(n.channel.to_string())
                    .bind(n.severity.as_str())
                    .bind(serde_json::to_string(n).map_err(corrupt)?)
                    .execute(self.pool())
                    .await
                    .map_err(db)?;
                Ok(())
            }

            async fn notifications(&self) -> Result<Vec<Notification>, AlertStoreError> {
                sqlx::query(SELECT_NOTIFICATIONS)
                    .fetch_all(self.pool())
                    .await
                    .map_err(db)?
                    .into_iter()
                    .map(|row| {
                        let body: String = row.try_get("body").map_err(db)?;
                        serde_json::from_str(&body).map_err(corrupt)
                    })
                    .collect()
            }
        }
    };
}

sql_alert_store!(SqliteStore);
sql_alert_store!(PgStore);
