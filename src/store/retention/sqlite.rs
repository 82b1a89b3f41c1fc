//! [`RetentionStore`] on SQLite: per batch, one write transaction of
//! statements over the same selection (digest, archive, the rollup's
//! delta, delete); the first write takes the file's write lock, so the
//! selection cannot change in between.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{RetentionStore, StoreError};

use super::{ARCHIVE_COLUMNS, DIGEST_COLUMNS};
use crate::store::recommendations::{ROLLUP_UPSERT, USAGE_ROLLUP_COLUMNS, USAGE_UPSERT};
use crate::store::sqlite::{micros, SqliteStore};
use crate::store::unexpected;

/// The batch: the oldest `?3` settled rows of workspace `?1` created before `?2`.
const BATCH: &str =
    "SELECT id FROM agent_recommendations WHERE workspace_id = ?1 AND outcome_status <> 'pending' \
     AND created_at < ?2 ORDER BY created_at, id LIMIT ?3";

impl SqliteStore {
    /// Runs `count_sql` (the workspace, then the cutoff in microseconds).
    async fn count_before(
        &self,
        ws: WorkspaceId,
        count_sql: &str,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(count_sql)
            .bind(ws.0)
            .bind(micros(before))
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl RetentionStore for SqliteStore {
    async fn count_retirable(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.count_before(
            ws,
            "SELECT count(*) FROM agent_recommendations WHERE workspace_id = ? AND outcome_status <> 'pending' AND created_at < ?",
            before,
        )
        .await
    }

    async fn retire_recommendations(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        decision_key: &str,
        archive: bool,
        limit: u32,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query(&format!(
            "INSERT OR IGNORE INTO outcome_digests ({DIGEST_COLUMNS}, decision, evaluated_at, removed_at) \
             SELECT {DIGEST_COLUMNS}, CAST(COALESCE(json_extract(content, '$.' || ?4), content) AS TEXT), evaluated_at, ?5 \
             FROM agent_recommendations WHERE id IN ({BATCH}) \
             AND evaluated_at IS NOT NULL AND outcome_status IN ('approved', 'partial', 'rejected')"
        ))
        .bind(ws.0)
        .bind(micros(before))
        .bind(i64::from(limit))
        .bind(decision_key)
        .bind(micros(at))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        if archive {
            sqlx::query(&format!(
                "INSERT OR IGNORE INTO agent_recommendations_archive ({ARCHIVE_COLUMNS}, archived_at) \
                 SELECT {ARCHIVE_COLUMNS}, ?4 FROM agent_recommendations WHERE id IN ({BATCH})"
            ))
            .bind(ws.0)
            .bind(micros(before))
            .bind(i64::from(limit))
            .bind(micros(at))
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        // The rows leave the rollup (`store/recommendations`).
        sqlx::query(&format!(
            "INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n) \
             SELECT workspace_id, agent_id, outcome_status, -count(*) FROM agent_recommendations \
             WHERE id IN ({BATCH}) GROUP BY workspace_id, agent_id, outcome_status{ROLLUP_UPSERT}"
        ))
        .bind(ws.0)
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        sqlx::query(&format!(
            "INSERT INTO recommendation_usage_rollup ({USAGE_ROLLUP_COLUMNS}) \
             SELECT workspace_id, agent_id, -count(*), -COALESCE(sum(prompt_tokens), 0), \
             -COALESCE(sum(completion_tokens), 0), -COALESCE(sum(cost_usd), 0.0), \
             -sum(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) FROM agent_recommendations \
             WHERE id IN ({BATCH}) AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL) \
             GROUP BY workspace_id, agent_id{USAGE_UPSERT}"
        ))
        .bind(ws.0)
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        let n = sqlx::query(&format!(
            "DELETE FROM agent_recommendations WHERE id IN ({BATCH})"
        ))
        .bind(ws.0)
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn purge_dead_letters(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        delete: bool,
    ) -> Result<u64, StoreError> {
        if delete {
            Ok(sqlx::query(
                "DELETE FROM tracker_dead_letters WHERE workspace_id = ? AND failed_at < ?",
            )
            .bind(ws.0)
            .bind(micros(before))
            .execute(&self.pool)
            .await
            .map_err(unexpected)?
            .rows_affected())
        } else {
            self.count_before(
                ws,
                "SELECT count(*) FROM tracker_dead_letters WHERE workspace_id = ? AND failed_at < ?",
                before,
            )
            .await
        }
    }

    async fn count_trust_history(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.count_before(
            ws,
            "SELECT count(*) FROM agent_trust_score_history WHERE workspace_id = ? AND recorded_at < ?",
            before,
        )
        .await
    }

    async fn purge_trust_history(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        // Oldest first, along idx_trust_history_recorded (migration
        // 20261201000011; tests/api/retention.rs checks the plan).
        let _turn = self.write_turn("purge_trust_history").await;
        Ok(sqlx::query(
            "DELETE FROM agent_trust_score_history WHERE id IN (SELECT id FROM agent_trust_score_history \
             WHERE workspace_id = ? AND recorded_at < ? ORDER BY recorded_at, id LIMIT ?)",
        )
        .bind(ws.0)
        .bind(micros(before))
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await
        .map_err(unexpected)?
        .rows_affected())
    }
}
