-- Keys and the audit log (issue 8, item 9).
--
-- workspaces and api_keys stay as the initial migration left them: row-level
-- security enabled but not forced, the service role reading across
-- workspaces only through SECURITY DEFINER functions. Listing, revoking and
-- rotating a workspace's keys run in a transaction scoped to that workspace
-- (app.workspace_id), so the existing policy applies to them unchanged.
--
-- audit_log is admin-level: its rows describe actions of the operator (and,
-- later, of tenants) across workspaces and are read only through the admin
-- endpoint GET /api/v1/audit, never with a workspace key. It therefore has
-- no workspace policy. The service role may only append and read it: no
-- UPDATE or DELETE grant, so the service cannot rewrite history. Entries
-- outlive their workspace (no foreign key).

CREATE TABLE audit_log (
    id            uuid PRIMARY KEY,            -- UUIDv7: time-ordered, the cursor
    at            timestamptz NOT NULL,
    actor         text NOT NULL,               -- 'admin' or 'workspace:<uuid>'
    action        text NOT NULL,               -- e.g. 'api_key.revoke'
    workspace_id  uuid,                        -- the workspace acted on, if any
    target        text NOT NULL DEFAULT '',    -- e.g. the key id
    details       jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX idx_audit_log_workspace ON audit_log(workspace_id, id DESC);
CREATE INDEX idx_audit_log_action ON audit_log(action, id DESC);

GRANT SELECT, INSERT ON audit_log TO swarmwise_app;

-- The admin's workspace listing, a page at a time by id. Like
-- swarmwise_workspace_ids(), it reads past the workspaces policy and reveals
-- only what it returns; only the admin endpoint calls it.
CREATE FUNCTION swarmwise_workspaces(p_after uuid, p_limit integer)
    RETURNS TABLE (id uuid, name text, created_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT w.id, w.name, w.created_at FROM workspaces w
   WHERE p_after IS NULL OR w.id > p_after
   ORDER BY w.id LIMIT p_limit $$;

REVOKE ALL ON FUNCTION swarmwise_workspaces(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION swarmwise_workspaces(uuid, integer) TO swarmwise_app;
