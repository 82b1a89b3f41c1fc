//! Records: what a stage writes about its agents, the recommendation each
//! answer is tracked as and the failures (errors, invalid answers, timeouts)
//! counted against their reliability.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::agent::backend::Task;
use crate::barrier::{AgentOutcome, Completion};
use crate::domain::{
    to_micros, Agent, AgentFailure, AgentId, FailureKind, Recommendation, RecommendationStatus,
};

/// The failures of one barrier, to record against the agents' reliability:
/// every error and invalid answer, and every timeout of a barrier that
/// completed by its deadline. An agent left without an answer because the
/// quorum was reached first did not fail, so a quorum's missing answers are
/// not counted.
pub(super) fn failures_of(
    result: &crate::barrier::FanOutResult,
    task: &Task,
    registered: &BTreeMap<AgentId, Agent>,
) -> Vec<AgentFailure> {
    let now = to_micros(Utc::now());
    result
        .agents
        .iter()
        .filter_map(|r| {
            let (kind, message) = match &r.outcome {
                AgentOutcome::Error { kind, message, .. } => (*kind, message.clone()),
                AgentOutcome::Timeout if result.completed_by != Completion::Quorum => (
                    FailureKind::Timeout,
                    "no answer before the stage deadline".into(),
                ),
                _ => return None,
            };
            let mut message = message;
            if message.len() > 1000 {
                let mut cut = 1000;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            Some(AgentFailure {
                id: Uuid::now_v7(),
                workspace_id: task.workspace_id,
                agent_id: r.agent_id.clone(),
                agent_name: registered
                    .get(&r.agent_id)
                    .map_or_else(|| r.agent_id.to_string(), |a| a.name.clone()),
                workflow_id: task.workflow_id.clone(),
                recommendation_type: task.recommendation_type.clone(),
                kind,
                // A backend's message may quote what it received.
                message: message.replace('\0', "\\u0000"),
                occurred_at: now,
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
/// The recommendation an answer to `task` is tracked as.
pub(super) fn recommendation(
    task: &Task,
    agent_id: AgentId,
    agent_name: String,
    answer: &crate::agent::backend::AgentAnswer,
    latency_ms: u64,
    timeout: Duration,
) -> Recommendation {
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: task.workspace_id,
        agent_id,
        agent_name,
        correlation_id: task.correlation_id.clone(),
        workflow_id: task.workflow_id.clone(),
        recommendation_type: task.recommendation_type.clone(),
        content: answer.content.clone(),
        confidence: answer.confidence,
        reasoning: answer.reasoning.clone(),
        latency_ms: Some(latency_ms as i64),
        deadline_ms: Some(timeout.as_millis() as i64),
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now()),
        evaluated_at: None,
        usage: answer.usage.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::agent::backend::AgentAnswer;
    use crate::barrier::{AgentResult, FanOutResult};
    use crate::domain::WorkspaceId;

    fn task() -> Task {
        Task {
            id: Uuid::now_v7(),
            workspace_id: WorkspaceId(Uuid::now_v7()),
            workflow_id: "run-1".into(),
            correlation_id: "c-1".into(),
            workflow: "w".into(),
            stage: "plan".into(),
            recommendation_type: "strategy".into(),
            input: serde_json::json!({}),
            context: serde_json::json!({}),
        }
    }

    fn result(agent: &str, outcome: AgentOutcome) -> AgentResult {
        AgentResult {
            agent_id: AgentId::parse("agent", agent).unwrap(),
            priority: None,
            outcome,
        }
    }

    fn error(message: &str) -> AgentOutcome {
        AgentOutcome::Error {
            kind: FailureKind::Error,
            message: message.into(),
            latency_ms: 5,
        }
    }

    #[test]
    fn failures_count_errors_and_deadline_timeouts_but_not_quorum_leftovers() {
        let t = task();
        let agents = vec![
            result("a", error("boom")),
            result("b", AgentOutcome::Timeout),
            result(
                "c",
                AgentOutcome::Skipped {
                    reason: "disabled".into(),
                },
            ),
        ];
        let deadline = FanOutResult {
            completed_by: Completion::Deadline,
            agents: agents.clone(),
        };
        let f = failures_of(&deadline, &t, &BTreeMap::new());
        let who: Vec<_> = f.iter().map(|f| (f.agent_id.to_string(), f.kind)).collect();
        assert_eq!(
            who,
            vec![
                ("a".to_owned(), FailureKind::Error),
                ("b".to_owned(), FailureKind::Timeout)
            ]
        );
        assert!(f.iter().all(|f| f.workspace_id == t.workspace_id
            && f.workflow_id == "run-1"
            && f.recommendation_type == "strategy"
            // Unregistered agents are named by their id.
            && f.agent_name == f.agent_id.to_string()));
        let quorum = FanOutResult {
            completed_by: Completion::Quorum,
            agents,
        };
        let f = failures_of(&quorum, &t, &BTreeMap::new());
        assert_eq!(f.len(), 1, "a quorum's missing answers are not failures");
    }

    #[test]
    fn failure_messages_are_cut_at_a_char_boundary_and_nul_is_escaped() {
        // 999 ASCII bytes then a 3-byte char straddling byte 1000.
        let long = format!("{}€tail", "x".repeat(999));
        let r = FanOutResult {
            completed_by: Completion::All,
            agents: vec![result("a", error(&long)), result("b", error("a\0b"))],
        };
        let f = failures_of(&r, &task(), &BTreeMap::new());
        assert_eq!(f[0].message, "x".repeat(999));
        assert_eq!(f[1].message, "a\\u0000b");
    }

    #[test]
    fn an_answer_is_tracked_pending_with_its_latency_and_deadline() {
        let t = task();
        let answer = AgentAnswer {
            content: serde_json::json!({"decision": "buy"}),
            confidence: 0.8,
            reasoning: Some("because".into()),
            ground_truth: Some(true),
            usage: Default::default(),
        };
        let a = AgentId::parse("agent", "a").unwrap();
        let rec = recommendation(
            &t,
            a.clone(),
            "Alpha".into(),
            &answer,
            42,
            Duration::from_secs(2),
        );
        assert_eq!(rec.agent_id, a);
        assert_eq!(rec.agent_name, "Alpha");
        assert_eq!(rec.workspace_id, t.workspace_id);
        assert_eq!(rec.workflow_id, "run-1");
        assert_eq!(rec.correlation_id, "c-1");
        assert_eq!(rec.content, answer.content);
        assert_eq!(rec.latency_ms, Some(42));
        assert_eq!(rec.deadline_ms, Some(2000));
        assert_eq!(rec.status, RecommendationStatus::Pending);
        assert!(rec.outcome_quality.is_none() && rec.evaluated_at.is_none());
    }
}
