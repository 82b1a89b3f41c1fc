//! Agent backends that reach the world: `http` (a JSON webhook), `openai`
//! (an OpenAI-compatible chat-completions endpoint: OpenAI, vLLM, Ollama,
//! llama.cpp) and `command` (a local program, JSON on stdin/stdout). The
//! factory also builds the engine's `simulated` agents and accepts
//! `external` ones (no backend: their recommendations come via the API).
//!
//! Secrets never sit in agent config: it names environment variables
//! (`api_key_env`, `headers_env`) that are read when the agent starts.

mod command;
mod http;
mod openai;

use std::sync::Arc;

use swarmwise_actors::agent::backend::AgentBackend;
use swarmwise_actors::domain::{Agent, ParseError};
use swarmwise_actors::swarm::{BackendFactory, SimulatedFactory};

pub use self::command::{Command, CommandConfig};
pub use self::http::{HttpAgent, HttpConfig};
pub use self::openai::{OpenAi, OpenAiConfig};

/// Every kind this build runs or accepts.
pub const KINDS: &[&str] = &["external", "simulated", "http", "openai", "command"];

/// Builds backends by kind.
#[derive(Debug, Clone)]
pub struct ServiceFactory {
    client: reqwest::Client,
}

impl Default for ServiceFactory {
    fn default() -> Self {
        Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(32)
                .build()
                .unwrap_or_default(),
        }
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
        match agent.kind.as_str() {
            "external" | "simulated" => SimulatedFactory.build(agent),
            "http" => Ok(Some(Arc::new(HttpAgent::new(
                self.client.clone(),
                config_of(agent)?,
            )?))),
            "openai" => Ok(Some(Arc::new(OpenAi::new(
                self.client.clone(),
                config_of(agent)?,
            )?))),
            "command" => Ok(Some(Arc::new(Command::new(config_of(agent)?)?))),
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

/// Reads an environment variable named in config; the error names the field.
fn env_var(field: &str, name: &str) -> Result<String, ParseError> {
    std::env::var(name).map_err(|_| {
        ParseError::new(
            field,
            format!("environment variable {name} is not set; export it before starting swarmwise"),
        )
    })
}
