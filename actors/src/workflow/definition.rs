//! Workflow definitions, as written in `config/workflows/*.toml`.
//!
//! ```toml
//! name = "move_creation"
//! description = "..."
//! [[stages]]
//! name = "research_analysis"
//! mode = "parallel"                 # or "sequential": each agent sees the previous answers
//! agents = ["market_researcher", "psyche_lens"]
//! recommendation_type = "research"
//! timeout_ms = 120000
//! quorum = 2
//! [[stages]]
//! name = "strategy"
//! select = { top = 2, by_trust_for = "strategy", from = ["a", "b", "c"] }
//! recommendation_type = "strategy"
//! [[stages]]
//! name = "review"
//! agents = ["critic"]
//! recommendation_type = "review"
//! review = true                     # its answers' content.quality (0-100) is the run's quality
//! ```
//!
//! A stage may add `aggregate = "trust_vote"` (and `decision_key`, default
//! `"decision"`): its answers are combined by a trust-weighted vote.
//!
//! Durability keys (docs/runtime.md, "Durable runs"):
//!
//! ```toml
//! on_restart = "resume"             # or "fail": what a run does when its node died
//! [[stages]]
//! name = "draft"
//! agents = ["writer"]
//! recommendation_type = "content"
//! retries = 2                       # failed agent calls of this stage asked again
//! backoff_ms = 500                  # before retry n: backoff_ms * 2^(n-1), capped
//! approval = true                   # pause for POST /workflows/runs/{id}/approve
//! approval_timeout_secs = 3600      # optional, else workflows.approval_timeout_secs
//! approval_default_action = "reject" # optional, else workflows.approval_default_action
//! ```

use serde::{Deserialize, Serialize};

use crate::domain::{AgentId, ParseError};

/// Parallel fan-out or one agent after another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StageMode {
    /// Every agent at once, gathered by a barrier.
    #[default]
    Parallel,
    /// One after another; each sees the answers before it.
    Sequential,
}

/// "Top N agents by trust for type X".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// How many.
    pub top: usize,
    /// Rank by trust on this recommendation type (default: the stage's type).
    #[serde(default)]
    pub by_trust_for: Option<String>,
    /// Candidates (default: every runnable agent of the workspace).
    #[serde(default)]
    pub from: Vec<String>,
}

/// How a stage's answers are combined into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Answers grouped by `content.<decision_key>`, each weighted by its
    /// agent's log-odds of being right for the stage's type
    /// (`trust/consensus.rs`); the result carries the posterior.
    TrustVote,
}

/// What a run does when the node executing it died (taken over by another
/// node after its lease, or by the node itself at restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnRestart {
    /// Continue after the last completed stage, reusing its answers
    /// (default: the run's finished work is never repeated).
    #[default]
    Resume,
    /// End the run `failed`, saying which node stopped (for side-effecting
    /// workflows whose interrupted stage must not run again unseen).
    Fail,
}

/// What an approval deadline does when nobody decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ApprovalAction {
    /// End the run `rejected` (default: nothing proceeds unapproved).
    #[default]
    Reject,
    /// Continue with the next stage.
    Approve,
}

impl ApprovalAction {
    /// Config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Approve => "approve",
        }
    }
}

/// Most retries a stage may ask for.
pub const MAX_RETRIES: u32 = 10;
/// Longest approval deadline a stage may set: 30 days, in seconds.
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 30 * 24 * 3600;

/// One stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StageDef {
    /// Unique in the workflow; later stages see this stage's answers under it.
    pub name: String,
    /// Parallel or sequential.
    #[serde(default)]
    pub mode: StageMode,
    /// Agents by id (or use `select`).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Agents by trust.
    #[serde(default)]
    pub select: Option<Selector>,
    /// Type of the recommendations this stage produces.
    pub recommendation_type: String,
    /// Stage deadline (default `workflows.default_timeout_ms`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Complete once this many agents answered.
    #[serde(default)]
    pub quorum: Option<usize>,
    /// This stage judges the run: its answers' `content.quality` is the quality.
    #[serde(default)]
    pub review: bool,
    /// Combine the answers into one (`"trust_vote"`); the run's decision
    /// then comes from it when this is the last non-review stage.
    #[serde(default)]
    pub aggregate: Option<Aggregate>,
    /// The content field holding an answer's decision (default `decision`).
    #[serde(default)]
    pub decision_key: Option<String>,
    /// How many times an agent call of this stage that failed (an error or
    /// an invalid answer; not a timeout, which spent the stage's deadline,
    /// nor a skip) is asked again, each retry a fresh call of only the
    /// failed agents (default 0, at most 10).
    #[serde(default)]
    pub retries: u32,
    /// Wait before retry n: `backoff_ms * 2^(n-1)`, capped at
    /// `workflows.max_backoff_ms` (default 500).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// After its agents answered, the run pauses `awaiting_approval` until a
    /// person approves or rejects it (or the deadline's default action).
    #[serde(default)]
    pub approval: bool,
    /// Seconds to decide (default `workflows.approval_timeout_secs`).
    #[serde(default)]
    pub approval_timeout_secs: Option<u64>,
    /// What the deadline does (default `workflows.approval_default_action`).
    #[serde(default)]
    pub approval_default_action: Option<ApprovalAction>,
}

impl StageDef {
    /// The default backoff of a retried stage, in milliseconds.
    pub const DEFAULT_BACKOFF_MS: u64 = 500;

    /// Wait before retry `n` (1-based): `backoff_ms * 2^(n-1)` capped at
    /// `cap_ms` (exponential backoff without jitter: the retried calls are
    /// one run's, not a crowd's).
    pub fn backoff(&self, n: u32, cap_ms: u64) -> std::time::Duration {
        let base = self.backoff_ms.unwrap_or(Self::DEFAULT_BACKOFF_MS);
        let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
        std::time::Duration::from_millis(base.saturating_mul(factor).min(cap_ms))
    }
}

