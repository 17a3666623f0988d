//! Persistence of the alert engine: the [`AlertStore`] repository trait and its error, and an
//! in-memory implementation. The SQL one is `store::alerts`, on the same pools as the rest
//! (tables from migration 0004).

use std::sync::Mutex;

use async_trait::async_trait;

use super::engine::{EngineState, Notification};

/// Why the alert store failed. `Display` is safe; `detail` is for the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AlertStoreError {
    #[error("the alert store failed")]
    Db { detail: String },
    #[error("the stored alert state is unreadable")]
    Corrupt { detail: String },
}

impl AlertStoreError {
    pub fn detail(&self) -> &str {
        match self {
            AlertStoreError::Db { detail } | AlertStoreError::Corrupt { detail } => detail,
        }
    }
}

/// Where the engine state lives between runs.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// The whole state (empty on first run).
    async fn load_state(&self) -> Result<EngineState, AlertStoreError>;
    /// Upserts the rows of `keys` (deleting keys the state no longer has) and the meta row.
    async fn save_state(&self, state: &EngineState, keys: &[String])
        -> Result<(), AlertStoreError>;
    /// Records a delivered notification.
    async fn record_notification(&self, n: &Notification) -> Result<(), AlertStoreError>;
    /// The recorded notifications, oldest first.
    async fn notifications(&self) -> Result<Vec<Notification>, AlertStoreError>;
}

/// An in-memory store (tests, or running without a database).
#[derive(Debug, Default)]
pub struct MemoryAlertStore {
    inner: Mutex<(EngineState, Vec<Notification>)>,
}

#[async_trait]
impl AlertStore for MemoryAlertStore {
    async fn load_state(&self) -> Result<EngineState, AlertStoreError> {
        Ok(self.inner.lock().expect("store lock").0.clone())
    }
    async fn save_state(
        &self,
        state: &EngineState,
        keys: &[String],
    ) -> Result<(), AlertStoreError> {
        let mut g = self.inner.lock().expect("store lock");
        for k in keys {
            match state.alerts.get(k) {
                Some(a) => {
                    g.0.alerts.insert(k.clone(), a.clone());
                }
                None => {
                    g.0.alerts.remove(k);
                }
            }
        }
        g.0.meta = state.meta.clone();
        Ok(())
    }
    async fn record_notification(&self, n: &Notification) -> Result<(), AlertStoreError> {
        self.inner.lock().expect("store lock").1.push(n.clone());
        Ok(())
    }
    async fn notifications(&self) -> Result<Vec<Notification>, AlertStoreError> {
        Ok(self.inner.lock().expect("store lock").1.clone())
    }
}
