//! [`RetentionStore`] on PostgreSQL: one statement per batch (writable
//! CTEs: the batch, materialised once, deleted, then digested and archived
//! from what the delete returned), in a transaction scoped to the workspace
//! (row-level security), which also takes the removed rows off the rollup
//! (`store/recommendations`). The batch is a materialised CTE, not an
//! `IN (SELECT ... LIMIT)`: the planner may rescan such a subquery and
//! delete more than the batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{RetentionStore, StoreError};

use super::{ARCHIVE_COLUMNS, DIGEST_COLUMNS};
use crate::store::postgres::PgStore;
use crate::store::recommendations::{ROLLUP_UPSERT, USAGE_ROLLUP_COLUMNS, USAGE_UPSERT};
use crate::store::unexpected;

impl PgStore {
    /// Runs `count_sql` (`$1` the workspace, `$2` the cutoff) in a
    /// transaction scoped to `ws`.
    async fn count_before(
        &self,
        ws: WorkspaceId,
        count_sql: &str,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let n: i64 = sqlx::query_scalar(count_sql)
            .bind(ws.0)
            .bind(before)
            .fetch_one(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        Ok(n.max(0) as u64)
    }
}

#[async_trait]
impl RetentionStore for PgStore {
    async fn count_retirable(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.count_before(
            ws,
            "SELECT count(*) FROM agent_recommendations WHERE workspace_id = $1 AND outcome_status <> 'pending' AND created_at < $2",
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
        let mut tx = self.scoped(ws).await?;
        let n: i64 = sqlx::query_scalar(&format!(
            "WITH batch AS MATERIALIZED ( \
               SELECT id FROM agent_recommendations \
               WHERE workspace_id = $1 AND outcome_status <> 'pending' AND created_at < $2 \
               ORDER BY created_at, id LIMIT $3 FOR UPDATE), \
             gone AS ( \
               DELETE FROM agent_recommendations r USING batch WHERE r.id = batch.id \
               RETURNING r.*), \
             digested AS ( \
               INSERT INTO outcome_digests ({DIGEST_COLUMNS}, decision, evaluated_at, removed_at) \
               SELECT {DIGEST_COLUMNS}, COALESCE(content ->> $4, content::text), evaluated_at, $5 FROM gone \
               WHERE evaluated_at IS NOT NULL AND outcome_status IN ('approved', 'partial', 'rejected') \
               ON CONFLICT (id) DO NOTHING), \
             archived AS ( \
               INSERT INTO agent_recommendations_archive ({ARCHIVE_COLUMNS}, archived_at) \
               SELECT {ARCHIVE_COLUMNS}, $5 FROM gone WHERE $6 \
               ON CONFLICT (id) DO NOTHING), \
             counted AS ( \
               INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n) \
               SELECT $1, agent_id, outcome_status, -count(*) FROM gone \
               GROUP BY agent_id, outcome_status ORDER BY agent_id, outcome_status{ROLLUP_UPSERT}), \
             used AS ( \
               INSERT INTO recommendation_usage_rollup ({USAGE_ROLLUP_COLUMNS}) \
               SELECT $1, agent_id, -count(*), -COALESCE(sum(prompt_tokens), 0)::int8, \
               -COALESCE(sum(completion_tokens), 0)::int8, -COALESCE(sum(cost_usd), 0)::float8, \
               -count(*) FILTER (WHERE cost_usd IS NULL) FROM gone \
               WHERE prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL \
               GROUP BY agent_id ORDER BY agent_id{USAGE_UPSERT}) \
             SELECT count(*) FROM gone"
        ))
        .bind(ws.0)
        .bind(before)
        .bind(i64::from(limit))
        .bind(decision_key)
        .bind(at)
        .bind(archive)
        .fetch_one(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        Ok(n.max(0) as u64)
    }

    async fn purge_dead_letters(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
        delete: bool,
    ) -> Result<u64, StoreError> {
        if !delete {
            return self
                .count_before(
                    ws,
                    "SELECT count(*) FROM tracker_dead_letters WHERE workspace_id = $1 AND failed_at < $2",
                    before,
                )
                .await;
        }
        let mut tx = self.scoped(ws).await?;
        let n = sqlx::query(
            "DELETE FROM tracker_dead_letters WHERE workspace_id = $1 AND failed_at < $2",
        )
        .bind(ws.0)
        .bind(before)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn count_trust_history(
        &self,
        ws: WorkspaceId,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.count_before(
            ws,
            "SELECT count(*) FROM agent_trust_score_history WHERE workspace_id = $1 AND recorded_at < $2",
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
        let mut tx = self.scoped(ws).await?;
        let n = sqlx::query(
            "DELETE FROM agent_trust_score_history WHERE id IN (SELECT id FROM agent_trust_score_history \
             WHERE workspace_id = $1 AND recorded_at < $2 ORDER BY recorded_at, id LIMIT $3)",
        )
        .bind(ws.0)
        .bind(before)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }
}
