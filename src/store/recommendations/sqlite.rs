//! [`RecommendationStore`] on SQLite. Every query carries `workspace_id = ?`;
//! times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};
use swarmwise_actors::domain::{
    AgentFailure, AgentId, FailureKind, OutcomeSample, Recommendation, RecommendationFilter,
    RecommendationStatus, TokenUsage, Verdict, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::ports::{
    AgentUsage, DeadLetter, RecommendationStore, StoreError, VerdictGroup,
};
use uuid::Uuid;

use super::rollup::RollupDelta;
use super::REC_COLUMNS;
use crate::store::changes::ChangeKind;
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

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

/// The JSON array SQLite builds for one row of a page ([`PageRow`], whose
/// fields it lists in order: serde reads a struct from an array
/// positionally, which costs less on both sides than an object's keys):
/// blobs as hex, reals as text with 17 significant digits (a JSON number
/// from SQLite may round; the text round-trips exactly), the content as
/// the stored JSON text.
const PAGE_ROW: &str = "hex(id), hex(workspace_id), agent_id, agent_name, correlation_id, workflow_id, \
     recommendation_type, content, printf('%!.17g', confidence_score), reasoning, latency_ms, deadline_ms, \
     outcome_status, CASE WHEN outcome_quality IS NULL THEN NULL ELSE printf('%!.17g', outcome_quality) END, \
     feedback, created_at, evaluated_at, model, prompt_tokens, completion_tokens, \
     CASE WHEN cost_usd IS NULL THEN NULL ELSE printf('%!.17g', cost_usd) END";

/// One row of a page as [`PAGE_ROW`] renders it (fields in its order).
#[derive(serde::Deserialize)]
struct PageRow {
    id: String,
    workspace_id: String,
    agent_id: String,
    agent_name: String,
    correlation_id: String,
    workflow_id: String,
    recommendation_type: String,
    content: String,
    confidence_score: String,
    reasoning: Option<String>,
    latency_ms: Option<i64>,
    deadline_ms: Option<i64>,
    outcome_status: String,
    outcome_quality: Option<String>,
    feedback: Option<String>,
    created_at: i64,
    evaluated_at: Option<i64>,
    model: Option<String>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    cost_usd: Option<String>,
}

impl PageRow {
    fn into_recommendation(self) -> Result<Recommendation, StoreError> {
        self.parse().map_err(StoreError::Unexpected)
    }

    /// Moves the strings into the recommendation (no copies per row).
    fn parse(self) -> Result<Recommendation, anyhow::Error> {
        let real = |v: &str| v.parse::<f64>();
        Ok(Recommendation {
            id: Uuid::parse_str(&self.id)?,
            workspace_id: WorkspaceId(Uuid::parse_str(&self.workspace_id)?),
            agent_id: AgentId::parse("agent_id", &self.agent_id)?,
            content: serde_json::from_str(&self.content)?,
            confidence: real(&self.confidence_score)?,
            status: RecommendationStatus::parse("outcome_status", &self.outcome_status)?,
            outcome_quality: self.outcome_quality.as_deref().map(real).transpose()?,
            created_at: from_micros(self.created_at)?,
            evaluated_at: self.evaluated_at.map(from_micros).transpose()?,
            usage: TokenUsage {
                prompt_tokens: tokens(self.prompt_tokens),
                completion_tokens: tokens(self.completion_tokens),
                cost_usd: self.cost_usd.as_deref().map(real).transpose()?,
                model: self.model,
            },
            agent_name: self.agent_name,
            correlation_id: self.correlation_id,
            workflow_id: self.workflow_id,
            recommendation_type: self.recommendation_type,
            reasoning: self.reasoning,
            latency_ms: self.latency_ms,
            deadline_ms: self.deadline_ms,
            feedback: self.feedback,
        })
    }
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

fn usage_from_row(row: &SqliteRow) -> Result<AgentUsage, StoreError> {
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

/// Rows per multi-row INSERT (18 parameters each: 9,000 per statement,
/// well under SQLite's limit of 32,766).
const INSERT_CHUNK: usize = 500;

/// Rows in the next INSERT of a batch with `remaining` rows left: a full
/// chunk, else the largest power of two that fits. sqlx caches each prepared
/// statement on its connection (up to 100 each), and the program of a
/// multi-row INSERT takes about 1 kB per row, so one statement per batch size
/// (1 to 500) cached hundreds of MB under a steady load. With this ladder a
/// connection holds at most 10 insert statements.
pub(super) fn insert_chunk_len(remaining: usize) -> usize {
    if remaining >= INSERT_CHUNK {
        INSERT_CHUNK
    } else {
        remaining.checked_ilog2().map_or(0, |bits| 1 << bits)
    }
}

#[async_trait]
impl RecommendationStore for SqliteStore {
    async fn insert_recommendations(&self, recs: &[Recommendation]) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        // Rendered before the gate: it is held for SQLite's work only.
        let rows = rendered(recs);
        let _turn = self.write_turn("insert_recommendations").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        insert_rows_on(&mut tx, &rows).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn insert_dead_letters(&self, rows: &[DeadLetter]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn("insert_dead_letters").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
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
        // The page comes back as one row holding a JSON array built by
        // SQLite: sqlx-sqlite hands every row (and column) from its worker
        // thread to the caller one by one, which cost more than the query
        // itself for a page of 50. The filters walk the indexes of
        // migration 20261201000008 in id order (tests/api/reads.rs checks
        // the plans). The aggregate takes the rows in the order the
        // subquery yields them (newest first); an `ORDER BY` inside it
        // would copy every rendered row into a sorter first, so the order
        // is checked, and restored if ever needed, below. With a `window`,
        // the innermost subquery walks the leading filter's index (at most
        // `window` rows, a co-routine the outer query stops reading once
        // the page is full) and the other filters apply to its rows; the
        // route uses such a page only when it is full and in order.
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT json_group_array(json_array({PAGE_ROW})) FROM \
             (SELECT {REC_COLUMNS} FROM "
        ));
        let equalities = super::equalities(f);
        if f.window.is_some() {
            q.push(format!("(SELECT {REC_COLUMNS} FROM "));
        }
        q.push("agent_recommendations WHERE workspace_id = ")
            .push_bind(ws.0);
        // `+col`: SQLite may not use that column's index (`equalities`).
        for e in &equalities {
            if f.window.is_some() && !e.indexed {
                continue;
            }
            let plus = if e.indexed { "" } else { "+" };
            q.push(format!(" AND {plus}{} = ", e.column))
                .push_bind(e.value.clone());
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
                .push(") WHERE 1");
            for e in equalities.iter().filter(|e| !e.indexed) {
                q.push(format!(" AND {} = ", e.column))
                    .push_bind(e.value.clone());
            }
            q.push(" LIMIT ").push_bind(i64::from(f.limit)).push(")");
        } else {
            q.push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(f.limit))
                .push(")");
        }
        let page: String = q
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        let rows: Vec<PageRow> = serde_json::from_str(&page)
            .map_err(|e| StoreError::Unexpected(anyhow::anyhow!("page JSON: {e}")))?;
        let mut recs = rows
            .into_iter()
            .map(PageRow::into_recommendation)
            .collect::<Result<Vec<_>, _>>()?;
        // Without a window the LIMIT is inside the ordered subquery, so
        // only the order can differ, and sorting restores it. A windowed
        // page is returned as read: its caller checks the order (SQLite
        // yields a co-routine's rows in its ORDER BY; an outer ORDER BY
        // would sort the whole window first).
        if f.window.is_none() && !recs.is_sorted_by(|a, b| a.id > b.id) {
            recs.sort_unstable_by_key(|r| std::cmp::Reverse(r.id));
        }
        Ok(recs)
    }

    async fn recommendation_scan_floor(
        &self,
        ws: WorkspaceId,
        f: &RecommendationFilter,
        rows: u32,
    ) -> Result<Option<Uuid>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
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
        q.build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .map_err(unexpected)
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

    async fn workflows_recommendations(
        &self,
        ws: WorkspaceId,
        workflow_ids: &[String],
    ) -> Result<Vec<Recommendation>, StoreError> {
        let mut out = Vec::new();
        for chunk in workflow_ids.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {REC_COLUMNS} FROM agent_recommendations WHERE workspace_id = "
            ));
            q.push_bind(ws.0).push(" AND workflow_id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(id);
            }
            q.push(") ORDER BY workflow_id, id");
            let rows = q.build().fetch_all(&self.pool).await.map_err(unexpected)?;
            for r in &rows {
                out.push(rec_from_row(r)?);
            }
        }
        Ok(out)
    }

    async fn apply_verdicts(
        &self,
        ws: WorkspaceId,
        updates: &[VerdictUpdate],
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn("apply_verdicts").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        apply_verdicts_on(&mut tx, &self.origin, ws, updates, &[]).await?;
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
        // Rendered before the gate: it is held for SQLite's work only.
        let inserts: Vec<Vec<Rendered<'_>>> = groups.iter().map(|g| rendered(&g.inserts)).collect();
        let _turn = self.write_turn("apply_verdict_groups").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
        for (g, rows) in groups
            .iter()
            .zip(&inserts)
            .filter(|(g, _)| !g.updates.is_empty() || !g.inserts.is_empty())
        {
            insert_rows_on(&mut tx, rows).await?;
            apply_verdicts_on(&mut tx, &self.origin, g.workspace, &g.updates, &g.inserts).await?;
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
             WHERE workspace_id = ?1 AND evaluated_at IS NOT NULL AND outcome_status IN ('approved', 'partial', 'rejected') \
             AND (?2 IS NULL OR agent_id = ?2) \
             UNION ALL SELECT id, agent_id, agent_name, recommendation_type, confidence_score, outcome_status, outcome_quality, \
             latency_ms, deadline_ms, evaluated_at FROM outcome_digests \
             WHERE workspace_id = ?1 AND (?2 IS NULL OR agent_id = ?2) ORDER BY evaluated_at, id",
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
        let _turn = self.write_turn("insert_failures").await;
        let mut tx = self.writer.begin().await.map_err(unexpected)?;
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
        let agents = crate::store::changes::agent_list(rows.iter().map(|r| &r.agent_id));
        crate::store::changes::sqlite_append(
            &mut tx,
            &self.origin,
            ws,
            ChangeKind::Failures,
            &agents,
        )
        .await?;
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
        // The rollup (see the parent module), not a count of the rows.
        let rows = sqlx::query(
            "SELECT agent_id, outcome_status, n FROM recommendation_rollup WHERE workspace_id = ? AND n > 0",
        )
        .bind(ws.0)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(count_from_row).collect()
    }

    async fn usage_totals(
        &self,
        ws: WorkspaceId,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<AgentUsage>, StoreError> {
        if since.is_none() && until.is_none() {
            // All time: the rollup (see the parent module).
            let rows = sqlx::query(
                "SELECT agent_id, n, prompt_tokens AS prompt, completion_tokens AS completion, \
                 max(cost_usd, 0.0) AS cost, unpriced FROM recommendation_usage_rollup \
                 WHERE workspace_id = ? AND n > 0 ORDER BY agent_id",
            )
            .bind(ws.0)
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
            return rows.iter().map(usage_from_row).collect();
        }
        let rows = sqlx::query(
            "SELECT agent_id, count(*) AS n, \
             COALESCE(SUM(prompt_tokens), 0) AS prompt, COALESCE(SUM(completion_tokens), 0) AS completion, \
             COALESCE(SUM(cost_usd), 0.0) AS cost, \
             SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced \
             FROM agent_recommendations WHERE workspace_id = ?1 \
             AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3) \
             AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL) \
             GROUP BY agent_id ORDER BY agent_id",
        )
        .bind(ws.0)
        .bind(since.map(micros))
        .bind(until.map(micros))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(usage_from_row).collect()
    }
}

/// Writes `updates` of `ws`, their change-feed row and their rollup delta
/// inside the caller's transaction `tx`.
async fn apply_verdicts_on(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    origin: &str,
    ws: WorkspaceId,
    updates: &[VerdictUpdate],
    inserted: &[Recommendation],
) -> Result<(), StoreError> {
    // One update per row, the last one given: `UPDATE … FROM` with two
    // source rows for one target applies either, and the rollup must know
    // which status the row ends with.
    let updates = last_per_id(updates);
    // The feed row first: a write as the first statement takes the write
    // lock at once (a deferred transaction that reads first may fail to
    // upgrade under WAL); its kind and agents are filled in below.
    let seq =
        crate::store::changes::sqlite_append(tx, origin, ws, ChangeKind::Outcomes, &[]).await?;
    // Each row's move, grouped: (agent, status before, status after,
    // rows, any already evaluated). Whose rows these are, and whether any
    // was already evaluated (then this is a revision: feedback overriding
    // a verdict), for the feed; the moves, for the rollup.
    let mut moves: Vec<(String, String, String, i64, bool)> = Vec::new();
    for chunk in updates.chunks(INSERT_CHUNK) {
        // `CROSS JOIN`: SQLite keeps the VALUES as the outer loop and looks
        // each row up by primary key; `+workspace_id`: without the unary
        // plus SQLite (no statistics) may plan this on
        // idx_recommendations_agent and scan the whole workspace.
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT r.agent_id, r.outcome_status, v.column2, count(*), max(r.evaluated_at IS NOT NULL) FROM (",
        );
        q.push_values(chunk, |mut b, u| {
            b.push_bind(u.id).push_bind(u.verdict.status().as_str());
        });
        q.push(
            ") AS v CROSS JOIN agent_recommendations AS r ON r.id = v.column1 AND +r.workspace_id = ",
        )
        .push_bind(ws.0)
        .push(" GROUP BY r.agent_id, r.outcome_status, v.column2");
        moves.extend(
            q.build_query_as::<(String, String, String, i64, bool)>()
                .fetch_all(&mut **tx)
                .await
                .map_err(unexpected)?,
        );
    }
    // One statement per chunk: UPDATE … FROM VALUES (SQLite 3.33 and later).
    for chunk in updates.chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "UPDATE agent_recommendations SET outcome_status = v.column2, outcome_quality = v.column3, \
             feedback = COALESCE(v.column4, feedback), evaluated_at = v.column5 FROM (",
        );
        q.push_values(chunk, |mut b, u| {
            b.push_bind(u.id)
                .push_bind(u.verdict.status().as_str())
                .push_bind(u.quality)
                .push_bind(u.feedback.clone())
                .push_bind(micros(u.evaluated_at));
        });
        // `+`: by primary key (see above), never a scan of the workspace.
        q.push(") AS v WHERE agent_recommendations.id = v.column1 AND +agent_recommendations.workspace_id = ")
            .push_bind(ws.0);
        q.build().execute(&mut **tx).await.map_err(unexpected)?;
    }
    let mut delta = RollupDelta::default();
    // The agents of rows inserted judged are named too.
    let mut agents: std::collections::BTreeSet<&str> =
        inserted.iter().map(|r| r.agent_id.as_str()).collect();
    let mut revised = false;
    for (agent, before, after, n, was_evaluated) in &moves {
        agents.insert(agent.as_str());
        revised |= was_evaluated;
        if before != after {
            let status = |s: &str| {
                RecommendationStatus::parse("outcome_status", s)
                    .map_err(|e| StoreError::Unexpected(e.into()))
            };
            delta.add_count(ws, agent, status(before)?, -n);
            delta.add_count(ws, agent, status(after)?, *n);
        }
    }
    delta.write_sqlite(tx).await?;
    if agents.is_empty() {
        sqlx::query("DELETE FROM change_feed WHERE seq = ?")
            .bind(seq)
            .execute(&mut **tx)
            .await
            .map_err(unexpected)?;
    } else {
        let kind = if revised {
            ChangeKind::Verdicts
        } else {
            ChangeKind::Outcomes
        };
        let agents: Vec<&str> = agents.into_iter().collect();
        sqlx::query("UPDATE change_feed SET kind = ?, agents = ? WHERE seq = ?")
            .bind(kind.as_str())
            .bind(serde_json::to_string(&agents).unwrap_or_else(|_| "[]".into()))
            .bind(seq)
            .execute(&mut **tx)
            .await
            .map_err(unexpected)?;
    }
    Ok(())
}

