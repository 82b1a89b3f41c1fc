//! The swarm: the running `AgentActor` of every runnable agent, by
//! (workspace, agent). Backends are built through the [`BackendFactory`]
//! port (the service implements http, openai and command; `simulated` is
//! built here). `external` agents have no actor: their recommendations come
//! through the API.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::agent::backend::AgentBackend;
use crate::agent::pool::ProviderPool;
use crate::agent::simulated::{Simulated, SimulatedConfig};
use crate::agent::{AgentActor, AgentHealth, AgentSpec};
use crate::domain::{Agent, AgentId, ParseError, WorkspaceId};
use crate::events::EventBus;
use crate::supervisor::RestartPolicy;

/// Builds backends for the kinds the service knows.
pub trait BackendFactory: Send + Sync + 'static {
    /// Builds the backend of `agent`; `Ok(None)` for kinds without a backend
    /// (`external`); `Err` names the offending config field.
    fn build(&self, agent: &Agent) -> Result<Option<Arc<dyn AgentBackend>>, ParseError>;
    /// Every kind accepted, for error messages.
    fn kinds(&self) -> Vec<&'static str>;
}

/// Builds `simulated` agents only (and accepts `external`): the engine's own factory.
#[derive(Debug, Default, Clone, Copy)]
pub struct SimulatedFactory;

impl BackendFactory for SimulatedFactory {
    fn build(&self, agent: &Agent) -> Result<Option<Arc<dyn AgentBackend>>, ParseError> {
        match agent.kind.as_str() {
            "external" => Ok(None),
            "simulated" => Ok(Some(Arc::new(Simulated::new(simulated_config(agent)?)))),
            other => Err(ParseError::new(
                "kind",
                format!("unknown agent kind {other:?}; use external or simulated"),
            )),
        }
    }

    fn kinds(&self) -> Vec<&'static str> {
        vec!["external", "simulated"]
    }
}

/// Parses and checks a simulated agent's config.
pub fn simulated_config(agent: &Agent) -> Result<SimulatedConfig, ParseError> {
    let mut cfg = agent.config.clone();
    if let Some(o) = cfg.as_object_mut() {
        // Keys every kind may carry, not the simulator's.
        for k in ["pool", "concurrency"] {
            o.remove(k);
        }
    }
    let sim: SimulatedConfig = serde_json::from_value(cfg)
        .map_err(|e| ParseError::new("config", format!("simulated agent config: {e}")))?;
    sim.validate()?;
    Ok(sim)
}

/// Checks an agent's kind and config by building its backend, and that a
/// pool it names exists in `config.pools`; needs no running swarm, so a bad
/// agent in a config file fails the start before any actor runs.
pub fn validate_agent(
    factory: &dyn BackendFactory,
    config: &SwarmConfig,
    agent: &Agent,
) -> Result<(), ParseError> {
    factory.build(agent)?;
    match agent.config.get("pool").and_then(|p| p.as_str()) {
        Some(name) if !config.pools.contains_key(name) => Err(ParseError::new(
            "config.pool",
            format!("no pool {name:?} in [agents.pools] of the server config"),
        )),
        _ => Ok(()),
    }
}

/// A provider pool's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Concurrent calls allowed through the pool.
    pub slots: usize,
    /// Whether agents registered with a workspace key may join it (an
    /// operator resource: closed to tenants unless opened).
    #[serde(default)]
    pub open_to_tenants: bool,
}

/// Config section `[agents]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SwarmConfig {
    /// Tasks an agent runs at once unless its config says `"concurrency": n`.
    pub concurrency: usize,
    /// A waiting task is promoted one class per this many milliseconds (0 = never).
    pub aging_ms: u64,
    /// An agent whose overall trust is below this (once it has at least
    /// `disable_min_samples` observations) is quarantined by the
    /// `agent_trust_low` alert rule, whose threshold this is; fan-outs skip
    /// quarantined agents.
    pub disable_below_trust: f64,
    /// Observations (evaluated outcomes plus recorded failures) needed
    /// before the threshold applies.
    pub disable_min_samples: u64,
    /// An agent on probation is asked once every this many fan-outs, so it
    /// can earn trust back (0 = never: only an operator re-admits it).
    pub probation_every: u64,
    /// Agents may finish this many times the stage timeout; answers after the
    /// barrier completed are tracked as late.
    pub late_grace_factor: f64,
    /// Shared provider pools by name; an agent joins one with `"pool": "name"` in its config.
    pub pools: BTreeMap<String, PoolConfig>,
    /// Restart policy of agent actors.
    pub supervision: RestartPolicy,
    /// Tasks waiting in one agent's mailbox; past it a task is refused at once.
    pub max_queued_tasks: usize,
    /// Kinds a workspace API key may register (the admin key may register
    /// any kind). Enforced by the service at registration.
    pub allowed_kinds: Vec<String>,
    /// Programs `command` agents may run, by name: a registration says
    /// `"program": "NAME"` and never supplies a path, arguments or environment.
    pub programs: BTreeMap<String, ProgramConfig>,
    /// Environment variables an agent's `headers_env` / `api_key_env` may
    /// name. Names starting with `SWARMWISE__` are never readable.
    pub secret_env: Vec<String>,
    /// Where each secret may be sent: variable → host names or addresses.
    /// A secret is sent only to an agent URL whose host is listed for it; a
    /// secret without an entry is sent nowhere.
    pub secret_hosts: BTreeMap<String, Vec<String>>,
    /// Hosts, IP addresses or CIDR blocks agents may reach even when they are
    /// loopback, private or link-local (e.g. `"127.0.0.1"`, `"10.0.0.0/8"`,
    /// `"vllm.internal"`).
    pub allow_hosts: Vec<String>,
    /// Let agents reach loopback, private, link-local and shared (CGNAT)
    /// addresses. Cloud metadata addresses stay closed unless listed in
    /// `allow_hosts`.
    pub allow_private_networks: bool,
}

