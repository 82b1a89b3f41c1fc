//! Domain model: validated newtypes and the records the engine moves around.
//!
//! Every value with a rule has a `parse` constructor; once parsed it is valid
//! everywhere, so handlers, actors and stores never re-check it. A parse error
//! names the field and says what a valid value looks like.

use std::fmt;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused; `field` is the JSON field the caller sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    /// The offending field, as the client spelled it (e.g. `confidence`).
    pub field: String,
    /// What is wrong and what a valid value looks like.
    pub message: String,
}

impl ParseError {
    /// A refusal of `field` with an explanation.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, reported under a longer field path (e.g. `items[3].`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}{}", self.field);
        self
    }
}

/// The one rule for text the stores must hold: no NUL (U+0000).
///
/// PostgreSQL refuses NUL in `text` and in `jsonb` (as a raw character and as
/// the `\u0000` escape, in strings and in keys); accepting it would only fail
/// later, in the write-behind writer. Lone surrogates cannot reach here: a Rust
/// `String` cannot hold them, and `serde_json` refuses `"\ud800"` while parsing
/// (a 400 before any field is looked at). Every field that is stored goes
/// through [`storable_text`] or [`storable_json`].
pub fn storable_text(field: &str, raw: &str) -> Result<(), ParseError> {
    match raw.find('\0') {
        None => Ok(()),
        Some(at) => Err(ParseError::new(
            field,
            format!(
                "contains a NUL character (U+0000) at byte {at}, which the database cannot store; remove it"
            ),
        )),
    }
}

/// [`storable_text`] for every string and object key inside a JSON value;
/// the error names the path, e.g. `content.steps[2].note`.
pub fn storable_json(field: &str, value: &serde_json::Value) -> Result<(), ParseError> {
    use serde_json::Value;
    match value {
        Value::String(s) => storable_text(field, s),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| storable_json(&format!("{field}[{i}]"), v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            storable_text(field, k)
                .map_err(|e| ParseError::new(e.field, format!("an object key {}", e.message)))?;
            storable_json(&format!("{field}.{k}"), v)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// The tenant every row belongs to; an API key is bound to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct WorkspaceId(pub Uuid);

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An agent's identifier inside its workspace: 1–128 characters of
/// `[A-Za-z0-9_.:-]`, so it is safe in URLs, logs and CSV.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct AgentId(String);

impl AgentId {
    /// Validates an agent id reported under `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ParseError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
        if raw.is_empty() || raw.len() > 128 || !raw.chars().all(ok_char) {
            return Err(ParseError::new(
                field,
                "must be 1-128 characters of letters, digits, '_', '.', ':' or '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent's stated confidence in a recommendation, in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Confidence(f64);

impl Confidence {
    /// Accepts a finite number in [0, 1].
    pub fn parse(field: &str, raw: f64) -> Result<Self, ParseError> {
        if raw.is_finite() && (0.0..=1.0).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ParseError::new(
                field,
                format!("must be a number between 0 and 1, got {raw}"),
            ))
        }
    }

    /// The value in [0, 1].
    pub fn get(self) -> f64 {
        self.0
    }
}

/// An outcome quality score in [0, 100].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct QualityScore(f64);

impl QualityScore {
    /// Accepts a finite number in [0, 100].
    pub fn parse(field: &str, raw: f64) -> Result<Self, ParseError> {
        if raw.is_finite() && (0.0..=100.0).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ParseError::new(
                field,
                format!("must be a number between 0 and 100, got {raw}"),
            ))
        }
    }

    /// The value in [0, 100].
    pub fn get(self) -> f64 {
        self.0
    }
}

/// Where a recommendation stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecommendationStatus {
    /// Tracked, not yet evaluated.
    Pending,
    /// Judged good (quality at or above the approval threshold, or said so).
    Approved,
    /// Judged half good; counts as half an approval in trust.
    Partial,
    /// Judged bad.
    Rejected,
    /// Never evaluated within the retention window.
    Expired,
}

impl RecommendationStatus {
    /// Every status as its wire name, for error messages.
    pub const NAMES: &'static str = "pending, approved, partial, rejected, expired";

    /// Parses the wire name.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ParseError> {
        match raw {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "partial" => Ok(Self::Partial),
            "rejected" => Ok(Self::Rejected),
            "expired" => Ok(Self::Expired),
            _ => Err(ParseError::new(
                field,
                format!("unknown status {raw:?}; use one of {}", Self::NAMES),
            )),
        }
    }

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Partial => "partial",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }
}

/// A verdict on one recommendation: the statuses an evaluation may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Good.
    Approved,
    /// Half good.
    Partial,
    /// Bad.
    Rejected,
}

