//! Agent backends that reach the world: `http` (a JSON webhook), `openai`
//! (an OpenAI-compatible chat-completions endpoint: OpenAI, vLLM, Ollama,
//! llama.cpp) and `command` (a program the operator declared, JSON on
//! stdin/stdout). The factory also builds the engine's `simulated` agents and
//! accepts `external` ones (no backend: their recommendations come via the
//! API).
//!
//! Everything an agent's config may name is bounded by the operator's
//! [`policy::AgentPolicy`]: secrets are environment variables on
//! `agents.secret_env` (read when the agent starts), programs are declared in
//! `[agents.programs]`, and the one HTTP client every agent shares resolves
//! names through [`policy::PolicyResolver`] and checks every redirect, so no
//! request reaches an address the operator has not opened.

mod command;
mod http;
mod openai;
pub mod policy;

use std::sync::Arc;
use std::time::Duration;

use swarmwise_actors::agent::backend::AgentBackend;
use swarmwise_actors::domain::{Agent, ParseError};
use swarmwise_actors::swarm::{BackendFactory, SimulatedFactory, SwarmConfig};

pub use self::command::{Command, CommandConfig};
pub use self::http::{HttpAgent, HttpConfig};
pub use self::openai::{OpenAi, OpenAiConfig};
use self::policy::AgentPolicy;

/// Every kind this build runs or accepts.
pub const KINDS: &[&str] = &["external", "simulated", "http", "openai", "command"];

/// Most redirects an agent call follows (each one checked by the policy).
const MAX_REDIRECTS: usize = 5;

/// Builds backends by kind, under the operator's policy.
#[derive(Debug, Clone)]
pub struct ServiceFactory {
    client: reqwest::Client,
    policy: Arc<AgentPolicy>,
}

impl Default for ServiceFactory {
    /// The default `[agents]` policy: nothing private reachable, no secrets,
    /// no programs.
    fn default() -> Self {
        Self::new(&SwarmConfig::default())
    }
}

impl ServiceFactory {
    /// A factory enforcing the policy of these `[agents]` settings.
    pub fn new(config: &SwarmConfig) -> Self {
        let policy = Arc::new(AgentPolicy::new(config));
        let net = Arc::clone(policy.net());
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            // Names are checked again by the resolver when connecting.
            match net.check_url("redirect", attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(format!("redirect refused: {}", e.message)),
            }
        });
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(32)
            .connect_timeout(Duration::from_secs(10))
            // A proxy would connect on the agent's behalf, past the address check.
            .no_proxy()
            .dns_resolver(Arc::new(policy::PolicyResolver::new(Arc::clone(
                policy.net(),
            ))))
            .redirect(redirect)
            .build()
            .unwrap_or_default();
        Self { client, policy }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Arc<AgentPolicy> {
        &self.policy
    }
}

/// Parses an agent's config for a backend, ignoring the keys every kind may carry.
fn config_of<T: serde::de::DeserializeOwned>(agent: &Agent) -> Result<T, ParseError> {
    let mut cfg = agent.config.clone();
    if let Some(o) = cfg.as_object_mut() {
        for k in ["pool", "concurrency"] {
            o.remove(k);
        }
    }
    serde_json::from_value(cfg)
        .map_err(|e| ParseError::new("config", format!("{} agent config: {e}", agent.kind)))
}

impl BackendFactory for ServiceFactory {
    fn build(&self, agent: &Agent) -> Result<Option<Arc<dyn AgentBackend>>, ParseError> {
        self.policy.check_config(&agent.kind, &agent.config)?;
        match agent.kind.as_str() {
            "external" | "simulated" => SimulatedFactory.build(agent),
            "http" => Ok(Some(Arc::new(HttpAgent::new(
                self.client.clone(),
                &self.policy,
                config_of(agent)?,
            )?))),
            "openai" => Ok(Some(Arc::new(OpenAi::new(
                self.client.clone(),
                &self.policy,
                config_of(agent)?,
            )?))),
            "command" => Ok(Some(Arc::new(Command::new(
                &self.policy,
                config_of(agent)?,
            )?))),
            other => Err(ParseError::new(
                "kind",
                format!(
                    "unknown agent kind {other:?}; use one of {}",
                    KINDS.join(", ")
                ),
            )),
        }
    }

    fn kinds(&self) -> Vec<&'static str> {
        KINDS.to_vec()
    }
}

/// A failed upstream answer as the caller may see it: the status and its
/// standard reason, never the upstream body (which could carry anything the
/// upstream knows).
fn upstream_status(status: reqwest::StatusCode) -> String {
    format!(
        "upstream answered {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_owned()
}
