//! Alerts: rules evaluated on the live state, their lifecycle, and what an
//! alert tells a notifier. The types here are shared by the `Alerter`
//! actor (this crate), the alert store and REST API, and the notifiers
//! (`swarmwise` crate).
//!
//! An alert is identified by its *fingerprint*: workspace (or none, for
//! node-level rules such as database errors), rule name and subject (an
//! agent id, a pattern id, or empty for workspace-wide rules). While a
//! fingerprint is firing there is exactly one open alert for it
//! (deduplication); it resolves when the value crosses the rule's clear
//! threshold (hysteresis), and a later breach opens a new alert.
//!
//! By concern: [`config`] (the `[alerts]` section and the rule catalogue),
//! [`rules`] (pure evaluation and the pending → firing → resolved state
//! machine), [`alerter`] (the `Alerter` actor that feeds and applies them);
//! [`publish_firing`] sets the `swarmwise_alerts_firing{severity,rule}` gauge.

pub mod alerter;
pub mod config;
mod gauge;
pub mod rules;
#[cfg(test)]
mod sim;

pub use alerter::{Alerter, AlerterDeps, NoAdmission, StoreProbe};
pub use config::{AlertsConfig, RuleConfig};
pub use gauge::publish_firing;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::WorkspaceId;

/// How urgent an alert is; notifier routes are chosen by severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Acts or pages: the system is failing or an agent is being disabled.
    Critical,
    /// Someone should look during working hours.
    Warning,
    /// For the record (a cycle completed, patterns discovered, trust updated).
    Info,
}

impl Severity {
    /// `critical`, `warning` or `info`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Warning => "warning",
            Self::Info => "info",
        }
    }
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The condition holds and has held for the rule's `for` duration.
    Firing,
    /// The condition cleared (crossed the clear threshold), or the event
    /// was one-shot (info alerts resolve as they are raised).
    Resolved,
}

/// One alert: a rule's breach for one subject, from firing to resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    /// UUIDv7: time-ordered, the pagination key.
    pub id: Uuid,
    /// The workspace it concerns; `None` for node-level alerts (database
    /// errors), which only the admin key sees.
    pub workspace_id: Option<WorkspaceId>,
    /// The rule's name, e.g. `agent_trust_low` (see `[alerts.rules]`).
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// What it is about: an agent id, a pattern id, a node, or `""`.
    pub subject: String,
    /// `workspace/rule/subject`: at most one firing alert per fingerprint.
    pub fingerprint: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The observed value that breached (trust, a rate, seconds, a count).
    pub value: f64,
    /// The rule's threshold it was compared with.
    pub threshold: f64,
    /// One line for a human, e.g. "agent a1: trust 0.21 < 0.30 after 34 outcomes".
    pub summary: String,
    /// The action the rule took, if any (e.g. `quarantine`).
    pub action: Option<String>,
    /// When the condition started holding (before the `for` duration).
    pub started_at: DateTime<Utc>,
    /// When it was raised (started_at + for).
    pub fired_at: DateTime<Utc>,
    /// When it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// When someone acknowledged it, and who (`admin` or `workspace:<id>`).
    pub acked_at: Option<DateTime<Utc>>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
}

impl Alert {
    /// The fingerprint of (workspace, rule, subject).
    pub fn fingerprint_of(workspace: Option<WorkspaceId>, rule: &str, subject: &str) -> String {
        let ws = workspace.map_or_else(|| "node".to_owned(), |w| w.to_string());
        format!("{ws}/{rule}/{subject}")
    }
}

/// What a notifier is asked to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `firing` or `resolved` (PagerDuty: trigger or resolve, with the
    /// fingerprint as its dedup key).
    pub status: AlertStatus,
    /// The alert as it is now.
    pub alert: Alert,
}

/// Where the `Alerter` hands each notification it decides to send (a
/// transition that no silence matches). Implemented by the notifiers'
/// dispatcher in the `swarmwise` crate (`notify::Dispatcher`), which
/// routes by severity and delivers in the background.
///
/// `send` must return at once and never block the caller: the Alerter calls
/// it from inside an actor. An implementation that cannot take a
/// notification (a full queue) drops it and counts the drop; it never
/// fails the caller.
pub trait NotificationSink: Send + Sync + 'static {
    /// Hands `n` over for delivery.
    fn send(&self, n: Notification);
}

/// A sink that drops everything: for an Alerter without notifiers, and
/// for tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNotifications;

impl NotificationSink for NoNotifications {
    fn send(&self, _: Notification) {}
}

/// A silence: alerts it matches are still recorded and shown, but not
/// notified, while `starts_at <= now < ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Silence {
    /// UUIDv7.
    pub id: Uuid,
    /// The workspace it belongs to; `None` (admin only) silences node-level alerts.
    pub workspace_id: Option<WorkspaceId>,
    /// Matches alerts of this rule, or every rule when `None`.
    pub rule: Option<String>,
    /// Matches alerts about this subject, or every subject when `None`.
    pub subject: Option<String>,
    /// Matches alerts of this severity, or every severity when `None`.
    pub severity: Option<Severity>,
    /// From when.
    pub starts_at: DateTime<Utc>,
    /// Until when (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Who created it (`admin` or `workspace:<id>`).
    pub created_by: String,
    /// Why.
    pub comment: String,
}

impl Silence {
    /// Whether it silences `alert` at `now`.
    pub fn matches(&self, alert: &Alert, now: DateTime<Utc>) -> bool {
        self.workspace_id == alert.workspace_id
            && self.starts_at <= now
            && now < self.ends_at
            && self.rule.as_deref().is_none_or(|r| r == alert.rule)
            && self.subject.as_deref().is_none_or(|s| s == alert.subject)
            && self.severity.is_none_or(|s| s == alert.severity)
    }
}

/// What an alert rule's `quarantine` action does to an agent: takes it out
/// of fan-outs with a recorded reason (then cool-down, probation as a
/// canary, re-admission or a return to quarantine, each step audited and
/// published as an event). Implemented by the admission controller; the
/// `Alerter` calls it when `agent_trust_low` fires, and again on every
/// reading that still breaches while that alert is open (so a re-enabled
/// agent whose grace is over is quarantined again).
#[async_trait::async_trait]
pub trait AgentAdmission: Send + Sync + 'static {
    /// Quarantines `agent` for `reason` because alert `alert_id` fired.
    /// `Ok(false)` when nothing changed (already quarantined, held by an
    /// operator, unknown agent, or in its post-override grace).
    async fn quarantine(
        &self,
        ws: WorkspaceId,
        agent: &crate::domain::AgentId,
        reason: &str,
        alert_id: Uuid,
    ) -> Result<bool, crate::ports::StoreError>;
}
