//! [`RunStore`] on PostgreSQL. Every workspace-scoped query runs in a
//! transaction scoped to its workspace (row-level security); the sweeper's
//! cross-workspace statements (renew, release, claim, due approvals) run in
//! transactions that set `app.runs_cluster` (policy `runs_cluster`,
//! migration 20261201000003).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use swarmwise_actors::domain::{Priority, WorkspaceId};
use swarmwise_actors::ports::{RunStore, RunWrite, StoreError};
use swarmwise_actors::workflow::{RunLease, RunStatus, WorkflowRun};
use uuid::Uuid;

use super::{has_repeated_run, mark, one_write, restore_result_stages, stored_result, RUN_COLUMNS};
use crate::store::postgres::{set_workspace, PgStore};
use crate::store::{priority_name, unexpected};

impl PgStore {
    /// A transaction for the run sweeper: every workspace's runs.
    async fn runs_cluster_tx(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query("SELECT set_config('app.runs_cluster', 'on', true)")
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        Ok(tx)
    }
}

fn run_row(row: &PgRow) -> Result<WorkflowRun, StoreError> {
    let get = || -> Result<WorkflowRun, anyhow::Error> {
        let status: String = row.try_get("status")?;
        let priority: String = row.try_get("priority")?;
        let owner: Option<String> = row.try_get("owner_node")?;
        let until: Option<DateTime<Utc>> = row.try_get("lease_until")?;
        Ok(WorkflowRun {
            id: row.try_get("id")?,
            workspace_id: WorkspaceId(row.try_get("workspace_id")?),
            workflow: row.try_get("workflow")?,
            status: RunStatus::parse(&status)
                .ok_or_else(|| anyhow::anyhow!("bad run status {status}"))?,
            priority: Priority::parse("priority", &priority)?,
            input: row.try_get("input")?,
            result: row.try_get("result")?,
            error: row.try_get("error")?,
            created_at: row.try_get("created_at")?,
            finished_at: row.try_get("finished_at")?,
            progress: row.try_get("progress")?,
            approval_deadline: row.try_get("approval_deadline")?,
            // A paused run keeps its last owner and fencing token, without
            // a lease end.
            lease: match owner {
                Some(owner) => Some(RunLease {
                    owner,
                    fencing: row.try_get("fencing")?,
                    until: until.unwrap_or(DateTime::UNIX_EPOCH),
                }),
                None => None,
            },
        })
    };
    let mut run = get().map_err(StoreError::Unexpected)?;
    restore_result_stages(&mut run);
    Ok(run)
}

#[async_trait]
impl RunStore for PgStore {
    async fn run_writes(&self, writes: &[RunWrite]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let mut applied = vec![false; writes.len()];
        if !has_repeated_run(writes) {
            // One group per workspace (row-level security scopes the
            // transaction to one at a time), each as at most three
            // statements over UNNEST arrays.
            let mut groups: Vec<(WorkspaceId, Vec<usize>)> = Vec::new();
            for (i, w) in writes.iter().enumerate() {
                let ws = w.run().workspace_id;
                match groups.iter_mut().find(|g| g.0 == ws) {
                    Some(g) => g.1.push(i),
                    None => groups.push((ws, vec![i])),
                }
            }
            for (ws, indices) in groups {
                set_workspace(&mut tx, ws).await?;
                run_writes_grouped(&mut tx, ws, writes, &indices, &mut applied).await?;
            }
        } else {
            // Never from the runner (a run awaits each write); kept exact:
            // one write at a time, in order.
            let mut scope = None;
            for (i, w) in writes.iter().enumerate() {
                let ws = w.run().workspace_id;
                if scope != Some(ws) {
                    set_workspace(&mut tx, ws).await?;
                    scope = Some(ws);
                }
                run_writes_grouped(&mut tx, ws, writes, &[i], &mut applied).await?;
            }
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(applied)
    }

    async fn insert_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        self.run_writes(&[RunWrite::Insert(std::sync::Arc::new(run.clone()))])
            .await
            .map(drop)
    }

    async fn finish_run(&self, run: &WorkflowRun) -> Result<bool, StoreError> {
        one_write(self, RunWrite::Finish(std::sync::Arc::new(run.clone()))).await
    }

