-- Discord user -> GitHub account (by numeric id, which survives renames).
CREATE TABLE links (
    discord_id TEXT PRIMARY KEY,
    github_id BIGINT NOT NULL,
    github_login TEXT NOT NULL,
    linked_at_ms BIGINT NOT NULL
);
CREATE INDEX links_github ON links (github_id);

-- Two-person approvals. State moves pending -> approved -> executing -> done|failed, or
-- pending -> denied|expired, or executing -> void, only by conditional updates.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    params TEXT NOT NULL,
    digest TEXT NOT NULL,
    summary TEXT NOT NULL,
    requester_github_id BIGINT NOT NULL,
    requester_login TEXT NOT NULL,
    requester_discord_id TEXT NOT NULL,
    rule TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    channel_id TEXT,
    message_id TEXT,
    result TEXT
);
CREATE INDEX approvals_state ON approvals (state, expires_at_ms);

CREATE TABLE approval_votes (
    approval_id TEXT NOT NULL REFERENCES approvals (id),
    voter_github_id BIGINT NOT NULL,
    voter_login TEXT NOT NULL,
    voter_discord_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (approval_id, voter_github_id)
);
