//! Seeded simulations that measure the error rates of the trust rules with
//! the default config: how often a fair agent is quarantined by
//! `agent_trust_low`, how fast a bad one is, how often `agent_approval_low`
//! fires for an agent at 0.6, and how often `agents_declining` fires for a
//! workspace of stable agents. Each test prints its figures (run with
//! `--nocapture`); docs/alerts.md quotes them. Deterministic: fixed seeds.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use chrono::{TimeDelta, TimeZone, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::config::{AlertsConfig, AGENTS_DECLINING, AGENT_TRUST_LOW};
use super::rules::{evaluate, trust_readings, AlertBook, Transition};
use crate::domain::{AgentFailure, AgentId, FailureKind, OutcomeSample, Verdict, WorkspaceId};
use crate::trust::{TrustParams, WorkspaceTrust};

/// How a simulated agent behaves.
#[derive(Debug, Clone, Copy)]
struct Profile {
    /// Probability an answer is approved (else rejected).
    approval: f64,
    /// Stated confidence of every answer.
    confidence: f64,
    /// Probability a call fails (error) instead of answering.
    failure: f64,
}

const FAIR_PEER: Profile = Profile {
    approval: 0.8,
    confidence: 0.8,
    failure: 0.02,
};

struct Workspace {
    trust: WorkspaceTrust,
    params: TrustParams,
    i: i64,
}

impl Workspace {
    fn new() -> Self {
        Self {
            trust: WorkspaceTrust::default(),
            params: TrustParams::default(),
            i: 0,
        }
    }

    /// One call of `agent`: an evaluated outcome (true) or a failure.
    fn call(&mut self, agent: &str, p: Profile, rng: &mut StdRng) -> bool {
        self.i += 1;
        let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap() + TimeDelta::seconds(self.i);
        let id = Uuid::from_u128(self.i as u128);
        let agent_id = AgentId::parse("a", agent).unwrap();
        if rng.gen_bool(p.failure) {
            let f = AgentFailure {
                id,
                workspace_id: WorkspaceId(Uuid::nil()),
                agent_id,
                agent_name: agent.into(),
                workflow_id: "w".into(),
                recommendation_type: "t".into(),
                kind: FailureKind::Error,
                message: "boom".into(),
                occurred_at: at,
            };
            self.trust.fold_failures(&[f], &self.params);
            false
        } else {
            let verdict = if rng.gen_bool(p.approval) {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            let s = OutcomeSample {
                id,
                agent_id,
                agent_name: agent.into(),
                recommendation_type: "t".into(),
                confidence: p.confidence,
                verdict,
                quality: verdict.score() * 100.0,
                latency_ms: Some(1_000),
                deadline_ms: None,
                evaluated_at: at,
            };
            self.trust.fold(&[s], &self.params);
            true
        }
    }
}

/// Calls of `subject`, and how many of them were evaluated outcomes (the
/// rest failed), until `agent_trust_low` fires for it (`None`: not within
/// `calls`), among three fair peers, one round (each agent one call) at a
/// time, the rule evaluated after every call as a trust update does.
fn calls_until_quarantine(subject: Profile, calls: usize, seed: u64) -> Option<(usize, usize)> {
    let rules = AlertsConfig::default().resolve(0.3, 20).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ws = Workspace::new();
    let mut book = AlertBook::default();
    let ws_id = WorkspaceId(Uuid::nil());
    let only = [AgentId::parse("a", "subject").unwrap()];
    let now = Utc::now();
    let (mut readings, mut out) = (Vec::new(), Vec::new());
    let mut outcomes = 0;
    for n in 1..=calls {
        for peer in ["p1", "p2", "p3"] {
            ws.call(peer, FAIR_PEER, &mut rng);
        }
        outcomes += usize::from(ws.call("subject", subject, &mut rng));
        let snap = ws.trust.snapshot(&ws.params);
        readings.clear();
        trust_readings(ws_id, &snap, Some(&only), &rules, &mut readings);
        readings.retain(|r| r.rule == AGENT_TRUST_LOW);
        evaluate(&mut book, &rules, &readings, now, &mut out);
        if out.iter().any(|t| matches!(t, Transition::Fired(_))) {
            return Some((n, outcomes));
        }
    }
    None
}

/// `agent_trust_low` false quarantines: fair agents (true approval 0.6 and
/// 0.7, calibrated confidence, 2% failures) over 200 calls each, 100 seeds.
#[test]
fn fair_agents_are_not_quarantined() {
    for approval in [0.5, 0.6, 0.7] {
        let fair = Profile {
            approval,
            confidence: approval,
            failure: 0.02,
        };
        let runs = 100;
        let fired = (0..runs)
            .filter(|seed| calls_until_quarantine(fair, 200, 1_000 + seed).is_some())
            .count();
        eprintln!(
            "agent_trust_low: fair agent at approval {approval}: quarantined in {fired} of {runs} runs of 200 calls"
        );
        if approval >= 0.6 {
            assert_eq!(fired, 0, "approval {approval}: {fired} false quarantines");
        }
    }
}

/// `agent_trust_low` detection: the bad agent (wrong 95% of the
/// time, confidence 0.9, a third of its calls fail) is quarantined within
/// 60 of its evaluated outcomes in every one of 200 seeded runs. Its calls
/// (outcomes plus failures) are reported too: failures count towards
/// `agents.disable_min_samples` but are not outcomes.
#[test]
fn bad_agent_is_quarantined_within_sixty_outcomes() {
    let bad = Profile {
        approval: 0.05,
        confidence: 0.9,
        failure: 1.0 / 3.0,
    };
    let runs: Vec<(usize, usize)> = (0..200)
        .map(|seed| {
            calls_until_quarantine(bad, 200, 7_000 + seed).unwrap_or((usize::MAX, usize::MAX))
        })
        .collect();
    let mut calls: Vec<usize> = runs.iter().map(|r| r.0).collect();
    let mut outcomes: Vec<usize> = runs.iter().map(|r| r.1).collect();
    calls.sort_unstable();
    outcomes.sort_unstable();
    let over_60_calls = calls.iter().filter(|c| **c > 60).count();
    eprintln!(
        "agent_trust_low: bad agent quarantined after {} outcomes (median), p95 {}, max {}; after {} calls (median), p95 {}, max {}, over 60 calls in {over_60_calls} of 200 runs",
        outcomes[100], outcomes[190], outcomes[199], calls[100], calls[190], calls[199]
    );
    assert!(outcomes[199] <= 60, "max {} outcomes", outcomes[199]);
    assert!(
        calls[100] >= 20,
        "fires before agents.disable_min_samples: {}",
        calls[100]
    );
}

/// `agent_approval_low` false alarms: an agent at true approval 0.6, one
/// outcome per 15 s evaluation tick, 480 outcomes (two hours), 400 seeds;
/// the rule reads the card's raw approval rate (approved / evaluated). And
/// its delay for an agent at 0.4.
#[test]
fn approval_low_false_alarm_rate_at_point_six() {
    let rules = AlertsConfig::default().resolve(0.3, 20).unwrap();
    let spec = rules
        .get(super::config::AGENT_APPROVAL_LOW)
        .unwrap()
        .clone();
    let run = |p: f64, seed: u64| -> Option<usize> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut book = AlertBook::default();
        let t0 = Utc::now();
        let (mut approved, mut n) = (0u64, 0u64);
        for k in 1..=480 {
            n += 1;
            approved += u64::from(rng.gen_bool(p));
            let r = super::rules::Reading {
                workspace: Some(WorkspaceId(Uuid::nil())),
                rule: super::config::AGENT_APPROVAL_LOW,
                subject: "a".into(),
                value: approved as f64 / n as f64,
                samples: n,
                detail: String::new(),
            };
            let at = t0 + TimeDelta::seconds(15 * k as i64);
            if let Some(Transition::Fired(_)) = book.observe(&spec, &r, at) {
                return Some(k);
            }
        }
        None
    };
    let runs = 400;
    let false_alarms = (0..runs).filter(|s| run(0.6, 20_000 + s).is_some()).count();
    let mut delays: Vec<usize> = (0..runs)
        .map(|s| run(0.4, 30_000 + s).unwrap_or(usize::MAX))
        .collect();
    delays.sort_unstable();
    eprintln!(
        "agent_approval_low: agent at 0.6 alarmed in {false_alarms} of {runs} runs of 480 outcomes; agent at 0.4 detected after {} outcomes (median), p95 {}",
        delays[runs as usize / 2],
        delays[runs as usize * 95 / 100]
    );
    assert!(
        (false_alarms as f64) / (runs as f64) < 0.1,
        "{false_alarms} false alarms"
    );
    assert!(delays[runs as usize * 95 / 100] <= 120);
}

