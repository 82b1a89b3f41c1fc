-- Retention of the trust history (retention.trust_history_max_age_days):
-- a workspace's points by recording time, so a batch takes the oldest
-- points without reading the workspace's whole history or sorting it.
CREATE INDEX idx_trust_history_recorded ON agent_trust_score_history(workspace_id, recorded_at, id);
