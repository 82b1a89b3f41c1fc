//! Judging: a stage's trust-weighted vote, an answer's decision, and the
//! run's final result (the last non-review stage's vote or majority, every
//! stage's answers, the quality).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{StageAgent, StageReport, Workflows};
use crate::barrier::AgentOutcome;
use crate::domain::{AgentId, WorkspaceId};
use crate::workflow::{StageDef, WorkflowDef};

impl Workflows {
    /// The stage's trust-weighted vote. First choice: the type's full
    /// Dawid–Skene model from the latest learning cycle (posterior over the
    /// type's decisions from each agent's confusion matrix,
    /// `learner/agreement.rs`), when it knows every decision given. Else each
    /// answer `content.<decision_key>`
    /// weighted by ln((K−1)·p/(1−p)), p = the agent's accuracy on the type
    /// (learned from verdicts and agreement by the latest learning cycle when
    /// that is in use, `learner/agreement.rs`; else its trust card's, or its
    /// overall one without outcomes of the type; the workspace mean without
    /// history), K = the number of distinct answers (at least 2).
    pub(super) fn trust_vote(
        &self,
        ws: WorkspaceId,
        stage: &StageDef,
        report: &[StageAgent],
    ) -> Option<crate::trust::consensus::TrustVote> {
        let key = stage.decision_key.as_deref().unwrap_or("decision");
        let snap = self.engine.trust(ws);
        let agreement = self.engine.agreement(ws);
        if let Some(e) = &agreement {
            let answers: Vec<(AgentId, String)> = report
                .iter()
                .filter_map(|a| match &a.result.outcome {
                    AgentOutcome::Ok { answer, .. } => {
                        Some((a.result.agent_id.clone(), decision_of(&answer.content, key)))
                    }
                    _ => None,
                })
                .collect();
            if let Some(v) = e.vote(&stage.recommendation_type, &answers) {
                return Some(v);
            }
        }
        let votes: Vec<(String, f64)> = report
            .iter()
            .filter_map(|a| match &a.result.outcome {
                AgentOutcome::Ok { answer, .. } => {
                    let learned = agreement
                        .as_ref()
                        .and_then(|e| e.accuracy(&a.result.agent_id, &stage.recommendation_type));
                    let p = learned.unwrap_or_else(|| {
                        snap.agents.get(&a.result.agent_id).map_or(
                            snap.default_card.accuracy_score,
                            |c| {
                                c.per_type
                                    .get(&stage.recommendation_type)
                                    .map_or(c.overall.accuracy_score, |t| t.accuracy_score)
                            },
                        )
                    });
                    Some((decision_of(&answer.content, key), p))
                }
                _ => None,
            })
            .collect();
        let distinct = votes
            .iter()
            .map(|v| v.0.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        crate::trust::consensus::trust_vote(&votes, distinct)
    }
}

/// `content.<key>` as text (strings as they are, other JSON as JSON), or the
/// whole content when the key is absent.
pub(super) fn decision_of(content: &Value, key: &str) -> String {
    content.get(key).map_or_else(
        || content.to_string(),
        |d| d.as_str().map_or_else(|| d.to_string(), str::to_owned),
    )
}

/// The finalisation step: the last non-review stage's trust vote when it
/// asks for one, else its majority decision,
/// every stage's answers, and the quality.
pub(super) fn assemble(stages: &[StageReport], def: &WorkflowDef, quality: Option<f64>) -> Value {
    let mut by_stage = serde_json::Map::new();
    for s in stages {
        let answers: Vec<Value> = s
            .agents
            .iter()
            .filter_map(|a| match &a.result.outcome {
                AgentOutcome::Ok { answer, .. } => Some(json!({"agent_id": a.result.agent_id, "content": answer.content, "confidence": answer.confidence})),
                _ => None,
            })
            .collect();
        by_stage.insert(s.name.clone(), Value::Array(answers));
    }
    let final_stage = def
        .stages
        .iter()
        .rev()
        .find(|s| !s.review)
        .map(|s| s.name.as_str());
    let final_report = stages.iter().find(|s| Some(s.name.as_str()) == final_stage);
    if let Some(vote) = final_report.and_then(|r| r.aggregate.as_ref()) {
        return json!({
            "decision": vote.decision,
            "decision_posterior": vote.posterior,
            "aggregate": vote,
            "quality": quality,
            "stages": by_stage,
        });
    }
    let mut votes: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    if let Some(report) = final_report {
        for a in &report.agents {
            if let AgentOutcome::Ok { answer, .. } = &a.result.outcome {
                let key = answer.content.get("decision").map_or_else(
                    || answer.content.to_string(),
                    |d| d.as_str().map_or_else(|| d.to_string(), str::to_owned),
                );
                let e = votes.entry(key).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += answer.confidence;
            }
        }
    }
    let decision = votes
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(a.1 .1.total_cmp(&b.1 .1)))
        .map(|(k, _)| k);
    json!({ "decision": decision, "quality": quality, "stages": by_stage })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::agent::backend::AgentAnswer;
    use crate::barrier::{AgentResult, Completion};

