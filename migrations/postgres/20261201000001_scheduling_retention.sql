-- Scheduling across nodes and retention (issue 13 item 1, issue 14 item 6).
-- See docs/operations.md, "Scheduled jobs across nodes" and "Retention".
--
-- scheduler_leases: one row per lease name ('scheduler'). The holder (a
-- NodeId) runs the cron jobs while expires_at is in the future (the
-- database's clock, so skewed node clocks do not matter) and renews it;
-- another node takes it over once it has expired. fencing_token increases
-- every time the holder changes: a deposed leader's token is stale, and the
-- claims below refuse it. Operator-level: no workspace_id, no policy.
CREATE TABLE scheduler_leases (
    name           text PRIMARY KEY,
    holder         text NOT NULL,
    fencing_token  bigint NOT NULL,
    acquired_at    timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);
GRANT SELECT, INSERT, UPDATE, DELETE ON scheduler_leases TO swarmwise_app;

-- scheduled_claims: one row per occurrence of a scheduled job that some node
-- ran. The key is (job, scheduled_at) with scheduled_at the cron
-- occurrence's time (not the clock of the node that fired it), so two nodes
-- whose clocks differ claim the same key and only the first insert wins.
-- Pruned by the leader after a day. Operator-level: no workspace_id.
CREATE TABLE scheduled_claims (
    job            text NOT NULL,
    scheduled_at   timestamptz NOT NULL,
    node           text NOT NULL,
    fencing_token  bigint NOT NULL,
    claimed_at     timestamptz NOT NULL,
    PRIMARY KEY (job, scheduled_at)
);
CREATE INDEX idx_scheduled_claims_claimed ON scheduled_claims(claimed_at);
GRANT SELECT, INSERT, UPDATE, DELETE ON scheduled_claims TO swarmwise_app;

-- outcome_digests: what trust (outcome_samples) and pattern mining
-- (outcome_records) read of an evaluated recommendation that retention
-- removed: no content, reasoning, correlation id or feedback. Both reads
-- take the union of agent_recommendations and this table, so trust and
-- patterns do not change when retention runs. `decision` is
-- content.<learner.decision_key> (or the whole content) as it was when the
-- row was removed.
CREATE TABLE outcome_digests (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             text NOT NULL,
    agent_name           text NOT NULL,
    workflow_id          text NOT NULL,
    recommendation_type  text NOT NULL,
    confidence_score     double precision NOT NULL,
    outcome_status       text NOT NULL CHECK (outcome_status IN ('approved', 'partial', 'rejected')),
    outcome_quality      double precision,
    latency_ms           bigint,
    deadline_ms          bigint,
    decision             text,
    evaluated_at         timestamptz NOT NULL,
    removed_at           timestamptz NOT NULL
);
CREATE INDEX idx_outcome_digests_fold ON outcome_digests(workspace_id, evaluated_at, id);
CREATE INDEX idx_outcome_digests_agent ON outcome_digests(workspace_id, agent_id, evaluated_at, id);

ALTER TABLE outcome_digests ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON outcome_digests
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE outcome_digests FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON outcome_digests TO swarmwise_app;

-- agent_recommendations_archive: retention in mode "archive" moves whole
-- rows here (same columns, plus archived_at) instead of deleting them. The
-- API does not read it; operators query it directly.
CREATE TABLE agent_recommendations_archive (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             text NOT NULL,
    agent_name           text NOT NULL,
    correlation_id       text NOT NULL,
    workflow_id          text NOT NULL,
    recommendation_type  text NOT NULL,
    content              jsonb NOT NULL,
    confidence_score     double precision NOT NULL,
    reasoning            text,
    latency_ms           bigint,
    outcome_status       text NOT NULL,
    outcome_quality      double precision,
    feedback             text,
    created_at           timestamptz NOT NULL,
    evaluated_at         timestamptz,
    deadline_ms          bigint,
    archived_at          timestamptz NOT NULL
);
CREATE INDEX idx_recommendations_archive_created ON agent_recommendations_archive(workspace_id, created_at);

ALTER TABLE agent_recommendations_archive ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON agent_recommendations_archive
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE agent_recommendations_archive FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_recommendations_archive TO swarmwise_app;

-- Retention selects old, settled rows by creation time.
CREATE INDEX idx_recommendations_retention ON agent_recommendations(workspace_id, created_at, id)
    WHERE outcome_status <> 'pending';
