//! [`RecommendationStore`] on PostgreSQL. Every workspace-scoped query runs in a
//! transaction scoped to its workspace (row-level security).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row, Transaction};
use swarmwise_actors::domain::{
    AgentFailure, AgentId, FailureKind, OutcomeSample, Recommendation, RecommendationFilter,
    RecommendationStatus, TokenUsage, Verdict, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::ports::{
    AgentUsage, DeadLetter, RecommendationStore, StoreError, VerdictGroup,
};
use uuid::Uuid;

use super::{REC_COLUMNS, ROLLUP_UPSERT, USAGE_ROLLUP_COLUMNS, USAGE_UPSERT};
use crate::store::changes::ChangeKind;
use crate::store::postgres::{set_workspace, PgStore};
use crate::store::unexpected;

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
            usage: TokenUsage {
                model: row.try_get("model")?,
                prompt_tokens: tokens(row.try_get("prompt_tokens")?),
                completion_tokens: tokens(row.try_get("completion_tokens")?),
                cost_usd: row.try_get("cost_usd")?,
            },
        })
    };
    get().map_err(StoreError::Unexpected)
}

/// A stored token count (the schema keeps it in 0..=10^9).
fn tokens(n: Option<i64>) -> Option<u64> {
    n.and_then(|n| u64::try_from(n).ok())
}

