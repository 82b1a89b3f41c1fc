-- Recommendations the store refused for a permanent reason, isolated from
-- their batch by the write-behind writer (see the PostgreSQL migration of
-- the same name and docs/operations.md, "Dead letters"). `payload` is the
-- whole recommendation as JSON text; times are microseconds since the epoch.
CREATE TABLE tracker_dead_letters (
    id                 BLOB PRIMARY KEY,
    workspace_id       BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    recommendation_id  BLOB NOT NULL,
    agent_id           TEXT NOT NULL,
    error              TEXT NOT NULL,
    payload            TEXT NOT NULL,
    failed_at          INTEGER NOT NULL
);
CREATE INDEX idx_dead_letters_workspace ON tracker_dead_letters(workspace_id, failed_at DESC);
