//! # swarmwise: the service
//!
//! Adapters around the engine crate (`swarmwise-actors`): the actix-web API
//! ([`routes`]), storage ([`store`]: PostgreSQL with row-level security and
//! SQLite), settings ([`config`]), authentication ([`auth`]) and the admin's
//! audit log ([`audit`]), fairness between tenants ([`limits`]), the
//! operator's agent policy and agent backends ([`backends`]), telemetry
//! ([`telemetry`]) the start-up/shutdown protocol ([`startup`]) and the state every handler shares ([`state`]). `main.rs`
//! is the CLI on top; [`assets`] holds the config, workflows and demo swarm
//! it carries so that it runs from any folder.

pub mod assets;
pub mod audit;
pub mod auth;
pub mod backends;
pub mod cache;
pub mod config;
pub mod demo_key;
pub mod error;
pub mod extract;
pub mod limits;
pub mod routes;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ttl_cache;
pub mod workflows;
