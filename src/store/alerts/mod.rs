//! Alerts and silences ([`AlertStore`](swarmwise_actors::ports::AlertStore)):
//! the `Alerter`'s memory and what the alerts API reads. At most one firing
//! alert per fingerprint (a unique partial index in both dialects).
//! Node-level alerts have no workspace; on PostgreSQL only the admin scope
//! (`app.alerts_admin`) sees them.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists, names) lives here.

mod postgres;
mod sqlite;

use swarmwise_actors::alerts::{AlertStatus, Severity};

const ALERT_COLUMNS: &str = "id, workspace_id, rule, severity, subject, fingerprint, status, value, threshold, summary, action, \
     started_at, fired_at, resolved_at, acked_at, acked_by";
const SILENCE_COLUMNS: &str =
    "id, workspace_id, rule, subject, severity, starts_at, ends_at, created_by, comment";

fn status_name(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

fn status_of(raw: &str) -> anyhow::Result<AlertStatus> {
    match raw {
        "firing" => Ok(AlertStatus::Firing),
        "resolved" => Ok(AlertStatus::Resolved),
        _ => Err(anyhow::anyhow!("bad alert status {raw}")),
    }
}

fn severity_of(raw: &str) -> anyhow::Result<Severity> {
    match raw {
        "critical" => Ok(Severity::Critical),
        "warning" => Ok(Severity::Warning),
        "info" => Ok(Severity::Info),
        _ => Err(anyhow::anyhow!("bad severity {raw}")),
    }
}
