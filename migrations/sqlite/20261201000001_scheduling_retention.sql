-- Scheduling across nodes and retention; see the PostgreSQL migration of
-- the same name and docs/operations.md. Times are microseconds since the
-- epoch, UUIDs 16-byte BLOBs, JSON TEXT.
CREATE TABLE scheduler_leases (
    name           TEXT PRIMARY KEY,
    holder         TEXT NOT NULL,
    fencing_token  INTEGER NOT NULL,
    acquired_at    INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
);

CREATE TABLE scheduled_claims (
    job            TEXT NOT NULL,
    scheduled_at   INTEGER NOT NULL,
    node           TEXT NOT NULL,
    fencing_token  INTEGER NOT NULL,
    claimed_at     INTEGER NOT NULL,
    PRIMARY KEY (job, scheduled_at)
);
CREATE INDEX idx_scheduled_claims_claimed ON scheduled_claims(claimed_at);

CREATE TABLE outcome_digests (
    id                   BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             TEXT NOT NULL,
    agent_name           TEXT NOT NULL,
    workflow_id          TEXT NOT NULL,
    recommendation_type  TEXT NOT NULL,
    confidence_score     REAL NOT NULL,
    outcome_status       TEXT NOT NULL CHECK (outcome_status IN ('approved', 'partial', 'rejected')),
    outcome_quality      REAL,
    latency_ms           INTEGER,
    deadline_ms          INTEGER,
    decision             TEXT,
    evaluated_at         INTEGER NOT NULL,
    removed_at           INTEGER NOT NULL
);
CREATE INDEX idx_outcome_digests_fold ON outcome_digests(workspace_id, evaluated_at, id);
CREATE INDEX idx_outcome_digests_agent ON outcome_digests(workspace_id, agent_id, evaluated_at, id);

CREATE TABLE agent_recommendations_archive (
    id                   BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             TEXT NOT NULL,
    agent_name           TEXT NOT NULL,
    correlation_id       TEXT NOT NULL,
    workflow_id          TEXT NOT NULL,
    recommendation_type  TEXT NOT NULL,
    content              TEXT NOT NULL,
    confidence_score     REAL NOT NULL,
    reasoning            TEXT,
    latency_ms           INTEGER,
    outcome_status       TEXT NOT NULL,
    outcome_quality      REAL,
    feedback             TEXT,
    created_at           INTEGER NOT NULL,
    evaluated_at         INTEGER,
    deadline_ms          INTEGER,
    archived_at          INTEGER NOT NULL
);
CREATE INDEX idx_recommendations_archive_created ON agent_recommendations_archive(workspace_id, created_at);

CREATE INDEX idx_recommendations_retention ON agent_recommendations(workspace_id, created_at, id)
    WHERE outcome_status <> 'pending';
