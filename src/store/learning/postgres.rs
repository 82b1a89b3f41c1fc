//! [`CycleLock`] on PostgreSQL. Every workspace-scoped query runs in a
//! transaction scoped to its workspace (row-level security).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::learner::cycle::{Rule, StoredPattern};
use swarmwise_actors::learner::patterns::OutcomeRecord;
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::ports::{CycleLock, LearningStore, StoreError};
use uuid::Uuid;

use super::{pending_decision, CYCLE_COLUMNS, PATTERN_COLUMNS};
use crate::store::postgres::PgStore;
use crate::store::unexpected;

/// Inserts or updates a cycle's row.
async fn write_cycle(
    tx: &mut Transaction<'static, Postgres>,
    c: &CycleReport,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meta_learner_cycles (id, workspace_id, status, reason, started_at, finished_at, recommendations_processed, \
         patterns_discovered, patterns_confirmed, patterns_retired, rules_updated, model_accuracy, coverage, insights, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at, \
         recommendations_processed = EXCLUDED.recommendations_processed, patterns_discovered = EXCLUDED.patterns_discovered, \
         patterns_confirmed = EXCLUDED.patterns_confirmed, patterns_retired = EXCLUDED.patterns_retired, \
         rules_updated = EXCLUDED.rules_updated, model_accuracy = EXCLUDED.model_accuracy, coverage = EXCLUDED.coverage, \
         insights = EXCLUDED.insights, error = EXCLUDED.error",
    )
    .bind(c.id)
    .bind(c.workspace_id.0)
    .bind(&c.status)
    .bind(&c.reason)
    .bind(c.started_at)
    .bind(c.finished_at)
    .bind(c.recommendations_processed as i64)
    .bind(c.patterns_discovered as i32)
    .bind(c.patterns_confirmed as i32)
    .bind(c.patterns_retired as i32)
    .bind(c.rules_updated as i32)
    .bind(c.model_accuracy)
    .bind(c.coverage)
    .bind(&c.insights)
    .bind(&c.error)
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(())
}

/// The advisory lock key of a workspace's learning cycle (transaction-level,
/// so it ends with its transaction or the connection: a crashed node's lock
/// is gone as soon as PostgreSQL notices the closed connection).
async fn try_cycle_lock(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("swarmwise:learning_cycle:{ws}"))
        .fetch_one(&mut **tx)
        .await
        .map_err(unexpected)
}

