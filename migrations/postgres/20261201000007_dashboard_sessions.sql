-- Dashboard sign-in sessions in the database (issue 13: several nodes behind
-- one load balancer serve one browser; a session started on one node must be
-- known to every other, and a sign-out on one must end it everywhere).
--
-- Like api_keys, the table has row-level security enabled but not forced:
-- a browser's cookie names a session before anyone knows its workspace, so
-- the lookup, the sign-out and the sweep of expired rows go through SECURITY
-- DEFINER functions that reveal only what they return; starting a session
-- and ending a workspace's sessions run in a transaction scoped to that
-- workspace, under the policy. The cookie's value is never stored: rows are
-- keyed by its SHA-256.

CREATE TABLE dashboard_sessions (
    id_hash       text PRIMARY KEY,          -- SHA-256 (hex) of the cookie value
    workspace_id  uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    key_hash      text NOT NULL,             -- SHA-256 (hex) of the API key that signed in
    csrf          text NOT NULL,             -- sent back in every form
    started_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX idx_dashboard_sessions_workspace ON dashboard_sessions(workspace_id, started_at);
CREATE INDEX idx_dashboard_sessions_expiry ON dashboard_sessions(expires_at);

ALTER TABLE dashboard_sessions ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON dashboard_sessions
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
GRANT SELECT, INSERT, DELETE ON dashboard_sessions TO swarmwise_app;

CREATE FUNCTION swarmwise_session(p_hash text, p_now timestamptz)
    RETURNS TABLE (workspace_id uuid, key_hash text, csrf text, started_at timestamptz, expires_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT s.workspace_id, s.key_hash, s.csrf, s.started_at, s.expires_at
   FROM dashboard_sessions s WHERE s.id_hash = p_hash AND s.expires_at > p_now $$;

CREATE FUNCTION swarmwise_end_session(p_hash text) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = public AS
$$ DELETE FROM dashboard_sessions WHERE id_hash = p_hash $$;

CREATE FUNCTION swarmwise_sweep_sessions(p_now timestamptz) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = public AS
$$ WITH gone AS (DELETE FROM dashboard_sessions WHERE expires_at <= p_now RETURNING 1)
   SELECT count(*) FROM gone $$;

REVOKE ALL ON FUNCTION swarmwise_session(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION swarmwise_end_session(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION swarmwise_sweep_sessions(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION swarmwise_session(text, timestamptz) TO swarmwise_app;
GRANT EXECUTE ON FUNCTION swarmwise_end_session(text) TO swarmwise_app;
GRANT EXECUTE ON FUNCTION swarmwise_sweep_sessions(timestamptz) TO swarmwise_app;
