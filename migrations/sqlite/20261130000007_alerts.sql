-- Alerts and silences; see the PostgreSQL migration of the same name and
-- docs/alerts.md. workspace_id is NULL for node-level alerts. At most one
-- firing alert per fingerprint (the unique partial index). Times are
-- microseconds since the epoch.
CREATE TABLE alerts (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB REFERENCES workspaces(id) ON DELETE CASCADE,
    rule         TEXT NOT NULL,
    severity     TEXT NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    subject      TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    value        REAL NOT NULL,
    threshold    REAL NOT NULL,
    summary      TEXT NOT NULL,
    action       TEXT,
    started_at   INTEGER NOT NULL,
    fired_at     INTEGER NOT NULL,
    resolved_at  INTEGER,
    acked_at     INTEGER,
    acked_by     TEXT
);
CREATE UNIQUE INDEX idx_alerts_one_firing ON alerts(fingerprint) WHERE status = 'firing';
CREATE INDEX idx_alerts_workspace ON alerts(workspace_id, id DESC);
CREATE INDEX idx_alerts_resolved ON alerts(resolved_at) WHERE status = 'resolved';

CREATE TABLE alert_silences (
    id           BLOB PRIMARY KEY,
    workspace_id BLOB REFERENCES workspaces(id) ON DELETE CASCADE,
    rule         TEXT,
    subject      TEXT,
    severity     TEXT CHECK (severity IN ('critical', 'warning', 'info')),
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER NOT NULL CHECK (ends_at > starts_at),
    created_by   TEXT NOT NULL,
    comment      TEXT NOT NULL
);
CREATE INDEX idx_alert_silences_workspace ON alert_silences(workspace_id, ends_at);
