//! Retention ([`RetentionStore`]): removing (or archiving) old settled
//! recommendations in batches, each evaluated one leaving its outcome digest
//! (`outcome_digests`) in the same transaction, so the union that trust
//! (`outcome_samples`) and pattern mining (`outcome_records`) read is the
//! same before and after. Pending recommendations are never removed (an
//! outcome may still arrive for them). Dead letters older than the cutoff
//! are purged by workspace too. The job that drives it is
//! `swarmwise_actors::retention`.
//!
//! [`RetentionStore`]: swarmwise_actors::ports::RetentionStore

mod postgres;
mod sqlite;

/// The columns of `agent_recommendations` that the archive copies
/// (`agent_recommendations_archive` adds `archived_at`).
pub(super) const ARCHIVE_COLUMNS: &str = "id, workspace_id, agent_id, agent_name, correlation_id, workflow_id, recommendation_type, content, \
     confidence_score, reasoning, latency_ms, outcome_status, outcome_quality, feedback, created_at, evaluated_at, deadline_ms";

/// The digest's columns, in `outcome_digests` order, bar `decision` and `removed_at`.
pub(super) const DIGEST_COLUMNS: &str =
    "id, workspace_id, agent_id, agent_name, workflow_id, recommendation_type, confidence_score, \
     outcome_status, outcome_quality, latency_ms, deadline_ms";
