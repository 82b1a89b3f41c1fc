-- Tokens and cost per recommendation (issue 14, item 4). NULL = unknown.
-- See migrations/postgres/20261201000006_recommendation_usage.sql for the
-- meaning of each column; cost_usd is computed by the service from
-- `[costs.models]`, never sent by a client or an agent.
ALTER TABLE agent_recommendations ADD COLUMN model TEXT
    CHECK (model IS NULL OR length(CAST(model AS BLOB)) BETWEEN 1 AND 128);
ALTER TABLE agent_recommendations ADD COLUMN prompt_tokens INTEGER
    CHECK (prompt_tokens BETWEEN 0 AND 1000000000);
ALTER TABLE agent_recommendations ADD COLUMN completion_tokens INTEGER
    CHECK (completion_tokens BETWEEN 0 AND 1000000000);
ALTER TABLE agent_recommendations ADD COLUMN cost_usd REAL
    CHECK (cost_usd >= 0 AND cost_usd < 1e308);
