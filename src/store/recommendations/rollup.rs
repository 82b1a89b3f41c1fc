//! The rollup's deltas computed in Rust, for SQLite's inserts and verdicts
//! (PostgreSQL computes them in the writing statement itself, from what it
//! inserted or updated: see `postgres.rs`). One delta per write, summed
//! per group, written as one upsert per group in the caller's transaction;
//! see the parent module for the invariant.

use std::collections::BTreeMap;

use sqlx::{QueryBuilder, Sqlite, Transaction};
use swarmwise_actors::domain::{Recommendation, RecommendationStatus, WorkspaceId};
use swarmwise_actors::ports::StoreError;

use super::{ROLLUP_UPSERT, USAGE_ROLLUP_COLUMNS, USAGE_UPSERT};
use crate::store::unexpected;

/// Changes to one agent's usage totals.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct UsageDelta {
    n: i64,
    prompt: i64,
    completion: i64,
    cost: f64,
    unpriced: i64,
}

/// One write's change to the rollup, per group. Agent ids borrow from the
/// rows being written.
#[derive(Debug, Default)]
pub(super) struct RollupDelta<'a> {
    counts: BTreeMap<(WorkspaceId, &'a str, &'static str), i64>,
    usage: BTreeMap<(WorkspaceId, &'a str), UsageDelta>,
}

impl<'a> RollupDelta<'a> {
    /// The delta of inserting `recs` as SQLite stores them (`stored` maps a
    /// token count to its stored value).
    pub(super) fn of_inserts(
        recs: impl IntoIterator<Item = &'a Recommendation>,
        stored: fn(u64) -> i64,
    ) -> Self {
        let mut d = Self::default();
        for r in recs {
            d.add_count(r.workspace_id, r.agent_id.as_str(), r.status, 1);
            let u = &r.usage;
            if u.prompt_tokens.is_none() && u.completion_tokens.is_none() {
                continue;
            }
            // SQLite stores a NaN as NULL: count it as unpriced, as stored.
            let cost = u.cost_usd.filter(|c| !c.is_nan());
            let e = d
                .usage
                .entry((r.workspace_id, r.agent_id.as_str()))
                .or_default();
            e.n += 1;
            e.prompt += u.prompt_tokens.map_or(0, stored);
            e.completion += u.completion_tokens.map_or(0, stored);
            e.cost += cost.unwrap_or(0.0);
            e.unpriced += i64::from(cost.is_none());
        }
        d
    }

    /// Adds `n` rows (negative: removes) to `agent`'s count of `status`.
    pub(super) fn add_count(
        &mut self,
        ws: WorkspaceId,
        agent: &'a str,
        status: RecommendationStatus,
        n: i64,
    ) {
        *self.counts.entry((ws, agent, status.as_str())).or_default() += n;
    }

    /// Writes the delta inside `tx`: one upsert per group that changed, in
    /// key order, a statement per chunk of groups.
    pub(super) async fn write_sqlite(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
    ) -> Result<(), StoreError> {
        let counts: Vec<_> = self.counts.iter().filter(|(_, n)| **n != 0).collect();
        let mut rest = counts.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(super::sqlite::insert_chunk_len(rest.len()));
            rest = tail;
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO recommendation_rollup (workspace_id, agent_id, outcome_status, n) ",
            );
            q.push_values(chunk, |mut b, ((ws, agent, status), n)| {
                b.push_bind(ws.0)
                    .push_bind(*agent)
                    .push_bind(*status)
                    .push_bind(**n);
            });
            q.push(ROLLUP_UPSERT);
            q.build().execute(&mut **tx).await.map_err(unexpected)?;
        }
        let usage: Vec<_> = self
            .usage
            .iter()
            .filter(|(_, u)| **u != UsageDelta::default())
            .collect();
        let mut rest = usage.as_slice();
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(super::sqlite::insert_chunk_len(rest.len()));
            rest = tail;
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "INSERT INTO recommendation_usage_rollup ({USAGE_ROLLUP_COLUMNS}) "
            ));
            q.push_values(chunk, |mut b, ((ws, agent), u)| {
                b.push_bind(ws.0)
                    .push_bind(*agent)
                    .push_bind(u.n)
                    .push_bind(u.prompt)
                    .push_bind(u.completion)
                    .push_bind(u.cost)
                    .push_bind(u.unpriced);
            });
            q.push(USAGE_UPSERT);
            q.build().execute(&mut **tx).await.map_err(unexpected)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use swarmwise_actors::domain::{AgentId, TokenUsage};

    fn rec(ws: WorkspaceId, agent: &str, usage: TokenUsage) -> Recommendation {
        Recommendation {
            id: uuid::Uuid::now_v7(),
            workspace_id: ws,
            agent_id: AgentId::parse("a", agent).unwrap(),
            agent_name: agent.into(),
            correlation_id: "c".into(),
            workflow_id: "w".into(),
            recommendation_type: "t".into(),
            content: serde_json::json!({}),
            confidence: 0.5,
            reasoning: None,
            latency_ms: None,
            deadline_ms: None,
            status: RecommendationStatus::Pending,
            outcome_quality: None,
            feedback: None,
            created_at: chrono::Utc::now(),
            evaluated_at: None,
            usage,
        }
    }

    #[test]
    fn inserts_sum_per_group_and_count_usage_only_where_reported() {
        let (a, b) = (
            WorkspaceId(uuid::Uuid::now_v7()),
            WorkspaceId(uuid::Uuid::now_v7()),
        );
        let priced = TokenUsage {
            model: Some("m".into()),
            prompt_tokens: Some(10),
            completion_tokens: None,
            cost_usd: Some(0.25),
        };
        let unpriced = TokenUsage {
            cost_usd: None,
            completion_tokens: Some(5),
            ..priced.clone()
        };
        let nan = TokenUsage {
            cost_usd: Some(f64::NAN),
            ..priced.clone()
        };
        let recs = vec![
            rec(a, "x", priced.clone()),
            rec(a, "x", unpriced),
            rec(a, "x", nan),
            rec(a, "y", TokenUsage::default()),
            rec(b, "x", priced),
        ];
        let d = RollupDelta::of_inserts(&recs, |n| n as i64);
        assert_eq!(d.counts.get(&(a, "x", "pending")), Some(&3));
        assert_eq!(d.counts.get(&(a, "y", "pending")), Some(&1));
        assert_eq!(d.counts.get(&(b, "x", "pending")), Some(&1));
        assert_eq!(d.counts.len(), 3);
        assert_eq!(
            d.usage.get(&(a, "x")),
            Some(&UsageDelta {
                n: 3,
                prompt: 30,
                completion: 5,
                cost: 0.25,
                unpriced: 2
            })
        );
        assert!(!d.usage.contains_key(&(a, "y")));
        assert_eq!(d.usage.get(&(b, "x")).map(|u| u.n), Some(1));
    }
}
