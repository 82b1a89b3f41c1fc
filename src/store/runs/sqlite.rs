//! [`RunStore`] on SQLite. Every query carries `workspace_id = ?`;
//! times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use swarmwise_actors::domain::{Priority, WorkspaceId};
use swarmwise_actors::ports::{RunStore, StoreError};
use swarmwise_actors::workflow::{RunStatus, WorkflowRun};
use uuid::Uuid;

use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::{priority_name, unexpected};

#[async_trait]
impl RunStore for SqliteStore {
    async fn insert_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workflow_runs (id, workspace_id, workflow, status, priority, input, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run.id)
        .bind(run.workspace_id.0)
        .bind(&run.workflow)
        .bind(run.status.as_str())
        .bind(priority_name(run.priority))
        .bind(run.input.to_string())
        .bind(micros(run.created_at))
        .execute(&self.pool)
        .await
        .map_err(unexpected)?;
        Ok(())
    }

    async fn finish_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        sqlx::query("UPDATE workflow_runs SET status = ?, result = ?, error = ?, finished_at = ? WHERE workspace_id = ? AND id = ?")
            .bind(run.status.as_str())
            .bind(run.result.as_ref().map(ToString::to_string))
            .bind(&run.error)
            .bind(run.finished_at.map(micros))
            .bind(run.workspace_id.0)
            .bind(run.id)
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(())
    }

    async fn run(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WorkflowRun>, StoreError> {
        let row = sqlx::query(
            "SELECT id, workspace_id, workflow, status, priority, input, result, error, created_at, finished_at FROM workflow_runs WHERE workspace_id = ? AND id = ?",
        )
        .bind(ws.0)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        let Some(row) = row else { return Ok(None) };
        let get = || -> Result<WorkflowRun, anyhow::Error> {
            let status: String = row.try_get("status")?;
            let priority: String = row.try_get("priority")?;
            let input: String = row.try_get("input")?;
            let result: Option<String> = row.try_get("result")?;
            let finished: Option<i64> = row.try_get("finished_at")?;
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
            })
        };
        get().map(Some).map_err(StoreError::Unexpected)
    }

    async fn interrupt_unfinished(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let runs = sqlx::query("UPDATE workflow_runs SET status = 'interrupted', error = ?, finished_at = ? WHERE workspace_id = ? AND status = 'running'")
            .bind(reason)
            .bind(micros(at))
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        let cycles = sqlx::query("UPDATE meta_learner_cycles SET status = 'interrupted', error = ?, finished_at = ? WHERE workspace_id = ? AND status = 'running'")
            .bind(reason)
            .bind(micros(at))
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok((runs, cycles))
    }
}
