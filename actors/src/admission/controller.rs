//! `AdmissionController`: applies the admission lifecycle
//! ([`super::lifecycle`]) to the stored state, with an audit entry in the
//! same transaction as each change and an `Event::AgentAdmission` after it.
//!
//! Who talks to it: the `Alerter` through [`AgentAdmission::quarantine`];
//! the service's `PATCH /api/v1/agents/{id}` through
//! [`AdmissionController::operator_override`]; its own task, started by
//! `Engine::start`, which checks a workspace's quarantines when its trust
//! changes (`Event::TrustUpdated`) and every workspace with a quarantine
//! every `alerts.quarantine.check_every_secs` (cool-down expiry, and
//! quarantines another node wrote).
//!
//! Invariants: every change is a compare-and-set on the row's version, so
//! two nodes (or the task and a request) deciding at once apply one step,
//! and only the one that applied it audits and publishes. A store error is
//! logged and retried at the next check; it never stops the task.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashSet;
use serde_json::json;
use uuid::Uuid;

use super::lifecycle::{self, Seen, Step};
use super::{
    actions, Admission, AdmissionChange, AdmissionRow, AuditNote, ChangeOutcome, QuarantineConfig,
    ACTOR_ADMISSION, ACTOR_ALERTER,
};
use crate::alerts::AgentAdmission;
use crate::domain::{to_micros, AgentId, WorkspaceId};
use crate::events::{AdmissionEventState, Event, EventBus};
use crate::ports::{Store, StoreError};
use crate::trust::TrustSnapshots;

/// Longest stored reason, in characters (an alert's summary is one line).
const MAX_REASON_CHARS: usize = 500;

/// What the controller is configured with: `[alerts.quarantine]` and the two
/// `[agents]` knobs it shares with the `agent_trust_low` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionPolicy {
    /// `[alerts.quarantine]`.
    pub quarantine: QuarantineConfig,
    /// `agents.probation_every`: a probation agent is asked in one of this
    /// many fan-outs; 0 = no probation (quarantined until an operator acts).
    pub probation_every: u64,
    /// `agents.disable_min_samples`: the observations of grace an
    /// operator's re-enable grants.
    pub grace_outcomes: u64,
}

impl Default for AdmissionPolicy {
    fn default() -> Self {
        Self {
            quarantine: QuarantineConfig::default(),
            probation_every: 20,
            grace_outcomes: 20,
        }
    }
}

/// What an operator's enable/disable did to an agent's admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideOutcome {
    /// The agent was quarantined or on probation: re-admitted now with a
    /// grace (`enabled = true`), or held disabled (`enabled = false`); the
    /// switch is set and both are audited in one transaction.
    Done,
    /// The agent has no quarantine: the caller sets the switch as usual.
    NotQuarantined,
    /// No such agent in the workspace.
    NotFound,
}

/// The admission controller; cheap to clone (one shared state).
#[derive(Clone)]
pub struct AdmissionController {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    snapshots: TrustSnapshots,
    events: EventBus,
    policy: AdmissionPolicy,
    /// Workspaces known to hold an admission row, so a trust update of a
    /// workspace without any costs no query. Filled by the periodic check
    /// (rows other nodes wrote) and by this node's own changes.
    known: DashSet<WorkspaceId>,
}