/// Holds the advisory lock's transaction open until released.
struct PgCycleLock {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl CycleLock for PgCycleLock {
    async fn release(self: Box<Self>) {
        if let Err(e) = self.tx.commit().await {
            tracing::warn!(error = %e, "releasing the learning-cycle lock failed; it ends with the connection");
        }
    }
}

#[async_trait]
impl LearningStore for PgStore {
    async fn outcome_records(
        &self,
        ws: WorkspaceId,
        decision_key: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT id, workflow_id, agent_id, recommendation_type, confidence_score, outcome_status, \
             COALESCE(content ->> $2, content::text) AS decision, evaluated_at FROM agent_recommendations \
             WHERE workspace_id = $1 AND evaluated_at IS NOT NULL AND outcome_status IN ('approved', 'partial', 'rejected') \
             AND ($3::timestamptz IS NULL OR evaluated_at >= $3) \
             UNION ALL SELECT id, workflow_id, agent_id, recommendation_type, confidence_score, outcome_status, decision, evaluated_at \
             FROM outcome_digests WHERE workspace_id = $1 AND ($3::timestamptz IS NULL OR evaluated_at >= $3) \
             ORDER BY evaluated_at, id",
        )
        .bind(ws.0)
        .bind(decision_key)
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<OutcomeRecord, anyhow::Error> {
                    let agent: String = r.try_get("agent_id")?;
                    let status: String = r.try_get("outcome_status")?;
                    Ok(OutcomeRecord {
                        id: r.try_get("id")?,
                        workflow_id: r.try_get("workflow_id")?,
                        agent_id: AgentId::parse("agent_id", &agent)?,
                        recommendation_type: r.try_get("recommendation_type")?,
                        confidence: r.try_get("confidence_score")?,
                        approved: status == "approved",
                        decision: r.try_get("decision")?,
                        evaluated_at: r.try_get("evaluated_at")?,
                    })
                };
                get().map_err(StoreError::Unexpected)
            })
            .collect()
    }

    async fn pending_decisions(
        &self,
        ws: WorkspaceId,
        decision_key: &str,
        limit: u32,
    ) -> Result<Vec<PendingDecision>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT workflow_id, agent_id, recommendation_type, COALESCE(content ->> $2, content::text) AS decision \
             FROM agent_recommendations WHERE workspace_id = $1 AND outcome_status = 'pending' ORDER BY id DESC LIMIT $3",
        )
        .bind(ws.0)
        .bind(decision_key)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(pending_decision).collect()
    }

    async fn patterns(&self, ws: WorkspaceId) -> Result<Vec<StoredPattern>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(&format!("SELECT {PATTERN_COLUMNS} FROM recommendation_patterns WHERE workspace_id = $1 ORDER BY pattern_key"))
            .bind(ws.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<StoredPattern, anyhow::Error> {
                    let agents: serde_json::Value = r.try_get("agent_ids")?;
                    let details: serde_json::Value = r.try_get("details")?;
                    let misses: i32 = r.try_get("misses")?;
                    let support: i64 = r.try_get("support")?;
                    Ok(StoredPattern {
                        id: r.try_get("id")?,
                        key: r.try_get("pattern_key")?,
                        category: serde_json::from_value(serde_json::Value::String(
                            r.try_get("category")?,
                        ))?,
                        name: r.try_get("pattern_name")?,
                        description: r.try_get("description")?,
                        status: super::pattern_status(&r.try_get::<String, _>("status")?)?,
                        recommendation_type: details
                            .get("recommendation_type")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        agent_ids: serde_json::from_value(agents)?,
                        support: support.max(0) as u64,
                        success_rate: r.try_get("success_rate")?,
                        ci_low: r.try_get::<Option<f64>, _>("ci_low")?.unwrap_or(0.0),
                        ci_high: r.try_get::<Option<f64>, _>("ci_high")?.unwrap_or(1.0),
                        p_value: r.try_get::<Option<f64>, _>("p_value")?.unwrap_or(1.0),
                        q_value: r.try_get::<Option<f64>, _>("q_value")?.unwrap_or(1.0),
                        lift: r.try_get::<Option<f64>, _>("lift")?.unwrap_or(1.0),
                        first_seen: r.try_get("first_seen")?,
                        last_confirmed: r.try_get("last_confirmed")?,
                        retired_at: r.try_get("retired_at")?,
                        discovered_through: r.try_get("discovered_through")?,
                        misses: misses.max(0) as u32,
                        confirm_attempts: details
                            .get("confirm_attempts")
                            .and_then(serde_json::Value::as_u64)
                            .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32),
                    })
                };
                get().map_err(StoreError::Unexpected)
            })
            .collect()
    }

    async fn save_cycle(
        &self,
        report: &CycleReport,
        patterns: &[StoredPattern],
        rules: &[Rule],
        version: i32,
    ) -> Result<(), StoreError> {
        let ws = report.workspace_id;
        let mut tx = self.scoped(ws).await?;
        for p in patterns {
            sqlx::query(
                "INSERT INTO recommendation_patterns (id, workspace_id, pattern_key, category, pattern_name, description, status, support, \
                 success_rate, ci_low, ci_high, p_value, q_value, lift, agent_ids, details, first_seen, last_confirmed, retired_at, \
                 discovered_through, misses) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
                 ON CONFLICT (workspace_id, pattern_key) DO UPDATE SET description = EXCLUDED.description, status = EXCLUDED.status, \
                 support = EXCLUDED.support, success_rate = EXCLUDED.success_rate, ci_low = EXCLUDED.ci_low, ci_high = EXCLUDED.ci_high, \
                 p_value = EXCLUDED.p_value, q_value = EXCLUDED.q_value, lift = EXCLUDED.lift, last_confirmed = EXCLUDED.last_confirmed, \
                 retired_at = EXCLUDED.retired_at, discovered_through = EXCLUDED.discovered_through, misses = EXCLUDED.misses, details = EXCLUDED.details",
            )
            .bind(p.id)
            .bind(ws.0)
            .bind(&p.key)
            .bind(super::category_name(p.category))
            .bind(&p.name)
            .bind(&p.description)
            .bind(p.status.as_str())
            .bind(p.support as i64)
            .bind(p.success_rate)
            .bind(p.ci_low)
            .bind(p.ci_high)
            .bind(p.p_value)
            .bind(p.q_value)
            .bind(p.lift)
            .bind(serde_json::to_value(&p.agent_ids).unwrap_or_default())
            .bind(serde_json::json!({ "recommendation_type": p.recommendation_type, "confirm_attempts": p.confirm_attempts }))
            .bind(p.first_seen)
            .bind(p.last_confirmed)
            .bind(p.retired_at)
            .bind(p.discovered_through)
            .bind(p.misses as i32)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        sqlx::query("UPDATE learning_rules SET status = 'superseded', retired_at = $2 WHERE workspace_id = $1 AND status = 'active'")
            .bind(ws.0)
            .bind(report.finished_at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        for r in rules {
            sqlx::query("INSERT INTO learning_rules (id, workspace_id, version, rule, status, created_at) VALUES ($1, $2, $3, $4, 'active', $5)")
                .bind(Uuid::now_v7())
                .bind(ws.0)
                .bind(version)
                .bind(serde_json::to_value(r).unwrap_or_default())
                .bind(report.finished_at)
                .execute(&mut *tx)
                .await
                .map_err(unexpected)?;
        }
        write_cycle(&mut tx, report).await?;
        crate::store::changes::pg_append(
            &mut tx,
            &self.origin,
            ws,
            crate::store::ChangeKind::Patterns,
            &[],
        )
        .await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn try_lock_cycle(
        &self,
        ws: WorkspaceId,
    ) -> Result<Option<Box<dyn CycleLock>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        // A transaction-level advisory lock: released when the transaction ends.
        if !try_cycle_lock(&mut tx, ws).await? {
            tx.rollback().await.map_err(unexpected)?;
            return Ok(None);
        }
        Ok(Some(Box::new(PgCycleLock { tx })))
    }

    async fn insert_cycle(&self, report: &CycleReport) -> Result<(), StoreError> {
        let mut tx = self.scoped(report.workspace_id).await?;
        write_cycle(&mut tx, report).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn fail_cycle(&self, report: &CycleReport) -> Result<(), StoreError> {
        self.insert_cycle(report).await
    }

    async fn cycles(&self, ws: WorkspaceId, limit: u32) -> Result<Vec<CycleReport>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(&format!("SELECT {CYCLE_COLUMNS} FROM meta_learner_cycles WHERE workspace_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"))
            .bind(ws.0)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<CycleReport, anyhow::Error> {
                    Ok(CycleReport {
                        id: r.try_get("id")?,
                        workspace_id: WorkspaceId(r.try_get("workspace_id")?),
                        status: r.try_get("status")?,
                        reason: r.try_get("reason")?,
                        started_at: r.try_get("started_at")?,
                        finished_at: r.try_get("finished_at")?,
                        recommendations_processed: r
                            .try_get::<i64, _>("recommendations_processed")?
                            .max(0) as u64,
                        patterns_discovered: r.try_get::<i32, _>("patterns_discovered")?.max(0)
                            as u32,
                        patterns_confirmed: r.try_get::<i32, _>("patterns_confirmed")?.max(0)
                            as u32,
                        patterns_retired: r.try_get::<i32, _>("patterns_retired")?.max(0) as u32,
                        rules_updated: r.try_get::<i32, _>("rules_updated")?.max(0) as u32,
                        model_accuracy: r.try_get("model_accuracy")?,
                        coverage: r.try_get("coverage")?,
                        insights: r.try_get("insights")?,
                        error: r.try_get("error")?,
                    })
                };
                get().map_err(StoreError::Unexpected)
            })
            .collect()
    }

    async fn interrupt_orphaned_cycles(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.scoped(ws).await?;
        // A node running one of this workspace's cycles holds the lock for
        // the whole cycle; taking it here proves no live process runs one.
        if !try_cycle_lock(&mut tx, ws).await? {
            tx.rollback().await.map_err(unexpected)?;
            return Ok(0);
        }
        let n = sqlx::query("UPDATE meta_learner_cycles SET status = 'interrupted', error = $2, finished_at = $3 WHERE workspace_id = $1 AND status = 'running'")
            .bind(ws.0)
            .bind(reason)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }

    async fn cycle_count(&self, ws: WorkspaceId) -> Result<i64, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM meta_learner_cycles WHERE workspace_id = $1 AND status = 'succeeded'")
            .bind(ws.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }
}
