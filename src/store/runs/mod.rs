//! Workflow runs ([`RunStore`]): start, finish, read, and marking what a
//! stopped process left running as interrupted.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.

mod postgres;
mod sqlite;
