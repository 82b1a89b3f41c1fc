//! Agents: a workspace's registered agents ([`AgentStore`]).
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.
//! An agent is read with its admission row (`agent_quarantine`, LEFT JOIN),
//! so `Agent::quarantine` and `Agent::override_grace` cost no extra query.

mod postgres;
mod sqlite;

/// `SELECT … FROM agents a LEFT JOIN agent_quarantine q`, to which a
/// dialect appends its `WHERE a.workspace_id = … [AND a.id = …]`.
pub(super) fn select_agents() -> String {
    format!(
        "SELECT a.id, a.name, a.kind, a.config, a.enabled, a.created_at, {} \
         FROM agents a LEFT JOIN agent_quarantine q \
         ON q.workspace_id = a.workspace_id AND q.agent_id = a.id",
        super::admission::ADMISSION_COLUMNS
    )
}