/// `agents_declining` false alarms: eight stable agents (approval 0.6 to
/// 0.9) over 300 rounds, the rule evaluated after every round, 30 seeds.
#[test]
fn stable_agents_do_not_raise_agents_declining() {
    let rules = AlertsConfig::default().resolve(0.3, 20).unwrap();
    let runs = 30;
    let (mut fired_runs, mut max_declining) = (0, 0usize);
    for seed in 0..runs {
        let mut rng = StdRng::seed_from_u64(40_000 + seed);
        let mut ws = Workspace::new();
        let mut book = AlertBook::default();
        let now = Utc::now();
        let (mut readings, mut out) = (Vec::new(), Vec::new());
        let mut fired = false;
        for _ in 0..300 {
            for k in 0..8 {
                let approval = 0.6 + 0.3 * f64::from(k) / 7.0;
                let p = Profile {
                    approval,
                    confidence: approval,
                    failure: 0.02,
                };
                ws.call(&format!("s{k}"), p, &mut rng);
            }
            let snap = ws.trust.snapshot(&ws.params);
            readings.clear();
            trust_readings(
                WorkspaceId(Uuid::nil()),
                &snap,
                Some(&[][..]),
                &rules,
                &mut readings,
            );
            readings.retain(|r| r.rule == AGENTS_DECLINING);
            max_declining = max_declining.max(readings[0].value as usize);
            out.clear();
            evaluate(&mut book, &rules, &readings, now, &mut out);
            fired |= out.iter().any(|t| matches!(t, Transition::Fired(_)));
        }
        fired_runs += usize::from(fired);
    }
    eprintln!("agents_declining: {fired_runs} of {runs} workspaces of 8 stable agents alarmed over 300 rounds (most declining at once: {max_declining})");
    assert!(
        fired_runs * 10 <= runs as usize,
        "{fired_runs} false alarms"
    );
}
