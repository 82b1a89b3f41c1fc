-- Per-agent figures kept on the write path (issue 14, item 5). See
-- migrations/postgres/20261201000010_recommendation_rollup.sql for why and
-- for the invariant: every statement that writes agent_recommendations adds
-- its delta here in the same transaction, and each table equals the
-- GROUP BY over agent_recommendations.
CREATE TABLE recommendation_rollup (
    workspace_id    BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id        TEXT NOT NULL,
    outcome_status  TEXT NOT NULL,
    n               INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, agent_id, outcome_status)
) WITHOUT ROWID;

CREATE TABLE recommendation_usage_rollup (
    workspace_id       BLOB NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    agent_id           TEXT NOT NULL,
    n                  INTEGER NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cost_usd           REAL NOT NULL,
    unpriced           INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, agent_id)
) WITHOUT ROWID;

INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n)
SELECT workspace_id, agent_id, outcome_status, count(*)
FROM agent_recommendations GROUP BY workspace_id, agent_id, outcome_status;

INSERT INTO recommendation_usage_rollup
    (workspace_id, agent_id, n, prompt_tokens, completion_tokens, cost_usd, unpriced)
SELECT workspace_id, agent_id, count(*), COALESCE(SUM(prompt_tokens), 0),
       COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_usd), 0.0),
       SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)
FROM agent_recommendations
WHERE prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL
GROUP BY workspace_id, agent_id;
