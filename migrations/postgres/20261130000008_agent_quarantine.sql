-- Agent admission (issue 12, item 2): an agent's quarantine by an alert,
-- its probation, and the grace after an operator re-enabled it. One row per
-- agent that has one; no row means admitted. The row goes with its agent
-- (DELETE /api/v1/agents/{id}). `version` increases on every change: each
-- change is a compare-and-set on it, so two nodes deciding at once apply one
-- step. Every change writes its audit_log entry in the same transaction.
--
-- state:       'quarantined' | 'probation' (the agent JSON's quarantine.state)
--              | 'grace' (re-enabled by an operator; grace_until_outcomes set)
-- until_at:    end of the cool-down while quarantined (NULL on probation,
--              while held, and in grace)
-- probations:  failed probations so far
-- hold:        held until an operator acts (max_probations failed)
-- actor:       who wrote the state ('alerter', 'admission', 'admin',
--              'workspace:<id>')

CREATE TABLE agent_quarantine (
    workspace_id          uuid NOT NULL,
    agent_id              text NOT NULL,
    state                 text NOT NULL CHECK (state IN ('quarantined', 'probation', 'grace')),
    reason                text NOT NULL DEFAULT '',
    since                 timestamptz NOT NULL,
    alert_id              uuid,
    until_at              timestamptz,
    probations            integer NOT NULL DEFAULT 0 CHECK (probations >= 0),
    outcomes_at_start     bigint NOT NULL DEFAULT 0 CHECK (outcomes_at_start >= 0),
    hold                  boolean NOT NULL DEFAULT false,
    grace_until_outcomes  bigint,
    actor                 text NOT NULL,
    version               bigint NOT NULL,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, agent_id),
    FOREIGN KEY (workspace_id, agent_id) REFERENCES agents(workspace_id, id) ON DELETE CASCADE
);

ALTER TABLE agent_quarantine ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON agent_quarantine
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE agent_quarantine FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON agent_quarantine TO swarmwise_app;

-- The periodic check visits only workspaces with a row. Like
-- swarmwise_workspace_ids(), this reads past the policy and reveals only
-- workspace ids.
CREATE FUNCTION swarmwise_admission_workspaces() RETURNS SETOF uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT DISTINCT workspace_id FROM agent_quarantine ORDER BY workspace_id $$;

REVOKE ALL ON FUNCTION swarmwise_admission_workspaces() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION swarmwise_admission_workspaces() TO swarmwise_app;
