-- Tokens and cost per recommendation (issue 14, item 4). NULL = unknown.
--
-- model:             the model that answered (from the agent's answer, or
--                    the `model` a client sent when tracking over the API);
--                    at most 128 bytes of [A-Za-z0-9._:/@+-]
-- prompt_tokens:     input tokens of the call, 0..10^9
-- completion_tokens: output tokens of the call, 0..10^9
-- cost_usd:          computed by the service from `[costs.models]` at
--                    tracking time (never sent by a client or an agent);
--                    NULL when the model has no price or a count is unknown
--
-- Row-level security is per table: the existing policy covers the columns.
ALTER TABLE agent_recommendations
    ADD COLUMN model text CHECK (model IS NULL OR octet_length(model) BETWEEN 1 AND 128),
    ADD COLUMN prompt_tokens bigint CHECK (prompt_tokens BETWEEN 0 AND 1000000000),
    ADD COLUMN completion_tokens bigint CHECK (completion_tokens BETWEEN 0 AND 1000000000),
    ADD COLUMN cost_usd double precision CHECK (cost_usd >= 0 AND cost_usd < 'Infinity'::float8);
