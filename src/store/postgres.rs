//! PostgreSQL store. Every workspace-scoped query runs in a transaction that
//! first sets `app.workspace_id`; the pool's connections `SET ROLE
//! swarmwise_app`, a role that row-level security cannot be bypassed by.
//! Bulk writes use `UNNEST` arrays.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, PgPool, Postgres, QueryBuilder, Row, Transaction};
use swarmwise_actors::domain::{
    Agent, AgentFailure, AgentId, FailureKind, OutcomeSample, Priority, Recommendation,
    RecommendationFilter, RecommendationStatus, Verdict, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::learner::cycle::{Rule, StoredPattern};
use swarmwise_actors::learner::patterns::OutcomeRecord;
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::ports::{
    CycleLock, DeadLetter, Store, StoreError, TrustHistoryPoint, TrustRow,
};
use swarmwise_actors::workflow::{RunStatus, WorkflowRun};
use uuid::Uuid;

use super::{pending_decision, priority_name, unexpected, AdminStore, NewApiKey};
use crate::config::DatabaseSettings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The role every service query runs as (created by the first migration).
pub const APP_ROLE: &str = "swarmwise_app";

/// PostgreSQL implementation of the stores.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

const REC_COLUMNS: &str = "id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, recommendation_type, \
     content, confidence_score, reasoning, latency_ms, deadline_ms, outcome_status, outcome_quality, feedback, created_at, evaluated_at";

impl PgStore {
    /// Connects (migrating first if configured).
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(&settings.url)?;
        if settings.migrate {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            MIGRATOR.run(&mut conn).await?;
            conn.close().await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(format!("SET ROLE {APP_ROLE}").as_str())
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The pool (tests use it to prove row-level security on its own).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) async fn scoped(
        &self,
        ws: WorkspaceId,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        set_workspace(&mut tx, ws).await?;
        Ok(tx)
    }
}

fn rec_from_row(row: &PgRow) -> Result<Recommendation, StoreError> {
    let get = || -> Result<Recommendation, anyhow::Error> {
        let status: String = row.try_get("outcome_status")?;
        let agent: String = row.try_get("agent_id")?;
        Ok(Recommendation {
            id: row.try_get("id")?,
            workspace_id: WorkspaceId(row.try_get("workspace_id")?),
            agent_id: AgentId::parse("agent_id", &agent)?,
            agent_name: row.try_get("agent_name")?,
            correlation_id: row.try_get("correlation_id")?,
            workflow_id: row.try_get("workflow_id")?,
            recommendation_type: row.try_get("recommendation_type")?,
            content: row.try_get("content")?,
            confidence: row.try_get("confidence_score")?,
            reasoning: row.try_get("reasoning")?,
            latency_ms: row.try_get("latency_ms")?,
            deadline_ms: row.try_get("deadline_ms")?,
            status: RecommendationStatus::parse("outcome_status", &status)?,
            outcome_quality: row.try_get("outcome_quality")?,
            feedback: row.try_get("feedback")?,
            created_at: row.try_get("created_at")?,
            evaluated_at: row.try_get("evaluated_at")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn agent_from_row(row: &PgRow) -> Result<Agent, StoreError> {
    let get = || -> Result<Agent, anyhow::Error> {
        let id: String = row.try_get("id")?;
        Ok(Agent {
            id: AgentId::parse("id", &id)?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            config: row.try_get("config")?,
            enabled: row.try_get("enabled")?,
            created_at: row.try_get("created_at")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn sample_from_row(row: &PgRow) -> Result<OutcomeSample, StoreError> {
    let get = || -> Result<OutcomeSample, anyhow::Error> {
        let status: String = row.try_get("outcome_status")?;
        let agent: String = row.try_get("agent_id")?;
        let verdict = Verdict::parse("outcome_status", &status)?;
        let quality: Option<f64> = row.try_get("outcome_quality")?;
        Ok(OutcomeSample {
            id: row.try_get("id")?,
            agent_id: AgentId::parse("agent_id", &agent)?,
            agent_name: row.try_get("agent_name")?,
            recommendation_type: row.try_get("recommendation_type")?,
            confidence: row.try_get("confidence_score")?,
            verdict,
            quality: quality.unwrap_or(verdict.score() * 100.0),
            latency_ms: row.try_get("latency_ms")?,
            deadline_ms: row.try_get("deadline_ms")?,
            evaluated_at: row.try_get("evaluated_at")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn failure_from_row(row: &PgRow) -> Result<AgentFailure, StoreError> {
    let get = || -> Result<AgentFailure, anyhow::Error> {
        let agent: String = row.try_get("agent_id")?;
        let kind: String = row.try_get("kind")?;
        Ok(AgentFailure {
            id: row.try_get("id")?,
            workspace_id: WorkspaceId(row.try_get("workspace_id")?),
            agent_id: AgentId::parse("agent_id", &agent)?,
            agent_name: row.try_get("agent_name")?,
            workflow_id: row.try_get("workflow_id")?,
            recommendation_type: row.try_get("recommendation_type")?,
            kind: FailureKind::parse("kind", &kind)?,
            message: row.try_get("message")?,
            occurred_at: row.try_get("occurred_at")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn count_from_row(row: &PgRow) -> Result<(AgentId, RecommendationStatus, u64), StoreError> {
    let get = || -> Result<_, anyhow::Error> {
        let agent: String = row.try_get("agent_id")?;
        let status: String = row.try_get("outcome_status")?;
        let n: i64 = row.try_get("n")?;
        Ok((
            AgentId::parse("agent_id", &agent)?,
            RecommendationStatus::parse("outcome_status", &status)?,
            n.max(0) as u64,
        ))
    };
    get().map_err(StoreError::Unexpected)
}

/// Scopes the rest of transaction `tx` to workspace `ws` for row-level
/// security (`app.workspace_id`, transaction-local).
async fn set_workspace(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
) -> Result<(), StoreError> {
    sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
        .bind(ws.0.to_string())
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
    Ok(())
}

/// Rows grouped by workspace (one RLS scope per group in a bulk write).
fn by_workspace<T>(
    rows: &[T],
    ws_of: impl Fn(&T) -> WorkspaceId,
) -> BTreeMap<WorkspaceId, Vec<&T>> {
    let mut groups: BTreeMap<WorkspaceId, Vec<&T>> = BTreeMap::new();
    for r in rows {
        groups.entry(ws_of(r)).or_default().push(r);
    }
    groups
}

#[async_trait]
impl Store for PgStore {
    async fn insert_recommendations(&self, recs: &[Recommendation]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for (ws, rows) in by_workspace(recs, |r| r.workspace_id) {
            set_workspace(&mut tx, ws).await?;
            sqlx::query(
                "INSERT INTO agent_recommendations (id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, \
                 recommendation_type, content, confidence_score, reasoning, latency_ms, created_at, deadline_ms) \
                 SELECT t.id, $2, t.agent_id, t.agent_name, t.correlation_id, t.workflow_id, t.rtype, t.content::jsonb, \
                 t.confidence, t.reasoning, t.latency, t.created_at, t.deadline \
                 FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                 $9::float8[], $10::text[], $11::int8[], $12::timestamptz[], $13::int8[]) \
                 AS t(id, agent_id, agent_name, correlation_id, workflow_id, rtype, content, confidence, reasoning, latency, created_at, deadline)",
            )
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(ws.0)
            .bind(rows.iter().map(|r| r.agent_id.as_str().to_owned()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.agent_name.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.correlation_id.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.workflow_id.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.recommendation_type.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.content.to_string()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.confidence).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.reasoning.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.deadline_ms).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn insert_dead_letters(&self, rows: &[DeadLetter]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for (ws, rows) in by_workspace(rows, |r| r.workspace_id) {
            set_workspace(&mut tx, ws).await?;
            sqlx::query(
                "INSERT INTO tracker_dead_letters (id, workspace_id, recommendation_id, agent_id, error, payload, failed_at) \
                 SELECT t.id, $2, t.rid, t.agent_id, t.error, t.payload, t.failed_at \
                 FROM UNNEST($1::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::timestamptz[]) \
                 AS t(id, rid, agent_id, error, payload, failed_at)",
            )
            .bind(rows.iter().map(|_| Uuid::now_v7()).collect::<Vec<_>>())
            .bind(ws.0)
            .bind(rows.iter().map(|r| r.recommendation_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.agent_id.as_str().to_owned()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.failed_at).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn recommendation(
        &self,
        ws: WorkspaceId,
        id: Uuid,
    ) -> Result<Option<Recommendation>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query(&format!(
            "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE id = $1 AND workspace_id = $2"
        ))
        .bind(id)
        .bind(ws.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(rec_from_row).transpose()
    }

    async fn list_recommendations(
        &self,
        ws: WorkspaceId,
        f: &RecommendationFilter,
    ) -> Result<Vec<Recommendation>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE workspace_id = "
        ));
        q.push_bind(ws.0);
        if let Some(a) = &f.agent_id {
            q.push(" AND agent_id = ").push_bind(a.as_str().to_owned());
        }
        if let Some(w) = &f.workflow_id {
            q.push(" AND workflow_id = ").push_bind(w.clone());
        }
        if let Some(s) = f.status {
            q.push(" AND outcome_status = ").push_bind(s.as_str());
        }
        if let Some(t) = &f.recommendation_type {
            q.push(" AND recommendation_type = ").push_bind(t.clone());
        }
        if let Some(c) = f.before {
            q.push(" AND id < ").push_bind(c);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&mut *tx).await.map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(rec_from_row).collect()
    }

    async fn workflow_recommendations(
        &self,
        ws: WorkspaceId,
        workflow_id: &str,
    ) -> Result<Vec<Recommendation>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(&format!(
            "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE workspace_id = $1 AND workflow_id = $2 ORDER BY id"
        ))
        .bind(ws.0)
        .bind(workflow_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(rec_from_row).collect()
    }

    async fn apply_verdicts(
        &self,
        ws: WorkspaceId,
        updates: &[VerdictUpdate],
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        sqlx::query(
            "UPDATE agent_recommendations AS r SET outcome_status = v.status, outcome_quality = v.quality, \
             feedback = COALESCE(v.feedback, r.feedback), evaluated_at = v.at \
             FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::text[], $5::timestamptz[]) AS v(id, status, quality, feedback, at) \
             WHERE r.id = v.id AND r.workspace_id = $6",
        )
        .bind(updates.iter().map(|u| u.id).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.verdict.status().as_str().to_owned()).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.quality).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.feedback.clone()).collect::<Vec<_>>())
        .bind(updates.iter().map(|u| u.evaluated_at).collect::<Vec<_>>())
        .bind(ws.0)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn outcome_samples(
        &self,
        ws: WorkspaceId,
        agent: Option<&AgentId>,
    ) -> Result<Vec<OutcomeSample>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT id, agent_id, agent_name, recommendation_type, confidence_score, outcome_status, outcome_quality, \
             latency_ms, deadline_ms, evaluated_at FROM agent_recommendations \
             WHERE workspace_id = $1 AND evaluated_at IS NOT NULL AND outcome_status IN ('approved', 'partial', 'rejected') \
             AND ($2::text IS NULL OR agent_id = $2) ORDER BY evaluated_at, id",
        )
        .bind(ws.0)
        .bind(agent.map(|a| a.as_str().to_owned()))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(sample_from_row).collect()
    }

    async fn insert_failures(
        &self,
        ws: WorkspaceId,
        rows: &[AgentFailure],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.scoped(ws).await?;
        sqlx::query(
            "INSERT INTO agent_failures (id, workspace_id, agent_id, agent_name, workflow_id, recommendation_type, kind, message, occurred_at) \
             SELECT t.id, $2, t.agent_id, t.agent_name, t.workflow_id, t.rtype, t.kind, t.message, t.occurred_at \
             FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[]) \
             AS t(id, agent_id, agent_name, workflow_id, rtype, kind, message, occurred_at)",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(ws.0)
        .bind(rows.iter().map(|r| r.agent_id.as_str().to_owned()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.agent_name.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.workflow_id.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.recommendation_type.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.kind.as_str().to_owned()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.message.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.occurred_at).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn agent_failures(
        &self,
        ws: WorkspaceId,
        agent: Option<&AgentId>,
    ) -> Result<Vec<AgentFailure>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT id, workspace_id, agent_id, agent_name, workflow_id, recommendation_type, kind, message, occurred_at \
             FROM agent_failures WHERE workspace_id = $1 AND ($2::text IS NULL OR agent_id = $2) ORDER BY occurred_at, id",
        )
        .bind(ws.0)
        .bind(agent.map(|a| a.as_str().to_owned()))
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(failure_from_row).collect()
    }

    async fn status_counts(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(AgentId, RecommendationStatus, u64)>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT agent_id, outcome_status, count(*) AS n FROM agent_recommendations WHERE workspace_id = $1 GROUP BY agent_id, outcome_status",
        )
        .bind(ws.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(count_from_row).collect()
    }

    async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT swarmwise_workspace_ids()")
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }

    async fn create_agent(&self, ws: WorkspaceId, a: &Agent) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        sqlx::query(
            "INSERT INTO agents (workspace_id, id, name, kind, config, enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(ws.0)
        .bind(a.id.as_str())
        .bind(&a.name)
        .bind(&a.kind)
        .bind(&a.config)
        .bind(a.enabled)
        .bind(a.created_at)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)
    }

    async fn agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query("SELECT id, name, kind, config, enabled, created_at FROM agents WHERE workspace_id = $1 AND id = $2")
            .bind(ws.0)
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn agents(&self, ws: WorkspaceId) -> Result<Vec<Agent>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query("SELECT id, name, kind, config, enabled, created_at FROM agents WHERE workspace_id = $1 ORDER BY id")
            .bind(ws.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn delete_agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<bool, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let done = sqlx::query("DELETE FROM agents WHERE workspace_id = $1 AND id = $2")
            .bind(ws.0)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_agent_enabled(
        &self,
        ws: WorkspaceId,
        id: &AgentId,
        enabled: bool,
    ) -> Result<Option<Agent>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query(
            "UPDATE agents SET enabled = $3, updated_at = now() WHERE workspace_id = $1 AND id = $2 \
             RETURNING id, name, kind, config, enabled, created_at",
        )
        .bind(ws.0)
        .bind(id.as_str())
        .bind(enabled)
        .fetch_optional(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }

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
             AND ($3::timestamptz IS NULL OR evaluated_at >= $3) ORDER BY evaluated_at, id",
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
        tx.commit().await.map_err(unexpected)
    }

    async fn try_lock_cycle(
        &self,
        ws: WorkspaceId,
    ) -> Result<Option<Box<dyn CycleLock>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        // A transaction-level advisory lock: released when the transaction ends.
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("swarmwise:learning_cycle:{ws}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(unexpected)?;
        if !got {
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
impl AdminStore for PgStore {
    async fn create_workspace(
        &self,
        ws: WorkspaceId,
        name: &str,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(ws.0)
            .bind(name)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn add_api_key(
        &self,
        ws: WorkspaceId,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn workspace_for_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>, StoreError> {
        let id: Option<Uuid> = sqlx::query_scalar("SELECT swarmwise_workspace_for_key($1)")
            .bind(key_hash)
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(id.map(WorkspaceId))
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(unexpected)?;
        super::check_migrations(&MIGRATOR, applied)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

pub(super) async fn insert_key(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    key: &NewApiKey,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, workspace_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(key.id)
        .bind(ws.0)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
    Ok(())
}

const PATTERN_COLUMNS: &str = "id, pattern_key, category, pattern_name, description, status, support, success_rate, ci_low, ci_high, \
     p_value, q_value, lift, agent_ids, details, first_seen, last_confirmed, retired_at, discovered_through, misses";

const CYCLE_COLUMNS: &str = "id, workspace_id, status, reason, started_at, finished_at, recommendations_processed, patterns_discovered, \
     patterns_confirmed, patterns_retired, rules_updated, model_accuracy, coverage, insights, error";

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