impl Verdict {
    /// Parses `approved`, `partial` or `rejected`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ParseError> {
        match raw {
            "approved" => Ok(Self::Approved),
            "partial" => Ok(Self::Partial),
            "rejected" => Ok(Self::Rejected),
            _ => Err(ParseError::new(
                field,
                format!("unknown verdict {raw:?}; use approved, partial or rejected"),
            )),
        }
    }

    /// The verdict as a status.
    pub fn status(self) -> RecommendationStatus {
        match self {
            Self::Approved => RecommendationStatus::Approved,
            Self::Partial => RecommendationStatus::Partial,
            Self::Rejected => RecommendationStatus::Rejected,
        }
    }

    /// The value trust folds in: 1 approved, ½ partial, 0 rejected.
    pub fn score(self) -> f64 {
        match self {
            Self::Approved => 1.0,
            Self::Partial => 0.5,
            Self::Rejected => 0.0,
        }
    }

    /// The verdict of a status, if it is one.
    pub fn of_status(status: RecommendationStatus) -> Option<Self> {
        match status {
            RecommendationStatus::Approved => Some(Self::Approved),
            RecommendationStatus::Partial => Some(Self::Partial),
            RecommendationStatus::Rejected => Some(Self::Rejected),
            RecommendationStatus::Pending | RecommendationStatus::Expired => None,
        }
    }
}

/// Scheduling class of a task in an agent's mailbox, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    /// Runs after everything else (aging still lets it through).
    Low,
    /// The default class.
    Normal,
    /// Ahead of normal work.
    High,
    /// Ahead of everything.
    Critical,
}

impl Priority {
    /// Parses `LOW`, `NORMAL`, `HIGH`, `CRITICAL` (any case).
    pub fn parse(field: &str, raw: &str) -> Result<Self, ParseError> {
        match raw.to_ascii_uppercase().as_str() {
            "LOW" => Ok(Self::Low),
            "NORMAL" => Ok(Self::Normal),
            "HIGH" => Ok(Self::High),
            "CRITICAL" => Ok(Self::Critical),
            _ => Err(ParseError::new(
                field,
                format!("unknown priority {raw:?}; use LOW, NORMAL, HIGH or CRITICAL"),
            )),
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    /// Unique inside the workspace.
    pub id: AgentId,
    /// Display name; recommendations default to it.
    pub name: String,
    /// Backend kind; `external` for agents whose recommendations arrive over the API.
    pub kind: String,
    /// Backend-specific settings, opaque to the learning service.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: serde_json::Value,
    /// The operator's switch: disabled agents are skipped by fan-outs;
    /// tracking still accepts them.
    pub enabled: bool,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Null, or its quarantine by an alert (quarantined or on probation;
    /// `crate::admission`). Set by the store, never by a registration.
    #[serde(default)]
    pub quarantine: Option<crate::admission::Quarantine>,
    /// Null, or the grace an operator's re-enable from quarantine granted
    /// (no quarantine until its observation count).
    #[serde(default)]
    pub override_grace: Option<crate::admission::OverrideGrace>,
}

/// One tracked recommendation, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recommendation {
    /// UUIDv7: time-ordered, so it doubles as the pagination key.
    pub id: Uuid,
    /// Owner.
    pub workspace_id: WorkspaceId,
    /// Who made it.
    pub agent_id: AgentId,
    /// The agent's display name at the time.
    pub agent_name: String,
    /// Ties together the recommendations of one request across workflows.
    pub correlation_id: String,
    /// The workflow run it belongs to; outcomes are reported per workflow.
    pub workflow_id: String,
    /// Free-form kind: strategy, content, risk, ...
    pub recommendation_type: String,
    /// The recommendation itself, opaque JSON.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub content: serde_json::Value,
    /// The agent's stated confidence in [0, 1].
    pub confidence: f64,
    /// The agent's explanation, if any.
    pub reasoning: Option<String>,
    /// How long the agent took, if known.
    pub latency_ms: Option<i64>,
    /// The deadline it was due by, if any (timeliness uses `trust.deadline_ms` otherwise).
    pub deadline_ms: Option<i64>,
    /// Where it stands.
    pub status: RecommendationStatus,
    /// Outcome quality 0–100 once evaluated.
    pub outcome_quality: Option<f64>,
    /// Human feedback text, if any.
    pub feedback: Option<String>,
    /// When it was tracked (microsecond precision, as stored).
    pub created_at: DateTime<Utc>,
    /// When its verdict was first set; orders the trust fold.
    pub evaluated_at: Option<DateTime<Utc>>,
    /// Tokens, model and cost of the call that produced it, where known
    /// (flattened: `model`, `prompt_tokens`, `completion_tokens`, `cost_usd`).
    #[serde(flatten)]
    pub usage: TokenUsage,
}

/// Largest token count accepted for one side of one call: 10^9. Anything
/// above is not a real count (the largest context windows are ~10^7), so an
/// agent's answer reporting more is recorded as unknown and the API refuses it.
pub const MAX_TOKENS: u64 = 1_000_000_000;

/// Longest model name kept, in bytes.
pub const MAX_MODEL_LEN: usize = 128;

/// What one agent call consumed: the model that answered, the prompt
/// (input) and completion (output) token counts in the OpenAI `usage` sense,
/// and the cost in US dollars. Each is `None` when unknown. The counts are
/// at most [`MAX_TOKENS`]; `cost_usd` is only ever computed by the service
/// from the operator's price table (`[costs.models]`), never taken from an
/// agent or a client, and is `None` when the model has no price row or a
/// count is unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenUsage {
    /// The model that answered (at most [`MAX_MODEL_LEN`] bytes of
    /// `[A-Za-z0-9._:/@+-]`), if known.
    pub model: Option<String>,
    /// Tokens of the prompt (input), if known.
    pub prompt_tokens: Option<u64>,
    /// Tokens of the completion (output), if known.
    pub completion_tokens: Option<u64>,
    /// prompt_tokens × prompt price + completion_tokens × completion price,
    /// prices per million tokens from the price table; USD.
    pub cost_usd: Option<f64>,
}

impl TokenUsage {
    /// Whether anything is known.
    pub fn is_empty(&self) -> bool {
        self.model.is_none()
            && self.prompt_tokens.is_none()
            && self.completion_tokens.is_none()
            && self.cost_usd.is_none()
    }
}

/// Whether `name` is an acceptable model name: 1 to [`MAX_MODEL_LEN`] bytes
/// of ASCII letters, digits and `._:/@+-` (what OpenAI, Ollama, vLLM and
/// Hugging Face names use).
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODEL_LEN
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '@' | '+' | '-')
        })
}

