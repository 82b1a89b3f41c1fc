//! Test fixtures shared by the trust state tests: samples, failures,
//! generated records and the workspace they fold into.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use chrono::{TimeZone, Utc};
use proptest::prelude::*;
use uuid::Uuid;

use super::{TrustParams, WorkspaceSnapshot, WorkspaceTrust};
use crate::domain::{AgentFailure, AgentId, FailureKind, OutcomeSample, Verdict};

pub(super) fn sample(agent: &str, t: &str, verdict: Verdict, conf: f64, i: i64) -> OutcomeSample {
    OutcomeSample {
        id: Uuid::from_u128(i as u128),
        agent_id: AgentId::parse("a", agent).unwrap(),
        agent_name: agent.into(),
        recommendation_type: t.into(),
        confidence: conf,
        verdict,
        quality: verdict.score() * 100.0,
        latency_ms: Some(1000),
        deadline_ms: None,
        evaluated_at: Utc.timestamp_opt(1_700_000_000 + i * 60, 0).unwrap(),
    }
}

pub(super) fn failure(agent: &str, t: &str, kind: FailureKind, i: i64) -> AgentFailure {
    AgentFailure {
        id: Uuid::from_u128(i as u128),
        workspace_id: crate::domain::WorkspaceId(Uuid::nil()),
        agent_id: AgentId::parse("a", agent).unwrap(),
        agent_name: agent.into(),
        workflow_id: "w".into(),
        recommendation_type: t.into(),
        kind,
        message: "boom".into(),
        occurred_at: Utc.timestamp_opt(1_700_000_000 + i * 60, 0).unwrap(),
    }
}

/// One event of a generated record: 0–2 a verdict, 3–5 a failure.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ev {
    Outcome {
        verdict: Verdict,
        confidence: f64,
        latency_ms: i64,
    },
    Failure(FailureKind),
}

pub(super) fn ev_strategy() -> impl Strategy<Value = Ev> {
    prop_oneof![
        6 => (0u8..3, 0.0f64..=1.0, 0i64..400_000).prop_map(|(v, c, l)| Ev::Outcome {
            verdict: verdict_of(v),
            confidence: c,
            latency_ms: l,
        }),
        1 => (0u8..3).prop_map(|k| Ev::Failure([FailureKind::Error, FailureKind::Timeout, FailureKind::Invalid][k as usize])),
    ]
}

/// The worst thing an agent can do at one step: a late, confidently
/// wrong answer of quality 0, or a failure.
pub(super) fn worst_strategy() -> impl Strategy<Value = Ev> {
    prop_oneof![
        Just(Ev::Outcome {
            verdict: Verdict::Rejected,
            confidence: 1.0,
            latency_ms: 400_000
        }),
        Just(Ev::Failure(FailureKind::Error)),
        Just(Ev::Failure(FailureKind::Timeout)),
        Just(Ev::Failure(FailureKind::Invalid)),
    ]
}

/// Folds each agent's record, events interleaved round-robin over agents.
pub(super) fn workspace_of(records: &[(String, Vec<Ev>)]) -> WorkspaceSnapshot {
    let p = TrustParams::default();
    let (mut samples, mut failures) = (Vec::new(), Vec::new());
    let longest = records.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut i = 0i64;
    for step in 0..longest {
        for (agent, evs) in records {
            let Some(ev) = evs.get(step) else { continue };
            i += 1;
            match *ev {
                Ev::Outcome {
                    verdict,
                    confidence,
                    latency_ms,
                } => {
                    let mut s = sample(agent, "t", verdict, confidence, i);
                    s.latency_ms = Some(latency_ms);
                    samples.push(s);
                }
                Ev::Failure(kind) => failures.push(failure(agent, "t", kind, i)),
            }
        }
    }
    WorkspaceTrust::from_observations(samples, failures, &p).snapshot(&p)
}

pub(super) fn overall(snap: &WorkspaceSnapshot, agent: &str) -> f64 {
    snap.agents[&AgentId::parse("a", agent).unwrap()]
        .overall
        .overall_trust
}

pub(super) fn verdict_of(x: u8) -> Verdict {
    match x % 3 {
        0 => Verdict::Approved,
        1 => Verdict::Partial,
        _ => Verdict::Rejected,
    }
}
