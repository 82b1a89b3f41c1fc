//! Recommendations and verdicts ([`RecommendationStore`]): the tracker's bulk
//! inserts, the dead letters of refused rows, verdicts, the outcome samples
//! trust folds, and agents' failed executions.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists, the rollup's
//! upserts) lives here.
//!
//! ## The rollup
//!
//! Per-agent counts by status and all-time token and cost totals
//! (`status_counts`, `usage_totals` without a time range) read
//! `recommendation_rollup` and `recommendation_usage_rollup` (migration
//! 20261201000010), not the rows: counting a workspace's rows on every
//! metrics request took 0.75 s at a million rows. Invariant: each rollup
//! table equals the `GROUP BY` over `agent_recommendations`. Every write to
//! the rows adds its delta in the same transaction, one upsert per distinct
//! group ([`ROLLUP_UPSERT`], [`USAGE_UPSERT`]): the inserts here, the
//! verdicts here (from each row's status before and after), retention
//! (`store/retention`), and a deleted workspace's rows go by cascade.

mod postgres;
mod rollup;
mod sqlite;

use swarmwise_actors::domain::RecommendationFilter;

const REC_COLUMNS: &str = "id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, recommendation_type, \
     content, confidence_score, reasoning, latency_ms, deadline_ms, outcome_status, outcome_quality, feedback, created_at, evaluated_at, \
     model, prompt_tokens, completion_tokens, cost_usd";

/// The tail of an `INSERT INTO recommendation_rollup (workspace_id,
/// agent_id, outcome_status, n) ...` that adds a delta to a group (both
/// dialects).
pub(in crate::store) const ROLLUP_UPSERT: &str =
    " ON CONFLICT (workspace_id, agent_id, outcome_status) DO UPDATE SET n = recommendation_rollup.n + excluded.n";

/// The column list of `recommendation_usage_rollup` in the order its
/// inserts give them.
pub(in crate::store) const USAGE_ROLLUP_COLUMNS: &str =
    "workspace_id, agent_id, n, prompt_tokens, completion_tokens, cost_usd, unpriced";

/// The tail of an `INSERT INTO recommendation_usage_rollup
/// ({USAGE_ROLLUP_COLUMNS}) ...` that adds a delta to an agent's totals
/// (both dialects). The cost is a running float sum: when the group's last
/// row goes it is set to exactly 0 rather than left at a rounding residue.
pub(in crate::store) const USAGE_UPSERT: &str =
    " ON CONFLICT (workspace_id, agent_id) DO UPDATE SET \
     n = recommendation_usage_rollup.n + excluded.n, \
     prompt_tokens = recommendation_usage_rollup.prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = recommendation_usage_rollup.completion_tokens + excluded.completion_tokens, \
     cost_usd = CASE WHEN recommendation_usage_rollup.n + excluded.n = 0 THEN 0 \
     ELSE recommendation_usage_rollup.cost_usd + excluded.cost_usd END, \
     unpriced = recommendation_usage_rollup.unpriced + excluded.unpriced";

/// One equality filter of a list page: its column, its value, and whether
/// the page may walk that column's index.
pub(super) struct Equality {
    pub(super) column: &'static str,
    pub(super) value: String,
    pub(super) indexed: bool,
}

/// The equality filters of `GET /recommendations`, the leading one first.
/// The leading filter is agent, else type, else status: a page of combined
/// filters ([`RecommendationFilter::combines_filters`]) measures its scan
/// window on that filter's index and must walk only it (`indexed` is false
/// for the others, which each backend then writes so that its planner
/// cannot use their indexes over the same id range, which the window does
/// not bound). A workflow filter is always indexed.
pub(super) fn equalities(f: &RecommendationFilter) -> Vec<Equality> {
    let windowed = f.combines_filters();
    let mut out: Vec<Equality> = [
        (
            "agent_id",
            f.agent_id.as_ref().map(|a| a.as_str().to_owned()),
        ),
        ("recommendation_type", f.recommendation_type.clone()),
        ("outcome_status", f.status.map(|s| s.as_str().to_owned())),
    ]
    .into_iter()
    .filter_map(|(column, value)| value.map(|value| (column, value)))
    .enumerate()
    .map(|(i, (column, value))| Equality {
        column,
        value,
        indexed: !windowed || i == 0,
    })
    .collect();
    if let Some(w) = &f.workflow_id {
        out.push(Equality {
            column: "workflow_id",
            value: w.clone(),
            indexed: true,
        });
    }
    out
}
