//! [`RunStore`] on SQLite. Every query carries `workspace_id = ?` except the
//! sweeper's cross-workspace ones (renew, release, claim, due approvals);
//! times are integer microseconds. One writer at a time, so a claim's
//! `UPDATE ... RETURNING` is atomic on its own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use swarmwise_actors::domain::{Priority, WorkspaceId};
use swarmwise_actors::ports::{RunStore, RunWrite, StoreError};
use swarmwise_actors::workflow::{RunLease, RunStatus, WorkflowRun};
use uuid::Uuid;

use super::{has_repeated_run, mark, one_write, restore_result_stages, stored_result, RUN_COLUMNS};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::{priority_name, unexpected};

fn run_row(row: &SqliteRow) -> Result<WorkflowRun, StoreError> {
    let get = || -> Result<WorkflowRun, anyhow::Error> {
        let status: String = row.try_get("status")?;
        let priority: String = row.try_get("priority")?;
        let input: String = row.try_get("input")?;
        let result: Option<String> = row.try_get("result")?;
        let finished: Option<i64> = row.try_get("finished_at")?;
        let progress: Option<String> = row.try_get("progress")?;
        let deadline: Option<i64> = row.try_get("approval_deadline")?;
        let owner: Option<String> = row.try_get("owner_node")?;
        let until: Option<i64> = row.try_get("lease_until")?;
        Ok(WorkflowRun {
            id: row.try_get("id")?,
            workspace_id: WorkspaceId(row.try_get("workspace_id")?),
            workflow: row.try_get("workflow")?,
            status: RunStatus::parse(&status)
                .ok_or_else(|| anyhow::anyhow!("bad run status {status}"))?,
            priority: Priority::parse("priority", &priority)?,
            input: serde_json::from_str(&input)?,
            result: result.map(|r| serde_json::from_str(&r)).transpose()?,
            error: row.try_get("error")?,
            created_at: from_micros(row.try_get("created_at")?)?,
            finished_at: finished.map(from_micros).transpose()?,
            progress: progress.map(|p| serde_json::from_str(&p)).transpose()?,
            approval_deadline: deadline.map(from_micros).transpose()?,
            // A paused run keeps its last owner and fencing token, without
            // a lease end.
            lease: match owner {
                Some(owner) => Some(RunLease {
                    owner,
                    fencing: row.try_get("fencing")?,
                    until: until
                        .map(from_micros)
                        .transpose()?
                        .unwrap_or(DateTime::UNIX_EPOCH),
                }),
                None => None,
            },
        })
    };
    let mut run = get().map_err(StoreError::Unexpected)?;
    restore_result_stages(&mut run);
    Ok(run)
}