/// A program `command` agents may run (`[agents.programs.NAME]`), declared
/// by the operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramConfig {
    /// Path of the executable, or a name looked up on `PATH`.
    pub program: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment variables (the service's own environment is
    /// inherited except `SWARMWISE__*`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Longest run in milliseconds before its whole process group is killed
    /// (an agent may ask for less).
    #[serde(default = "default_program_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_program_timeout_ms() -> u64 {
    60_000
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            concurrency: 1,
            aging_ms: 30_000,
            disable_below_trust: 0.3,
            disable_min_samples: 20,
            probation_every: 20,
            late_grace_factor: 2.0,
            pools: BTreeMap::new(),
            supervision: RestartPolicy::default(),
            max_queued_tasks: 1000,
            allowed_kinds: ["external", "http", "openai", "simulated"]
                .map(String::from)
                .to_vec(),
            programs: BTreeMap::new(),
            secret_env: Vec::new(),
            secret_hosts: BTreeMap::new(),
            allow_hosts: Vec::new(),
            allow_private_networks: false,
        }
    }
}

/// A running agent.
#[derive(Debug)]
pub struct SwarmAgent {
    /// Its actor.
    pub addr: Addr<AgentActor>,
    /// Shared health.
    pub health: AgentHealth,
    /// Its kind.
    pub kind: String,
    /// Fan-outs that skipped it since its last probe.
    pub skipped_since_probe: AtomicU64,
}

/// The registry of running agents.
#[derive(Clone)]
pub struct Swarm {
    agents: Arc<DashMap<(WorkspaceId, AgentId), Arc<SwarmAgent>>>,
    factory: Arc<dyn BackendFactory>,
    pools: Arc<HashMap<String, ProviderPool>>,
    config: Arc<SwarmConfig>,
    events: EventBus,
}

impl Swarm {
    /// An empty swarm.
    pub fn new(factory: Arc<dyn BackendFactory>, config: SwarmConfig, events: EventBus) -> Self {
        let aging = Duration::from_millis(config.aging_ms);
        let pools = config
            .pools
            .iter()
            .map(|(name, p)| (name.clone(), ProviderPool::new(name, p.slots, aging)))
            .collect();
        Self {
            agents: Arc::default(),
            factory,
            pools: Arc::new(pools),
            config: Arc::new(config),
            events,
        }
    }

    /// The swarm's config.
    pub fn config(&self) -> &SwarmConfig {
        &self.config
    }

    /// Validates an agent's kind and config without starting it.
    pub fn validate(&self, agent: &Agent) -> Result<(), ParseError> {
        validate_agent(self.factory.as_ref(), &self.config, agent)
    }

    /// Every accepted kind.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.factory.kinds()
    }

    fn pool_of(&self, agent: &Agent) -> Result<Option<ProviderPool>, ParseError> {
        match agent.config.get("pool").and_then(|p| p.as_str()) {
            None => Ok(None),
            Some(name) => self.pools.get(name).cloned().map(Some).ok_or_else(|| {
                ParseError::new(
                    "config.pool",
                    format!("no pool {name:?} in [agents.pools] of the server config"),
                )
            }),
        }
    }

    /// Starts (or restarts with new settings) the actor of a runnable agent.
    /// Must run inside an actix system.
    pub fn start_agent(&self, ws: WorkspaceId, agent: &Agent) -> Result<(), ParseError> {
        let Some(backend) = self.factory.build(agent)? else {
            self.agents.remove(&(ws, agent.id.clone()));
            return Ok(());
        };
        let pool = self.pool_of(agent)?;
        let concurrency = agent
            .config
            .get("concurrency")
            .and_then(serde_json::Value::as_u64)
            .map_or(self.config.concurrency, |c| c.max(1) as usize);
        let health = AgentHealth::default();
        let addr = AgentActor::start_supervised(AgentSpec {
            workspace: ws,
            id: agent.id.clone(),
            backend,
            concurrency,
            max_queued: self.config.max_queued_tasks,
            aging: Duration::from_millis(self.config.aging_ms),
            pool,
            policy: self.config.supervision.clone(),
            health: health.clone(),
            events: self.events.clone(),
        });
        self.agents.insert(
            (ws, agent.id.clone()),
            Arc::new(SwarmAgent {
                addr,
                health,
                kind: agent.kind.clone(),
                skipped_since_probe: AtomicU64::new(0),
            }),
        );
        Ok(())
    }

    /// The running agent, if any.
    pub fn get(&self, ws: WorkspaceId, id: &AgentId) -> Option<Arc<SwarmAgent>> {
        self.agents
            .get(&(ws, id.clone()))
            .map(|a| Arc::clone(a.value()))
    }

    /// Stops running an agent (its registration was removed); its actor
    /// stops once the tasks it holds are answered.
    pub fn remove_agent(&self, ws: WorkspaceId, id: &AgentId) {
        self.agents.remove(&(ws, id.clone()));
    }

    /// The ids of the agents of `ws` this process runs (the change feed's
    /// full refresh compares them with the registrations).
    pub fn running(&self, ws: WorkspaceId) -> Vec<AgentId> {
        self.agents
            .iter()
            .filter(|e| e.key().0 == ws)
            .map(|e| e.key().1.clone())
            .collect()
    }

    /// Operator re-enable: clears an unhealthy mark.
    pub fn reset_health(&self, ws: WorkspaceId, id: &AgentId) {
        if let Some(a) = self.get(ws, id) {
            a.health.reset();
            a.skipped_since_probe.store(0, Ordering::Relaxed);
        }
    }
}