    async fn run(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WorkflowRun>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE workspace_id = $1 AND id = $2"
        ))
        .bind(ws.0)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(run_row).transpose()
    }

    async fn interrupt_unfinished(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.scoped(ws).await?;
        let runs = sqlx::query("UPDATE workflow_runs SET status = 'interrupted', error = $2, finished_at = $3 WHERE workspace_id = $1 AND status = 'running' AND owner_node IS NULL")
            .bind(ws.0)
            .bind(reason)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        // Learning cycles: `LearningStore::interrupt_orphaned_cycles`, which
        // leaves a cycle a live node runs alone.
        Ok((runs, 0))
    }

    async fn save_progress(&self, run: &WorkflowRun) -> Result<bool, StoreError> {
        one_write(self, RunWrite::Progress(std::sync::Arc::new(run.clone()))).await
    }

    async fn pause_run(&self, run: &WorkflowRun) -> Result<bool, StoreError> {
        let Some(lease) = &run.lease else {
            return Ok(false);
        };
        let mut tx = self.scoped(run.workspace_id).await?;
        let n = sqlx::query("UPDATE workflow_runs SET status = 'awaiting_approval', progress = $3, approval_deadline = $4, lease_until = NULL WHERE workspace_id = $1 AND id = $2 AND status = 'running' AND fencing = $5")
            .bind(run.workspace_id.0)
            .bind(run.id)
            .bind(&run.progress)
            .bind(run.approval_deadline)
            .bind(lease.fencing)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n == 1)
    }

    async fn decide_run(
        &self,
        run: &WorkflowRun,
        expected_fencing: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.scoped(run.workspace_id).await?;
        let n = sqlx::query("UPDATE workflow_runs SET status = $3, progress = $4, result = $5, error = $6, finished_at = $7, owner_node = $8, lease_until = $9, approval_deadline = NULL, fencing = fencing + 1 WHERE workspace_id = $1 AND id = $2 AND status = 'awaiting_approval' AND fencing = $10")
            .bind(run.workspace_id.0)
            .bind(run.id)
            .bind(run.status.as_str())
            .bind(&run.progress)
            .bind(&run.result)
            .bind(&run.error)
            .bind(run.finished_at)
            .bind(run.lease.as_ref().map(|l| l.owner.as_str()))
            .bind(run.lease.as_ref().map(|l| l.until))
            .bind(expected_fencing)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n == 1)
    }

    async fn renew_leases(
        &self,
        owner: &str,
        until: DateTime<Utc>,
        runs: &[Uuid],
    ) -> Result<u64, StoreError> {
        if runs.is_empty() {
            return Ok(0);
        }
        let mut tx = self.runs_cluster_tx().await?;
        let n = sqlx::query("UPDATE workflow_runs SET lease_until = $2 WHERE status = 'running' AND owner_node = $1 AND id = ANY($3)")
            .bind(owner)
            .bind(until)
            .bind(runs)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.runs_cluster_tx().await?;
        let n = sqlx::query("UPDATE workflow_runs SET lease_until = $2 WHERE status = 'running' AND owner_node = $1")
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn claim_runs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        own_before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<WorkflowRun>, StoreError> {
        let mut tx = self.runs_cluster_tx().await?;
        // SKIP LOCKED: two nodes sweeping at once claim different runs; the
        // outer conditions are re-checked on the locked row.
        let rows = sqlx::query(&format!(
            "UPDATE workflow_runs SET owner_node = $1, lease_until = $3, fencing = fencing + 1 \
             WHERE id IN (SELECT id FROM workflow_runs WHERE status = 'running' AND owner_node IS NOT NULL \
                          AND (lease_until < $2 OR (owner_node = $1 AND lease_until < $4)) \
                          ORDER BY lease_until LIMIT $5 FOR UPDATE SKIP LOCKED) \
               AND status = 'running' AND owner_node IS NOT NULL AND (lease_until < $2 OR (owner_node = $1 AND lease_until < $4)) \
             RETURNING {RUN_COLUMNS}"
        ))
        .bind(owner)
        .bind(now)
        .bind(until)
        .bind(own_before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(run_row).collect()
    }

    async fn due_approvals(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(WorkspaceId, Uuid)>, StoreError> {
        let mut tx = self.runs_cluster_tx().await?;
        let rows = sqlx::query("SELECT workspace_id, id FROM workflow_runs WHERE status = 'awaiting_approval' AND approval_deadline < $1 ORDER BY approval_deadline LIMIT $2")
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                Ok((
                    WorkspaceId(r.try_get("workspace_id").map_err(unexpected)?),
                    r.try_get("id").map_err(unexpected)?,
                ))
            })
            .collect()
    }
}

