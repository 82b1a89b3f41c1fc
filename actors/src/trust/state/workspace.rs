//! Workspace trust: the state of a workspace (one agent cell and one cell
//! per type per agent), folding outcomes and failures into it in key order
//! behind a watermark, and the snapshot of cards readers use.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::card::card;
use super::{CellState, TrustCard, TrustParams};
use crate::domain::{AgentFailure, AgentId, OutcomeSample};

/// Trust state of one agent: the agent cell and one cell per type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentTrust {
    /// Display name from the newest sample.
    pub name: String,
    /// All of the agent's outcomes.
    pub overall: CellState,
    /// Outcomes per recommendation type.
    pub per_type: BTreeMap<String, CellState>,
    /// Key of the newest folded sample; older or equal samples are ignored.
    pub watermark: Option<(DateTime<Utc>, Uuid)>,
}

/// Trust state of a workspace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkspaceTrust {
    /// Per agent.
    pub agents: BTreeMap<AgentId, AgentTrust>,
}

/// One observation trust folds: an evaluated outcome, or a failed execution.
#[derive(Debug, Clone, Copy)]
pub enum Observation<'a> {
    /// An evaluated recommendation.
    Outcome(&'a OutcomeSample),
    /// An error, timeout or invalid answer.
    Failure(&'a AgentFailure),
}

impl<'a> Observation<'a> {
    /// The fold order: time (evaluation or failure), then id.
    pub fn key(&self) -> (DateTime<Utc>, Uuid) {
        match self {
            Self::Outcome(s) => s.key(),
            Self::Failure(f) => f.key(),
        }
    }

    fn agent(&self) -> &'a AgentId {
        match self {
            Self::Outcome(s) => &s.agent_id,
            Self::Failure(f) => &f.agent_id,
        }
    }

    fn agent_name(&self) -> &'a str {
        match self {
            Self::Outcome(s) => &s.agent_name,
            Self::Failure(f) => &f.agent_name,
        }
    }

    fn recommendation_type(&self) -> &'a str {
        match self {
            Self::Outcome(s) => &s.recommendation_type,
            Self::Failure(f) => &f.recommendation_type,
        }
    }
}

/// Merges outcomes and failures, each already in key order, into one stream
/// in key order.
pub fn merge_observations<'a>(
    samples: &'a [OutcomeSample],
    failures: &'a [AgentFailure],
) -> Vec<Observation<'a>> {
    let mut out = Vec::with_capacity(samples.len() + failures.len());
    let (mut a, mut b) = (samples.iter().peekable(), failures.iter().peekable());
    loop {
        let take_sample = match (a.peek(), b.peek()) {
            (Some(s), Some(f)) => s.key() <= f.key(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_sample {
            a.next().map(Observation::Outcome)
        } else {
            b.next().map(Observation::Failure)
        };
        out.extend(next);
    }
    out
}

/// What a fold did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Folded {
    /// Agents whose state changed.
    pub changed: Vec<AgentId>,
    /// Agents that were sent an observation at or below their watermark: a
    /// re-delivery, or a failure that reached the scorer after a newer
    /// outcome. Callers that cannot tell the two apart rebuild these agents
    /// from the store, which holds both.
    pub stale: Vec<AgentId>,
}

impl WorkspaceTrust {
    /// Builds the state from samples in any order (sorted here).
    pub fn from_samples(samples: Vec<OutcomeSample>, p: &TrustParams) -> Self {
        Self::from_observations(samples, Vec::new(), p)
    }

    /// Builds the state from outcomes and failures in any order (sorted here).
    pub fn from_observations(
        mut samples: Vec<OutcomeSample>,
        mut failures: Vec<AgentFailure>,
        p: &TrustParams,
    ) -> Self {
        samples.sort_by_key(OutcomeSample::key);
        failures.sort_by_key(AgentFailure::key);
        let mut ws = Self::default();
        ws.fold_observations(merge_observations(&samples, &failures), p);
        ws
    }

    /// Folds samples in; each agent ignores samples at or below its watermark.
    /// Returns the agents that changed.
    pub fn fold(&mut self, samples: &[OutcomeSample], p: &TrustParams) -> Vec<AgentId> {
        self.fold_observations(samples.iter().map(Observation::Outcome), p)
            .changed
    }

    /// Folds failures in (in key order); see [`Folded::stale`].
    pub fn fold_failures(&mut self, failures: &[AgentFailure], p: &TrustParams) -> Folded {
        self.fold_observations(failures.iter().map(Observation::Failure), p)
    }

