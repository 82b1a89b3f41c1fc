//! Agents: a workspace's registered agents ([`AgentStore`]).
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.

mod postgres;
mod sqlite;