/// One workspace's writes of a group commit (`indices` into `writes`, no
/// run twice): the inserts, then the checkpoints, then the ends, each one
/// statement over UNNEST arrays; the `RETURNING id` of the updates says
/// which writes the fencing token let through. Grouping by kind keeps each
/// run's order (insert, checkpoint, end).
async fn run_writes_grouped(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    writes: &[RunWrite],
    indices: &[usize],
    applied: &mut [bool],
) -> Result<(), StoreError> {
    let pick = |want: fn(&RunWrite) -> bool| -> Vec<(usize, &WorkflowRun)> {
        indices
            .iter()
            .filter_map(|&i| writes.get(i).filter(|w| want(w)).map(|w| (i, w.run())))
            .collect()
    };
    let inserts = pick(|w| matches!(w, RunWrite::Insert(_)));
    if !inserts.is_empty() {
        let runs = || inserts.iter().map(|(_, r)| *r);
        sqlx::query(
            "INSERT INTO workflow_runs (id, workspace_id, workflow, status, priority, input, created_at, owner_node, lease_until, fencing, progress) \
             SELECT t.id, $1, t.workflow, t.status, t.priority, t.input, t.created_at, t.owner, t.until, t.fencing, t.progress \
             FROM UNNEST($2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::timestamptz[], $8::text[], $9::timestamptz[], $10::int8[], $11::jsonb[]) \
             AS t(id, workflow, status, priority, input, created_at, owner, until, fencing, progress)",
        )
        .bind(ws.0)
        .bind(runs().map(|r| r.id).collect::<Vec<_>>())
        .bind(runs().map(|r| r.workflow.clone()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(runs().map(|r| priority_name(r.priority)).collect::<Vec<_>>())
        .bind(runs().map(|r| r.input.clone()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(runs().map(|r| r.lease.as_ref().map(|l| l.owner.clone())).collect::<Vec<_>>())
        .bind(runs().map(|r| r.lease.as_ref().map(|l| l.until)).collect::<Vec<_>>())
        .bind(runs().map(|r| r.lease.as_ref().map_or(0, |l| l.fencing)).collect::<Vec<_>>())
        .bind(runs().map(|r| r.progress.clone()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
        for (i, _) in &inserts {
            mark(applied, *i, true);
        }
    }
    // A checkpoint without a lease is refused (it holds no fencing token).
    let progress: Vec<(usize, &WorkflowRun)> = pick(|w| matches!(w, RunWrite::Progress(_)))
        .into_iter()
        .filter(|(_, r)| r.lease.is_some())
        .collect();
    if !progress.is_empty() {
        let runs = || progress.iter().map(|(_, r)| *r);
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE workflow_runs w SET progress = t.progress, lease_until = t.until \
             FROM UNNEST($2::uuid[], $3::jsonb[], $4::timestamptz[], $5::int8[]) AS t(id, progress, until, fencing) \
             WHERE w.workspace_id = $1 AND w.id = t.id AND w.status = 'running' AND w.fencing = t.fencing RETURNING w.id",
        )
        .bind(ws.0)
        .bind(runs().map(|r| r.id).collect::<Vec<_>>())
        .bind(runs().map(|r| r.progress.clone()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.lease.as_ref().map(|l| l.until)).collect::<Vec<_>>())
        .bind(runs().map(|r| r.lease.as_ref().map_or(0, |l| l.fencing)).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await
        .map_err(unexpected)?;
        for (i, r) in &progress {
            mark(applied, *i, ids.contains(&r.id));
        }
    }
    let finishes = pick(|w| matches!(w, RunWrite::Finish(_)));
    if !finishes.is_empty() {
        let runs = || finishes.iter().map(|(_, r)| *r);
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "UPDATE workflow_runs w SET status = t.status, result = t.result, error = t.error, finished_at = t.finished_at, \
             progress = COALESCE(t.progress, w.progress), owner_node = NULL, lease_until = NULL \
             FROM UNNEST($2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::timestamptz[], $7::jsonb[], $8::int8[]) \
             AS t(id, status, result, error, finished_at, progress, fencing) \
             WHERE w.workspace_id = $1 AND w.id = t.id AND w.status = 'running' AND (t.fencing IS NULL OR w.fencing = t.fencing) RETURNING w.id",
        )
        .bind(ws.0)
        .bind(runs().map(|r| r.id).collect::<Vec<_>>())
        .bind(runs().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(runs().map(stored_result).collect::<Vec<_>>())
        .bind(runs().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.finished_at).collect::<Vec<_>>())
        .bind(runs().map(|r| r.progress.clone()).collect::<Vec<_>>())
        .bind(runs().map(|r| r.lease.as_ref().map(|l| l.fencing)).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await
        .map_err(unexpected)?;
        for (i, r) in &finishes {
            mark(applied, *i, ids.contains(&r.id));
        }
    }
    Ok(())
}
