-- The change feed (issue 13, item 1): several nodes on one database keep
-- derived state in memory (trust snapshots, cached patterns, keys and agent
-- names, running agent actors). Every store call that changes what such
-- state is derived from appends one row here in the same transaction as the
-- change; every node tails the feed and refreshes exactly what a row names.
-- See docs/operations.md, "Several nodes".
--
-- kind:    'outcomes'  evaluations committed (agents: whose trust changed)
--          'verdicts'  an already evaluated verdict was overridden (feedback)
--          'failures'  failed executions recorded (agents)
--          'agents'    agents registered, enabled/disabled or deleted (agents)
--          'admission' quarantine, probation or grace changed (agents)
--          'patterns'  a learning cycle saved patterns and rules
--          'keys'      an API key was revoked or rotated
-- origin:  the NodeId of the process that wrote it (a node skips its own)
-- txid:    the writing transaction. Rows commit out of seq order (a
--          bigserial is drawn at insert time), so readers order by
--          (txid, seq) and read only rows whose transaction is older than
--          every transaction still running (pg_snapshot_xmin): no row can
--          later appear behind a position already read.
--
-- Row-level security: a workspace writes only its own rows (every writer is
-- a workspace-scoped transaction). Nodes read across workspaces only
-- through the SECURITY DEFINER functions below, like
-- swarmwise_workspace_ids(); the API never exposes the feed.
CREATE TABLE change_feed (
    seq          bigserial PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    workspace_id uuid NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    origin       text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('outcomes', 'verdicts', 'failures', 'agents', 'admission', 'patterns', 'keys')),
    agents       text[] NOT NULL DEFAULT '{}',
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_change_feed_position ON change_feed(txid, seq);
CREATE INDEX idx_change_feed_at ON change_feed(at);

ALTER TABLE change_feed ENABLE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON change_feed
    USING (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid)
    WITH CHECK (workspace_id = NULLIF(current_setting('app.workspace_id', true), '')::uuid);
ALTER TABLE change_feed FORCE ROW LEVEL SECURITY;
GRANT INSERT ON change_feed TO swarmwise_app;
GRANT USAGE ON SEQUENCE change_feed_seq_seq TO swarmwise_app;

-- Rows after position (p_txid, p_seq) whose transaction is older than every
-- running one, in (txid, seq) order, at most p_limit. txid travels as bigint
-- (an xid8 is a 64-bit epoch-extended id; it stays far below 2^63).
CREATE FUNCTION swarmwise_change_feed(p_txid bigint, p_seq bigint, p_limit integer)
    RETURNS TABLE (txid bigint, seq bigint, workspace_id uuid, origin text, kind text, agents text[], at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT f.txid::text::bigint, f.seq, f.workspace_id, f.origin, f.kind, f.agents, f.at
   FROM change_feed f
   WHERE (f.txid, f.seq) > (p_txid::text::xid8, p_seq)
     AND f.txid < pg_snapshot_xmin(pg_current_snapshot())
   ORDER BY f.txid, f.seq LIMIT p_limit $$;

-- The newest stable position (a starting node begins there, after loading
-- its state from the tables): the last row whose transaction is older than
-- every running one, or (0, 0) on an empty feed.
CREATE FUNCTION swarmwise_change_feed_head()
    RETURNS TABLE (txid bigint, seq bigint)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS
$$ SELECT COALESCE(max(h.txid), 0), COALESCE(max(h.seq), 0) FROM (
     SELECT f.txid::text::bigint AS txid, f.seq FROM change_feed f
     WHERE f.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY f.txid DESC, f.seq DESC LIMIT 1) h $$;

-- Deletes rows written before p_before that every reader could already
-- read (a row behind a transaction still running is kept until it is
-- readable, however old); returns how many.
CREATE FUNCTION swarmwise_prune_change_feed(p_before timestamptz) RETURNS bigint
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS
$$ WITH gone AS (DELETE FROM change_feed
                 WHERE at < p_before AND txid < pg_snapshot_xmin(pg_current_snapshot())
                 RETURNING 1)
   SELECT count(*) FROM gone $$;

REVOKE ALL ON FUNCTION swarmwise_change_feed(bigint, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION swarmwise_change_feed_head() FROM PUBLIC;
REVOKE ALL ON FUNCTION swarmwise_prune_change_feed(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION swarmwise_change_feed(bigint, bigint, integer) TO swarmwise_app;
GRANT EXECUTE ON FUNCTION swarmwise_change_feed_head() TO swarmwise_app;
GRANT EXECUTE ON FUNCTION swarmwise_prune_change_feed(timestamptz) TO swarmwise_app;
