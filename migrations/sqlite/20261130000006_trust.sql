-- Failed executions of agents (errors, timeouts, invalid answers), folded
-- into reliability; see the PostgreSQL migration of the same name and
-- docs/trust.md, "Reliability". Times are microseconds since the epoch.
CREATE TABLE agent_failures (
    id                   BLOB PRIMARY KEY,
    workspace_id         BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             TEXT NOT NULL,
    agent_name           TEXT NOT NULL,
    workflow_id          TEXT NOT NULL,
    recommendation_type  TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('error', 'timeout', 'invalid')),
    message              TEXT NOT NULL,
    occurred_at          INTEGER NOT NULL
);
CREATE INDEX idx_agent_failures_fold ON agent_failures(workspace_id, occurred_at, id);
CREATE INDEX idx_agent_failures_agent ON agent_failures(workspace_id, agent_id, occurred_at, id);
