-- Two indexes no query reads any more; each cost one B-tree insert per
-- recommendation written (issue 14, item 1: the write path sets the pace).
-- (workspace_id, created_at): every range on created_at now filters by
-- agent (idx_recommendations_agent, idx_recommendations_usage) or is
-- retention's (idx_recommendations_retention).
DROP INDEX IF EXISTS idx_recommendations_workspace_created;
-- (workspace_id, agent_id, outcome_status): per-agent counts by status
-- come from recommendation_rollup since 20261201000010.
DROP INDEX IF EXISTS idx_recommendations_agent_status;
