//! SQLite store, the embedded default: one file in WAL mode. There is no
//! row-level security; every query carries `workspace_id = ?`. Times are
//! stored as integer microseconds so that they sort and round-trip exactly.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use swarmwise_actors::domain::{
    Agent, AgentFailure, AgentId, FailureKind, OutcomeSample, Priority, Recommendation,
    RecommendationFilter, RecommendationStatus, Verdict, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::learner::cycle::{Rule, StoredPattern};
use swarmwise_actors::learner::patterns::OutcomeRecord;
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::ports::{
    CycleLock, DeadLetter, LocalLock, Store, StoreError, TrustHistoryPoint, TrustRow,
};
use swarmwise_actors::workflow::{RunStatus, WorkflowRun};
use uuid::Uuid;

use super::{pending_decision, priority_name, unexpected, AdminStore, NewApiKey};
use crate::config::DatabaseSettings;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite implementation of the stores.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

const REC_COLUMNS: &str = "id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, recommendation_type, \
     content, confidence_score, reasoning, latency_ms, deadline_ms, outcome_status, outcome_quality, feedback, created_at, evaluated_at";

/// Rows per multi-row INSERT (14 parameters each, well under SQLite's limit).
const INSERT_CHUNK: usize = 500; // 14 parameters a row

/// Rows in the next INSERT of a batch with `remaining` rows left: a full
/// chunk, else the largest power of two that fits. sqlx caches each prepared
/// statement on its connection (up to 100 each), and the program of a
/// multi-row INSERT takes about 1 kB per row, so one statement per batch size
/// (1 to 500) cached hundreds of MB under a steady load. With this ladder a
/// connection holds at most 10 insert statements.
fn insert_chunk_len(remaining: usize) -> usize {
    if remaining >= INSERT_CHUNK {
        INSERT_CHUNK
    } else {
        remaining.checked_ilog2().map_or(0, |bits| 1 << bits)
    }
}

pub(super) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(v: i64) -> Result<DateTime<Utc>, anyhow::Error> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| anyhow::anyhow!("time {v} out of range"))
}

