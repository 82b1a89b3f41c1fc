//! Admission: whether an agent may take part in fan-outs after an alert
//! judged it harmful. Quarantine, cool-down, probation as a canary,
//! re-admission (or a return to quarantine, then a hold), and the
//! operator's override, each step audited in the same transaction as the
//! state change and published as [`crate::events::Event::AgentAdmission`].
//!
//! - [`lifecycle`]: the state machine as a pure function (state + trust +
//!   outcome count + now → next step); no clock, no I/O.
//! - [`controller`]: [`AdmissionController`], the engine's implementation of
//!   [`crate::alerts::AgentAdmission`]; driven by `TrustUpdated` events and
//!   a periodic check (cool-down expiry), with its state in the store
//!   ([`crate::ports::AdmissionStore`]) so it survives restarts and is shared
//!   by nodes (every change is a compare-and-set on the row's version).
//!
//! `Agent::enabled` keeps meaning the operator's switch: an operator-disabled
//! agent is never quarantined (operator hold), and quarantine never flips
//! `enabled`. Fan-outs read the state from `Agent::quarantine` (the agent
//! rows carry it), so selection costs no extra query.
//!
//! The semantics, in full, are in docs/admission.md.

pub mod controller;
pub mod lifecycle;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::AgentId;

pub use controller::AdmissionController;

/// Audit actions written by admission (the `action` column of `audit_log`);
/// a closed set, so filters and alerts can rely on them.
pub mod actions {
    /// Taken out of fan-outs: by an alert (actor `alerter`), or back after a
    /// failed probation (actor `admission`, `details.failed_probations`).
    pub const QUARANTINE: &str = "agent.quarantine";
    /// Cool-down over: asked in one of `agents.probation_every` fan-outs.
    pub const PROBATION: &str = "agent.probation";
    /// Back in fan-outs: trust recovered during probation (actor
    /// `admission`), or an operator re-enabled it (actor `admin` or
    /// `workspace:<id>`).
    pub const READMIT: &str = "agent.readmit";
    /// Stays quarantined until an operator acts: `max_probations` failed
    /// probations (actor `admission`), or an operator disabled a quarantined
    /// agent (actor `admin` or `workspace:<id>`).
    pub const HOLD: &str = "agent.hold";
}

/// The audit `actor` of the alert rule that quarantines.
pub const ACTOR_ALERTER: &str = "alerter";
/// The audit `actor` of the lifecycle's own steps (probation, re-admission,
/// a failed probation, a hold).
pub const ACTOR_ADMISSION: &str = "admission";

/// Where a quarantined agent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuarantineState {
    /// Skipped by every fan-out (skip reason `quarantined: <reason>`) until
    /// its cool-down ends (`until`), or for good while `hold` is set.
    Quarantined,
    /// A canary: asked in one of every `agents.probation_every` fan-outs
    /// until it has `probation_outcomes` new outcomes, then re-admitted or
    /// quarantined again.
    Probation,
}

impl QuarantineState {
    /// `quarantined` or `probation` (also the store's spelling).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Quarantined => "quarantined",
            Self::Probation => "probation",
        }
    }
}

/// An agent's quarantine (`quarantine` in the agent JSON; null when none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quarantine {
    /// `quarantined` or `probation`.
    pub state: QuarantineState,
    /// Why it was quarantined, as the alert said (kept through probations).
    pub reason: String,
    /// When the current state began.
    pub since: DateTime<Utc>,
    /// The alert that quarantined it.
    pub alert_id: Uuid,
    /// End of the cool-down, while quarantined; null on probation and while
    /// held.
    pub until: Option<DateTime<Utc>>,
    /// Failed probations so far.
    pub probations: u32,
    /// The agent's observation count (evaluated outcomes plus recorded
    /// failures, as `agents.disable_min_samples` counts them) when the
    /// current state began; probation counts new outcomes from it.
    pub outcomes_at_start: u64,
    /// Held: stays quarantined until an operator acts (after
    /// `alerts.quarantine.max_probations` failed probations).
    pub hold: bool,
}

