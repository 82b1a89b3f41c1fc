-- Durable workflow runs (issue 13, items 2 and 3); see the PostgreSQL
-- migration of the same version for what each column means. Times are
-- integer microseconds.
ALTER TABLE workflow_runs ADD COLUMN owner_node TEXT;
ALTER TABLE workflow_runs ADD COLUMN lease_until INTEGER;
ALTER TABLE workflow_runs ADD COLUMN fencing INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workflow_runs ADD COLUMN progress TEXT;
ALTER TABLE workflow_runs ADD COLUMN approval_deadline INTEGER;

CREATE INDEX idx_workflow_runs_lease ON workflow_runs(lease_until) WHERE status = 'running';
CREATE INDEX idx_workflow_runs_approval ON workflow_runs(approval_deadline) WHERE status = 'awaiting_approval';
CREATE INDEX idx_workflow_runs_owner ON workflow_runs(owner_node) WHERE status = 'running';