/// Filters of `GET /recommendations`; all optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecommendationFilter {
    /// Only this agent's.
    pub agent_id: Option<AgentId>,
    /// Only this workflow's.
    pub workflow_id: Option<String>,
    /// Only in this status.
    pub status: Option<RecommendationStatus>,
    /// Only of this type.
    pub recommendation_type: Option<String>,
    /// Only ids strictly older than this (the cursor).
    pub before: Option<Uuid>,
    /// Only ids at or above this: the lower end of a page's scan window
    /// (`RecommendationStore::recommendation_scan_floor`), so a page of
    /// combined filters examines a bounded number of rows.
    pub not_before: Option<Uuid>,
    /// Only among the first this many rows (newest first, below `before`)
    /// that match the leading filter (the first of agent, type and status
    /// that is set): the same bounded window as `not_before` at the
    /// window's floor, in one query, without finding the floor first.
    pub window: Option<u32>,
    /// At most this many.
    pub limit: u32,
}

impl RecommendationFilter {
    /// Whether the filters combine two or more of agent, status and type
    /// without a workflow: then no index serves all of them, and a page
    /// walks one index and discards what the others reject, possibly the
    /// whole workspace. Such pages get a scan window.
    pub fn combines_filters(&self) -> bool {
        self.workflow_id.is_none()
            && [
                self.agent_id.is_some(),
                self.status.is_some(),
                self.recommendation_type.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count()
                >= 2
    }
}

/// A verdict written to one recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictUpdate {
    /// The recommendation.
    pub id: Uuid,
    /// Its new status.
    pub verdict: Verdict,
    /// Its outcome quality.
    pub quality: f64,
    /// Feedback text to store, if any.
    pub feedback: Option<String>,
    /// The evaluation time; kept from the first evaluation on later feedback.
    pub evaluated_at: DateTime<Utc>,
}

/// What trust learns from: one evaluated recommendation, in fold order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeSample {
    /// The recommendation (tie-breaker of the fold order).
    pub id: Uuid,
    /// Whose.
    pub agent_id: AgentId,
    /// Display name of the agent.
    pub agent_name: String,
    /// Of which type.
    pub recommendation_type: String,
    /// Stated confidence.
    pub confidence: f64,
    /// The verdict.
    pub verdict: Verdict,
    /// Outcome quality 0–100.
    pub quality: f64,
    /// Latency, if known.
    pub latency_ms: Option<i64>,
    /// Its own deadline, if any.
    pub deadline_ms: Option<i64>,
    /// When it was evaluated (fold order).
    pub evaluated_at: DateTime<Utc>,
}

impl OutcomeSample {
    /// The total order trust folds samples in: evaluation time, then id.
    pub fn key(&self) -> (DateTime<Utc>, Uuid) {
        (self.evaluated_at, self.id)
    }

