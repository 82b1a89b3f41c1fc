//! The meta-learner's maths: pattern mining with exact tests and false
//! discovery control ([`patterns`], [`stats`]).

pub mod actor;
pub mod agreement;
pub mod cycle;
pub mod patterns;
pub mod stats;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::WorkspaceId;

/// A learning cycle's report (table `meta_learner_cycles`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CycleReport {
    /// Cycle id.
    pub id: Uuid,
    /// Workspace.
    pub workspace_id: WorkspaceId,
    /// running, succeeded, failed.
    pub status: String,
    /// Why it ran: `api`, `schedule`, `outcomes`, `cli`.
    pub reason: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Outcomes mined.
    pub recommendations_processed: u64,
    /// New candidate patterns.
    pub patterns_discovered: u32,
    /// Newly confirmed patterns.
    pub patterns_confirmed: u32,
    /// Newly retired patterns.
    pub patterns_retired: u32,
    /// Rules added, changed and retired.
    pub rules_updated: u32,
    /// Hold-out accuracy of the learned patterns.
    pub model_accuracy: Option<f64>,
    /// Share of held-out outcomes a pattern applies to.
    pub coverage: Option<f64>,
    /// Findings, actions, hold-out detail, rule counts.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub insights: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
}