impl AdmissionController {
    /// A controller over `store`, reading trust from `snapshots` and
    /// publishing on `events`; [`Self::spawn`] starts its task.
    pub fn new(
        store: Arc<dyn Store>,
        snapshots: TrustSnapshots,
        events: EventBus,
        policy: AdmissionPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                snapshots,
                events,
                policy,
                known: DashSet::new(),
            }),
        }
    }

    /// Its configuration.
    pub fn policy(&self) -> &AdmissionPolicy {
        &self.inner.policy
    }

    /// Starts the task that checks quarantines on trust updates and every
    /// `check_every_secs`; it lives as long as the actix system. Must be
    /// called inside one.
    pub fn spawn(&self) {
        let this = self.clone();
        let mut rx = self.inner.events.subscribe();
        let every = Duration::from_secs(self.inner.policy.quarantine.check_every_secs.max(1));
        actix::spawn(async move {
            use tokio::sync::broadcast::error::{RecvError, TryRecvError};
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => this.check_all_logged().await,
                    got = rx.recv() => {
                        let mut due = BTreeSet::new();
                        let mut lagged = false;
                        let mut note = |got: Result<Event, _>| match got {
                            Ok(Event::TrustUpdated { workspace_id, .. }) => {
                                due.insert(workspace_id);
                            }
                            Ok(_) => {}
                            Err(()) => lagged = true,
                        };
                        match got {
                            Ok(e) => note(Ok(e)),
                            Err(RecvError::Lagged(_)) => note(Err(())),
                            Err(RecvError::Closed) => break,
                        }
                        // Coalesce a burst of updates into one check per workspace.
                        loop {
                            match rx.try_recv() {
                                Ok(e) => note(Ok(e)),
                                Err(TryRecvError::Lagged(_)) => note(Err(())),
                                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                            }
                        }
                        if lagged {
                            this.check_all_logged().await;
                        } else {
                            for ws in due {
                                if this.inner.known.contains(&ws) {
                                    if let Err(e) = this.check_workspace(ws).await {
                                        tracing::warn!(workspace = %ws, error = %e, "admission check failed; retried at the next check");
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    }

    async fn check_all_logged(&self) {
        if let Err(e) = self.check_all().await {
            tracing::warn!(error = %e, "admission check failed; retried at the next check");
        }
    }

    /// Another process changed an admission row of `ws` (the change feed):
    /// from now on this node checks `ws` on its trust updates too.
    pub fn watch_workspace(&self, ws: WorkspaceId) {
        self.inner.known.insert(ws);
    }

    /// Checks every workspace that holds an admission row; returns the steps
    /// this call applied. The periodic task calls it.
    pub async fn check_all(&self) -> Result<usize, StoreError> {
        self.check_all_at(to_micros(Utc::now())).await
    }

    /// [`Self::check_all`] as if it were `now`: tests drive cool-down
    /// expiry with it instead of waiting.
    pub async fn check_all_at(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let workspaces = self.inner.store.admission_workspaces().await?;
        self.inner.known.clear();
        let mut applied = 0;
        for ws in workspaces {
            self.inner.known.insert(ws);
            applied += self.check_workspace_at(ws, now).await?;
        }
        Ok(applied)
    }

    /// Checks every admission row of `ws` against its trust now and applies
    /// the due steps; returns how many this call applied.
    pub async fn check_workspace(&self, ws: WorkspaceId) -> Result<usize, StoreError> {
        self.check_workspace_at(ws, to_micros(Utc::now())).await
    }

    /// [`Self::check_workspace`] as if it were `now`.
    pub async fn check_workspace_at(
        &self,
        ws: WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let rows = self.inner.store.admissions(ws).await?;
        let policy = &self.inner.policy;
        let mut applied = 0;
        for row in rows {
            let seen = self.seen(ws, &row.agent_id);
            let step = lifecycle::step(
                &row.admission,
                seen,
                now,
                &policy.quarantine,
                policy.probation_every,
            );
            if self.apply(ws, &row, step, seen, now).await? {
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// What trust says of `agent` now.
    fn seen(&self, ws: WorkspaceId, agent: &AgentId) -> Seen {
        let snap = self.inner.snapshots.get(ws);
        match snap.agents.get(agent) {
            Some(c) => Seen {
                trust: Some(c.overall.overall_trust),
                outcomes: c.overall.observations(),
            },
            None => Seen {
                trust: None,
                outcomes: 0,
            },
        }
    }

    async fn apply(
        &self,
        ws: WorkspaceId,
        row: &AdmissionRow,
        step: Step,
        seen: Seen,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let trust = seen.trust.unwrap_or(0.0);
        let reason_of = |a: &Admission| match a {
            Admission::Quarantine(q) => q.reason.clone(),
            Admission::Grace(_) => String::new(),
        };
        let original = reason_of(&row.admission);
        let readmit_above = self.inner.policy.quarantine.readmit_above;
        let (next, audit, event) = match step {
            Step::Stay => return Ok(false),
            Step::GraceOver => (None, None, None),
            Step::Probation(q) => {
                let details = json!({"reason": q.reason, "alert_id": q.alert_id,
                    "failed_probations": q.probations, "outcomes": seen.outcomes, "trust": seen.trust});
                let event = (
                    AdmissionEventState::Probation,
                    format!(
                        "cool-down over: asked in one of every {} fan-outs until {} new outcomes; quarantined for: {}",
                        self.inner.policy.probation_every,
                        self.inner.policy.quarantine.probation_outcomes,
                        q.reason
                    ),
                );
                (
                    Some(Admission::Quarantine(q)),
                    Some((actions::PROBATION, details)),
                    Some(event),
                )
            }
            Step::Readmit {
                trust,
                new_outcomes,
            } => {
                let details = json!({"reason": original, "trust": trust, "new_outcomes": new_outcomes,
                    "readmit_above": readmit_above});
                let event = (
                    AdmissionEventState::Readmitted,
                    format!(
                        "probation passed: trust {trust:.3} >= {readmit_above:.2} (alerts.quarantine.readmit_above) after {new_outcomes} new outcomes"
                    ),
                );
                (None, Some((actions::READMIT, details)), Some(event))
            }
            Step::Requarantine(q) | Step::Hold(q) => {
                let held = q.hold;
                let failed = q.probations;
                let details = json!({"reason": q.reason, "alert_id": q.alert_id, "trust": trust,
                    "failed_probations": failed, "readmit_above": readmit_above, "until": q.until});
                let why = format!(
                    "probation {failed} failed: trust {trust:.3} < {readmit_above:.2} (alerts.quarantine.readmit_above)"
                );
                let (action, state, reason) = if held {
                    (
                        actions::HOLD,
                        AdmissionEventState::Held,
                        format!("{why}; held after {failed} failed probations (alerts.quarantine.max_probations) until an operator re-enables it with PATCH enabled=true"),
                    )
                } else {
                    (
                        actions::QUARANTINE,
                        AdmissionEventState::Quarantined,
                        format!("{why}; quarantined again for a new cool-down"),
                    )
                };
                (
                    Some(Admission::Quarantine(q)),
                    Some((action, details)),
                    Some((state, reason)),
                )
            }
        };
        let change = AdmissionChange {
            agent_id: row.agent_id.clone(),
            expected_version: Some(row.version),
            next,
            set_enabled: None,
            require_enabled: false,
            audit: audit.map(|(action, details)| AuditNote {
                actor: ACTOR_ADMISSION.into(),
                action,
                details,
                at: now,
            }),
        };
        let outcome = self.inner.store.change_admission(ws, &change).await?;
        if outcome != ChangeOutcome::Applied {
            return Ok(false);
        }
        if let Some((state, reason)) = event {
            self.publish(ws, &row.agent_id, state, reason);
        }
        Ok(true)
    }

    fn publish(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        state: AdmissionEventState,
        reason: String,
    ) {
        tracing::info!(workspace = %ws, agent = %agent, state = ?state, reason = %reason, "agent admission changed");
        metrics::counter!("swarmwise_agent_admission_changes_total", "state" => match state {
            AdmissionEventState::Quarantined => "quarantined",
            AdmissionEventState::Probation => "probation",
            AdmissionEventState::Readmitted => "readmitted",
            AdmissionEventState::Held => "held",
        })
        .increment(1);
        self.inner.events.publish(Event::AgentAdmission {
            workspace_id: ws,
            agent_id: agent.clone(),
            state,
            reason,
        });
    }

    /// An operator's `enabled` switch on an agent of `ws`, by `actor`
    /// (`admin` or `workspace:<id>`). On a quarantined or probation agent,
    /// `true` re-admits it now with a grace of `agents.disable_min_samples`
    /// observations (audit `agent.readmit`), `false` removes the quarantine
    /// and disables it (operator hold, no probation; audit `agent.hold`);
    /// either way the switch is set in the same transaction. Otherwise
    /// [`OverrideOutcome::NotQuarantined`]: the caller sets the switch.
    pub async fn operator_override(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        enabled: bool,
        actor: &str,
    ) -> Result<OverrideOutcome, StoreError> {
        // A lost compare-and-set means the lifecycle moved meanwhile: decide again.
        for _ in 0..5 {
            let Some(row) = self.inner.store.admission(ws, agent).await? else {
                return Ok(OverrideOutcome::NotQuarantined);
            };
            let Admission::Quarantine(q) = &row.admission else {
                return Ok(OverrideOutcome::NotQuarantined);
            };
            let now = to_micros(Utc::now());
            let seen = self.seen(ws, agent);
            let details = json!({"operator": true, "enabled": enabled, "was": q.state.as_str(),
                "reason": q.reason, "alert_id": q.alert_id, "failed_probations": q.probations,
                "trust": seen.trust, "outcomes": seen.outcomes});
            let (next, action, state, reason) = if enabled {
                let g = lifecycle::grace(actor, seen, now, self.inner.policy.grace_outcomes);
                let reason = format!(
                    "re-enabled by {actor}: no quarantine until {} observations (agents.disable_min_samples more)",
                    g.until_outcomes
                );
                (
                    Some(Admission::Grace(g)),
                    actions::READMIT,
                    AdmissionEventState::Readmitted,
                    reason,
                )
            } else {
                (
                    None,
                    actions::HOLD,
                    AdmissionEventState::Held,
                    format!("disabled by {actor}: out of fan-outs until an operator enables it"),
                )
            };
            let change = AdmissionChange {
                agent_id: agent.clone(),
                expected_version: Some(row.version),
                next,
                set_enabled: Some(enabled),
                require_enabled: false,
                audit: Some(AuditNote {
                    actor: actor.to_owned(),
                    action,
                    details,
                    at: now,
                }),
            };
            match self.inner.store.change_admission(ws, &change).await? {
                ChangeOutcome::Applied => {
                    self.inner.known.insert(ws);
                    self.publish(ws, agent, state, reason);
                    return Ok(OverrideOutcome::Done);
                }
                ChangeOutcome::NotFound => return Ok(OverrideOutcome::NotFound),
                ChangeOutcome::Stale | ChangeOutcome::Disabled => continue,
            }
        }
        Err(StoreError::Unavailable(
            "the agent's admission kept changing while the override was applied; retry".into(),
        ))
    }
}

#[async_trait::async_trait]
impl AgentAdmission for AdmissionController {
    async fn quarantine(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        reason: &str,
        alert_id: Uuid,
    ) -> Result<bool, StoreError> {
        let reason: String = reason
            .replace('\0', "\u{FFFD}")
            .chars()
            .take(MAX_REASON_CHARS)
            .collect();
        let row = self.inner.store.admission(ws, agent).await?;
        let seen = self.seen(ws, agent);
        match row.as_ref().map(|r| &r.admission) {
            Some(Admission::Quarantine(_)) => return Ok(false),
            Some(Admission::Grace(g)) if g.active(seen.outcomes) => return Ok(false),
            _ => {}
        }
        let now = to_micros(Utc::now());
        let q = lifecycle::quarantine(&reason, alert_id, seen, now, &self.inner.policy.quarantine);
        let details = json!({"reason": reason, "trust": seen.trust, "alert_id": alert_id,
            "outcomes": seen.outcomes, "until": q.until});
        let change = AdmissionChange {
            agent_id: agent.clone(),
            expected_version: row.as_ref().map(|r| r.version),
            next: Some(Admission::Quarantine(q)),
            set_enabled: None,
            require_enabled: true,
            audit: Some(AuditNote {
                actor: ACTOR_ALERTER.into(),
                action: actions::QUARANTINE,
                details,
                at: now,
            }),
        };
        if self.inner.store.change_admission(ws, &change).await? != ChangeOutcome::Applied {
            return Ok(false);
        }
        self.inner.known.insert(ws);
        self.publish(ws, agent, AdmissionEventState::Quarantined, reason);
        Ok(true)
    }
}
