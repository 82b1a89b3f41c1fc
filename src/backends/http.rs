//! `http` agents: POST the task as JSON to a URL, expect
//! `{content, confidence, reasoning?}`. Connection errors, 429 and 5xx are
//! retried with exponential backoff and jitter (the task is idempotent by its
//! id); other 4xx are not. The URL and header secrets pass the operator's
//! policy (see `policy.rs`); a failed call reports the status, not the body.
//! An answer may also report what it consumed, in the OpenAI shape:
//! `"model": "NAME", "usage": {"prompt_tokens": N, "completion_tokens": M}`;
//! it is recorded with the recommendation and priced from `[costs.models]`
//! (`crate::costs`, which bounds it; an answer's own cost is ignored).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use swarmwise_actors::agent::backend::{
    parse_answer, AgentAnswer, AgentBackend, BackendError, Task,
};
use swarmwise_actors::domain::ParseError;

use super::policy::AgentPolicy;

/// Headers the HTTP client owns: configuring them could smuggle requests or
/// confuse the upstream about the target.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
];

/// Config of an `http` agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to POST the task.
    pub url: String,
    /// Per attempt, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Retries after the first attempt.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First backoff, in milliseconds; doubles per retry, ± 50% jitter.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Extra headers with fixed values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra headers whose values come from environment variables (header →
    /// variable); only variables on `agents.secret_env`.
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
}

fn default_timeout() -> u64 {
    60_000
}
fn default_retries() -> u32 {
    2
}
fn default_backoff() -> u64 {
    200
}

/// The backend.
#[derive(Debug, Clone)]
pub struct HttpAgent {
    client: reqwest::Client,
    config: HttpConfig,
    headers: HeaderMap,
    limits: super::AnswerLimits,
    /// Prices the answer's `usage` (`crate::costs`).
    prices: Arc<crate::costs::CostSettings>,
}

/// Most retries an agent may ask for: a task makes at most 11 attempts.
const MAX_RETRIES: u64 = 10;
/// Longest first backoff, in milliseconds.
const MAX_BACKOFF_MS: u64 = 60_000;

impl HttpAgent {
    /// Validates the config and reads header secrets from the environment.
    pub fn new(
        client: reqwest::Client,
        policy: &AgentPolicy,
        limits: super::AnswerLimits,
        config: HttpConfig,
    ) -> Result<Self, ParseError> {
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| ParseError::new("config.url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ParseError::new("config.url", "must be http:// or https://"));
        }
        policy.net().check_url("config.url", &url)?;
        super::at_most("config.retries", u64::from(config.retries), MAX_RETRIES)?;
        super::at_most("config.backoff_ms", config.backoff_ms, MAX_BACKOFF_MS)?;
        super::at_most(
            "config.timeout_ms",
            config.timeout_ms,
            super::MAX_TIMEOUT_MS,
        )?;
        let mut headers = HeaderMap::new();
        let values = config
            .headers
            .iter()
            .map(|(k, v)| Ok::<_, ParseError>((k.clone(), v.clone())))
            .chain(config.headers_env.iter().map(|(k, var)| {
                Ok((
                    k.clone(),
                    policy.secret(&format!("config.headers_env.{k}"), var, &url)?,
                ))
            }));
        for pair in values {
            let (k, v): (String, String) = pair?;
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ParseError::new("config.headers", format!("bad header name {k:?}")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(ParseError::new(
                    "config.headers",
                    format!("header {k:?} is set by the client and cannot be configured"),
                ));
            }
            let value = HeaderValue::from_str(&v).map_err(|_| {
                ParseError::new("config.headers", format!("bad value for header {k:?}"))
            })?;
            headers.insert(name, value);
        }
        Ok(Self {
            client,
            config,
            headers,
            limits,
            prices: Arc::default(),
        })
    }

    /// The same backend pricing its answers' usage with `prices`.
    pub fn with_prices(mut self, prices: Arc<crate::costs::CostSettings>) -> Self {
        self.prices = prices;
        self
    }
}

#[async_trait]
impl AgentBackend for HttpAgent {
    async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError> {
        let mut attempt = 0u32;
        loop {
            // The run's trace context replaces any configured one.
            let mut headers = self.headers.clone();
            crate::otel::propagation::inject(&mut headers);
            let res = self
                .client
                .post(&self.config.url)
                .headers(headers)
                .timeout(Duration::from_millis(self.config.timeout_ms))
                .json(task)
                .send()
                .await;
            let retryable = match res {
                Ok(r) if r.status().is_success() => {
                    let bytes = super::read_capped(r, self.limits.max_answer_bytes).await?;
                    let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                        BackendError::InvalidAnswer(format!("body is not JSON: {e}"))
                    })?;
                    let (model, prompt, completion) = crate::costs::usage_of_answer(&body);
                    crate::otel::record_tokens(prompt, completion);
                    let usage = self
                        .prices
                        .usage(model.as_deref(), None, prompt, completion);
                    if !usage.is_empty() {
                        crate::costs::observe_call(&self.prices, &usage, None);
                    }
                    let mut answer = self.limits.check(parse_answer(body)?)?;
                    answer.usage = usage;
                    return Ok(answer);
                }
                Ok(r) => {
                    let status = r.status();
                    let err = BackendError::Failed(super::upstream_status(status));
                    if status.as_u16() == 429 || status.is_server_error() {
                        Err(err)
                    } else {
                        return Err(err);
                    }
                }
                Err(e) if e.is_timeout() => Err(BackendError::Timeout),
                Err(e) => Err(BackendError::Failed(format!(
                    "could not reach {}: {}",
                    self.config.url,
                    super::error_chain(&e)
                ))),
            };
            if attempt >= self.config.retries {
                return retryable;
            }
            attempt += 1;
            let base = self
                .config
                .backoff_ms
                .saturating_mul(1 << (attempt - 1).min(16)) as f64;
            let jittered = base * rand::thread_rng().gen_range(0.5..1.5);
            tokio::time::sleep(Duration::from_millis(jittered as u64)).await;
        }
    }
}
