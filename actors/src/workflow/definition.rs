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
        }
        Ok(())
    }
}
