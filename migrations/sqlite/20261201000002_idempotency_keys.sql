-- Idempotency keys; see the PostgreSQL migration of the same name and
-- docs/idempotency.md. workspace_id is NULL for admin-key requests (one
-- scope: the expression index). Times are microseconds since the epoch.
CREATE TABLE idempotency_keys (
    claim_token   BLOB PRIMARY KEY,
    workspace_id  BLOB REFERENCES workspaces(id) ON DELETE CASCADE,
    endpoint      TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    owner_node    TEXT NOT NULL,
    lease_until   INTEGER NOT NULL,
    status        INTEGER,
    headers       TEXT,
    body          BLOB,
    created_at    INTEGER NOT NULL,
    completed_at  INTEGER,
    expires_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX idx_idempotency_keys_unique ON idempotency_keys
    (COALESCE(workspace_id, X''), endpoint, idem_key);
CREATE INDEX idx_idempotency_keys_expires ON idempotency_keys(expires_at);
