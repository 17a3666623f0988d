-- Alerts (ops_core::alerts). One row per alert key with the engine's JSON state (phase,
-- counters, "firing notification already sent"), upserted as keys change, so a restart
-- neither announces an alert twice nor forgets to say it resolved.
CREATE TABLE alert_state (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Engine-wide state: silences, undelivered notifications (the outbox), heartbeat and the
-- Docker event cursor. Exactly one row (id = 1).
CREATE TABLE alert_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Every notification handed to the sink, for the record.
CREATE TABLE alert_notifications (
    id BIGSERIAL PRIMARY KEY,
    notification_id BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    channel TEXT NOT NULL,
    severity TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX alert_notifications_at ON alert_notifications (at_ms);
