//! [`TrustStore`] on SQLite. Every query carries `workspace_id = ?`;
//! times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::{StoreError, TrustHistoryPoint, TrustRow, TrustStore};

use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

async fn upsert_trust(
    tx: &mut Transaction<'static, Sqlite>,
    ws: WorkspaceId,
    rows: &[TrustRow],
    at: DateTime<Utc>,
    overwrite: bool,
) -> Result<u64, StoreError> {
    let verb = if overwrite {
        "INSERT OR REPLACE"
    } else {
        "INSERT OR IGNORE"
    };
    let label = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut written = 0;
    for r in rows {
        let c = &r.card;
        let res = sqlx::query(&format!(
            "{verb} INTO agent_trust_scores (workspace_id, agent_id, recommendation_type, overall_trust_score, accuracy_score, \
             consistency_score, timeliness_score, reliability_score, calibration_score, trend, trend_delta, approval_rate, \
             avg_quality, sample_count, effective_samples, strength, boost, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(ws.0)
        .bind(r.agent_id.as_str())
        .bind(r.recommendation_type.clone().unwrap_or_default())
        .bind(c.overall_trust)
        .bind(c.accuracy_score)
        .bind(c.consistency_score)
        .bind(c.timeliness)
        .bind(c.reliability)
        .bind(c.calibration)
        .bind(label(serde_json::to_value(c.trend).unwrap_or_default()))
        .bind(c.trend_delta)
        .bind(c.approval_rate)
        .bind(c.avg_quality)
        .bind(c.sample_count as i64)
        .bind(c.effective_samples)
        .bind(label(serde_json::to_value(c.strength).unwrap_or_default()))
        .bind(c.boost)
        .bind(micros(at))
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
        written += res.rows_affected();
    }
    Ok(written)
}

#[async_trait]
impl TrustStore for SqliteStore {
    async fn save_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        upsert_trust(&mut tx, ws, rows, at, true).await?;
        for r in rows.iter().filter(|r| r.recommendation_type.is_none()) {
            sqlx::query(
                "INSERT INTO agent_trust_score_history (workspace_id, agent_id, overall_trust_score, accuracy_score, sample_count, recorded_at) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(ws.0)
            .bind(r.agent_id.as_str())
            .bind(r.card.overall_trust)
            .bind(r.card.accuracy_score)
            .bind(r.card.sample_count as i64)
            .bind(micros(at))
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn initialize_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
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
        let rows = sqlx::query(
            "SELECT recorded_at, overall_trust_score, accuracy_score, sample_count FROM agent_trust_score_history \
             WHERE workspace_id = ? AND agent_id = ? ORDER BY recorded_at DESC, id DESC LIMIT ?",
        )
        .bind(ws.0)
        .bind(agent.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                Ok(TrustHistoryPoint {
                    recorded_at: from_micros(r.try_get("recorded_at").map_err(unexpected)?)?,
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
