//! Learning cycles and patterns ([`LearningStore`]): the outcomes a cycle
//! mines, the patterns and rules it keeps, its reports and the cross-node
//! cycle lock (a PostgreSQL advisory lock; SQLite is single-node).
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.

mod postgres;
mod sqlite;

use swarmwise_actors::learner::agreement::PendingDecision;
use swarmwise_actors::ports::StoreError;

const PATTERN_COLUMNS: &str = "id, pattern_key, category, pattern_name, description, status, support, success_rate, ci_low, ci_high, \
     p_value, q_value, lift, agent_ids, details, first_seen, last_confirmed, retired_at, discovered_through, misses";
const CYCLE_COLUMNS: &str = "id, workspace_id, status, reason, started_at, finished_at, recommendations_processed, patterns_discovered, \
     patterns_confirmed, patterns_retired, rules_updated, model_accuracy, coverage, insights, error";

/// A pattern category's database name.
fn category_name(c: swarmwise_actors::learner::patterns::Category) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A pattern status from its database name.
fn pattern_status(raw: &str) -> anyhow::Result<swarmwise_actors::learner::cycle::PatternStatus> {
    swarmwise_actors::learner::cycle::PatternStatus::parse(raw)
        .ok_or_else(|| anyhow::anyhow!("bad pattern status {raw}"))
}

/// A `pending_decisions` row (both dialects select the same text columns).
fn pending_decision<R>(r: &R) -> Result<PendingDecision, StoreError>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
{
    let get = || -> Result<PendingDecision, anyhow::Error> {
        let agent: String = r.try_get("agent_id")?;
        Ok(PendingDecision {
            workflow_id: r.try_get("workflow_id")?,
            agent_id: swarmwise_actors::domain::AgentId::parse("agent_id", &agent)?,
            recommendation_type: r.try_get("recommendation_type")?,
            decision: r.try_get("decision")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}
