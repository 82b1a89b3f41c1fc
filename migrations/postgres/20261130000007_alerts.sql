-- Alerts and silences (issue 12). See docs/alerts.md.
--
-- An alert is one breach of a rule for one subject, from firing to resolved.
-- workspace_id is NULL for node-level alerts (database_errors), which only the
-- admin sees. At most one firing alert per fingerprint
-- (workspace/rule/subject): the unique partial index below is how several
-- nodes evaluating the same state raise one alert, and how a restarted node
-- adopts the open one instead of raising another.
--
-- Row-level security: a workspace sees its own rows (app.workspace_id); the
-- admin scope (app.alerts_admin = 'on', transaction-local, set only for the
-- admin key and the Alerter) sees every row, node-level ones included.
CREATE TABLE alerts (
    id           uuid PRIMARY KEY,               -- UUIDv7: time-ordered, the cursor
    workspace_id uuid REFERENCES workspaces(id) ON DELETE CASCADE,
    rule         text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    subject      text NOT NULL,
    fingerprint  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('firing', 'resolved')),
    value        double precision NOT NULL,
    threshold    double precision NOT NULL,
    summary      text NOT NULL,
    action       text,
    started_at   timestamptz NOT NULL,
    fired_at     timestamptz NOT NULL,
    resolved_at  timestamptz,
    acked_at     timestamptz,
    acked_by     text
);
CREATE UNIQUE INDEX idx_alerts_one_firing ON alerts(fingerprint) WHERE status = 'firing';
CREATE INDEX idx_alerts_workspace ON alerts(workspace_id, id DESC);
CREATE INDEX idx_alerts_resolved ON alerts(resolved_at) WHERE status = 'resolved';

ALTER TABLE alerts ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON alerts
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
           OR current_setting('app.alerts_admin', true) = 'on')
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
           OR current_setting('app.alerts_admin', true) = 'on');
ALTER TABLE alerts FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON alerts TO swarmwise_app;

-- A silence suppresses notifications of the alerts it matches (rule,
-- subject, severity; NULL = any) while starts_at <= now < ends_at. NULL
-- workspace_id: an admin silence of node-level alerts.
CREATE TABLE alert_silences (
    id           uuid PRIMARY KEY,
    workspace_id uuid REFERENCES workspaces(id) ON DELETE CASCADE,
    rule         text,
    subject      text,
    severity     text CHECK (severity IN ('critical', 'warning', 'info')),
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL CHECK (ends_at > starts_at),
    created_by   text NOT NULL,
    comment      text NOT NULL
);
CREATE INDEX idx_alert_silences_workspace ON alert_silences(workspace_id, ends_at);

ALTER TABLE alert_silences ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON alert_silences
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
           OR current_setting('app.alerts_admin', true) = 'on')
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid
           OR current_setting('app.alerts_admin', true) = 'on');
ALTER TABLE alert_silences FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON alert_silences TO swarmwise_app;
