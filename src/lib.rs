//! # swarmwise: the service
//!
//! Adapters around the engine crate (`swarmwise-actors`). A tour, every module:
//!
//! - [`cli`]: the `swarmwise` commands (`main.rs` only calls [`cli::run`]).
//! - [`startup`]: `Application::build` wires store, actors and HTTP server;
//!   `run` is the stop protocol. [`state`]: `AppState`, what every handler shares.
//! - [`routes`]: the actix-web API, one module per resource; [`extract`]: the
//!   JSON body extractor; [`error`]: the API error shape.
//! - [`auth`]: API keys and the authentication middleware; [`audit`]: the
//!   admin's audit log; [`limits`]: fairness between tenants.
//! - [`store`]: storage, one folder per aggregate, PostgreSQL (row-level
//!   security) and SQLite side by side.
//! - [`backends`]: the operator's agent policy and the agent backends
//!   (command, HTTP, OpenAI).
//! - [`config`]: settings; [`assets`]: the config, workflows and demo swarm
//!   the binary carries so that it runs from any folder; [`definitions`]:
//!   workflow definitions read from disk or the built-in copies; [`demo`]: the
//!   demo swarm, its key and its loop.
//! - [`sync`]: the change-feed task: refreshes what this node derived from
//!   the database when another process changes it.
//! - [`cache`]: patterns by workspace (Redis or in process); [`ttl_cache`]: the
//!   in-process cache with expiry behind the key and agent caches;
//!   [`redis_link`]: the optional Redis, every call under a deadline with a
//!   fallback; [`event_hub`]: what SSE streams read (local and relayed
//!   events, numbered per workspace, replay after `Last-Event-ID`).
//! - [`notify`]: alert notifiers (webhook, Slack, PagerDuty, email), routes
//!   by severity, retries, and the dispatcher the Alerter hands
//!   notifications to.
//! - [`telemetry`]: logging and the Prometheus metric catalogue; [`stats`]: the
//!   gauges refreshed from the database and trust snapshots (Task 8 health).

pub mod assets;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod cache;
pub mod cli;
pub mod config;
pub mod costs;
pub mod dashboard;
pub mod definitions;
pub mod demo;
pub mod error;
pub mod event_hub;
pub mod extract;
pub mod idempotency;
pub mod limits;
pub mod notify;
pub mod otel;
pub mod redis_link;
pub mod routes;
pub mod startup;
pub mod state;
pub mod stats;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod ttl_cache;
