-- Swarmwise schema, PostgreSQL. Every workspace-scoped table has row-level
-- security keyed on the per-transaction setting app.workspace_id; the service
-- runs its queries as the role swarmwise_app, which is neither superuser nor
-- BYPASSRLS. Tables are FORCE ROW LEVEL SECURITY so even their owner obeys
-- the policies, except workspaces and api_keys, which the SECURITY DEFINER
-- functions at the end read on behalf of authentication.

DO $$
BEGIN
    CREATE ROLE swarmwise_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL; -- roles are cluster-wide: another database created it already
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT swarmwise_app TO %I', current_user);
EXCEPTION WHEN others THEN
    NULL; -- superusers need no membership to SET ROLE
END
$$;

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_hash      text NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX idx_api_keys_workspace ON api_keys(workspace_id);

CREATE TABLE agents (
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    id            text NOT NULL,
    name          text NOT NULL,
    kind          text NOT NULL,
    config        jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled       boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE agent_recommendations (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             text NOT NULL,
    agent_name           text NOT NULL,
    correlation_id       text NOT NULL,
    workflow_id          text NOT NULL,
    recommendation_type  text NOT NULL,
    content              jsonb NOT NULL,
    confidence_score     double precision NOT NULL CHECK (confidence_score BETWEEN 0 AND 1),
    reasoning            text,
    latency_ms           bigint,
    outcome_status       text NOT NULL DEFAULT 'pending'
                         CHECK (outcome_status IN ('pending', 'approved', 'partial', 'rejected', 'expired')),
    outcome_quality      double precision CHECK (outcome_quality BETWEEN 0 AND 100),
    feedback             text,
    created_at           timestamptz NOT NULL,
    evaluated_at         timestamptz
);
-- The seed's Task 9 indexes, workspace first because every query is scoped.
CREATE INDEX idx_recommendations_agent ON agent_recommendations(workspace_id, agent_id, id DESC);
CREATE INDEX idx_recommendations_status ON agent_recommendations(workspace_id, outcome_status, id DESC);
CREATE INDEX idx_recommendations_workspace_created ON agent_recommendations(workspace_id, created_at DESC);
CREATE INDEX idx_recommendations_workflow ON agent_recommendations(workspace_id, workflow_id);
CREATE INDEX idx_recommendations_type ON agent_recommendations(workspace_id, recommendation_type, id DESC);
CREATE INDEX idx_recommendations_evaluated ON agent_recommendations(workspace_id, evaluated_at, id)
    WHERE evaluated_at IS NOT NULL;

CREATE TABLE agent_trust_scores (
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             text NOT NULL,
    recommendation_type  text NOT NULL DEFAULT '',  -- '' = the agent's overall card
    overall_trust_score  double precision NOT NULL,
    accuracy_score       double precision NOT NULL,
    consistency_score    double precision NOT NULL,
    timeliness_score     double precision NOT NULL,
    reliability_score    double precision NOT NULL,
    calibration_score    double precision NOT NULL,
    trend                text NOT NULL,
    trend_delta          double precision NOT NULL,
    approval_rate        double precision NOT NULL,
    avg_quality          double precision NOT NULL,
    sample_count         bigint NOT NULL,
    effective_samples    double precision NOT NULL,
    strength             text NOT NULL,
    boost                double precision NOT NULL,
    updated_at           timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, agent_id, recommendation_type)
);
CREATE INDEX idx_trust_workspace_score ON agent_trust_scores(workspace_id, overall_trust_score DESC);

CREATE TABLE agent_trust_score_history (
    id                   bigserial PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id             text NOT NULL,
    overall_trust_score  double precision NOT NULL,
    accuracy_score       double precision NOT NULL,
    sample_count         bigint NOT NULL,
    recorded_at          timestamptz NOT NULL
);
CREATE INDEX idx_trust_history_agent ON agent_trust_score_history(workspace_id, agent_id, recorded_at DESC);

