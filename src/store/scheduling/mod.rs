//! Scheduling across nodes ([`SchedulerStore`]): the leadership lease
//! (`scheduler_leases`: holder, fencing token, expiry) and the claims of
//! scheduled occurrences (`scheduled_claims`, unique on job and scheduled
//! time). Operator-level tables: no workspace, no row-level security.
//!
//! The lease is a row rather than a PostgreSQL advisory lock: an advisory
//! lock belongs to one connection (a pool may hand the holder another one,
//! and the lock dies with a connection the pool recycles), SQLite has none,
//! and a row carries the holder's `NodeId` and a fencing token that the
//! claims check. PostgreSQL computes expiries on the database's clock, so
//! nodes with skewed clocks agree on when a lease lapsed.
//!
//! [`SchedulerStore`]: swarmwise_actors::ports::SchedulerStore

mod postgres;
mod sqlite;
