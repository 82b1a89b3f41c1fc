//! The port through which an agent does its work, and what goes in and out.
//! Implementations: `simulated` (here), and `http`, `openai`, `command` in
//! the service crate (they need the network or processes).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::WorkspaceId;

/// A unit of work for one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique per fan-out (every agent of one fan-out gets the same task).
    pub id: Uuid,
    /// Workspace of the run.
    pub workspace_id: WorkspaceId,
    /// The workflow run (also the `workflow_id` recommendations are tracked under).
    pub workflow_id: String,
    /// Ties a request together.
    pub correlation_id: String,
    /// The workflow definition's name.
    pub workflow: String,
    /// The stage asking.
    pub stage: String,
    /// What kind of recommendation is wanted.
    pub recommendation_type: String,
    /// The run's input.
    pub input: serde_json::Value,
    /// Answers of earlier stages, by stage name.
    pub context: serde_json::Value,
}

/// An agent's answer: what is tracked as a recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAnswer {
    /// The recommendation.
    pub content: serde_json::Value,
    /// Stated confidence in [0, 1].
    pub confidence: f64,
    /// Why.
    #[serde(default)]
    pub reasoning: Option<String>,
    /// The verdict the service itself knows for this answer: set only by the
    /// engine's `simulated` backend, which draws it. Never read from an
    /// answer's JSON (`serde(skip)`): agents do not grade themselves, so a
    /// `{"good": true}` inside `content` is content, nothing more.
    #[serde(skip)]
    pub ground_truth: Option<bool>,
    /// Tokens, model and cost of the call, set by the backend that made it
    /// (`openai`, `http`) after bounding the values. Never read from an
    /// answer's JSON (`serde(skip)`): backends parse `usage` themselves, so
    /// an agent cannot set a cost.
    #[serde(skip)]
    pub usage: crate::domain::TokenUsage,
}

/// Why an agent produced no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// Took longer than its deadline.
    #[error("timed out")]
    Timeout,
    /// The backend failed (network, process, provider error).
    #[error("{0}")]
    Failed(String),
    /// The backend answered, but not with `{content, confidence, reasoning}`.
    #[error("invalid answer: {0}")]
    InvalidAnswer(String),
}

/// How an agent works.
#[async_trait]
pub trait AgentBackend: Send + Sync + 'static {
    /// Runs one task.
    async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError>;
}

/// Checks and normalises an answer's JSON (`{content, confidence, reasoning?}`).
pub fn parse_answer(value: serde_json::Value) -> Result<AgentAnswer, BackendError> {
    let answer: AgentAnswer = serde_json::from_value(value).map_err(|e| {
        BackendError::InvalidAnswer(format!("expected {{content, confidence, reasoning?}}: {e}"))
    })?;
    if !(answer.confidence.is_finite() && (0.0..=1.0).contains(&answer.confidence)) {
        return Err(BackendError::InvalidAnswer(format!(
            "confidence must be in [0, 1], got {}",
            answer.confidence
        )));
    }
    // An answer the store cannot hold would fail its batch later: refuse it
    // now, as this agent's error, so the run reports which agent sent it.
    crate::domain::storable_json("content", &answer.content)
        .and_then(|()| match &answer.reasoning {
            Some(r) => crate::domain::storable_text("reasoning", r),
            None => Ok(()),
        })
        .map_err(|e| BackendError::InvalidAnswer(e.to_string()))?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_answer_the_store_cannot_hold_is_an_error() {
        let ok = serde_json::json!({"content": {"decision": "go"}, "confidence": 0.5});
        assert!(parse_answer(ok).is_ok());
        let nul_content = serde_json::json!({"content": {"decision": "g\0o"}, "confidence": 0.5});
        let err = parse_answer(nul_content).unwrap_err();
        assert!(
            matches!(&err, BackendError::InvalidAnswer(m) if m.contains("content.decision") && m.contains("NUL")),
            "{err}"
        );
        let nul_reasoning =
            serde_json::json!({"content": "x", "confidence": 0.5, "reasoning": "why\0"});
        let err = parse_answer(nul_reasoning).unwrap_err();
        assert!(err.to_string().contains("reasoning"), "{err}");
    }
}
