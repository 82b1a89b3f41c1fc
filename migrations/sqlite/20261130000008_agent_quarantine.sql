-- Agent admission (issue 12, item 2): an agent's quarantine by an alert,
-- its probation, and the grace after an operator re-enabled it; one row per
-- agent that has one (see the PostgreSQL migration for the columns). SQLite
-- has no row-level security: every query carries workspace_id. Times are
-- integer microseconds.

CREATE TABLE agent_quarantine (
    workspace_id          BLOB NOT NULL,
    agent_id              TEXT NOT NULL,
    state                 TEXT NOT NULL CHECK (state IN ('quarantined', 'probation', 'grace')),
    reason                TEXT NOT NULL DEFAULT '',
    since                 INTEGER NOT NULL,
    alert_id              BLOB,
    until_at              INTEGER,
    probations            INTEGER NOT NULL DEFAULT 0 CHECK (probations >= 0),
    outcomes_at_start     INTEGER NOT NULL DEFAULT 0 CHECK (outcomes_at_start >= 0),
    hold                  INTEGER NOT NULL DEFAULT 0,
    grace_until_outcomes  INTEGER,
    actor                 TEXT NOT NULL,
    version               INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, agent_id),
    FOREIGN KEY (workspace_id, agent_id) REFERENCES agents(workspace_id, id) ON DELETE CASCADE
);
