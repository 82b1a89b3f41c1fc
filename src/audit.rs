//! The audit log of admin actions: who (`admin` or `workspace:<id>`) did
//! what (`action`) to which workspace and object, when, with details. Kept in
//! the store's append-only `audit_log` table and read by the admin key at
//! `GET /api/v1/audit`; tenants never read it.
//!
//! Writers call [`record`] after the action succeeded. A failed audit write
//! does not undo or fail the action (the caller already holds its result,
//! e.g. a key shown once): it is logged at error level with the whole entry
//! and counted in `swarmwise_audit_write_failures_total`, so an operator can
//! alert on it. Every entry is also logged at info level (target `audit`).

use chrono::Utc;
use serde_json::Value;
use swarmwise_actors::domain::{to_micros, WorkspaceId};

use crate::auth::Caller;
use crate::store::{AdminStore, AuditEntry};

/// The action names in use; a closed set, so filters and alerts can rely on them.
pub mod actions {
    /// A workspace was created (target: the workspace id).
    pub const WORKSPACE_CREATE: &str = "workspace.create";
    /// An API key was added to a workspace (target: the key id).
    pub const API_KEY_CREATE: &str = "api_key.create";
    /// An API key was revoked (target: the key id).
    pub const API_KEY_REVOKE: &str = "api_key.revoke";
    /// An API key was replaced by a new one (target: the old key id).
    pub const API_KEY_ROTATE: &str = "api_key.rotate";
    /// An agent was registered, with the admin key or a workspace key (target: the agent id).
    pub const AGENT_REGISTER: &str = "agent.register";
    /// An agent was removed (target: the agent id).
    pub const AGENT_DELETE: &str = "agent.delete";
    /// An agent was enabled or disabled (target: the agent id).
    pub const AGENT_UPDATE: &str = "agent.update";
    /// Admission (written by the store with the state change, in one
    /// transaction; `swarmwise_actors::admission::actions`): an agent was
    /// quarantined by an alert or after a failed probation.
    pub const AGENT_QUARANTINE: &str = swarmwise_actors::admission::actions::QUARANTINE;
    /// Admission: a quarantined agent's cool-down ended, probation began.
    pub const AGENT_PROBATION: &str = swarmwise_actors::admission::actions::PROBATION;
    /// Admission: re-admitted after its probation, or by an operator.
    pub const AGENT_READMIT: &str = swarmwise_actors::admission::actions::READMIT;
    /// Admission: held out until an operator acts (failed probations, or an
    /// operator disabled a quarantined agent).
    pub const AGENT_HOLD: &str = swarmwise_actors::admission::actions::HOLD;
}

/// Appends an entry to the audit log; never fails the caller (see the module
/// header). `target` names the object acted on (a key id, an agent id), and
/// `details` carries what else explains the action (never a key or a secret).
///
/// ```ignore
/// audit::record(state.store.as_ref(), Caller::Admin, audit::actions::AGENT_REGISTER,
///     Some(ws), agent.id.as_str(), json!({"kind": agent.kind})).await;
/// ```
pub async fn record(
    store: &dyn AdminStore,
    actor: Caller,
    action: &str,
    workspace: Option<WorkspaceId>,
    target: &str,
    details: Value,
) {
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7(),
        at: to_micros(Utc::now()),
        actor: actor.actor(),
        action: action.to_owned(),
        workspace_id: workspace,
        target: target.to_owned(),
        details,
    };
    tracing::info!(target: "audit", actor = %entry.actor, action = %entry.action,
        workspace = ?entry.workspace_id.map(|w| w.to_string()), target = %entry.target,
        details = %entry.details, "audit");
    if let Err(e) = store.insert_audit(&entry).await {
        metrics::counter!("swarmwise_audit_write_failures_total").increment(1);
        tracing::error!(error = %e, id = %entry.id, actor = %entry.actor, action = %entry.action,
            workspace = ?entry.workspace_id.map(|w| w.to_string()), target = %entry.target,
            details = %entry.details, "audit entry not stored");
    }
}
