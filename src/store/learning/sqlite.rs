//! [`LearningStore`] on SQLite. Every query carries `workspace_id = ?`;
//! times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::learner::cycle::{Rule, StoredPattern};
use swarmwise_actors::learner::patterns::OutcomeRecord;
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::ports::{CycleLock, LearningStore, LocalLock, StoreError};
use uuid::Uuid;

use super::{pending_decision, CYCLE_COLUMNS, PATTERN_COLUMNS};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

/// Inserts or updates a cycle's row.
async fn write_cycle(
    tx: &mut Transaction<'static, Sqlite>,
    c: &CycleReport,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO meta_learner_cycles (id, workspace_id, status, reason, started_at, finished_at, recommendations_processed, \
         patterns_discovered, patterns_confirmed, patterns_retired, rules_updated, model_accuracy, coverage, insights, error) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, finished_at = excluded.finished_at, \
         recommendations_processed = excluded.recommendations_processed, patterns_discovered = excluded.patterns_discovered, \
         patterns_confirmed = excluded.patterns_confirmed, patterns_retired = excluded.patterns_retired, \
         rules_updated = excluded.rules_updated, model_accuracy = excluded.model_accuracy, coverage = excluded.coverage, \
         insights = excluded.insights, error = excluded.error",
    )
    .bind(c.id)
    .bind(c.workspace_id.0)
    .bind(&c.status)
    .bind(&c.reason)
    .bind(micros(c.started_at))
    .bind(c.finished_at.map(micros))
    .bind(c.recommendations_processed as i64)
    .bind(i64::from(c.patterns_discovered))
    .bind(i64::from(c.patterns_confirmed))
    .bind(i64::from(c.patterns_retired))
    .bind(i64::from(c.rules_updated))
    .bind(c.model_accuracy)
    .bind(c.coverage)
    .bind(c.insights.to_string())
    .bind(&c.error)
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(())
}

