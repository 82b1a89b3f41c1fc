//! `AppState`: what every request handler shares (the engine, the store,
//! settings, caches, limits). Built once by [`crate::startup::Application::build`]
//! and handed to the routes as `web::Data<AppState>`; the routes import it from
//! here, so `routes` and `startup` do not import each other.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::learner::actor::Learner;
use swarmwise_actors::ports::StoreError;
use swarmwise_actors::workflow::{CycleTrigger, Workflows};
use swarmwise_actors::Engine;

use crate::config::Settings;
use crate::error::ApiError;
use crate::store::AdminStore;
use crate::ttl_cache::TtlCache;

/// Shared by every request handler.
pub struct AppState {
    /// This node's identity among several sharing the database (`[cluster]`).
    pub node: swarmwise_actors::cluster::NodeId,
    /// The engine (actors).
    pub engine: Engine,
    /// Storage.
    pub store: Arc<dyn AdminStore>,
    /// Effective settings.
    pub settings: Arc<Settings>,
    /// SHA-256 of the admin key.
    pub admin_key_hash: String,
    /// Key hash → workspace, so authentication costs no query after the
    /// first; entries live `auth.cache_ttl_secs`, and a revocation here
    /// removes the workspace's entries at once.
    pub key_cache: TtlCache<String, WorkspaceId>,
    /// Registered agents' names, so tracking checks the agent without a
    /// query; entries live `auth.cache_ttl_secs` (see [`AppState::forget_agent`]).
    pub agents: TtlCache<(WorkspaceId, AgentId), String>,
    /// Renders `/metrics`.
    pub prometheus: PrometheusHandle,
    /// The database-derived gauges `/metrics` appends, refreshed every
    /// `telemetry.stats_refresh_secs`.
    pub stats: Arc<crate::stats::Stats>,
    /// Runs workflows over the swarm.
    pub workflows: Workflows,
    /// Per-key request rate and per-workspace runs in flight.
    pub limits: crate::limits::Limits,
    /// The operator's agent policy (kinds, programs, secrets, network).
    pub agent_policy: Arc<crate::backends::policy::AgentPolicy>,
    /// Runs learning cycles.
    pub learner: Learner,
    /// Counts evaluated outcomes towards `learning.cycle_every_outcomes`
    /// (shared with the workflow runner).
    pub cycles: Arc<dyn CycleTrigger>,
    /// Patterns by workspace (Redis or in process), cleared when a cycle finishes.
    pub patterns: crate::cache::PatternCache,
    /// The link to Redis (disabled without `redis.url`): deadlines,
    /// availability, the state `/readyz` shows.
    pub redis: crate::redis_link::RedisLink,
    /// What the event streams read: this node's events and, with Redis,
    /// every other node's, numbered per workspace, with a replay buffer.
    pub hub: crate::event_hub::EventHub,
    /// Alert notifiers (routes, queues, delivery status); the Alerter sends
    /// through it and `GET /alerts/notifiers` reads its status.
    pub notifiers: crate::notify::Dispatcher,
    /// Flips to true when the server begins to stop.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// The registered name of an agent, or `None` if it is not registered.
    pub async fn agent_name(
        &self,
        ws: WorkspaceId,
        id: &AgentId,
    ) -> Result<Option<String>, StoreError> {
        let key = (ws, id.clone());
        if let Some(name) = self.agents.get(&key) {
            return Ok(Some(name));
        }
        let agent = self.store.agent(ws, id).await?;
        if let Some(a) = &agent {
            self.agents.insert(key, a.name.clone());
        }
        Ok(agent.map(|a| a.name))
    }

    /// Forgets a cached agent at once; call it wherever an agent is changed
    /// or removed (other nodes see the change within `auth.cache_ttl_secs`).
    pub fn forget_agent(&self, ws: WorkspaceId, id: &AgentId) {
        self.agents.remove(&(ws, id.clone()));
    }

    /// Forgets every cached key of a workspace at once (a key was revoked).
    pub fn forget_keys(&self, ws: WorkspaceId) {
        self.key_cache.retain(|_, cached| *cached != ws);
    }

    /// 503 when learning is switched off.
    pub fn engine_enabled(&self) -> Result<(), ApiError> {
        if self.engine.learning_enabled() {
            Ok(())
        } else {
            Err(swarmwise_actors::EngineError::LearningDisabled.into())
        }
    }
}
