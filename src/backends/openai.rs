//! `openai` agents: an OpenAI-compatible `POST {base_url}/chat/completions`.
//! The system prompt asks for a JSON object `{content, confidence,
//! reasoning}`; the reply's message content is parsed as such, with a clear
//! error when it is not. The reply's `model` and `usage` (`prompt_tokens`,
//! `completion_tokens`) are recorded with the recommendation and priced
//! from `[costs.models]` (`crate::costs`, which bounds them).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use swarmwise_actors::agent::backend::{
    parse_answer, AgentAnswer, AgentBackend, BackendError, Task,
};
use swarmwise_actors::domain::{valid_model_name, ParseError};

use super::policy::AgentPolicy;

const DEFAULT_PROMPT: &str = "You are an agent in a swarm. Read the task (JSON) and answer with one JSON object only: \
{\"content\": <your recommendation, any JSON>, \"confidence\": <number from 0 to 1: the probability you are right>, \
\"reasoning\": \"<one or two sentences>\"}.";

/// Config of an `openai` agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` (Ollama).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// Environment variable holding the API key (omit for local servers);
    /// only a variable on `agents.secret_env`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// System prompt (default asks for the JSON answer).
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Per request, in milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_timeout() -> u64 {
    120_000
}

/// The backend.
#[derive(Debug, Clone)]
pub struct OpenAi {
    client: reqwest::Client,
    config: OpenAiConfig,
    url: String,
    api_key: Option<String>,
    limits: super::AnswerLimits,
    /// Prices the reply's `usage` (`crate::costs`).
    prices: Arc<crate::costs::CostSettings>,
}

impl OpenAi {
    /// Validates the config and reads the key from the environment.
    pub fn new(
        client: reqwest::Client,
        policy: &AgentPolicy,
        limits: super::AnswerLimits,
        config: OpenAiConfig,
    ) -> Result<Self, ParseError> {
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|e| ParseError::new("config.base_url", format!("not a URL: {e}")))?;
        policy.net().check_url("config.base_url", &base)?;
        super::at_most(
            "config.timeout_ms",
            config.timeout_ms,
            super::MAX_TIMEOUT_MS,
        )?;
        if config.model.trim().is_empty() {
            return Err(ParseError::new("config.model", "must not be empty"));
        }
        if config
            .temperature
            .is_some_and(|t| !(0.0..=2.0).contains(&t))
        {
            return Err(ParseError::new("config.temperature", "must be in [0, 2]"));
        }
        let api_key = config
            .api_key_env
            .as_deref()
            .map(|v| policy.secret("config.api_key_env", v, &base))
            .transpose()?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self {
            client,
            config,
            url,
            api_key,
            limits,
            prices: Arc::default(),
        })
    }

    /// The same backend pricing its calls with `prices`.
    pub fn with_prices(mut self, prices: Arc<crate::costs::CostSettings>) -> Self {
        self.prices = prices;
        self
    }
}

#[async_trait]
impl AgentBackend for OpenAi {
    async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError> {
        let mut body = json!({
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": self.config.system_prompt.as_deref().unwrap_or(DEFAULT_PROMPT)},
                {"role": "user", "content": serde_json::to_string(task).unwrap_or_default()},
            ],
        });
        if let (Some(t), Some(o)) = (self.config.temperature, body.as_object_mut()) {
            o.insert("temperature".into(), json!(t));
        }
        let span = tracing::Span::current();
        span.record("gen_ai.request.model", self.config.model.as_str());
        span.record("gen_ai.system", "openai");
        let mut trace = reqwest::header::HeaderMap::new();
        crate::otel::propagation::inject(&mut trace);
        let mut req = self
            .client
            .post(&self.url)
            .headers(trace)
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .json(&body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let res = req.send().await.map_err(|e| {
            if e.is_timeout() {
                BackendError::Timeout
            } else {
                BackendError::Failed(format!(
                    "could not reach {}: {}",
                    self.url,
                    super::error_chain(&e)
                ))
            }
        })?;
        let status = res.status();
        if !status.is_success() {
            // The provider's error body stays in the operator's log, not in
            // the run result a tenant reads.
            let body = res.text().await.unwrap_or_default();
            tracing::debug!(%status, body = %body.chars().take(500).collect::<String>(), "provider error");
            return Err(BackendError::Failed(super::upstream_status(status)));
        }
        let bytes = super::read_capped(res, self.limits.max_answer_bytes).await?;
        let reply: Value = serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::InvalidAnswer(format!(
                "the provider answered {status} with a body that is not JSON: {e}"
            ))
        })?;
        let (answering, prompt, completion) = crate::costs::usage_of_answer(&reply);
        let requested = Some(self.config.model.as_str()).filter(|m| valid_model_name(m));
        let usage = self
            .prices
            .usage(answering.as_deref(), requested, prompt, completion);
        // Counted before the content is checked: the tokens were spent.
        crate::costs::observe_call(&self.prices, &usage, requested);
        crate::otel::record_tokens(prompt, completion);
        let text = reply
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                BackendError::InvalidAnswer("the reply has no choices[0].message.content".into())
            })?;
        // Models like to wrap JSON in a Markdown fence.
        let trimmed = text
            .trim()
            .trim_start_matches("```json")
            .trim_start_matches("```")
            .trim_end_matches("```")
            .trim();
        let value: Value = serde_json::from_str(trimmed).map_err(|e| {
            BackendError::InvalidAnswer(format!(
                "the model's reply is not JSON ({e}); it began: {:?}. Adjust the system prompt to answer with {{content, confidence, reasoning}}",
                text.chars().take(120).collect::<String>()
            ))
        })?;
        let mut answer = self.limits.check(parse_answer(value)?)?;
        answer.usage = usage;
        Ok(answer)
    }
}