impl SqliteStore {
    /// Opens (creating the file and its folder) and migrates if configured;
    /// commits with `synchronous = NORMAL` (WAL).
    pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        Self::connect_with(settings, false).await
    }

    /// [`SqliteStore::connect`]; `full_sync` commits with `synchronous =
    /// FULL` (tracking in `durable` mode: a commit survives a power loss).
    pub async fn connect_with(
        settings: &DatabaseSettings,
        full_sync: bool,
    ) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(settings.acquire_timeout_secs))
            .connect_with(options)
            .await?;
        if settings.migrate {
            MIGRATOR.run(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// The pool (tests read the file directly through it).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn rec_from_row(row: &SqliteRow) -> Result<Recommendation, StoreError> {
    let get = || -> Result<Recommendation, anyhow::Error> {
        let status: String = row.try_get("outcome_status")?;
        let agent: String = row.try_get("agent_id")?;
        let content: String = row.try_get("content")?;
        let evaluated: Option<i64> = row.try_get("evaluated_at")?;
        Ok(Recommendation {
            id: row.try_get("id")?,
            workspace_id: WorkspaceId(row.try_get("workspace_id")?),
            agent_id: AgentId::parse("agent_id", &agent)?,
            agent_name: row.try_get("agent_name")?,
            correlation_id: row.try_get("correlation_id")?,
            workflow_id: row.try_get("workflow_id")?,
            recommendation_type: row.try_get("recommendation_type")?,
            content: serde_json::from_str(&content)?,
            confidence: row.try_get("confidence_score")?,
            reasoning: row.try_get("reasoning")?,
            latency_ms: row.try_get("latency_ms")?,
            deadline_ms: row.try_get("deadline_ms")?,
            status: RecommendationStatus::parse("outcome_status", &status)?,
            outcome_quality: row.try_get("outcome_quality")?,
            feedback: row.try_get("feedback")?,
            created_at: from_micros(row.try_get("created_at")?)?,
            evaluated_at: evaluated.map(from_micros).transpose()?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn agent_from_row(row: &SqliteRow) -> Result<Agent, StoreError> {
    let get = || -> Result<Agent, anyhow::Error> {
        let id: String = row.try_get("id")?;
        let config: String = row.try_get("config")?;
        Ok(Agent {
            id: AgentId::parse("id", &id)?,
            name: row.try_get("name")?,
            kind: row.try_get("kind")?,
            config: serde_json::from_str(&config)?,
            enabled: row.try_get("enabled")?,
            created_at: from_micros(row.try_get("created_at")?)?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn sample_from_row(row: &SqliteRow) -> Result<OutcomeSample, StoreError> {
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
            evaluated_at: from_micros(row.try_get("evaluated_at")?)?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn failure_from_row(row: &SqliteRow) -> Result<AgentFailure, StoreError> {
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
            occurred_at: from_micros(row.try_get("occurred_at")?)?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn count_from_row(row: &SqliteRow) -> Result<(AgentId, RecommendationStatus, u64), StoreError> {
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

#[async_trait]
impl Store for SqliteStore {
    async fn insert_recommendations(&self, recs: &[Recommendation]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let mut rest = recs;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(insert_chunk_len(rest.len()));
            rest = tail;
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO agent_recommendations (id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, \
                 recommendation_type, content, confidence_score, reasoning, latency_ms, outcome_status, created_at, deadline_ms) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.id)
                    .push_bind(r.workspace_id.0)
                    .push_bind(r.agent_id.as_str().to_owned())
                    .push_bind(r.agent_name.clone())
                    .push_bind(r.correlation_id.clone())
                    .push_bind(r.workflow_id.clone())
                    .push_bind(r.recommendation_type.clone())
                    .push_bind(r.content.to_string())
                    .push_bind(r.confidence)
                    .push_bind(r.reasoning.clone())
                    .push_bind(r.latency_ms)
                    .push_bind(r.status.as_str())
                    .push_bind(micros(r.created_at))
                    .push_bind(r.deadline_ms);
            });
            q.build().execute(&mut *tx).await.map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn insert_dead_letters(&self, rows: &[DeadLetter]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO tracker_dead_letters (id, workspace_id, recommendation_id, agent_id, error, payload, failed_at) ",
            );
            q.push_values(chunk, |mut b, d| {
                b.push_bind(Uuid::now_v7())
                    .push_bind(d.workspace_id.0)
                    .push_bind(d.recommendation_id)
                    .push_bind(d.agent_id.as_str().to_owned())
                    .push_bind(d.error.clone())
                    .push_bind(d.payload.clone())
                    .push_bind(micros(d.failed_at));
            });
            q.build().execute(&mut *tx).await.map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn recommendation(
        &self,
        ws: WorkspaceId,
        id: Uuid,
    ) -> Result<Option<Recommendation>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE id = ? AND workspace_id = ?"
        ))
        .bind(id)
        .bind(ws.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(rec_from_row).transpose()
    }

    async fn list_recommendations(
        &self,
        ws: WorkspaceId,
        f: &RecommendationFilter,
    ) -> Result<Vec<Recommendation>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
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
        let rows = q.build().fetch_all(&self.pool).await.map_err(unexpected)?;
        rows.iter().map(rec_from_row).collect()
    }

    async fn workflow_recommendations(
        &self,
        ws: WorkspaceId,
        workflow_id: &str,
    ) -> Result<Vec<Recommendation>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE workspace_id = ? AND workflow_id = ? ORDER BY id"
        ))
        .bind(ws.0)
        .bind(workflow_id)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(rec_from_row).collect()
    }

    async fn apply_verdicts(
        &self,
        ws: WorkspaceId,
        updates: &[VerdictUpdate],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for u in updates {
            sqlx::query(
                "UPDATE agent_recommendations SET outcome_status = ?, outcome_quality = ?, \
                 feedback = COALESCE(?, feedback), evaluated_at = ? WHERE id = ? AND workspace_id = ?",
            )
            .bind(u.verdict.status().as_str())
            .bind(u.quality)
            .bind(u.feedback.clone())
            .bind(micros(u.evaluated_at))
            .bind(u.id)
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn outcome_samples(
        &self,
        ws: WorkspaceId,
        agent: Option<&AgentId>,
    ) -> Result<Vec<OutcomeSample>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, agent_id, agent_name, recommendation_type, confidence_score, outcome_status, outcome_quality, \
             latency_ms, deadline_ms, evaluated_at FROM agent_recommendations \
             WHERE workspace_id = ? AND evaluated_at IS NOT NULL AND outcome_status IN ('approved', 'partial', 'rejected') \
             AND (?2 IS NULL OR agent_id = ?2) ORDER BY evaluated_at, id",
        )
        .bind(ws.0)
        .bind(agent.map(|a| a.as_str().to_owned()))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
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
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO agent_failures (id, workspace_id, agent_id, agent_name, workflow_id, recommendation_type, kind, message, occurred_at) ",
            );
            q.push_values(chunk, |mut b, f| {
                b.push_bind(f.id)
                    .push_bind(ws.0)
                    .push_bind(f.agent_id.as_str().to_owned())
                    .push_bind(f.agent_name.clone())
                    .push_bind(f.workflow_id.clone())
                    .push_bind(f.recommendation_type.clone())
                    .push_bind(f.kind.as_str())
                    .push_bind(f.message.clone())
                    .push_bind(micros(f.occurred_at));
            });
            q.build().execute(&mut *tx).await.map_err(unexpected)?;
        }
        tx.commit().await.map_err(unexpected)
    }

    async fn agent_failures(
        &self,
        ws: WorkspaceId,
        agent: Option<&AgentId>,
    ) -> Result<Vec<AgentFailure>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, workspace_id, agent_id, agent_name, workflow_id, recommendation_type, kind, message, occurred_at \
             FROM agent_failures WHERE workspace_id = ? AND (?2 IS NULL OR agent_id = ?2) ORDER BY occurred_at, id",
        )
        .bind(ws.0)
        .bind(agent.map(|a| a.as_str().to_owned()))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(failure_from_row).collect()
    }

    async fn status_counts(
        &self,
        ws: WorkspaceId,
    ) -> Result<Vec<(AgentId, RecommendationStatus, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent_id, outcome_status, count(*) AS n FROM agent_recommendations WHERE workspace_id = ? GROUP BY agent_id, outcome_status",
        )
        .bind(ws.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(count_from_row).collect()
    }

    async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM workspaces ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }

    async fn create_agent(&self, ws: WorkspaceId, a: &Agent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO agents (workspace_id, id, name, kind, config, enabled, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(ws.0)
        .bind(a.id.as_str())
        .bind(&a.name)
        .bind(&a.kind)
        .bind(a.config.to_string())
        .bind(a.enabled)
        .bind(micros(a.created_at))
        .bind(micros(a.created_at))
        .execute(&self.pool)
        .await
        .map_err(unexpected)?;
        Ok(())
    }

    async fn agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query("SELECT id, name, kind, config, enabled, created_at FROM agents WHERE workspace_id = ? AND id = ?")
            .bind(ws.0)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn agents(&self, ws: WorkspaceId) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query("SELECT id, name, kind, config, enabled, created_at FROM agents WHERE workspace_id = ? ORDER BY id")
            .bind(ws.0)
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn delete_agent(&self, ws: WorkspaceId, id: &AgentId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM agents WHERE workspace_id = ? AND id = ?")
            .bind(ws.0)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_agent_enabled(
        &self,
        ws: WorkspaceId,
        id: &AgentId,
        enabled: bool,
    ) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query(
            "UPDATE agents SET enabled = ?, updated_at = ? WHERE workspace_id = ? AND id = ? \
             RETURNING id, name, kind, config, enabled, created_at",
        )
        .bind(enabled)
        .bind(micros(Utc::now()))
        .bind(ws.0)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn save_trust(
        &self,
        ws: WorkspaceId,
        rows: &[TrustRow],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
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
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
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
        let rows = sqlx::query(
            "SELECT id, workflow_id, agent_id, recommendation_type, confidence_score, outcome_status, \
             CAST(COALESCE(json_extract(content, '$.' || ?2), content) AS TEXT) AS decision, evaluated_at \
             FROM agent_recommendations WHERE workspace_id = ?1 AND evaluated_at IS NOT NULL \
             AND outcome_status IN ('approved', 'partial', 'rejected') AND (?3 IS NULL OR evaluated_at >= ?3) ORDER BY evaluated_at, id",
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

    async fn cycle_count(&self, ws: WorkspaceId) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT count(*) FROM meta_learner_cycles WHERE workspace_id = ? AND status = 'succeeded'")
            .bind(ws.0)
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)
    }

    async fn insert_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO workflow_runs (id, workspace_id, workflow, status, priority, input, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(run.id)
        .bind(run.workspace_id.0)
        .bind(&run.workflow)
        .bind(run.status.as_str())
        .bind(priority_name(run.priority))
        .bind(run.input.to_string())
        .bind(micros(run.created_at))
        .execute(&self.pool)
        .await
        .map_err(unexpected)?;
        Ok(())
    }

    async fn finish_run(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        sqlx::query("UPDATE workflow_runs SET status = ?, result = ?, error = ?, finished_at = ? WHERE workspace_id = ? AND id = ?")
            .bind(run.status.as_str())
            .bind(run.result.as_ref().map(ToString::to_string))
            .bind(&run.error)
            .bind(run.finished_at.map(micros))
            .bind(run.workspace_id.0)
            .bind(run.id)
            .execute(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(())
    }

    async fn interrupt_unfinished(
        &self,
        ws: WorkspaceId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let runs = sqlx::query("UPDATE workflow_runs SET status = 'interrupted', error = ?, finished_at = ? WHERE workspace_id = ? AND status = 'running'")
            .bind(reason)
            .bind(micros(at))
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        let cycles = sqlx::query("UPDATE meta_learner_cycles SET status = 'interrupted', error = ?, finished_at = ? WHERE workspace_id = ? AND status = 'running'")
            .bind(reason)
            .bind(micros(at))
            .bind(ws.0)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok((runs, cycles))
    }

    async fn run(&self, ws: WorkspaceId, id: Uuid) -> Result<Option<WorkflowRun>, StoreError> {
        let row = sqlx::query(
            "SELECT id, workspace_id, workflow, status, priority, input, result, error, created_at, finished_at FROM workflow_runs WHERE workspace_id = ? AND id = ?",
        )
        .bind(ws.0)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        let Some(row) = row else { return Ok(None) };
        let get = || -> Result<WorkflowRun, anyhow::Error> {
            let status: String = row.try_get("status")?;
            let priority: String = row.try_get("priority")?;
            let input: String = row.try_get("input")?;
            let result: Option<String> = row.try_get("result")?;
            let finished: Option<i64> = row.try_get("finished_at")?;
            Ok(WorkflowRun {
                id: row.try_get("id")?,
                workspace_id: WorkspaceId(row.try_get("workspace_id")?),
                workflow: row.try_get("workflow")?,
                status: RunStatus::parse(&status)
                    .ok_or_else(|| anyhow::anyhow!("bad run status {status}"))?,
                priority: Priority::parse("priority", &priority)?,
                input: serde_json::from_str(&input)?,
                result: result.map(|r| serde_json::from_str(&r)).transpose()?,
                error: row.try_get("error")?,
                created_at: from_micros(row.try_get("created_at")?)?,
                finished_at: finished.map(from_micros).transpose()?,
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
impl AdminStore for SqliteStore {
    async fn create_workspace(
        &self,
        ws: WorkspaceId,
        name: &str,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES (?, ?, ?)")
            .bind(ws.0)
            .bind(name)
            .bind(micros(at))
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
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn workspace_for_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>, StoreError> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT workspace_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
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
        "sqlite"
    }
}

pub(super) async fn insert_key(
    tx: &mut Transaction<'static, Sqlite>,
    ws: WorkspaceId,
    key: &NewApiKey,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, workspace_id, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(key.id)
        .bind(ws.0)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(micros(at))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_chunks_cover_every_batch_with_few_distinct_statements() {
        let mut sizes = std::collections::BTreeSet::new();
        for n in 1..=2_000 {
            let (mut rest, mut covered) = (n, 0);
            while rest > 0 {
                let len = insert_chunk_len(rest);
                assert!(len >= 1 && len <= rest && len <= INSERT_CHUNK);
                sizes.insert(len);
                covered += len;
                rest -= len;
            }
            assert_eq!(covered, n);
        }
        assert!(sizes.len() <= 10, "{sizes:?}");
    }
}
