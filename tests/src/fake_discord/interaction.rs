//! An interaction the fake dispatched, and how a test awaits and answers its response.

use super::*;

/// An interaction the fake dispatched; await its [`Interaction::response`].
#[derive(Clone)]
pub struct Interaction {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) token: String,
    pub(super) label: String,
}

impl std::fmt::Debug for Interaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interaction")
            .field("id", &self.id)
            .field("label", &self.label)
            .finish()
    }
}

pub(super) fn snapshot(st: &State, id: u64) -> Option<Response> {
    let i = st.interactions.get(&id)?;
    let cb = i.callback.as_ref()?;
    let original = i
        .original
        .and_then(|m| st.message(m))
        .map(Message::from_stored);
    Some(Response {
        kind: cb.kind,
        ephemeral: cb.ephemeral,
        original,
        followups: i
            .followups
            .iter()
            .filter_map(|m| st.message(*m))
            .map(Message::from_stored)
            .collect(),
        modal: (cb.kind == 9).then(|| cb.data.clone()),
        choices: (cb.kind == 8).then(|| cb.data["choices"].clone()),
        callback_at: cb.at,
        sent_at: i.sent_at.unwrap_or(i.created),
    })
}

impl Interaction {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// What was invoked, e.g. `/deploy status` or `button "approve:1"`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub(super) fn failure(&self, st: &State, timeout: Duration, what: &str) -> anyhow::Error {
        let Some(i) = st.interactions.get(&self.id) else {
            return anyhow!("{}: unknown interaction {}", self.label, self.id);
        };
        let why = if let Some(u) = &i.undelivered {
            format!("the dispatch was never delivered: {u}")
        } else if i.sent_at.is_none() {
            "the dispatch was never written to a gateway connection".to_string()
        } else if i.callback.is_none() {
            "the bot never called back (unknown command, a handler error, or serenity dropped \
             the dispatch as undeserializable)"
                .to_string()
        } else {
            format!("last state: {:?}", snapshot(st, self.id))
        };
        anyhow!(
            "{}: no {what} for interaction {} within {timeout:?}: {why}",
            self.label,
            self.id
        )
    }

    /// Waits for the interaction callback. An error (naming the command) if none arrives in
    /// time: "no answer" is always a failure.
    pub async fn response(&self, timeout: Duration) -> anyhow::Result<Response> {
        let id = self.id;
        let got = self
            .shared
            .wait_for(timeout, |st| {
                let i = st.interactions.get(&id)?;
                if i.undelivered.is_some() {
                    return Some(None);
                }
                snapshot(st, id).map(Some)
            })
            .await
            .flatten();
        got.ok_or_else(|| self.failure(&self.shared.lock(), timeout, "interaction callback"))
    }

    /// Waits until the visible state (callback, @original edits, follow-ups) satisfies `pred`.
    pub async fn wait_final(
        &self,
        timeout: Duration,
        pred: impl Fn(&Response) -> bool,
    ) -> anyhow::Result<Response> {
        let id = self.id;
        // `pred` runs without the lock held, so it may call back into the fake.
        let got = self
            .shared
            .wait_until(
                timeout,
                |st| {
                    let undelivered = st
                        .interactions
                        .get(&id)
                        .is_some_and(|i| i.undelivered.is_some());
                    (undelivered, snapshot(st, id))
                },
                |(undelivered, snap)| *undelivered || snap.as_ref().is_some_and(&pred),
            )
            .await;
        match got {
            Ok((false, Some(r))) => Ok(r),
            _ => Err(self.failure(&self.shared.lock(), timeout, "matching response")),
        }
    }

    /// The current state without waiting (None before the callback).
    pub fn current(&self) -> Option<Response> {
        snapshot(&self.shared.lock(), self.id)
    }
}
