-- Reads that do not slow with data (issue 14, item 5): every filter of
-- GET /api/v1/recommendations walks an index in (filter, id DESC) order
-- and stops after `limit` rows, whatever the table holds.
-- The unfiltered list (newest first within a workspace): before this it
-- sorted the whole workspace.
CREATE INDEX idx_recommendations_workspace_id ON agent_recommendations(workspace_id, id DESC);
-- By workflow, in id order: replaces (workspace_id, workflow_id), which left
-- the order to a sort.
CREATE INDEX idx_recommendations_workflow_id ON agent_recommendations(workspace_id, workflow_id, id DESC);
DROP INDEX idx_recommendations_workflow;