    /// Folds observations in key order; each agent ignores observations at
    /// or below its watermark (reported as stale).
    pub fn fold_observations<'a>(
        &mut self,
        observations: impl IntoIterator<Item = Observation<'a>>,
        p: &TrustParams,
    ) -> Folded {
        let mut out = Folded::default();
        for o in observations {
            let id = o.agent();
            let agent = self.agents.entry(id.clone()).or_default();
            if agent.watermark.is_some_and(|w| o.key() <= w) {
                if !out.stale.contains(id) {
                    out.stale.push(id.clone());
                }
                continue;
            }
            agent.watermark = Some(o.key());
            o.agent_name().clone_into(&mut agent.name);
            let cell = agent
                .per_type
                .entry(o.recommendation_type().to_owned())
                .or_default();
            match o {
                Observation::Outcome(s) => {
                    cell.observe(s, p);
                    agent.overall.observe(s, p);
                }
                Observation::Failure(f) => {
                    cell.observe_failure(f, p);
                    agent.overall.observe_failure(f, p);
                }
            }
            if !out.changed.contains(id) {
                out.changed.push(id.clone());
            }
        }
        out
    }

    /// Replaces one agent's state by a fold of exactly these observations.
    pub fn replace_agent(
        &mut self,
        agent: &AgentId,
        samples: Vec<OutcomeSample>,
        failures: Vec<AgentFailure>,
        p: &TrustParams,
    ) {
        self.agents.remove(agent);
        let mut samples = samples;
        let mut failures = failures;
        samples.sort_by_key(OutcomeSample::key);
        failures.sort_by_key(AgentFailure::key);
        self.fold_observations(merge_observations(&samples, &failures), p);
    }

    /// Computes every card: what readers see.
    pub fn snapshot(&self, p: &TrustParams) -> WorkspaceSnapshot {
        let pooled = |cells: &mut dyn Iterator<Item = &CellState>| {
            let (mut wy, mut w, mut ok, mut all) = (0.0, 0.0, 0.0, 0.0);
            for c in cells {
                wy += c.wy;
                w += c.w;
                ok += c.w_ok;
                all += c.w_ok + c.w_err;
            }
            let acc = if w > 0.0 { wy / w } else { 0.5 };
            let rel = if all > 0.0 { ok / all } else { 0.5 };
            (acc, rel)
        };
        let (ws_acc, ws_rel) = pooled(&mut self.agents.values().map(|a| &a.overall));
        let mut type_means: HashMap<&str, f64> = HashMap::new();
        for a in self.agents.values() {
            for t in a.per_type.keys() {
                if !type_means.contains_key(t.as_str()) {
                    let (m, _) =
                        pooled(&mut self.agents.values().filter_map(|x| x.per_type.get(t)));
                    type_means.insert(t.as_str(), m);
                }
            }
        }
        let mut agents = BTreeMap::new();
        for (id, a) in &self.agents {
            let overall = card(
                &a.overall,
                ws_acc,
                p.agent_prior_strength,
                ws_acc,
                ws_rel,
                None,
                p,
            );
            let per_type = a
                .per_type
                .iter()
                .map(|(t, cell)| {
                    let reference = type_means.get(t.as_str()).copied().unwrap_or(ws_acc);
                    let c = card(
                        cell,
                        overall.accuracy_score,
                        p.type_prior_strength,
                        reference,
                        overall.reliability,
                        Some(overall.boost),
                        p,
                    );
                    (t.clone(), c)
                })
                .collect();
            agents.insert(
                id.clone(),
                AgentCards {
                    agent_name: a.name.clone(),
                    overall,
                    per_type,
                },
            );
        }
        let with_data: Vec<f64> = agents
            .values()
            .filter(|c| c.overall.sample_count > 0)
            .map(|c| c.overall.overall_trust)
            .collect();
        let workspace_average = if with_data.is_empty() {
            0.0
        } else {
            with_data.iter().sum::<f64>() / with_data.len() as f64
        };
        WorkspaceSnapshot {
            workspace_average,
            workspace_accuracy: ws_acc,
            workspace_reliability: ws_rel,
            agents,
            default_card: card(
                &CellState::default(),
                ws_acc,
                p.agent_prior_strength,
                ws_acc,
                ws_rel,
                None,
                p,
            ),
        }
    }
}

/// An agent's cards.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentCards {
    /// Display name.
    pub agent_name: String,
    /// Over all types.
    pub overall: TrustCard,
    /// Per recommendation type.
    pub per_type: BTreeMap<String, TrustCard>,
}

/// Everything readers need, computed once per update and shared read-only.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceSnapshot {
    /// Mean overall trust over agents with at least one outcome (0 if none).
    pub workspace_average: f64,
    /// Pooled decayed approval rate: the prior mean of every agent.
    pub workspace_accuracy: f64,
    /// Pooled execution success rate.
    pub workspace_reliability: f64,
    /// Per agent with at least one outcome.
    pub agents: BTreeMap<AgentId, AgentCards>,
    /// The card of an agent without any outcome.
    pub default_card: TrustCard,
}

