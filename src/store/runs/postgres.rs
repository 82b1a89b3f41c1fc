//! [`RunStore`] on PostgreSQL. Every workspace-scoped query runs in a
//! transaction scoped to its workspace (row-level security).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use swarmwise_actors::domain::{Priority, WorkspaceId};
use swarmwise_actors::ports::{RunStore, StoreError};
use swarmwise_actors::workflow::{RunStatus, WorkflowRun};
use uuid::Uuid;

use crate::store::postgres::PgStore;
use crate::store::{priority_name, unexpected};

#[async_trait]
impl RunStore for PgStore {
    async fn insert_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        let mut tx = self.scoped(run.workspace_id).await?;
        sqlx::query(
            "INSERT INTO workflow_runs (id, workspace_id, workflow, status, priority, input, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(run.id)
        .bind(run.workspace_id.0)
        .bind(&run.workflow)
        .bind(run.status.as_str())
        .bind(priority_name(run.priority))
        .bind(&run.input)
        .bind(run.created_at)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn finish_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        let mut tx = self.scoped(run.workspace_id).await?;
        sqlx::query("UPDATE workflow_runs SET status = $3, result = $4, error = $5, finished_at = $6 WHERE workspace_id = $1 AND id = $2")
            .bind(run.workspace_id.0)
            .bind(run.id)
            .bind(run.status.as_str())
            .bind(&run.result)
            .bind(&run.error)
            .bind(run.finished_at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn run(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WorkflowRun>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query(
            "SELECT id, workspace_id, workflow, status, priority, input, result, error, created_at, finished_at FROM workflow_runs WHERE workspace_id = $1 AND id = $2",
        )
        .bind(ws.0)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        let Some(row) = row else { return Ok(None) };
        let get = || -> Result<WorkflowRun, anyhow::Error> {
            let status: String = row.try_get("status")?;
            let priority: String = row.try_get("priority")?;
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
        let mut tx = self.scoped(ws).await?;
        let runs = sqlx::query("UPDATE workflow_runs SET status = 'interrupted', error = $2, finished_at = $3 WHERE workspace_id = $1 AND status = 'running'")
            .bind(ws.0)
            .bind(reason)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        let cycles = sqlx::query("UPDATE meta_learner_cycles SET status = 'interrupted', error = $2, finished_at = $3 WHERE workspace_id = $1 AND status = 'running'")
            .bind(ws.0)
            .bind(reason)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok((runs, cycles))
    }
}
