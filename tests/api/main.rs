//! Integration tests of the whole service: real HTTP over loopback, real
//! SQLite files and real PostgreSQL databases (one per test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod helpers;

mod admission;
mod agent_policy;
mod alerts;
mod approval;
mod auth;
mod backends;
mod browser;
mod cluster;
mod costs;
mod dashboard;
mod durable_runs;
mod errors;
mod events;
mod fairness;
mod group_commit;
mod idempotency;
mod key_store;
mod keys;
mod learning;
mod leftovers;
mod lifecycle;
mod metrics;
mod notify;
mod openapi;
mod otel;
mod poison;
mod reads;
mod recommendations;
mod retention;
mod review;
mod review_dashboard;
mod rollup;
mod scheduling;
mod standalone;
mod start_keys;
mod store;
mod sync;
mod traces;
mod trust;
mod validation;
mod workflows;