impl WorkspaceSnapshot {
    /// The boost for an agent on a type: the type cell's if the agent has
    /// outcomes of that type, else the agent's; 0 for an agent without history.
    pub fn boost(&self, agent: &AgentId, recommendation_type: Option<&str>) -> f64 {
        let Some(cards) = self.agents.get(agent) else {
            return 0.0;
        };
        recommendation_type
            .and_then(|t| cards.per_type.get(t))
            .map_or(cards.overall.boost, |c| c.boost)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::super::testkit::*;
    use super::super::TrustParams;
    use super::*;
    use crate::domain::{FailureKind, Verdict};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn incremental_equals_batch(verdicts in proptest::collection::vec((0u8..3, 0u8..3), 1..200), split in 0usize..200) {
            let p = TrustParams::default();
            let samples: Vec<_> = verdicts.iter().enumerate()
                .map(|(i, (v, a))| sample(&format!("agent{a}"), "t", verdict_of(*v), 0.7, i as i64)).collect();
            let split = split.min(samples.len());
            let mut inc = WorkspaceTrust::default();
            inc.fold(&samples[..split], &p);
            inc.fold(&samples[split..], &p);
            // Re-delivering a batch changes nothing (watermark).
            inc.fold(&samples[..split], &p);
            let batch = WorkspaceTrust::from_samples(samples, &p);
            prop_assert_eq!(inc.snapshot(&p), batch.snapshot(&p));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The best possible record (on time, approved, quality 100, stated
        /// confidence 1, never a failure) ends at the top of the scale and
        /// of its workspace, whatever its peers did in as many steps.
        #[test]
        fn best_record_reaches_the_top(
            n in 150usize..300,
            peers in proptest::collection::vec(proptest::collection::vec(ev_strategy(), 300), 1..4),
        ) {
            let best = vec![Ev::Outcome { verdict: Verdict::Approved, confidence: 1.0, latency_ms: 1_000 }; n];
            let mut records = vec![("best".to_string(), best)];
            for (k, p) in peers.into_iter().enumerate() {
                records.push((format!("peer{k}"), p.into_iter().take(n).collect()));
            }
            let snap = workspace_of(&records);
            let top = overall(&snap, "best");
            prop_assert!(top > 0.9, "best record scored {top}");
            for (a, _) in &records {
                prop_assert!(overall(&snap, a) <= top + 1e-9, "{a} above the best: {} > {top}", overall(&snap, a));
            }
        }

        /// The worst possible record (every step a late, confidently wrong
        /// answer of quality 0, or an error, timeout or invalid answer) ends
        /// at the bottom of the scale, far below `disable_below_trust` = 0.3,
        /// and of its workspace.
        #[test]
        fn worst_record_reaches_the_bottom(
            worst in proptest::collection::vec(worst_strategy(), 150..300),
            peers in proptest::collection::vec(proptest::collection::vec(ev_strategy(), 300), 1..4),
        ) {
            let n = worst.len();
            let mut records = vec![("worst".to_string(), worst)];
            for (k, p) in peers.into_iter().enumerate() {
                records.push((format!("peer{k}"), p.into_iter().take(n).collect()));
            }
            let snap = workspace_of(&records);
            let bottom = overall(&snap, "worst");
            prop_assert!(bottom < 0.2, "worst record scored {bottom}");
            for (a, _) in &records {
                prop_assert!(overall(&snap, a) >= bottom - 1e-9, "{a} below the worst: {} < {bottom}", overall(&snap, a));
            }
        }
    }

    /// A failure that reaches the fold after a newer outcome is reported
    /// stale (the scorer then rebuilds the agent from the store); a rebuild
    /// equals the batch fold.
    #[test]
    fn out_of_order_failure_is_stale_and_rebuild_matches_batch() {
        let p = TrustParams::default();
        let s = sample("a", "t", Verdict::Approved, 0.8, 10);
        let f = failure("a", "t", FailureKind::Error, 5);
        let mut ws = WorkspaceTrust::default();
        ws.fold(std::slice::from_ref(&s), &p);
        let folded = ws.fold_failures(std::slice::from_ref(&f), &p);
        assert!(folded.changed.is_empty());
        assert_eq!(folded.stale, vec![AgentId::parse("a", "a").unwrap()]);
        ws.replace_agent(
            &AgentId::parse("a", "a").unwrap(),
            vec![s.clone()],
            vec![f.clone()],
            &p,
        );
        let batch = WorkspaceTrust::from_observations(vec![s], vec![f], &p);
        assert_eq!(ws.snapshot(&p), batch.snapshot(&p));
    }
}
