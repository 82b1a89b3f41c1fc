-- Durable workflow runs (issue 13, items 2 and 3).
--
-- A run's progress is stored per completed stage (`progress`: the stage
-- records, each with its input context, every agent's answer or error and
-- the barrier's outcome), so a run survives the node that executed it.
-- A run being executed holds a lease: `owner_node` (the node's
-- `cluster.node_id`) until `lease_until`; `fencing` grows by one at every
-- claim, and every write of the executing node is conditional on the
-- fencing it claimed with, so a node that lost its lease cannot write over
-- its successor's progress. `approval_deadline` is set while the run is
-- `awaiting_approval` (a stage with `approval = true` finished).
--
-- Rows written before this migration have no owner; a starting node marks
-- such `running` rows `interrupted`, as before.
ALTER TABLE workflow_runs
    ADD COLUMN owner_node        text,
    ADD COLUMN lease_until       timestamptz,
    ADD COLUMN fencing           bigint NOT NULL DEFAULT 0,
    ADD COLUMN progress          jsonb,
    ADD COLUMN approval_deadline timestamptz;

-- The sweeper's scans: expired leases, due approvals, a node's own runs.
CREATE INDEX idx_workflow_runs_lease ON workflow_runs(lease_until) WHERE status = 'running';
CREATE INDEX idx_workflow_runs_approval ON workflow_runs(approval_deadline) WHERE status = 'awaiting_approval';
CREATE INDEX idx_workflow_runs_owner ON workflow_runs(owner_node) WHERE status = 'running';

-- The run sweeper of every node (lease renewal, takeover of expired leases,
-- approval deadlines) works across workspaces: it sets `app.runs_cluster`
-- to 'on' (transaction-local) in those transactions only, the way the
-- Alerter's admin scope does for alerts. Workspace keys never reach it.
CREATE POLICY runs_cluster ON workflow_runs
    USING (current_setting('app.runs_cluster', true) = 'on')
    WITH CHECK (current_setting('app.runs_cluster', true) = 'on');