/// A workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WorkflowDef {
    /// Unique name; `POST /workflows/runs {workflow: name}`.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Stages, run in order.
    pub stages: Vec<StageDef>,
    /// When the node executing a run died: `resume` (default) or `fail`.
    #[serde(default)]
    pub on_restart: OnRestart,
}

impl WorkflowDef {
    /// Checks the definition; errors name the field (`stages[1].agents`).
    pub fn validate(&self) -> Result<(), ParseError> {
        if self.name.trim().is_empty() {
            return Err(ParseError::new("name", "must not be empty"));
        }
        if self.stages.is_empty() {
            return Err(ParseError::new(
                "stages",
                "a workflow needs at least one stage",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.stages.iter().enumerate() {
            let at = |f: &str| format!("stages[{i}].{f}");
            if !names.insert(s.name.as_str()) {
                return Err(ParseError::new(
                    at("name"),
                    format!("duplicate stage name {:?}", s.name),
                ));
            }
            if s.recommendation_type.trim().is_empty() {
                return Err(ParseError::new(
                    at("recommendation_type"),
                    "must not be empty",
                ));
            }
            match (&s.select, s.agents.is_empty()) {
                (None, true) => {
                    return Err(ParseError::new(
                        at("agents"),
                        "list agents or give a select",
                    ))
                }
                (Some(_), false) => {
                    return Err(ParseError::new(
                        at("select"),
                        "give agents or select, not both",
                    ))
                }
                (Some(sel), true) if sel.top == 0 => {
                    return Err(ParseError::new(at("select.top"), "must be at least 1"))
                }
                _ => {}
            }
            for a in s
                .agents
                .iter()
                .chain(s.select.iter().flat_map(|x| x.from.iter()))
            {
                AgentId::parse(&at("agents"), a)?;
            }
            if s.quorum == Some(0) {
                return Err(ParseError::new(at("quorum"), "must be at least 1"));
            }
            if s.timeout_ms == Some(0) {
                return Err(ParseError::new(at("timeout_ms"), "must be at least 1"));
            }
            if s.retries > MAX_RETRIES {
                return Err(ParseError::new(
                    at("retries"),
                    format!("must be at most {MAX_RETRIES}"),
                ));
            }
            match s.backoff_ms {
                Some(0) => return Err(ParseError::new(at("backoff_ms"), "must be at least 1")),
                Some(_) if s.retries == 0 => {
                    return Err(ParseError::new(
                        at("backoff_ms"),
                        "applies only with retries; set retries or remove backoff_ms",
                    ))
                }
                _ => {}
            }
            if !s.approval
                && (s.approval_timeout_secs.is_some() || s.approval_default_action.is_some())
            {
                let key = if s.approval_timeout_secs.is_some() {
                    "approval_timeout_secs"
                } else {
                    "approval_default_action"
                };
                return Err(ParseError::new(
                    at(key),
                    "applies only to a stage with approval = true",
                ));
            }
            if let Some(t) = s.approval_timeout_secs {
                if t == 0 || t > MAX_APPROVAL_TIMEOUT_SECS {
                    return Err(ParseError::new(
                        at("approval_timeout_secs"),
                        format!("must be between 1 and {MAX_APPROVAL_TIMEOUT_SECS} (30 days)"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod durability_tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn def(stage: serde_json::Value) -> WorkflowDef {
        let mut s = serde_json::json!({"name": "s", "agents": ["a"], "recommendation_type": "t"});
        if let (Some(o), Some(extra)) = (s.as_object_mut(), stage.as_object()) {
            o.extend(extra.clone());
        }
        serde_json::from_value(serde_json::json!({"name": "w", "stages": [s]})).unwrap()
    }

    fn field_of(d: &WorkflowDef) -> String {
        d.validate().unwrap_err().field
    }

    #[test]
    fn durability_keys_are_validated_naming_the_key() {
        assert!(
            def(serde_json::json!({"retries": 2, "backoff_ms": 100, "approval": true}))
                .validate()
                .is_ok()
        );
        assert_eq!(
            field_of(&def(serde_json::json!({"retries": 11}))),
            "stages[0].retries"
        );
        assert_eq!(
            field_of(&def(serde_json::json!({"retries": 1, "backoff_ms": 0}))),
            "stages[0].backoff_ms"
        );
        assert_eq!(
            field_of(&def(serde_json::json!({"backoff_ms": 10}))),
            "stages[0].backoff_ms"
        );
        assert_eq!(
            field_of(&def(serde_json::json!({"approval_timeout_secs": 10}))),
            "stages[0].approval_timeout_secs"
        );
        assert_eq!(
            field_of(&def(
                serde_json::json!({"approval_default_action": "approve"})
            )),
            "stages[0].approval_default_action"
        );
        assert_eq!(
            field_of(&def(
                serde_json::json!({"approval": true, "approval_timeout_secs": 0})
            )),
            "stages[0].approval_timeout_secs"
        );
        let unknown: Result<WorkflowDef, _> = serde_json::from_value(
            serde_json::json!({"name": "w", "on_restart": "maybe", "stages": []}),
        );
        assert!(unknown.unwrap_err().to_string().contains("unknown variant"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let d = def(serde_json::json!({"retries": 5, "backoff_ms": 100}));
        let s = &d.stages[0];
        let ms = |n| s.backoff(n, 350).as_millis();
        assert_eq!((ms(1), ms(2), ms(3), ms(4)), (100, 200, 350, 350));
        // No overflow at absurd attempt numbers.
        assert_eq!(s.backoff(200, 1_000).as_millis(), 1_000);
    }
}
