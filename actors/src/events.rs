//! Live events: trust updates, agent health, learning cycles, workflow
//! progress, alerts. A broadcast
//! channel; the service relays it to SSE clients (`GET /api/v1/events`).
//! Slow subscribers lose the oldest events rather than slowing the engine.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::domain::{AgentId, WorkspaceId};

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Trust of these agents changed.
    TrustUpdated {
        /// Workspace.
        workspace_id: WorkspaceId,
        /// Agents whose cards changed.
        agents: Vec<AgentId>,
    },
    /// An agent restarted more often than its policy allows; fan-outs skip it.
    AgentUnhealthy {
        /// Workspace.
        workspace_id: WorkspaceId,
        /// The agent.
        agent_id: AgentId,
        /// Restarts within the window.
        restarts: u64,
    },
    /// An agent's admission changed (`crate::admission`): quarantined,
    /// on probation, re-admitted or held.
    AgentAdmission {
        /// Workspace.
        workspace_id: WorkspaceId,
        /// The agent.
        agent_id: AgentId,
        /// The state it entered.
        state: AdmissionEventState,
        /// Why: the alert's reason, or what the step decided on.
        reason: String,
    },
    /// A learning cycle finished or failed.
    LearningCycle {
        /// Workspace.
        workspace_id: WorkspaceId,
        /// The cycle.
        cycle_id: String,
        /// succeeded or failed.
        status: String,
        /// Why it failed (a critical event).
        error: Option<String>,
        /// Why it ran: `api`, `schedule`, `outcomes`, `cli`.
        reason: String,
        /// How long it took, in seconds.
        duration_seconds: f64,
        /// New candidate patterns it found (0 for a failed cycle).
        patterns_discovered: u32,
    },
    /// A workflow run moved on.
    WorkflowProgress {
        /// Workspace.
        workspace_id: WorkspaceId,
        /// The run.
        run_id: String,
        /// Stage just finished (or paused, approved, rejected at), or `finished`.
        stage: String,
        /// running, succeeded, failed, awaiting_approval (the stage paused
        /// the run), approved (a decision resumed it), rejected.
        status: String,
    },
    /// An alert fired or resolved (`status` of the alert says which).
    /// Node-level alerts (no workspace) are not published: the tenant stream
    /// is per workspace, and only the admin key may see them (`GET /api/v1/alerts`).
    Alert {
        /// Workspace.
        workspace_id: WorkspaceId,
        /// The alert as it is now (boxed: the largest event by far).
        alert: Box<crate::alerts::Alert>,
    },
}

/// The state an [`Event::AgentAdmission`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionEventState {
    /// Taken out of fan-outs (by an alert, or after a failed probation).
    Quarantined,
    /// Cool-down over: a canary in a bounded share of fan-outs.
    Probation,
    /// Back in fan-outs (trust recovered, or an operator re-enabled it).
    Readmitted,
    /// Stays out until an operator acts (failed probations, or an operator
    /// disabled it).
    Held,
}

impl Event {
    /// The workspace the event belongs to (subscribers see only their own).
    pub fn workspace(&self) -> WorkspaceId {
        match self {
            Self::TrustUpdated { workspace_id, .. }
            | Self::AgentUnhealthy { workspace_id, .. }
            | Self::AgentAdmission { workspace_id, .. }
            | Self::LearningCycle { workspace_id, .. }
            | Self::WorkflowProgress { workspace_id, .. }
            | Self::Alert { workspace_id, .. } => *workspace_id,
        }
    }
}

/// The bus: cheap to clone, publishing never blocks.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl EventBus {
    /// A bus keeping up to `capacity` events per slow subscriber.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Publishes (dropped when nobody listens).
    pub fn publish(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