    fn ok(agent: &str, content: Value, confidence: f64) -> StageAgent {
        StageAgent {
            result: AgentResult {
                agent_id: AgentId::parse("agent", agent).unwrap(),
                priority: None,
                outcome: AgentOutcome::Ok {
                    answer: AgentAnswer {
                        content,
                        confidence,
                        reasoning: None,
                        ground_truth: None,
                        usage: Default::default(),
                    },
                    latency_ms: 1,
                },
            },
            recommendation_id: None,
            attempts: 1,
            ground_truth: None,
            deferred: false,
        }
    }

    fn timeout(agent: &str) -> StageAgent {
        StageAgent {
            result: AgentResult {
                agent_id: AgentId::parse("agent", agent).unwrap(),
                priority: None,
                outcome: AgentOutcome::Timeout,
            },
            recommendation_id: None,
            attempts: 1,
            ground_truth: None,
            deferred: false,
        }
    }

    fn stage(name: &str, agents: Vec<StageAgent>) -> StageReport {
        StageReport {
            name: name.into(),
            recommendation_type: "strategy".into(),
            completed_by: Completion::All,
            agents,
            aggregate: None,
            approval: None,
            completed_at: None,
        }
    }

    fn def(stages: &[(&str, bool)]) -> WorkflowDef {
        serde_json::from_value(json!({
            "name": "w",
            "stages": stages.iter().map(|(n, review)| json!({
                "name": n, "recommendation_type": "strategy", "agents": ["a"], "review": review
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn decision_of_reads_the_key_as_text_or_falls_back_to_the_content() {
        assert_eq!(decision_of(&json!({"decision": "buy"}), "decision"), "buy");
        assert_eq!(decision_of(&json!({"decision": 3}), "decision"), "3");
        assert_eq!(
            decision_of(&json!({"decision": {"x": 1}}), "decision"),
            r#"{"x":1}"#
        );
        assert_eq!(
            decision_of(&json!({"other": 1}), "decision"),
            r#"{"other":1}"#
        );
    }

    #[test]
    fn assemble_takes_the_majority_of_the_last_non_review_stage() {
        let stages = vec![
            stage(
                "plan",
                vec![
                    ok("a", json!({"decision": "buy"}), 0.9),
                    ok("b", json!({"decision": "sell"}), 0.9),
                    ok("c", json!({"decision": "sell"}), 0.1),
                    timeout("d"),
                ],
            ),
            // A review stage never decides, whatever it says.
            stage("review", vec![ok("r", json!({"decision": "hold"}), 1.0)]),
        ];
        let out = assemble(
            &stages,
            &def(&[("plan", false), ("review", true)]),
            Some(0.7),
        );
        assert_eq!(out["decision"], "sell");
        assert_eq!(out["quality"], 0.7);
        // Every answered agent is listed under its stage; the timeout is not.
        assert_eq!(out["stages"]["plan"].as_array().unwrap().len(), 3);
        assert_eq!(out["stages"]["review"].as_array().unwrap().len(), 1);
        assert!(out.get("aggregate").is_none());
    }

    #[test]
    fn assemble_breaks_a_tie_by_summed_confidence_and_has_no_decision_without_answers() {
        let stages = vec![stage(
            "plan",
            vec![
                ok("a", json!({"decision": "buy"}), 0.4),
                ok("b", json!({"decision": "sell"}), 0.6),
            ],
        )];
        let out = assemble(&stages, &def(&[("plan", false)]), None);
        assert_eq!(out["decision"], "sell");
        let empty = vec![stage("plan", vec![timeout("a")])];
        let out = assemble(&empty, &def(&[("plan", false)]), None);
        assert!(out["decision"].is_null());
    }
}
