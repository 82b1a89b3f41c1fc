-- Aggregates that read every row of a workspace read an index instead of
-- the table (whose rows carry the content and reasoning).
-- Per-agent counts by status (GET /learning/agents/{id}/metrics, the
-- metrics CSV, the dashboard's agent pages): grouped in index order.
CREATE INDEX idx_recommendations_agent_status ON agent_recommendations(workspace_id, agent_id, outcome_status);
-- Token and cost totals (GET /learning/costs, the metrics and CSV): only
-- rows that reported usage, with every column the sum needs.
CREATE INDEX idx_recommendations_usage ON agent_recommendations(workspace_id, agent_id, created_at, prompt_tokens, completion_tokens, cost_usd)
    WHERE prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL;
