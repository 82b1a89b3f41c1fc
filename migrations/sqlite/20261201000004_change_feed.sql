-- The change feed (issue 13, item 1); see the PostgreSQL migration of the
-- same version for what each kind means. On SQLite writers are serialised,
-- so rows commit in seq order and a reader's "last seq seen" is exact.
-- AUTOINCREMENT: a seq is never reused, even after pruning the newest rows.
CREATE TABLE change_feed (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    origin       TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('outcomes', 'verdicts', 'failures', 'agents', 'admission', 'patterns', 'keys')),
    agents       TEXT NOT NULL DEFAULT '[]',  -- JSON array of agent ids
    at           INTEGER NOT NULL             -- microseconds since the epoch
);
CREATE INDEX idx_change_feed_at ON change_feed(at);
