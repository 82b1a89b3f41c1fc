//! Workflows: declarative definitions ([`definition`]) run by [`runner`] over the
//! swarm: stages fan out through `FanOutBarrier`s, every reply is tracked,
//! the run's outcome is evaluated, and the learning-cycle port
//! ([`trigger`]) is told.

pub mod definition;
pub mod runner;
pub mod trigger;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{Priority, WorkspaceId};

pub use definition::{Selector, StageDef, StageMode, WorkflowDef};
pub use runner::{RunReport, RunRequest, Workflows, WorkflowsConfig};
pub use trigger::{CountingTrigger, CycleTrigger};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Stages are running.
    Running,
    /// Every stage ran (some agents may have failed).
    Succeeded,
    /// The run could not complete.
    Failed,
    /// The process running it stopped first (crash, or a shutdown that
    /// could not wait for it); `error` says which.
    Interrupted,
}

impl RunStatus {
    /// Database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// From the database name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "interrupted" => Some(Self::Interrupted),
            _ => None,
        }
    }
}

/// A stored run (table `workflow_runs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkflowRun {
    /// Run id; also the `workflow_id` its recommendations are tracked under.
    pub id: Uuid,
    /// Owner.
    pub workspace_id: WorkspaceId,
    /// Definition name.
    pub workflow: String,
    /// Status.
    pub status: RunStatus,
    /// Requested priority.
    pub priority: Priority,
    /// The input.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: serde_json::Value,
    /// The report, once finished: per stage, per agent.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Started.
    pub created_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}
