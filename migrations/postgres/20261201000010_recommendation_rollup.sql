-- Per-agent figures kept on the write path (issue 14, item 5): the metrics
-- endpoint, the metrics CSV, the dashboard overview and the stats gauges
-- read every agent's counts by status and its all-time token and cost
-- totals on each request. Counted from agent_recommendations that is a
-- scan of the whole workspace (0.75 s at a million rows, and one tenant's
-- volume then hogs the shared pool); read from these tables it is a few
-- rows per agent.
--
-- Every statement that writes agent_recommendations (the tracker's bulk
-- inserts, verdicts, retention) adds its delta here in the SAME
-- transaction: one upsert per distinct group (`n = n + excluded.n`), not a
-- trigger per row. A deleted workspace takes its rows along (ON DELETE
-- CASCADE, as agent_recommendations). Invariant, checked by the tests
-- after random mixes of writes: each table equals the GROUP BY over
-- agent_recommendations. Rows whose count went back to 0 stay (readers
-- skip them).
--
-- recommendation_rollup: rows per (workspace, agent, outcome_status).
-- recommendation_usage_rollup: over the rows that reported usage
-- (prompt_tokens or completion_tokens not NULL): their number, token and
-- cost sums, and how many had no price (cost_usd NULL). cost_usd is a
-- running float sum (exact to rounding; reset to 0 when n returns to 0).
CREATE TABLE recommendation_rollup (
    workspace_id    uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id        text NOT NULL,
    outcome_status  text NOT NULL,
    n               bigint NOT NULL,
    PRIMARY KEY (workspace_id, agent_id, outcome_status)
);

CREATE TABLE recommendation_usage_rollup (
    workspace_id       uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id           text NOT NULL,
    n                  bigint NOT NULL,
    prompt_tokens      bigint NOT NULL,
    completion_tokens  bigint NOT NULL,
    cost_usd           double precision NOT NULL,
    unpriced           bigint NOT NULL,
    PRIMARY KEY (workspace_id, agent_id)
);

-- Row-level security as every workspace table: a workspace reads and
-- writes only its own rows.
ALTER TABLE recommendation_rollup ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON recommendation_rollup
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE recommendation_rollup FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON recommendation_rollup TO swarmwise_app;

ALTER TABLE recommendation_usage_rollup ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON recommendation_usage_rollup
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE recommendation_usage_rollup FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE ON recommendation_usage_rollup TO swarmwise_app;

-- Backfill from the rows already stored, one workspace at a time under
-- its own policy: the migrating role may be the tables' owner rather than
-- a superuser, and FORCE ROW LEVEL SECURITY holds an owner to the policies
-- too (workspaces itself is not forced, so the owner lists them all).
DO $$
DECLARE
    w uuid;
BEGIN
    FOR w IN SELECT id FROM workspaces LOOP
        PERFORM set_config('app.workspace_id', w::text, true);
        INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n)
        SELECT workspace_id, agent_id, outcome_status, count(*)
        FROM agent_recommendations WHERE workspace_id = w
        GROUP BY workspace_id, agent_id, outcome_status;
        INSERT INTO recommendation_usage_rollup
            (workspace_id, agent_id, n, prompt_tokens, completion_tokens, cost_usd, unpriced)
        SELECT workspace_id, agent_id, count(*), COALESCE(SUM(prompt_tokens), 0),
               COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_usd), 0),
               count(*) FILTER (WHERE cost_usd IS NULL)
        FROM agent_recommendations
        WHERE workspace_id = w AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL)
        GROUP BY workspace_id, agent_id;
    END LOOP;
    PERFORM set_config('app.workspace_id', '', true);
END
$$;
