//! [`TrustStore`] on SQLite. Every query carries `workspace_id = ?`;
//! times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Row, Sqlite, Transaction};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::{StoreError, TrustHistoryPoint, TrustRow, TrustStore};

use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

/// Rows per multi-row statement of the trust tables.
const TRUST_CHUNK: usize = 500;

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
    // One statement per chunk (18 parameters a row, under SQLite's 32,766):
    // each statement is a hand-off to sqlx's connection thread.
    for chunk in rows.chunks(TRUST_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "{verb} INTO agent_trust_scores (workspace_id, agent_id, recommendation_type, overall_trust_score, accuracy_score, \
             consistency_score, timeliness_score, reliability_score, calibration_score, trend, trend_delta, approval_rate, \
             avg_quality, sample_count, effective_samples, strength, boost, updated_at) "
        ));
        q.push_values(chunk, |mut b, r| {
            let c = &r.card;
            b.push_bind(ws.0)
                .push_bind(r.agent_id.as_str())
                .push_bind(r.recommendation_type.clone().unwrap_or_default())
                .push_bind(c.overall_trust)
                .push_bind(c.accuracy_score)
                .push_bind(c.consistency_score)
                .push_bind(c.timeliness)
                .push_bind(c.reliability)
                .push_bind(c.calibration)
                .push_bind(label(serde_json::to_value(c.trend).unwrap_or_default()))
                .push_bind(c.trend_delta)
                .push_bind(c.approval_rate)
                .push_bind(c.avg_quality)
                .push_bind(c.sample_count as i64)
                .push_bind(c.effective_samples)
                .push_bind(label(serde_json::to_value(c.strength).unwrap_or_default()))
                .push_bind(c.boost)
                .push_bind(micros(at));
        });
        let res = q.build().execute(&mut **tx).await.map_err(unexpected)?;
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
        let _turn = self.write_turn("save_trust").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        upsert_trust(&mut tx, ws, rows, at, true).await?;
        let overall: Vec<&TrustRow> = rows
            .iter()
            .filter(|r| r.recommendation_type.is_none())
            .collect();
        for chunk in overall.chunks(TRUST_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO agent_trust_score_history (workspace_id, agent_id, overall_trust_score, accuracy_score, sample_count, recorded_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(ws.0)
                    .push_bind(r.agent_id.as_str())
                    .push_bind(r.card.overall_trust)
                    .push_bind(r.card.accuracy_score)
                    .push_bind(r.card.sample_count as i64)
                    .push_bind(micros(at));
            });
            q.build().execute(&mut *tx).await.map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn initialize_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let _turn = self.write_turn("initialize_trust").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
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
