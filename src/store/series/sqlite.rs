//! [`SeriesStore`] on SQLite: times are integer microseconds, so a bucket is
//! `created_at / width * width`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use swarmwise_actors::domain::{AgentId, Priority, WorkspaceId};
use swarmwise_actors::ports::StoreError;
use uuid::Uuid;

use super::{bins, run_status, Bucket, CalibrationBin, RunSummary, SeriesPoint, SeriesStore};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

#[async_trait]
impl SeriesStore for SqliteStore {
    async fn agent_series(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        bucket: Bucket,
        before: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<SeriesPoint>, StoreError> {
        let width = bucket.seconds() * 1_000_000;
        let rows = sqlx::query(
            "SELECT (created_at / ?1) * ?1 AS b, COUNT(*) AS n,
                    SUM(outcome_status = 'approved') AS ap, SUM(outcome_status = 'partial') AS pa,
                    SUM(outcome_status = 'rejected') AS re, AVG(outcome_quality) AS q,
                    AVG(confidence_score) AS c
             FROM agent_recommendations
             WHERE workspace_id = ?2 AND agent_id = ?3 AND created_at < ?4
             GROUP BY b ORDER BY b DESC LIMIT ?5",
        )
        .bind(width)
        .bind(ws.0)
        .bind(agent.as_str())
        .bind(before.map_or(i64::MAX, micros))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|row| -> anyhow::Result<SeriesPoint> {
                let (ap, pa, re): (i64, i64, i64) =
                    (row.try_get("ap")?, row.try_get("pa")?, row.try_get("re")?);
                let evaluated = ap + pa + re;
                Ok(SeriesPoint {
                    bucket_start: from_micros(row.try_get("b")?)?,
                    recommendations: row.try_get::<i64, _>("n")?.max(0) as u64,
                    approved: ap.max(0) as u64,
                    partial: pa.max(0) as u64,
                    rejected: re.max(0) as u64,
                    approval_rate: (evaluated > 0).then(|| ap as f64 / evaluated as f64),
                    avg_quality: row.try_get("q")?,
                    avg_confidence: row.try_get::<Option<f64>, _>("c")?.unwrap_or(0.0),
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(StoreError::Unexpected)
    }

    async fn calibration_bins(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
    ) -> Result<Vec<CalibrationBin>, StoreError> {
        let rows: Vec<(i64, i64, f64, f64)> = sqlx::query_as(
            "SELECT MIN(CAST(confidence_score * 10 AS INTEGER), 9) AS bin, COUNT(*),
                    AVG(confidence_score),
                    AVG(CASE outcome_status WHEN 'approved' THEN 1.0 WHEN 'partial' THEN 0.5 ELSE 0.0 END)
             FROM agent_recommendations
             WHERE workspace_id = ? AND agent_id = ?
               AND outcome_status IN ('approved', 'partial', 'rejected')
             GROUP BY bin ORDER BY bin",
        )
        .bind(ws.0)
        .bind(agent.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        Ok(bins(rows))
    }

    async fn recent_runs(
        &self,
        ws: WorkspaceId,
        before: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let rows = match before {
            Some(c) => sqlx::query(
                "SELECT id, workflow, status, priority, error, created_at, finished_at FROM workflow_runs
                 WHERE workspace_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            )
            .bind(ws.0)
            .bind(c),
            None => sqlx::query(
                "SELECT id, workflow, status, priority, error, created_at, finished_at FROM workflow_runs
                 WHERE workspace_id = ? ORDER BY id DESC LIMIT ?",
            )
            .bind(ws.0),
        }
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|row| -> anyhow::Result<RunSummary> {
                let status: String = row.try_get("status")?;
                let priority: String = row.try_get("priority")?;
                Ok(RunSummary {
                    id: row.try_get("id")?,
                    workflow: row.try_get("workflow")?,
                    status: run_status(&status)?,
                    priority: Priority::parse("priority", &priority)?,
                    error: row.try_get("error")?,
                    created_at: from_micros(row.try_get("created_at")?)?,
                    finished_at: row
                        .try_get::<Option<i64>, _>("finished_at")?
                        .map(from_micros)
                        .transpose()?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(StoreError::Unexpected)
    }
}
