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

pub use definition::{ApprovalAction, OnRestart, Selector, StageDef, StageMode, WorkflowDef};
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
    /// The process running it stopped first and the run could not be taken
    /// over (a row from before durable runs); `error` says why.
    Interrupted,
    /// A stage with `approval = true` finished: the run waits for
    /// `POST /workflows/runs/{id}/approve` or `/reject` (or its deadline).
    AwaitingApproval,
    /// A person (or the approval deadline's default action) rejected it.
    Rejected,
}

impl RunStatus {
    /// Database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Rejected => "rejected",
        }
    }

    /// From the database name.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "interrupted" => Some(Self::Interrupted),
            "awaiting_approval" => Some(Self::AwaitingApproval),
            "rejected" => Some(Self::Rejected),
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
    /// What is done so far: `{"stages": [stage record, ...], "evaluation": ...}`,
    /// one record per completed stage (its input context, every agent's
    /// answer or error with its attempts, the barrier's outcome, the
    /// approval decision). A run taken over by another node (or resumed at
    /// restart) continues after the last record. `null` before the first
    /// stage completes.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub progress: Option<serde_json::Value>,
    /// While `awaiting_approval`: when the default action
    /// (`workflows.approval_default_action`) applies.
    pub approval_deadline: Option<DateTime<Utc>>,
    /// The lease of the node executing it (internal: never shown to tenants).
    #[serde(skip)]
    pub lease: Option<RunLease>,
}

/// Who executes a run, until when, and the fencing token it claimed with.
///
/// Every write of the executing node is conditional on `fencing` (and the
/// run still `running`): a claim by another node increments it, so a node
/// that lost its lease (paused, partitioned) cannot overwrite its
/// successor's progress (Kleppmann's fencing tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLease {
    /// The owner's `cluster.node_id`.
    pub owner: String,
    /// Fencing token: incremented by every claim.
    pub fencing: i64,
    /// The lease ends here unless renewed (every `workflows.lease_secs` / 3).
    pub until: DateTime<Utc>,
}
