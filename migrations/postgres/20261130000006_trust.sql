-- Failed executions of agents: errors, timeouts and invalid answers the
-- workflow runner saw. Trust folds them into reliability beside the evaluated
-- recommendations (docs/trust.md, "Reliability"), and the agent metrics count
-- them. `message` is the backend's text, at most 1,000 bytes.
CREATE TABLE agent_failures (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             text NOT NULL,
    agent_name           text NOT NULL,
    workflow_id          text NOT NULL,
    recommendation_type  text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('error', 'timeout', 'invalid')),
    message              text NOT NULL,
    occurred_at          timestamptz NOT NULL
);
CREATE INDEX idx_agent_failures_fold ON agent_failures(workspace_id, occurred_at, id);
CREATE INDEX idx_agent_failures_agent ON agent_failures(workspace_id, agent_id, occurred_at, id);

ALTER TABLE agent_failures ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON agent_failures
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE agent_failures FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_failures TO swarmwise_app;
