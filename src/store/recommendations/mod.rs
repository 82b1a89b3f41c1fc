//! Recommendations and verdicts ([`RecommendationStore`]): the tracker's bulk
//! inserts, the dead letters of refused rows, verdicts, the outcome samples
//! trust folds, and agents' failed executions.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.

mod postgres;
mod sqlite;

const REC_COLUMNS: &str = "id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, recommendation_type, \
     content, confidence_score, reasoning, latency_ms, deadline_ms, outcome_status, outcome_quality, feedback, created_at, evaluated_at, \
     model, prompt_tokens, completion_tokens, cost_usd";