CREATE TABLE recommendation_patterns (
    id              uuid PRIMARY KEY,
    workspace_id    uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    category        text NOT NULL,
    pattern_name    text NOT NULL,
    description     text NOT NULL DEFAULT '',
    status          text NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'confirmed', 'retired')),
    support         bigint NOT NULL DEFAULT 0,
    success_rate    double precision NOT NULL DEFAULT 0,
    ci_low          double precision,
    ci_high         double precision,
    p_value         double precision,
    q_value         double precision,
    lift            double precision,
    agent_ids       jsonb NOT NULL DEFAULT '[]'::jsonb,
    details         jsonb NOT NULL DEFAULT '{}'::jsonb,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_confirmed  timestamptz,
    retired_at      timestamptz
);
CREATE INDEX idx_patterns_workspace ON recommendation_patterns(workspace_id, category, status);

CREATE TABLE learning_rules (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    pattern_id    uuid REFERENCES recommendation_patterns(id) ON DELETE SET NULL,
    version       integer NOT NULL,
    rule          jsonb NOT NULL,
    status        text NOT NULL DEFAULT 'active',
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
CREATE INDEX idx_rules_workspace ON learning_rules(workspace_id, status, version DESC);

CREATE TABLE meta_learner_cycles (
    id                         uuid PRIMARY KEY,
    workspace_id               uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    status                     text NOT NULL,
    reason                     text NOT NULL,
    started_at                 timestamptz NOT NULL,
    finished_at                timestamptz,
    recommendations_processed  bigint NOT NULL DEFAULT 0,
    patterns_discovered        integer NOT NULL DEFAULT 0,
    patterns_confirmed         integer NOT NULL DEFAULT 0,
    patterns_retired           integer NOT NULL DEFAULT 0,
    rules_updated              integer NOT NULL DEFAULT 0,
    model_accuracy             double precision,
    coverage                   double precision,
    insights                   jsonb NOT NULL DEFAULT '{}'::jsonb,
    error                      text
);
CREATE INDEX idx_cycles_workspace ON meta_learner_cycles(workspace_id, started_at DESC);

CREATE TABLE workflow_runs (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    workflow      text NOT NULL,
    status        text NOT NULL,
    priority      text NOT NULL DEFAULT 'NORMAL',
    input         jsonb NOT NULL DEFAULT '{}'::jsonb,
    result        jsonb,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX idx_workflow_runs_workspace ON workflow_runs(workspace_id, created_at DESC);

-- Row-level security.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['workspaces', 'api_keys', 'agents', 'agent_recommendations',
                             'agent_trust_scores', 'agent_trust_score_history',
                             'recommendation_patterns', 'learning_rules',
                             'meta_learner_cycles', 'workflow_runs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY workspace_isolation ON %I USING (%s = NULLIF(current_setting(''app.workspace_id'', true), '''')::uuid) WITH CHECK (%s = NULLIF(current_setting(''app.workspace_id'', true), '''')::uuid)',
            t,
            CASE WHEN t = 'workspaces' THEN 'id' ELSE 'workspace_id' END,
            CASE WHEN t = 'workspaces' THEN 'id' ELSE 'workspace_id' END);
        IF t NOT IN ('workspaces', 'api_keys') THEN
            EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        END IF;
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO swarmwise_app', t);
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA public TO swarmwise_app;
GRANT USAGE ON SEQUENCE agent_trust_score_history_id_seq TO swarmwise_app;

-- Authentication needs to find a key's workspace before it knows the
-- workspace: these run as the owner (who is exempt from the non-forced
-- policies of workspaces and api_keys) and reveal only what they return.
CREATE FUNCTION swarmwise_workspace_for_key(p_hash text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT workspace_id FROM api_keys WHERE key_hash = p_hash AND revoked_at IS NULL $$;

CREATE FUNCTION swarmwise_workspace_ids() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT id FROM workspaces ORDER BY id $$;

REVOKE ALL ON FUNCTION swarmwise_workspace_for_key(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION swarmwise_workspace_ids() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION swarmwise_workspace_for_key(text) TO swarmwise_app;
GRANT EXECUTE ON FUNCTION swarmwise_workspace_ids() TO swarmwise_app;

-- /readyz checks that the newest migration is applied.
GRANT SELECT ON _sqlx_migrations TO swarmwise_app;
