-- Dashboard sign-in sessions in the database, shared by every process on
-- this file (see the PostgreSQL migration). Keyed by the SHA-256 of the
-- cookie value; times are integer microseconds.
CREATE TABLE dashboard_sessions (
    id_hash       TEXT PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_hash      TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX idx_dashboard_sessions_workspace ON dashboard_sessions(workspace_id, started_at);
CREATE INDEX idx_dashboard_sessions_expiry ON dashboard_sessions(expires_at);
