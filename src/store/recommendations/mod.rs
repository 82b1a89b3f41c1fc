//! Recommendations and verdicts ([`RecommendationStore`]): the tracker's bulk
//! inserts, the dead letters of refused rows, verdicts, the outcome samples
//! trust folds, and agents' failed executions.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.

mod postgres;
mod sqlite;

use swarmwise_actors::domain::RecommendationFilter;

const REC_COLUMNS: &str = "id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, recommendation_type, \
     content, confidence_score, reasoning, latency_ms, deadline_ms, outcome_status, outcome_quality, feedback, created_at, evaluated_at, \
     model, prompt_tokens, completion_tokens, cost_usd";

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
