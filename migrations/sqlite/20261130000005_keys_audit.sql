-- Keys and the audit log (issue 8, item 9). SQLite has no row-level
-- security; the audit log is read only through the admin endpoint
-- GET /api/v1/audit. Entries outlive their workspace (no foreign key).
-- Times are integer microseconds, like every other table here.

CREATE TABLE audit_log (
    id            BLOB PRIMARY KEY,            -- UUIDv7: time-ordered, the cursor
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,               -- 'admin' or 'workspace:<uuid>'
    action        TEXT NOT NULL,               -- e.g. 'api_key.revoke'
    workspace_id  BLOB,                        -- the workspace acted on, if any
    target        TEXT NOT NULL DEFAULT '',    -- e.g. the key id
    details       TEXT NOT NULL DEFAULT '{}'   -- JSON
);
CREATE INDEX idx_audit_log_workspace ON audit_log(workspace_id, id DESC);
CREATE INDEX idx_audit_log_action ON audit_log(action, id DESC);
