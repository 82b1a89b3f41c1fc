-- Idempotency keys (issue 13, item 4; docs/idempotency.md).
--
-- One row per (caller scope, endpoint, Idempotency-Key): the first request
-- claims the key (state 'in_progress', a lease held by the node that runs
-- it, renewed while it runs), then stores its answer (state 'completed':
-- status, the headers that matter, the body) so that a repeat on any node
-- replays it instead of running again. A repeat with another request
-- (fingerprint) is refused; a claim whose lease lapsed (its node died) or a
-- row past expires_at may be claimed again. claim_token fences the claimant:
-- renewing, completing or releasing a claim matches the token, so a node
-- whose lease lapsed and was taken over cannot overwrite the new claim.
--
-- workspace_id is NULL for requests made with the admin key (the admin
-- scope). Uniqueness treats NULL as one scope, hence the expression index.
--
-- Row-level security: a workspace sees its own rows (app.workspace_id); the
-- admin scope (app.idempotency_admin = 'on', transaction-local, set only for
-- admin-key requests, whose queries also say workspace_id IS NULL, and for
-- the expiry purge) sees every row.
CREATE TABLE idempotency_keys (
    claim_token   uuid PRIMARY KEY,             -- the current claim (fencing token)
    workspace_id  uuid REFERENCES workspaces(id) ON DELETE CASCADE,
    endpoint      text NOT NULL,                -- 'POST /api/v1/recommendations' (route pattern)
    idem_key      text NOT NULL,                -- the header's value, 1-255 printable ASCII
    fingerprint   text NOT NULL,                -- SHA-256 hex of method, path, query and canonical body
    state         text NOT NULL CHECK (state IN ('in_progress', 'completed')),
    owner_node    text NOT NULL,                -- NodeId of the claimant
    lease_until   timestamptz NOT NULL,         -- in_progress: claim lapses after this
    status        integer,                      -- completed: the HTTP status
    headers       jsonb,                        -- completed: [[name, value], ...]
    body          bytea,                        -- completed: the response body, as sent
    created_at    timestamptz NOT NULL,
    completed_at  timestamptz,
    expires_at    timestamptz NOT NULL          -- created_at + idempotency.ttl_secs
);
CREATE UNIQUE INDEX idx_idempotency_keys_unique ON idempotency_keys
    (COALESCE(workspace_id, '00000000-0000-0000-0000-000000000000'::uuid), endpoint, idem_key);
CREATE INDEX idx_idempotency_keys_expires ON idempotency_keys(expires_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON idempotency_keys
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
           OR current_setting('app.idempotency_admin', true) = 'on')
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
           OR current_setting('app.idempotency_admin', true) = 'on');
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO swarmwise_app;
