-- Swarmwise schema, SQLite (the embedded default). Same tables and indexes
-- as PostgreSQL; isolation is by the workspace_id predicate on every query
-- (SQLite has no row-level security). UUIDs are 16-byte BLOBs, JSON is TEXT,
-- and times are INTEGER microseconds since the Unix epoch so they sort.

CREATE TABLE workspaces (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_hash      TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX idx_api_keys_workspace ON api_keys(workspace_id);

CREATE TABLE agents (
    workspace_id  BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,
    config        TEXT NOT NULL DEFAULT '{}',
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE agent_recommendations (
    id                   BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             TEXT NOT NULL,
    agent_name           TEXT NOT NULL,
    correlation_id       TEXT NOT NULL,
    workflow_id          TEXT NOT NULL,
    recommendation_type  TEXT NOT NULL,
    content              TEXT NOT NULL,
    confidence_score     REAL NOT NULL CHECK (confidence_score BETWEEN 0 AND 1),
    reasoning            TEXT,
    latency_ms           INTEGER,
    outcome_status       TEXT NOT NULL DEFAULT 'pending'
                         CHECK (outcome_status IN ('pending', 'approved', 'partial', 'rejected', 'expired')),
    outcome_quality      REAL CHECK (outcome_quality BETWEEN 0 AND 100),
    feedback             TEXT,
    created_at           INTEGER NOT NULL,
    evaluated_at         INTEGER
);
CREATE INDEX idx_recommendations_agent ON agent_recommendations(workspace_id, agent_id, id DESC);
CREATE INDEX idx_recommendations_status ON agent_recommendations(workspace_id, outcome_status, id DESC);
CREATE INDEX idx_recommendations_workspace_created ON agent_recommendations(workspace_id, created_at DESC);
CREATE INDEX idx_recommendations_workflow ON agent_recommendations(workspace_id, workflow_id);
CREATE INDEX idx_recommendations_type ON agent_recommendations(workspace_id, recommendation_type, id DESC);
CREATE INDEX idx_recommendations_evaluated ON agent_recommendations(workspace_id, evaluated_at, id)
    WHERE evaluated_at IS NOT NULL;

CREATE TABLE agent_trust_scores (
    workspace_id         BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             TEXT NOT NULL,
    recommendation_type  TEXT NOT NULL DEFAULT '',
    overall_trust_score  REAL NOT NULL,
    accuracy_score       REAL NOT NULL,
    consistency_score    REAL NOT NULL,
    timeliness_score     REAL NOT NULL,
    reliability_score    REAL NOT NULL,
    calibration_score    REAL NOT NULL,
    trend                TEXT NOT NULL,
    trend_delta          REAL NOT NULL,
    approval_rate        REAL NOT NULL,
    avg_quality          REAL NOT NULL,
    sample_count         INTEGER NOT NULL,
    effective_samples    REAL NOT NULL,
    strength             TEXT NOT NULL,
    boost                REAL NOT NULL,
    updated_at           INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, agent_id, recommendation_type)
);
CREATE INDEX idx_trust_workspace_score ON agent_trust_scores(workspace_id, overall_trust_score DESC);

CREATE TABLE agent_trust_score_history (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace_id         BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             TEXT NOT NULL,
    overall_trust_score  REAL NOT NULL,
    accuracy_score       REAL NOT NULL,
    sample_count         INTEGER NOT NULL,
    recorded_at          INTEGER NOT NULL
);
CREATE INDEX idx_trust_history_agent ON agent_trust_score_history(workspace_id, agent_id, recorded_at DESC);

CREATE TABLE recommendation_patterns (
    id              BLOB PRIMARY KEY,
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    category        TEXT NOT NULL,
    pattern_name    TEXT NOT NULL,
    description     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'confirmed', 'retired')),
    support         INTEGER NOT NULL DEFAULT 0,
    success_rate    REAL NOT NULL DEFAULT 0,
    ci_low          REAL,
    ci_high         REAL,
    p_value         REAL,
    q_value         REAL,
    lift            REAL,
    agent_ids       TEXT NOT NULL DEFAULT '[]',
    details         TEXT NOT NULL DEFAULT '{}',
    first_seen      INTEGER NOT NULL,
    last_confirmed  INTEGER,
    retired_at      INTEGER
);
CREATE INDEX idx_patterns_workspace ON recommendation_patterns(workspace_id, category, status);

CREATE TABLE learning_rules (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    pattern_id    BLOB REFERENCES recommendation_patterns(id) ON DELETE SET NULL,
    version       INTEGER NOT NULL,
    rule          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    INTEGER NOT NULL,
    retired_at    INTEGER
);
CREATE INDEX idx_rules_workspace ON learning_rules(workspace_id, status, version DESC);

CREATE TABLE meta_learner_cycles (
    id                         BLOB PRIMARY KEY,
    workspace_id               BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    status                     TEXT NOT NULL,
    reason                     TEXT NOT NULL,
    started_at                 INTEGER NOT NULL,
    finished_at                INTEGER,
    recommendations_processed  INTEGER NOT NULL DEFAULT 0,
    patterns_discovered        INTEGER NOT NULL DEFAULT 0,
    patterns_confirmed         INTEGER NOT NULL DEFAULT 0,
    patterns_retired           INTEGER NOT NULL DEFAULT 0,
    rules_updated              INTEGER NOT NULL DEFAULT 0,
    model_accuracy             REAL,
    coverage                   REAL,
    insights                   TEXT NOT NULL DEFAULT '{}',
    error                      TEXT
);
CREATE INDEX idx_cycles_workspace ON meta_learner_cycles(workspace_id, started_at DESC);

CREATE TABLE workflow_runs (
    id            BLOB PRIMARY KEY,
    workspace_id  BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    workflow      TEXT NOT NULL,
    status        TEXT NOT NULL,
    priority      TEXT NOT NULL DEFAULT 'NORMAL',
    input         TEXT NOT NULL DEFAULT '{}',
    result        TEXT,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE INDEX idx_workflow_runs_workspace ON workflow_runs(workspace_id, created_at DESC);