/// A token count as stored (at most 10^9 once validated; saturating so a
/// value past `i64` is refused by the column's CHECK, not wrapped).
fn stored_tokens(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn usage_from_row(row: &PgRow) -> Result<AgentUsage, StoreError> {
    let get = || -> Result<AgentUsage, anyhow::Error> {
        let agent: String = row.try_get("agent_id")?;
        let count =
            |c: &str| -> Result<u64, anyhow::Error> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
        Ok(AgentUsage {
            agent_id: AgentId::parse("agent_id", &agent)?,
            recommendations: count("n")?,
            prompt_tokens: count("prompt")?,
            completion_tokens: count("completion")?,
            cost_usd: row.try_get("cost")?,
            unpriced: count("unpriced")?,
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
impl RecommendationStore for PgStore {
    async fn insert_recommendations(&self, recs: &[Recommendation]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for (ws, rows) in by_workspace(recs, |r| r.workspace_id) {
            set_workspace(&mut tx, ws).await?;
            insert_rows_in(&mut tx, ws, &rows).await?;
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
        // With a `window`, the inner query walks the leading filter's index
        // (at most `window` rows) and the outer one applies the other
        // filters to its rows in that order, so the plan stops reading once
        // the page is full.
        let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {REC_COLUMNS} FROM "));
        let equalities = super::equalities(f);
        if f.window.is_some() {
            q.push(format!("(SELECT {REC_COLUMNS} FROM "));
        }
        q.push("agent_recommendations WHERE workspace_id = ")
            .push_bind(ws.0);
        // `(col || '')`: the planner cannot use that column's index
        // (`equalities`).
        for e in &equalities {
            if e.indexed {
                q.push(format!(" AND {} = ", e.column));
            } else if f.window.is_some() {
                continue;
            } else {
                q.push(format!(" AND ({} || '') = ", e.column));
            }
            q.push_bind(e.value.clone());
        }
        if let Some(c) = f.before {
            q.push(" AND id < ").push_bind(c);
        }
        if let Some(c) = f.not_before {
            q.push(" AND id >= ").push_bind(c);
        }
        if let Some(w) = f.window {
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(w))
                .push(") AS w WHERE true");
            for e in equalities.iter().filter(|e| !e.indexed) {
                q.push(format!(" AND {} = ", e.column))
                    .push_bind(e.value.clone());
            }
        }
        // With a window the planner keeps the subquery's order: no Sort
        // node (tests/api/reads.rs checks the plan).
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(&mut *tx).await.map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(rec_from_row).collect()
    }

    async fn recommendation_scan_floor(
        &self,
        ws: WorkspaceId,
        f: &RecommendationFilter,
        rows: u32,
    ) -> Result<Option<Uuid>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id FROM agent_recommendations WHERE workspace_id = ",
        );
        q.push_bind(ws.0);
        // The leading filter only (the first of `equalities`).
        if let Some(e) = super::equalities(f).into_iter().next() {
            q.push(format!(" AND {} = ", e.column)).push_bind(e.value);
        }
        if let Some(c) = f.before {
            q.push(" AND id < ").push_bind(c);
        }
        q.push(" ORDER BY id DESC LIMIT 1 OFFSET ")
            .push_bind(i64::from(rows.max(1)) - 1);
        let floor = q
            .build_query_scalar()
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        Ok(floor)
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

    async fn workflows_recommendations(
        &self,
        ws: WorkspaceId,
        workflow_ids: &[String],
    ) -> Result<Vec<Recommendation>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(&format!(
            "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE workspace_id = $1 AND workflow_id = ANY($2) ORDER BY workflow_id, id"
        ))
        .bind(ws.0)
        .bind(workflow_ids)
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
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.scoped(ws).await?;
        apply_verdicts_in(&mut tx, &self.origin, ws, updates, &[]).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn apply_verdict_groups(&self, groups: &[VerdictGroup]) -> Result<(), StoreError> {
        if groups
            .iter()
            .all(|g| g.updates.is_empty() && g.inserts.is_empty())
        {
            return Ok(());
        }
        VerdictGroup::check_inserts(groups)?;
        // In workspace order (stable: a workspace's groups keep theirs), as
        // the inserts, so two transactions take rollup rows in one order.
        let mut ordered: Vec<&VerdictGroup> = groups
            .iter()
            .filter(|g| !g.updates.is_empty() || !g.inserts.is_empty())
            .collect();
        ordered.sort_by_key(|g| g.workspace);
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for g in ordered {
            set_workspace(&mut tx, g.workspace).await?;
            if !g.inserts.is_empty() {
                let rows: Vec<&Recommendation> = g.inserts.iter().collect();
                insert_rows_in(&mut tx, g.workspace, &rows).await?;
            }
            apply_verdicts_in(&mut tx, &self.origin, g.workspace, &g.updates, &g.inserts).await?;
        }
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
             AND ($2::text IS NULL OR agent_id = $2) \
             UNION ALL SELECT id, agent_id, agent_name, recommendation_type, confidence_score, outcome_status, outcome_quality, \
             latency_ms, deadline_ms, evaluated_at FROM outcome_digests \
             WHERE workspace_id = $1 AND ($2::text IS NULL OR agent_id = $2) ORDER BY evaluated_at, id",
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
        let agents = crate::store::changes::agent_list(rows.iter().map(|r| &r.agent_id));
        crate::store::changes::pg_append(&mut tx, &self.origin, ws, ChangeKind::Failures, &agents)
            .await?;
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
        // The rollup (see the parent module), not a count of the rows.
        let rows = sqlx::query(
            "SELECT agent_id, outcome_status, n FROM recommendation_rollup WHERE workspace_id = $1 AND n > 0",
        )
        .bind(ws.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(count_from_row).collect()
    }

    async fn usage_totals(
        &self,
        ws: WorkspaceId,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<AgentUsage>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        if since.is_none() && until.is_none() {
            // All time: the rollup (see the parent module).
            let rows = sqlx::query(
                "SELECT agent_id, n, prompt_tokens AS prompt, completion_tokens AS completion, \
                 GREATEST(cost_usd, 0) AS cost, unpriced FROM recommendation_usage_rollup \
                 WHERE workspace_id = $1 AND n > 0 ORDER BY agent_id",
            )
            .bind(ws.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(unexpected)?;
            tx.commit().await.map_err(unexpected)?;
            return rows.iter().map(usage_from_row).collect();
        }
        let rows = sqlx::query(
            "SELECT agent_id, count(*)::int8 AS n, \
             COALESCE(SUM(prompt_tokens), 0)::int8 AS prompt, COALESCE(SUM(completion_tokens), 0)::int8 AS completion, \
             COALESCE(SUM(cost_usd), 0)::float8 AS cost, \
             count(*) FILTER (WHERE cost_usd IS NULL)::int8 AS unpriced \
             FROM agent_recommendations WHERE workspace_id = $1 \
             AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at < $3) \
             AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL) \
             GROUP BY agent_id ORDER BY agent_id",
        )
        .bind(ws.0)
        .bind(since)
        .bind(until)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter().map(usage_from_row).collect()
    }
}

/// Writes `updates` of `ws`, the change-feed row naming the agents whose
/// trust changed and the rollup's delta, in one statement inside the
/// caller's transaction `tx` (scoped to `ws`). `o` locks the rows first and
/// reads them as they are (a `FOR UPDATE` read sees a concurrent verdict
/// that committed meanwhile; a plain self-join would see the statement's
/// snapshot and count a move from a status the row no longer had): each
/// row's status before ('verdicts' when one was already evaluated) and
/// `RETURNING` its status after.
/// The feed row also names the agents of `inserted` (rows just inserted
/// judged, [`insert_rows_in`], which counted them in the rollup).
async fn apply_verdicts_in(
    tx: &mut Transaction<'static, Postgres>,
    origin: &str,
    ws: WorkspaceId,
    updates: &[VerdictUpdate],
    inserted: &[Recommendation],
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "WITH o AS MATERIALIZED (SELECT id, outcome_status, evaluated_at FROM agent_recommendations \
         WHERE workspace_id = $6 AND id = ANY($1) ORDER BY id FOR UPDATE), \
         upd AS (UPDATE agent_recommendations AS r SET outcome_status = v.status, outcome_quality = v.quality, \
         feedback = COALESCE(v.feedback, r.feedback), evaluated_at = v.at \
         FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::text[], $5::timestamptz[]) AS v(id, status, quality, feedback, at), o \
         WHERE r.id = v.id AND r.workspace_id = $6 AND o.id = r.id \
         RETURNING r.agent_id, o.outcome_status AS was, r.outcome_status AS became, o.evaluated_at IS NOT NULL AS revised), \
         moved AS (INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n) \
         SELECT $6, agent_id, status, sum(d) FROM ( \
         SELECT agent_id, was AS status, -1 AS d FROM upd WHERE was <> became \
         UNION ALL SELECT agent_id, became, 1 FROM upd WHERE was <> became) m \
         GROUP BY agent_id, status HAVING sum(d) <> 0 ORDER BY agent_id, status{ROLLUP_UPSERT}) \
         INSERT INTO change_feed (workspace_id, origin, kind, agents) \
         SELECT $6, $7, CASE WHEN bool_or(revised) THEN 'verdicts' ELSE 'outcomes' END, \
         array_agg(DISTINCT agent_id ORDER BY agent_id) \
         FROM (SELECT agent_id, revised FROM upd UNION ALL SELECT a, false FROM UNNEST($8::text[]) AS a) AS x \
         HAVING count(*) > 0",
    ))
    .bind(updates.iter().map(|u| u.id).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.verdict.status().as_str().to_owned()).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.quality).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.feedback.clone()).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.evaluated_at).collect::<Vec<_>>())
    .bind(ws.0)
    .bind(origin)
    .bind(inserted.iter().map(|r| r.agent_id.as_str().to_owned()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(())
}

/// Inserts `rows` of workspace `ws` as they are, verdicts included, and
/// adds them to the rollup, in one statement (the transaction is scoped to
/// `ws`; see the parent module).
async fn insert_rows_in(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    rows: &[&Recommendation],
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "WITH ins AS (INSERT INTO agent_recommendations (id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, \
         recommendation_type, content, confidence_score, reasoning, latency_ms, created_at, deadline_ms, \
         model, prompt_tokens, completion_tokens, cost_usd, outcome_status, outcome_quality, feedback, evaluated_at) \
         SELECT t.id, $2, t.agent_id, t.agent_name, t.correlation_id, t.workflow_id, t.rtype, t.content::jsonb, \
         t.confidence, t.reasoning, t.latency, t.created_at, t.deadline, t.model, t.prompt, t.completion, t.cost, \
         t.status, t.quality, t.feedback, t.at \
         FROM UNNEST($1::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
         $9::float8[], $10::text[], $11::int8[], $12::timestamptz[], $13::int8[], \
         $14::text[], $15::int8[], $16::int8[], $17::float8[], $18::text[], $19::float8[], $20::text[], $21::timestamptz[]) \
         AS t(id, agent_id, agent_name, correlation_id, workflow_id, rtype, content, confidence, reasoning, latency, created_at, deadline, \
         model, prompt, completion, cost, status, quality, feedback, at) \
         RETURNING agent_id, outcome_status, prompt_tokens, completion_tokens, cost_usd), \
         counted AS (INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n) \
         SELECT $2::uuid, agent_id, outcome_status, count(*) FROM ins \
         GROUP BY agent_id, outcome_status ORDER BY agent_id, outcome_status{ROLLUP_UPSERT}) \
         INSERT INTO recommendation_usage_rollup ({USAGE_ROLLUP_COLUMNS}) \
         SELECT $2::uuid, agent_id, count(*), COALESCE(sum(prompt_tokens), 0)::int8, \
         COALESCE(sum(completion_tokens), 0)::int8, COALESCE(sum(cost_usd), 0)::float8, \
         count(*) FILTER (WHERE cost_usd IS NULL) FROM ins \
         WHERE prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL \
         GROUP BY agent_id ORDER BY agent_id{USAGE_UPSERT}",
    ))
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
    .bind(rows.iter().map(|r| r.usage.model.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.usage.prompt_tokens.map(stored_tokens)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.usage.completion_tokens.map(stored_tokens)).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.usage.cost_usd).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status.as_str().to_owned()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.outcome_quality).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.feedback.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.evaluated_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(())
}
