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

use swarmwise_actors::agent::backend::{AgentAnswer, AgentBackend, BackendError};
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
    limits: AnswerLimits,
    /// The operator's price table: `openai` and `http` agents price the
    /// `usage` their answers report with it (`crate::costs`).
    prices: Arc<crate::costs::CostSettings>,
}

/// Longest per-attempt timeout an agent may ask for (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// How large an agent's answer may be: the same bounds as a recommendation
/// tracked over the API (`limits.max_content_bytes`, `limits.max_text_bytes`),
/// and a cap on the raw bytes read from the upstream or program
/// (`limits.max_body_bytes`), so an upstream cannot make the service buffer
/// or store without bound.
#[derive(Debug, Clone, Copy)]
pub struct AnswerLimits {
    /// Raw bytes read from an upstream body or a program's stdout.
    pub max_answer_bytes: usize,
    /// Bytes of `content` as JSON.
    pub max_content_bytes: usize,
    /// Bytes of `reasoning`.
    pub max_text_bytes: usize,
}

impl Default for AnswerLimits {
    fn default() -> Self {
        Self::from(&crate::config::LimitSettings::default())
    }
}

impl From<&crate::config::LimitSettings> for AnswerLimits {
    fn from(l: &crate::config::LimitSettings) -> Self {
        Self {
            max_answer_bytes: l.max_body_bytes,
            max_content_bytes: l.max_content_bytes,
            max_text_bytes: l.max_text_bytes,
        }
    }
}

impl AnswerLimits {
    /// An answer within the bounds, or an `InvalidAnswer` saying which it broke.
    pub fn check(&self, answer: AgentAnswer) -> Result<AgentAnswer, BackendError> {
        let content = serde_json::to_vec(&answer.content).map_or(usize::MAX, |v| v.len());
        if content > self.max_content_bytes {
            return Err(BackendError::InvalidAnswer(format!(
                "content is {content} bytes of JSON, above limits.max_content_bytes = {}",
                self.max_content_bytes
            )));
        }
        if answer
            .reasoning
            .as_ref()
            .is_some_and(|r| r.len() > self.max_text_bytes)
        {
            return Err(BackendError::InvalidAnswer(format!(
                "reasoning is longer than limits.max_text_bytes = {}",
                self.max_text_bytes
            )));
        }
        Ok(answer)
    }
}

/// Reads a response body, refusing one larger than `cap` bytes (checked on
/// the declared length first, then while reading).
async fn read_capped(mut res: reqwest::Response, cap: usize) -> Result<Vec<u8>, BackendError> {
    let too_big = || {
        BackendError::InvalidAnswer(format!(
            "the answer is larger than limits.max_body_bytes = {cap} bytes"
        ))
    };
    if res.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| BackendError::Failed(format!("reading the answer: {}", error_chain(&e))))?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes, `a: b: c`: reqwest's own message hides why a
/// connection failed (a policy refusal, a refused port, DNS).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Refuses a config number above its bound, naming the field.
fn at_most(field: &str, value: u64, max: u64) -> Result<(), ParseError> {
    if value > max {
        return Err(ParseError::new(
            field,
            format!("at most {max}, got {value}"),
        ));
    }
    Ok(())
}

impl Default for ServiceFactory {
    /// The default `[agents]` policy: nothing private reachable, no secrets,
    /// no programs.
    fn default() -> Self {
        Self::new(&SwarmConfig::default())
    }
}

impl ServiceFactory {
    /// A factory enforcing the policy of these `[agents]` settings, with
    /// the default answer limits.
    pub fn new(config: &SwarmConfig) -> Self {
        Self::with_limits(config, AnswerLimits::default())
    }

    /// A factory enforcing the policy of these `[agents]` settings and
    /// these answer limits.
    pub fn with_limits(config: &SwarmConfig, limits: AnswerLimits) -> Self {
        let policy = Arc::new(AgentPolicy::new(config));
        let net = Arc::clone(policy.net());
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            // Redirects stay on the agent's origin (scheme, host, port): a
            // header carrying a secret never follows one elsewhere.
            let same_origin = attempt
                .previous()
                .last()
                .is_some_and(|prev| prev.origin() == attempt.url().origin());
            if !same_origin {
                return attempt.error("redirect to another origin refused (agents follow redirects only on their own host)");
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
        Self {
            client,
            policy,
            limits,
            prices: Arc::default(),
        }
    }

    /// The same factory pricing agents' token usage with `prices`
    /// (`[costs]`); without it every cost is unknown.
    pub fn with_prices(mut self, prices: crate::costs::CostSettings) -> Self {
        self.prices = Arc::new(prices);
        self
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
            "http" => Ok(Some(Arc::new(
                HttpAgent::new(
                    self.client.clone(),
                    &self.policy,
                    self.limits,
                    config_of(agent)?,
                )?
                .with_prices(Arc::clone(&self.prices)),
            ))),
            "openai" => Ok(Some(Arc::new(
                OpenAi::new(
                    self.client.clone(),
                    &self.policy,
                    self.limits,
                    config_of(agent)?,
                )?
                .with_prices(Arc::clone(&self.prices)),
            ))),
            "command" => Ok(Some(Arc::new(Command::new(
                &self.policy,
                self.limits,
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