/// `updates` with only the last update of each id, in their order; borrowed
/// when no id repeats (the usual case).
fn last_per_id(updates: &[VerdictUpdate]) -> std::borrow::Cow<'_, [VerdictUpdate]> {
    let mut seen = std::collections::HashSet::with_capacity(updates.len());
    if updates.iter().all(|u| seen.insert(u.id)) {
        return std::borrow::Cow::Borrowed(updates);
    }
    seen.clear();
    let mut kept: Vec<VerdictUpdate> = updates
        .iter()
        .rev()
        .filter(|u| seen.insert(u.id))
        .cloned()
        .collect();
    kept.reverse();
    std::borrow::Cow::Owned(kept)
}

/// A recommendation with its `content` as the JSON text stored, rendered
/// before the caller takes the write gate ([`rendered`]).
type Rendered<'a> = (&'a Recommendation, String);

fn rendered(recs: &[Recommendation]) -> Vec<Rendered<'_>> {
    recs.iter().map(|r| (r, r.content.to_string())).collect()
}

/// Inserts `rows` (any workspaces) as they are, verdicts included, in
/// multi-row statements of [`insert_chunk_len`] rows, and adds them to the
/// rollup.
async fn insert_rows_on(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    rows: &[Rendered<'_>],
) -> Result<(), StoreError> {
    let mut rest = rows;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(insert_chunk_len(rest.len()));
        rest = tail;
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO agent_recommendations (id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, \
             recommendation_type, content, confidence_score, reasoning, latency_ms, outcome_status, created_at, deadline_ms, \
             model, prompt_tokens, completion_tokens, cost_usd, outcome_quality, feedback, evaluated_at) ",
        );
        q.push_values(chunk, |mut b, (r, content)| {
            b.push_bind(r.id)
                .push_bind(r.workspace_id.0)
                .push_bind(r.agent_id.as_str())
                .push_bind(r.agent_name.as_str())
                .push_bind(r.correlation_id.as_str())
                .push_bind(r.workflow_id.as_str())
                .push_bind(r.recommendation_type.as_str())
                .push_bind(content.as_str())
                .push_bind(r.confidence)
                .push_bind(r.reasoning.as_deref())
                .push_bind(r.latency_ms)
                .push_bind(r.status.as_str())
                .push_bind(micros(r.created_at))
                .push_bind(r.deadline_ms)
                .push_bind(r.usage.model.as_deref())
                .push_bind(r.usage.prompt_tokens.map(stored_tokens))
                .push_bind(r.usage.completion_tokens.map(stored_tokens))
                .push_bind(r.usage.cost_usd)
                .push_bind(r.outcome_quality)
                .push_bind(r.feedback.as_deref())
                .push_bind(r.evaluated_at.map(micros));
        });
        q.build().execute(&mut **tx).await.map_err(unexpected)?;
    }
    RollupDelta::of_inserts(rows.iter().map(|(r, _)| *r), stored_tokens)
        .write_sqlite(tx)
        .await
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

    #[test]
    fn a_repeated_id_keeps_its_last_update_in_order() {
        let (x, y) = (Uuid::now_v7(), Uuid::now_v7());
        let u = |id, verdict| VerdictUpdate {
            id,
            verdict,
            quality: 50.0,
            feedback: None,
            evaluated_at: chrono::Utc::now(),
        };
        let once = [u(x, Verdict::Approved), u(y, Verdict::Rejected)];
        assert!(matches!(last_per_id(&once), std::borrow::Cow::Borrowed(_)));
        let twice = [
            u(x, Verdict::Approved),
            u(y, Verdict::Rejected),
            u(x, Verdict::Partial),
        ];
        let kept = last_per_id(&twice);
        assert_eq!(
            kept.iter().map(|u| (u.id, u.verdict)).collect::<Vec<_>>(),
            [(y, Verdict::Rejected), (x, Verdict::Partial)]
        );
    }
}