/// The grace an operator's re-enable grants: no quarantine until the
/// agent has `until_outcomes` observations
/// (`agents.disable_min_samples` new ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverrideGrace {
    /// When the operator re-enabled it.
    pub since: DateTime<Utc>,
    /// Who: `admin` or `workspace:<id>`.
    pub by: String,
    /// Observations when it was re-enabled.
    pub outcomes_at_start: u64,
    /// The grace ends when the agent has this many observations.
    pub until_outcomes: u64,
}

impl OverrideGrace {
    /// Whether the grace still holds at `outcomes` observations.
    pub fn active(&self, outcomes: u64) -> bool {
        outcomes < self.until_outcomes
    }
}

/// One agent's stored admission state: a quarantine, or an operator's grace.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Quarantined or on probation.
    Quarantine(Quarantine),
    /// Re-enabled by an operator, in its grace.
    Grace(OverrideGrace),
}

/// A stored admission row with its version (the compare-and-set token).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRow {
    /// Whose.
    pub agent_id: AgentId,
    /// Increases on every change; a change names the version it was decided on.
    pub version: i64,
    /// The state.
    pub admission: Admission,
}

/// An audit entry written in the same transaction as an admission change.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditNote {
    /// `alerter`, `admission`, `admin` or `workspace:<id>`.
    pub actor: String,
    /// One of [`actions`].
    pub action: &'static str,
    /// What explains the step (reason, trust, alert id, counts).
    pub details: serde_json::Value,
    /// When.
    pub at: DateTime<Utc>,
}

/// One atomic change of an agent's admission (see
/// [`crate::ports::AdmissionStore::change_admission`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionChange {
    /// Whose.
    pub agent_id: AgentId,
    /// The row version the decision was taken on; `None`: there was no row.
    pub expected_version: Option<i64>,
    /// The new state; `None` removes the row.
    pub next: Option<Admission>,
    /// Also sets `agents.enabled` (an operator's override).
    pub set_enabled: Option<bool>,
    /// Refuse when the agent is disabled (a quarantine respects the
    /// operator's hold).
    pub require_enabled: bool,
    /// Written in the same transaction (`None` only for bookkeeping: the
    /// end of an operator's grace).
    pub audit: Option<AuditNote>,
}

/// What [`crate::ports::AdmissionStore::change_admission`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// Applied with its audit entry.
    Applied,
    /// The row changed since it was read (another node or request acted); nothing written.
    Stale,
    /// `require_enabled` and the agent is disabled; nothing written.
    Disabled,
    /// No such agent in the workspace; nothing written.
    NotFound,
}

/// `[alerts.quarantine]`: the admission lifecycle after an alert
/// quarantined an agent (docs/admission.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// Seconds a quarantined agent is skipped before its probation.
    pub cool_down_secs: u64,
    /// New observations a probation waits for before it decides.
    pub probation_outcomes: u64,
    /// Re-admitted when its overall trust is at or above this after the
    /// probation (above `agents.disable_below_trust`: the hysteresis).
    pub readmit_above: f64,
    /// Failed probations after which the agent stays quarantined until an
    /// operator acts (at least 1).
    pub max_probations: u32,
    /// Seconds between checks of every quarantine (cool-down expiry; trust
    /// changes are checked as they happen).
    pub check_every_secs: u64,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            cool_down_secs: 3600,
            probation_outcomes: 20,
            readmit_above: 0.4,
            max_probations: 3,
            check_every_secs: 30,
        }
    }
}

impl QuarantineConfig {
    /// Checks what types cannot: `Err((key under alerts.quarantine, message))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.readmit_above) {
            return Err(("readmit_above", "must be in [0, 1]".into()));
        }
        if self.probation_outcomes == 0 {
            return Err((
                "probation_outcomes",
                "must be at least 1 (a probation decides on new outcomes)".into(),
            ));
        }
        if self.max_probations == 0 {
            return Err((
                "max_probations",
                "must be at least 1; to keep quarantined agents out until an operator acts, set agents.probation_every = 0".into(),
            ));
        }
        if !(1..=3600).contains(&self.check_every_secs) {
            return Err(("check_every_secs", "must be between 1 and 3600".into()));
        }
        if self.cool_down_secs > 365 * 24 * 3600 {
            return Err((
                "cool_down_secs",
                "must be at most one year (31536000); to keep agents out until an operator acts, set agents.probation_every = 0".into(),
            ));
        }
        Ok(())
    }
}
