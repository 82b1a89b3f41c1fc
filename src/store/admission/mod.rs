//! Admission: agents' quarantine, probation and post-override grace
//! ([`AdmissionStore`](swarmwise_actors::ports::AdmissionStore)), one row per
//! agent in `agent_quarantine`, and the audit entry of every change written
//! in the same transaction.
//!
//! What both dialects share lives here: the column list (with the `q_`
//! aliases the agents' join uses too, so `agents/` reads an agent's
//! quarantine with the same mapping), and the conversions between a row and
//! [`Admission`].

pub(super) mod postgres;
pub(super) mod sqlite;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use swarmwise_actors::admission::{
    Admission, AdmissionChange, OverrideGrace, Quarantine, QuarantineState,
};
use uuid::Uuid;

/// The admission columns under their `q_` aliases, for a query whose
/// `agent_quarantine` is aliased `q` (also the agents' LEFT JOIN).
pub(super) const ADMISSION_COLUMNS: &str = "q.state AS q_state, q.reason AS q_reason, \
     q.since AS q_since, q.alert_id AS q_alert_id, q.until_at AS q_until, \
     q.probations AS q_probations, q.outcomes_at_start AS q_outcomes_at_start, \
     q.hold AS q_hold, q.grace_until_outcomes AS q_grace_until, q.actor AS q_actor, \
     q.version AS q_version";

/// One stored row, read by either dialect (times already converted).
pub(super) struct RawAdmission {
    pub state: String,
    pub reason: String,
    pub since: DateTime<Utc>,
    pub alert_id: Option<Uuid>,
    pub until: Option<DateTime<Utc>>,
    pub probations: i64,
    pub outcomes_at_start: i64,
    pub hold: bool,
    pub grace_until: Option<i64>,
    pub actor: String,
    pub version: i64,
}

impl RawAdmission {
    /// The row's version and state.
    pub fn into_admission(self) -> anyhow::Result<(i64, Admission)> {
        let count = |v: i64, what: &str| {
            u64::try_from(v).with_context(|| format!("agent_quarantine.{what} is negative: {v}"))
        };
        let admission = match self.state.as_str() {
            "grace" => Admission::Grace(OverrideGrace {
                since: self.since,
                by: self.actor,
                outcomes_at_start: count(self.outcomes_at_start, "outcomes_at_start")?,
                until_outcomes: count(
                    self.grace_until
                        .context("agent_quarantine.grace_until_outcomes is null in grace")?,
                    "grace_until_outcomes",
                )?,
            }),
            s @ ("quarantined" | "probation") => Admission::Quarantine(Quarantine {
                state: if s == "quarantined" {
                    QuarantineState::Quarantined
                } else {
                    QuarantineState::Probation
                },
                reason: self.reason,
                since: self.since,
                alert_id: self.alert_id.unwrap_or_else(Uuid::nil),
                until: self.until,
                probations: u32::try_from(self.probations)
                    .with_context(|| format!("agent_quarantine.probations: {}", self.probations))?,
                outcomes_at_start: count(self.outcomes_at_start, "outcomes_at_start")?,
                hold: self.hold,
            }),
            other => anyhow::bail!("agent_quarantine.state {other:?} is unknown"),
        };
        Ok((self.version, admission))
    }
}

/// The column values of a new state (the row's `actor` is who wrote it).
pub(super) struct Columns<'a> {
    pub state: &'static str,
    pub reason: &'a str,
    pub since: DateTime<Utc>,
    pub alert_id: Option<Uuid>,
    pub until: Option<DateTime<Utc>>,
    pub probations: i64,
    pub outcomes_at_start: i64,
    pub hold: bool,
    pub grace_until: Option<i64>,
    pub actor: &'a str,
}

/// The values to store for `next`, written by `change`'s audit actor.
pub(super) fn columns<'a>(next: &'a Admission, change: &'a AdmissionChange) -> Columns<'a> {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    match next {
        Admission::Quarantine(q) => Columns {
            state: q.state.as_str(),
            reason: &q.reason,
            since: q.since,
            alert_id: Some(q.alert_id),
            until: q.until,
            probations: i64::from(q.probations),
            outcomes_at_start: clamp(q.outcomes_at_start),
            hold: q.hold,
            grace_until: None,
            actor: change
                .audit
                .as_ref()
                .map_or(swarmwise_actors::admission::ACTOR_ADMISSION, |a| {
                    a.actor.as_str()
                }),
        },
        Admission::Grace(g) => Columns {
            state: "grace",
            reason: "",
            since: g.since,
            alert_id: None,
            until: None,
            probations: 0,
            outcomes_at_start: clamp(g.outcomes_at_start),
            hold: false,
            grace_until: Some(clamp(g.until_outcomes)),
            actor: &g.by,
        },
    }
}

/// Puts a row's state on its agent (`Agent::quarantine` or `override_grace`).
pub(super) fn attach(agent: &mut swarmwise_actors::domain::Agent, admission: Option<Admission>) {
    match admission {
        Some(Admission::Quarantine(q)) => agent.quarantine = Some(q),
        Some(Admission::Grace(g)) => agent.override_grace = Some(g),
        None => {}
    }
}
