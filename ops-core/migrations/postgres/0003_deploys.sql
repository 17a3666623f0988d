-- Layer deploys (Pulumi). One row per deploy attempt; state moves running -> succeeded |
-- failed | cancelled, or running -> interrupted when sprocket-ops restarted mid-deploy.
CREATE TABLE deploys (
    id TEXT PRIMARY KEY,
    layer TEXT NOT NULL,
    requester TEXT NOT NULL,
    approver TEXT,
    reason TEXT NOT NULL,
    image_before TEXT,
    image_after TEXT,
    state TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    summary TEXT NOT NULL,
    error TEXT
);
CREATE INDEX deploys_layer ON deploys (layer, started_at_ms);
CREATE INDEX deploys_state ON deploys (state);

-- At most one deploy per layer: a row is the lock. Taken with one conditional upsert (free, or
-- the holder's lock expired); released by the deploy that holds it.
CREATE TABLE layer_locks (
    layer TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    reason TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    deploy_id TEXT
);
