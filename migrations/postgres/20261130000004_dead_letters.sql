-- Recommendations the store refused for a permanent reason (a value it
-- cannot hold, a constraint). The write-behind writer isolates them from
-- their batch and records them here, so they never block the rows behind
-- them. `payload` is the whole recommendation as JSON text (text, not jsonb:
-- a NUL is kept as the \u0000 escape, which jsonb would refuse); `error` is
-- the database's message. See docs/operations.md, "Dead letters".
CREATE TABLE tracker_dead_letters (
    id                 uuid PRIMARY KEY,
    workspace_id       uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    recommendation_id  uuid NOT NULL,
    agent_id           text NOT NULL,
    error              text NOT NULL,
    payload            text NOT NULL,
    failed_at          timestamptz NOT NULL
);
CREATE INDEX idx_dead_letters_workspace ON tracker_dead_letters(workspace_id, failed_at DESC);

ALTER TABLE tracker_dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON tracker_dead_letters
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE tracker_dead_letters FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON tracker_dead_letters TO swarmwise_app;
