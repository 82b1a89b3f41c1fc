//! # swarmwise-actors: the Swarmwise engine
//!
//! This crate knows the domain and nothing of the world: no sqlx, no HTTP,
//! no Redis. A tour:
//!
//! - [`domain`]: validated newtypes (`Confidence`, `QualityScore`, `AgentId`,
//!   ...) and records (`Recommendation`, `OutcomeSample`).
//! - [`error`]: `EngineError`, what the engine's calls fail with.
//! - [`ports`]: the traits the engine needs (storage, one trait per aggregate,
//!   gathered by `Store`), implemented in the `swarmwise` crate for
//!   PostgreSQL and SQLite.
//! - [`trust`]: the trust maths as pure functions ([`trust::maths`],
//!   [`trust::state`]: parameters, cell state, cards, workspace) and the
//!   `TrustScorer` actor that owns the state and publishes read-only
//!   snapshots.
//! - [`tracker`]: the `RecommendationTracker` actor, the single write path of
//!   recommendations and verdicts (durable or write-behind), by concern: the
//!   actor, its messages, buffering, evaluation and the writer task.
//! - [`agent`]: `AgentActor`, one per agent (priority queue, provider pool,
//!   backends); [`swarm`]: the running agents by workspace; [`barrier`]: the
//!   `FanOutBarrier` that gathers one stage's replies.
//! - [`workflow`]: definitions and the runner (selection, judging, records),
//!   and the trigger that requests learning cycles.
//! - [`learner`]: the meta-learner (pattern mining, cycles, agreement) and its
//!   actor; [`scheduler`]: cron-driven cycles and trust recomputes.
//! - [`alerts`]: alert, silence and notification types shared by the
//!   `Alerter`, the alert store, the API and the notifiers.
//! - [`admission`]: quarantine, probation and re-admission of agents an
//!   alert judged harmful (a pure lifecycle and the `AdmissionController`
//!   that implements `alerts::AgentAdmission`), the operator's override.
//! - [`cluster`]: the identity of this node among several sharing one
//!   database.
//! - [`events`]: the live event bus relayed to SSE.
//! - [`group_commit`]: many callers, one transaction (evaluations and run
//!   writes are committed in batches).
//! - [`supervisor`]: restart limits, backoff and health for supervised actors.
//! - [`engine`]: `Engine`, the handle that starts the actors and hides actix
//!   from the service.
//! - [`trace`]: the spans that follow a request or a run through the actors
//!   to the store (run id, workspace, agent as fields).
//!
//! Data flow: `Engine::track` → tracker buffer → writer task → store.
//! `Engine::evaluate` → tracker → evaluation batch (after a flush barrier;
//! one transaction for every evaluation queued) → store verdicts →
//! `OutcomesRecorded`, in commit order → trust scorer → snapshot → readers.

pub mod admission;
pub mod agent;
pub mod alerts;
pub mod barrier;
pub mod cluster;
pub mod domain;
pub mod engine;
pub mod error;
pub mod events;
pub mod group_commit;
pub mod learner;
pub mod ports;
pub mod retention;
pub mod scheduler;
pub mod supervisor;
pub mod swarm;
pub mod trace;
pub mod tracker;
pub mod trust;
pub mod workflow;

pub use engine::{Engine, EngineConfig, SupervisionConfig};
pub use error::EngineError;