fn json_text(v: Option<&serde_json::Value>) -> Option<String> {
    v.map(|v| serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn run_writes(&self, writes: &[RunWrite]) -> Result<Vec<bool>, StoreError> {
        // Rendered before the gate: it is held for SQLite's work only.
        let texts: Vec<Texts> = writes.iter().map(Texts::of).collect();
        let _turn = self.write_turn("run_writes").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        let applied = if has_repeated_run(writes) {
            // Never from the runner (a run awaits each write); kept exact:
            // one write at a time, in order.
            let mut applied = Vec::with_capacity(writes.len());
            for (w, t) in writes.iter().zip(&texts) {
                applied.extend(
                    run_writes_grouped(&mut tx, std::slice::from_ref(w), std::slice::from_ref(t))
                        .await?,
                );
            }
            applied
        } else {
            run_writes_grouped(&mut tx, writes, &texts).await?
        };
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
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE workspace_id = ? AND id = ?"
        ))
        .bind(ws.0)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(run_row).transpose()
    }

    async fn interrupt_unfinished(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let _turn = self.write_turn("interrupt_unfinished").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        let runs = sqlx::query("UPDATE workflow_runs SET status = 'interrupted', error = ?, finished_at = ? WHERE workspace_id = ? AND status = 'running' AND owner_node IS NULL")
            .bind(reason)
            .bind(micros(at))
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        // Learning cycles: `LearningStore::interrupt_orphaned_cycles`.
        Ok((runs, 0))
    }

    async fn save_progress(&self, run: &WorkflowRun) -> Result<bool, StoreError> {
        one_write(self, RunWrite::Progress(std::sync::Arc::new(run.clone()))).await
    }

    async fn pause_run(&self, run: &WorkflowRun) -> Result<bool, StoreError> {
        let _turn = self.write_turn("pause_run").await;
        let Some(lease) = &run.lease else {
            return Ok(false);
        };
        let n = sqlx::query("UPDATE workflow_runs SET status = 'awaiting_approval', progress = ?, approval_deadline = ?, lease_until = NULL WHERE workspace_id = ? AND id = ? AND status = 'running' AND fencing = ?")
            .bind(json_text(run.progress.as_ref()))
            .bind(run.approval_deadline.map(micros))
            .bind(run.workspace_id.0)
            .bind(run.id)
            .bind(lease.fencing)
            .execute(&self.writer)
            .await
            .map_err(unexpected)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn decide_run(
        &self,
        run: &WorkflowRun,
        expected_fencing: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn("decide_run").await;
        let n = sqlx::query("UPDATE workflow_runs SET status = ?, progress = ?, result = ?, error = ?, finished_at = ?, owner_node = ?, lease_until = ?, approval_deadline = NULL, fencing = fencing + 1 WHERE workspace_id = ? AND id = ? AND status = 'awaiting_approval' AND fencing = ?")
            .bind(run.status.as_str())
            .bind(json_text(run.progress.as_ref()))
            .bind(json_text(run.result.as_ref()))
            .bind(&run.error)
            .bind(run.finished_at.map(micros))
            .bind(run.lease.as_ref().map(|l| l.owner.as_str()))
            .bind(run.lease.as_ref().map(|l| micros(l.until)))
            .bind(run.workspace_id.0)
            .bind(run.id)
            .bind(expected_fencing)
            .execute(&self.writer)
            .await
            .map_err(unexpected)?
            .rows_affected();
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
        let _turn = self.write_turn("renew_leases").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        let mut n = 0;
        for chunk in runs.chunks(WRITE_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE workflow_runs SET lease_until = ");
            q.push_bind(micros(until))
                .push(" WHERE status = 'running' AND owner_node = ")
                .push_bind(owner)
                .push(" AND id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            n += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(unexpected)?
                .rows_affected();
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn release_leases(&self, owner: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let _turn = self.write_turn("release_leases").await;
        let n = sqlx::query(
            "UPDATE workflow_runs SET lease_until = ? WHERE status = 'running' AND owner_node = ?",
        )
        .bind(micros(now))
        .bind(owner)
        .execute(&self.writer)
        .await
        .map_err(unexpected)?
        .rows_affected();
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
        let rows = sqlx::query(&format!(
            "UPDATE workflow_runs SET owner_node = ?1, lease_until = ?3, fencing = fencing + 1 \
             WHERE id IN (SELECT id FROM workflow_runs WHERE status = 'running' AND owner_node IS NOT NULL \
                          AND (lease_until < ?2 OR (owner_node = ?1 AND lease_until < ?4)) \
                          ORDER BY lease_until LIMIT ?5) \
             RETURNING {RUN_COLUMNS}"
        ))
        .bind(owner)
        .bind(micros(now))
        .bind(micros(until))
        .bind(own_before.map(micros))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(run_row).collect()
    }

    async fn due_approvals(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(WorkspaceId, Uuid)>, StoreError> {
        let rows = sqlx::query("SELECT workspace_id, id FROM workflow_runs WHERE status = 'awaiting_approval' AND approval_deadline < ? ORDER BY approval_deadline LIMIT ?")
            .bind(micros(now))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
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

/// Rows per multi-row statement of [`run_writes_grouped`]: 11 parameters
/// each, well under SQLite's 32,766.
const WRITE_CHUNK: usize = 256;

/// The JSON columns a run write stores, as text: `input` for a creation,
/// `result` for an end, `progress` for all three.
struct Texts {
    input: Option<String>,
    progress: Option<String>,
    result: Option<String>,
}

impl Texts {
    fn of(write: &RunWrite) -> Self {
        let run = write.run();
        Self {
            input: matches!(write, RunWrite::Insert(_)).then(|| run.input.to_string()),
            progress: json_text(run.progress.as_ref()),
            result: matches!(write, RunWrite::Finish(_))
                .then(|| json_text(stored_result(run).as_ref()))
                .flatten(),
        }
    }
}

/// A group commit's writes as a few multi-row statements instead of one per
/// write (each statement is a hand-off to sqlx's connection thread): the
/// inserts as `INSERT … VALUES (…), (…)`, then the checkpoints and the ends
/// each as `UPDATE … FROM (VALUES …) RETURNING id`, whose returned ids say
/// which writes the fencing token let through. Grouping by kind keeps each
/// run's order (insert, checkpoint, end) because no run appears twice.
async fn run_writes_grouped(
    conn: &mut SqliteConnection,
    writes: &[RunWrite],
    texts: &[Texts],
) -> Result<Vec<bool>, StoreError> {
    let mut applied = vec![false; writes.len()];
    let pick = |want: fn(&RunWrite) -> bool| -> Vec<(usize, &WorkflowRun, &Texts)> {
        writes
            .iter()
            .zip(texts)
            .enumerate()
            .filter(|(_, (w, _))| want(w))
            .map(|(i, (w, t))| (i, w.run(), t))
            .collect()
    };
    let inserts = pick(|w| matches!(w, RunWrite::Insert(_)));
    for chunk in inserts.chunks(WRITE_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO workflow_runs (id, workspace_id, workflow, status, priority, input, created_at, owner_node, lease_until, fencing, progress) ",
        );
        q.push_values(chunk, |mut b, (_, run, t)| {
            b.push_bind(run.id)
                .push_bind(run.workspace_id.0)
                .push_bind(&run.workflow)
                .push_bind(run.status.as_str())
                .push_bind(priority_name(run.priority))
                .push_bind(t.input.as_deref())
                .push_bind(micros(run.created_at))
                .push_bind(run.lease.as_ref().map(|l| l.owner.as_str()))
                .push_bind(run.lease.as_ref().map(|l| micros(l.until)))
                .push_bind(run.lease.as_ref().map_or(0, |l| l.fencing))
                .push_bind(t.progress.as_deref());
        });
        q.build().execute(&mut *conn).await.map_err(unexpected)?;
        for (i, _, _) in chunk {
            mark(&mut applied, *i, true);
        }
    }
    // A checkpoint without a lease is refused (it holds no fencing token).
    let progress: Vec<(usize, &WorkflowRun, &Texts)> = pick(|w| matches!(w, RunWrite::Progress(_)))
        .into_iter()
        .filter(|(_, r, _)| r.lease.is_some())
        .collect();
    for chunk in progress.chunks(WRITE_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE workflow_runs SET progress = v.column2, lease_until = v.column3 FROM (",
        );
        q.push_values(chunk, |mut b, (_, run, t)| {
            let lease = run.lease.as_ref();
            b.push_bind(run.id)
                .push_bind(t.progress.as_deref())
                .push_bind(lease.map(|l| micros(l.until)))
                .push_bind(run.workspace_id.0)
                .push_bind(lease.map_or(0, |l| l.fencing));
        });
        // `+workspace_id`: by primary key, never a scan of a workspace's runs.
        q.push(
            ") AS v WHERE workflow_runs.id = v.column1 AND +workflow_runs.workspace_id = v.column4 \
             AND workflow_runs.status = 'running' AND workflow_runs.fencing = v.column5 RETURNING workflow_runs.id",
        );
        mark_returned(conn, q, chunk, &mut applied).await?;
    }
    let finishes = pick(|w| matches!(w, RunWrite::Finish(_)));
    for chunk in finishes.chunks(WRITE_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE workflow_runs SET status = v.column2, result = v.column3, error = v.column4, finished_at = v.column5, \
             progress = COALESCE(v.column6, workflow_runs.progress), owner_node = NULL, lease_until = NULL FROM (",
        );
        q.push_values(chunk, |mut b, (_, run, t)| {
            b.push_bind(run.id)
                .push_bind(run.status.as_str())
                .push_bind(t.result.as_deref())
                .push_bind(&run.error)
                .push_bind(run.finished_at.map(micros))
                .push_bind(t.progress.as_deref())
                .push_bind(run.workspace_id.0)
                .push_bind(run.lease.as_ref().map(|l| l.fencing));
        });
        q.push(
            ") AS v WHERE workflow_runs.id = v.column1 AND +workflow_runs.workspace_id = v.column7 \
             AND workflow_runs.status = 'running' AND (v.column8 IS NULL OR workflow_runs.fencing = v.column8) RETURNING workflow_runs.id",
        );
        mark_returned(conn, q, chunk, &mut applied).await?;
    }
    Ok(applied)
}

/// Runs an `UPDATE … RETURNING id` over `chunk` and marks the writes whose
/// run it returned as applied.
async fn mark_returned(
    conn: &mut SqliteConnection,
    mut q: QueryBuilder<'_, Sqlite>,
    chunk: &[(usize, &WorkflowRun, &Texts)],
    applied: &mut [bool],
) -> Result<(), StoreError> {
    let ids: std::collections::HashSet<Uuid> = q
        .build_query_scalar::<Uuid>()
        .fetch_all(&mut *conn)
        .await
        .map_err(unexpected)?
        .into_iter()
        .collect();
    for (i, run, _) in chunk {
        mark(applied, *i, ids.contains(&run.id));
    }
    Ok(())
}