    /// The sample of an evaluated recommendation; `None` while pending.
    pub fn of(rec: &Recommendation) -> Option<Self> {
        let verdict = Verdict::of_status(rec.status)?;
        Some(Self {
            id: rec.id,
            agent_id: rec.agent_id.clone(),
            agent_name: rec.agent_name.clone(),
            recommendation_type: rec.recommendation_type.clone(),
            confidence: rec.confidence,
            verdict,
            quality: rec.outcome_quality.unwrap_or(verdict.score() * 100.0),
            latency_ms: rec.latency_ms,
            deadline_ms: rec.deadline_ms,
            evaluated_at: rec.evaluated_at?,
        })
    }
}

/// Why an asked agent gave no usable answer: what reliability counts
/// against it (DESIGN §3: "1 − error/timeout rate").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The backend failed (network, process, provider error).
    Error,
    /// No answer before the stage's barrier completed.
    Timeout,
    /// An answer that is not `{content, confidence, reasoning?}` or that
    /// breaks a rule (confidence out of range, text the store cannot hold).
    Invalid,
}

impl FailureKind {
    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Invalid => "invalid",
        }
    }

    /// Parses the wire name.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ParseError> {
        match raw {
            "error" => Ok(Self::Error),
            "timeout" => Ok(Self::Timeout),
            "invalid" => Ok(Self::Invalid),
            _ => Err(ParseError::new(
                field,
                format!("unknown failure kind {raw:?}; use error, timeout or invalid"),
            )),
        }
    }
}

/// One execution of an agent that produced no usable answer. Recorded by the
/// workflow runner (table `agent_failures`), folded into the agent's trust as
/// an observation of reliability, and counted in its metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentFailure {
    /// UUIDv7 (tie-breaker of the fold order).
    pub id: Uuid,
    /// Owner.
    pub workspace_id: WorkspaceId,
    /// Whose failure.
    pub agent_id: AgentId,
    /// Display name of the agent.
    pub agent_name: String,
    /// The workflow run it happened in.
    pub workflow_id: String,
    /// The type the agent was asked for (the stage's).
    pub recommendation_type: String,
    /// Error, timeout or invalid answer.
    pub kind: FailureKind,
    /// What went wrong, as the backend said (truncated to 1,000 bytes).
    pub message: String,
    /// When it happened (fold order; microsecond precision, as stored).
    pub occurred_at: DateTime<Utc>,
}

impl AgentFailure {
    /// The total order trust folds observations in: time, then id.
    pub fn key(&self) -> (DateTime<Utc>, Uuid) {
        (self.occurred_at, self.id)
    }
}

/// Truncates a time to microseconds, the precision both stores keep, so a
/// value read back equals the value written.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn confidence_bounds() {
        assert!(Confidence::parse("confidence", 0.0).is_ok());
        assert!(Confidence::parse("confidence", 1.0).is_ok());
        assert!(Confidence::parse("confidence", 1.01).is_err());
        assert!(Confidence::parse("confidence", f64::NAN).is_err());
        let err = Confidence::parse("confidence", -0.1).unwrap_err();
        assert_eq!(err.field, "confidence");
    }

    #[test]
    fn agent_id_rules() {
        assert!(AgentId::parse("agent_id", "move-architect_1").is_ok());
        assert!(AgentId::parse("agent_id", "").is_err());
        assert!(AgentId::parse("agent_id", "a b").is_err());
        assert!(AgentId::parse("agent_id", &"x".repeat(129)).is_err());
    }

    #[test]
    fn nul_is_refused_wherever_it_hides() {
        assert!(storable_text("reasoning", "fine text, ünïcode").is_ok());
        let err = storable_text("reasoning", "a\0b").unwrap_err();
        assert_eq!(err.field, "reasoning");
        assert!(err.message.contains("NUL"), "{err}");
        let v = serde_json::json!({"steps": [{"note": "ok"}, {"note": "x\0"}]});
        assert_eq!(
            storable_json("content", &v).unwrap_err().field,
            "content.steps[1].note"
        );
        let key = serde_json::json!({"bad\0key": 1});
        let err = storable_json("content", &key).unwrap_err();
        assert_eq!(err.field, "content");
        assert!(err.message.contains("key"), "{err}");
        assert!(storable_json("content", &serde_json::json!([1, null, true, "s"])).is_ok());
    }

    #[test]
    fn serde_json_refuses_lone_surrogates() {
        // So they never reach a store: the body is refused as malformed JSON.
        assert!(serde_json::from_str::<serde_json::Value>(r#""\ud800""#).is_err());
        assert!(serde_json::from_str::<serde_json::Value>(r#"{"\udc00": 1}"#).is_err());
        assert!(serde_json::from_str::<String>(r#""\ud83d\ude00""#).is_ok());
    }

    #[test]
    fn status_round_trip() {
        for s in ["pending", "approved", "partial", "rejected", "expired"] {
            assert_eq!(RecommendationStatus::parse("s", s).unwrap().as_str(), s);
        }
        assert!(RecommendationStatus::parse("s", "maybe").is_err());
    }
}