#[async_trait]
impl LearningStore for SqliteStore {
    async fn outcome_records(
        &self,
        ws: WorkspaceId,
        decision_key: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<OutcomeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workflow_id, agent_id, recommendation_type, confidence_score, outcome_status, \
             CAST(COALESCE(json_extract(content, '$.' || ?2), content) AS TEXT) AS decision, evaluated_at \
             FROM agent_recommendations WHERE workspace_id = ?1 AND evaluated_at IS NOT NULL \
             AND outcome_status IN ('approved', 'partial', 'rejected') AND (?3 IS NULL OR evaluated_at >= ?3) \
             UNION ALL SELECT id, workflow_id, agent_id, recommendation_type, confidence_score, outcome_status, decision, evaluated_at \
             FROM outcome_digests WHERE workspace_id = ?1 AND (?3 IS NULL OR evaluated_at >= ?3) \
             ORDER BY evaluated_at, id",
        )
        .bind(ws.0)
        .bind(decision_key)
        .bind(since.map(micros))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
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
                        evaluated_at: from_micros(r.try_get("evaluated_at")?)?,
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
        let rows = sqlx::query(
            "SELECT workflow_id, agent_id, recommendation_type, \
             CAST(COALESCE(json_extract(content, '$.' || ?2), content) AS TEXT) AS decision \
             FROM agent_recommendations WHERE workspace_id = ?1 AND outcome_status = 'pending' ORDER BY id DESC LIMIT ?3",
        )
        .bind(ws.0)
        .bind(decision_key)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(pending_decision).collect()
    }

    async fn patterns(&self, ws: WorkspaceId) -> Result<Vec<StoredPattern>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {PATTERN_COLUMNS} FROM recommendation_patterns WHERE workspace_id = ? ORDER BY pattern_key"))
            .bind(ws.0)
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<StoredPattern, anyhow::Error> {
                    let agents: String = r.try_get("agent_ids")?;
                    let details: String = r.try_get("details")?;
                    let details: serde_json::Value = serde_json::from_str(&details)?;
                    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, anyhow::Error> {
                        r.try_get::<Option<i64>, _>(col)?
                            .map(from_micros)
                            .transpose()
                    };
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
                        agent_ids: serde_json::from_str(&agents)?,
                        support: r.try_get::<i64, _>("support")?.max(0) as u64,
                        success_rate: r.try_get("success_rate")?,
                        ci_low: r.try_get::<Option<f64>, _>("ci_low")?.unwrap_or(0.0),
                        ci_high: r.try_get::<Option<f64>, _>("ci_high")?.unwrap_or(1.0),
                        p_value: r.try_get::<Option<f64>, _>("p_value")?.unwrap_or(1.0),
                        q_value: r.try_get::<Option<f64>, _>("q_value")?.unwrap_or(1.0),
                        lift: r.try_get::<Option<f64>, _>("lift")?.unwrap_or(1.0),
                        first_seen: from_micros(r.try_get("first_seen")?)?,
                        last_confirmed: opt_time("last_confirmed")?,
                        retired_at: opt_time("retired_at")?,
                        discovered_through: opt_time("discovered_through")?,
                        misses: r.try_get::<i64, _>("misses")?.max(0) as u32,
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
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for p in patterns {
            sqlx::query(
                "INSERT INTO recommendation_patterns (id, workspace_id, pattern_key, category, pattern_name, description, status, support, \
                 success_rate, ci_low, ci_high, p_value, q_value, lift, agent_ids, details, first_seen, last_confirmed, retired_at, \
                 discovered_through, misses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (workspace_id, pattern_key) DO UPDATE SET description = excluded.description, status = excluded.status, \
                 support = excluded.support, success_rate = excluded.success_rate, ci_low = excluded.ci_low, ci_high = excluded.ci_high, \
                 p_value = excluded.p_value, q_value = excluded.q_value, lift = excluded.lift, last_confirmed = excluded.last_confirmed, \
                 retired_at = excluded.retired_at, discovered_through = excluded.discovered_through, misses = excluded.misses, details = excluded.details",
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
            .bind(serde_json::to_string(&p.agent_ids).unwrap_or_default())
            .bind(serde_json::json!({ "recommendation_type": p.recommendation_type, "confirm_attempts": p.confirm_attempts }).to_string())
            .bind(micros(p.first_seen))
            .bind(p.last_confirmed.map(micros))
            .bind(p.retired_at.map(micros))
            .bind(p.discovered_through.map(micros))
            .bind(i64::from(p.misses))
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        sqlx::query("UPDATE learning_rules SET status = 'superseded', retired_at = ? WHERE workspace_id = ? AND status = 'active'")
            .bind(report.finished_at.map(micros))
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        for r in rules {
            sqlx::query("INSERT INTO learning_rules (id, workspace_id, version, rule, status, created_at) VALUES (?, ?, ?, ?, 'active', ?)")
                .bind(Uuid::now_v7())
                .bind(ws.0)
                .bind(version)
                .bind(serde_json::to_string(r).unwrap_or_default())
                .bind(micros(report.finished_at.unwrap_or_else(Utc::now)))
                .execute(&mut *tx)
                .await
                .map_err(unexpected)?;
        }
        write_cycle(&mut tx, report).await?;
        crate::store::changes::sqlite_append(
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
        _ws: WorkspaceId,
    ) -> Result<Option<Box<dyn CycleLock>>, StoreError> {
        // One SQLite file serves one node: the actor's single flight suffices.
        Ok(Some(Box::new(LocalLock)))
    }

    async fn insert_cycle(&self, report: &CycleReport) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        write_cycle(&mut tx, report).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn fail_cycle(&self, report: &CycleReport) -> Result<(), StoreError> {
        self.insert_cycle(report).await
    }

    async fn cycles(&self, ws: WorkspaceId, limit: u32) -> Result<Vec<CycleReport>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CYCLE_COLUMNS} FROM meta_learner_cycles WHERE workspace_id = ? ORDER BY started_at DESC, id DESC LIMIT ?"))
            .bind(ws.0)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<CycleReport, anyhow::Error> {
                    let insights: String = r.try_get("insights")?;
                    let finished: Option<i64> = r.try_get("finished_at")?;
                    Ok(CycleReport {
                        id: r.try_get("id")?,
                        workspace_id: WorkspaceId(r.try_get("workspace_id")?),
                        status: r.try_get("status")?,
                        reason: r.try_get("reason")?,
                        started_at: from_micros(r.try_get("started_at")?)?,
                        finished_at: finished.map(from_micros).transpose()?,
                        recommendations_processed: r
                            .try_get::<i64, _>("recommendations_processed")?
                            .max(0) as u64,
                        patterns_discovered: r.try_get::<i64, _>("patterns_discovered")?.max(0)
                            as u32,
                        patterns_confirmed: r.try_get::<i64, _>("patterns_confirmed")?.max(0)
                            as u32,
                        patterns_retired: r.try_get::<i64, _>("patterns_retired")?.max(0) as u32,
                        rules_updated: r.try_get::<i64, _>("rules_updated")?.max(0) as u32,
                        model_accuracy: r.try_get("model_accuracy")?,
                        coverage: r.try_get("coverage")?,
                        insights: serde_json::from_str(&insights)?,
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
        // One SQLite file serves one node, and its cycles end with it.
        Ok(sqlx::query("UPDATE meta_learner_cycles SET status = 'interrupted', error = ?, finished_at = ? WHERE workspace_id = ? AND status = 'running'")
            .bind(reason)
            .bind(micros(at))
            .bind(ws.0)
            .execute(&self.pool)
            .await
            .map_err(unexpected)?
            .rows_affected())
    }

    async fn cycle_count(&self, ws: WorkspaceId) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT count(*) FROM meta_learner_cycles WHERE workspace_id = ? AND status = 'succeeded'")
            .bind(ws.0)
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)
    }
}
