//! [`TrustStore`] on PostgreSQL. Every workspace-scoped query runs in a
//! transaction scoped to its workspace (row-level security).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::{StoreError, TrustHistoryPoint, TrustRow, TrustStore};

use crate::store::postgres::PgStore;
use crate::store::unexpected;

/// Upserts (or, with `overwrite = false`, inserts if absent) trust rows;
/// returns how many rows were written.
async fn upsert_trust(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    rows: &[TrustRow],
    at: DateTime<Utc>,
    overwrite: bool,
) -> Result<u64, StoreError> {
    let conflict = if overwrite {
        "ON CONFLICT (workspace_id, agent_id, recommendation_type) DO UPDATE SET \
         overall_trust_score = EXCLUDED.overall_trust_score, accuracy_score = EXCLUDED.accuracy_score, \
         consistency_score = EXCLUDED.consistency_score, timeliness_score = EXCLUDED.timeliness_score, \
         reliability_score = EXCLUDED.reliability_score, calibration_score = EXCLUDED.calibration_score, \
         trend = EXCLUDED.trend, trend_delta = EXCLUDED.trend_delta, approval_rate = EXCLUDED.approval_rate, \
         avg_quality = EXCLUDED.avg_quality, sample_count = EXCLUDED.sample_count, \
         effective_samples = EXCLUDED.effective_samples, strength = EXCLUDED.strength, boost = EXCLUDED.boost, \
         updated_at = EXCLUDED.updated_at"
    } else {
        "ON CONFLICT (workspace_id, agent_id, recommendation_type) DO NOTHING"
    };
    let label = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let res = sqlx::query(&format!(
        "INSERT INTO agent_trust_scores (workspace_id, agent_id, recommendation_type, overall_trust_score, accuracy_score, \
         consistency_score, timeliness_score, reliability_score, calibration_score, trend, trend_delta, approval_rate, \
         avg_quality, sample_count, effective_samples, strength, boost, updated_at) \
         SELECT $1, t.* , $17 FROM UNNEST($2::text[], $3::text[], $4::float8[], $5::float8[], $6::float8[], $7::float8[], \
         $8::float8[], $9::float8[], $10::text[], $11::float8[], $12::float8[], $13::float8[], $14::int8[], $15::float8[], \
         $16::text[], $18::float8[]) AS t {conflict}"
    ))
    .bind(ws.0)
    .bind(rows.iter().map(|r| r.agent_id.as_str().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.recommendation_type.clone().unwrap_or_default()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.overall_trust).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.accuracy_score).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.consistency_score).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.timeliness).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.reliability).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.calibration).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| label(&serde_json::to_value(r.card.trend).unwrap_or_default())).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.trend_delta).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.approval_rate).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.avg_quality).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.sample_count as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.card.effective_samples).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| label(&serde_json::to_value(r.card.strength).unwrap_or_default())).collect::<Vec<_>>())
    .bind(at)
    .bind(rows.iter().map(|r| r.card.boost).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(res.rows_affected())
}

#[async_trait]
impl TrustStore for PgStore {
    async fn save_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        upsert_trust(&mut tx, ws, rows, at, true).await?;
        let overall: Vec<&TrustRow> = rows
            .iter()
            .filter(|r| r.recommendation_type.is_none())
            .collect();
        sqlx::query(
            "INSERT INTO agent_trust_score_history (workspace_id, agent_id, overall_trust_score, accuracy_score, sample_count, recorded_at) \
             SELECT $1, t.agent, t.overall, t.accuracy, t.n, $6 FROM UNNEST($2::text[], $3::float8[], $4::float8[], $5::int8[]) AS t(agent, overall, accuracy, n)",
        )
        .bind(ws.0)
        .bind(overall.iter().map(|r| r.agent_id.as_str().to_owned()).collect::<Vec<_>>())
        .bind(overall.iter().map(|r| r.card.overall_trust).collect::<Vec<_>>())
        .bind(overall.iter().map(|r| r.card.accuracy_score).collect::<Vec<_>>())
        .bind(overall.iter().map(|r| r.card.sample_count as i64).collect::<Vec<_>>())
        .bind(at)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn initialize_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let n = upsert_trust(&mut tx, ws, rows, at, false).await?;
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn trust_history(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        limit: u32,
    ) -> Result<Vec<TrustHistoryPoint>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT recorded_at, overall_trust_score, accuracy_score, sample_count FROM agent_trust_score_history \
             WHERE workspace_id = $1 AND agent_id = $2 ORDER BY recorded_at DESC, id DESC LIMIT $3",
        )
        .bind(ws.0)
        .bind(agent.as_str())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                Ok(TrustHistoryPoint {
                    recorded_at: r.try_get("recorded_at").map_err(unexpected)?,
                    overall_trust: r.try_get("overall_trust_score").map_err(unexpected)?,
                    accuracy_score: r.try_get("accuracy_score").map_err(unexpected)?,
                    sample_count: r
                        .try_get::<i64, _>("sample_count")
                        .map_err(unexpected)?
                        .max(0) as u64,
                })
            })
            .collect()
    }
}
