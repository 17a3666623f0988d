-- Layer locks name the process holding them and when it last renewed them (every 5 s while
-- it deploys). Start-up recovery frees only locks whose heartbeat is stale (30 s), so a bot
-- starting while a CLI deploy (or another process) runs leaves that deploy alone. Locks of an
-- older version have no heartbeat (0): stale, freed as before.
ALTER TABLE layer_locks ADD COLUMN process TEXT NOT NULL DEFAULT '';
ALTER TABLE layer_locks ADD COLUMN heartbeat_at_ms BIGINT NOT NULL DEFAULT 0;
