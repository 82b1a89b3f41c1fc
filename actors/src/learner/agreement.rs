//! Learning from unevaluated workflows: each learning cycle fits the
//! one-coin agreement EM of [`crate::trust::consensus::agreement_accuracy`]
//! on the workspace's recent recommendations, evaluated or not, with the
//! unlabelled weight λ chosen by cross-validation on the verdicts
//! ([`crate::trust::consensus::choose_unlabeled_weight`]).
//!
//! The unit of the model is an agent × recommendation type cell: a group is
//! one workflow × type, its answers are `content.<decision_key>`. Beside the
//! one-coin cells, each type with enough gold gets a full Dawid–Skene model
//! (a confusion matrix per agent, [`TypeModel`]). The result
//! ([`AgreementEstimate`]) decides `aggregate = "trust_vote"` stages until
//! the next cycle (the full model first, else the cells' accuracies as
//! one-coin weights), and is reported in the cycle's insights. Assumptions and when it switches itself off:
//! docs/trust.md, "Dawid–Skene and learning from unevaluated workflows".
//!
//! Why one file of about 680 lines: 550 of code, the rest its unit tests.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{AgentId, WorkspaceId};
use crate::learner::patterns::OutcomeRecord;
use crate::trust::consensus::{
    agreement_accuracy, argmax, choose_unlabeled_weight, class_posterior, semi_supervised,
    GroupAnswer, TrustVote, WeightChoice,
};

/// An unevaluated recommendation as the agreement model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDecision {
    /// Its workflow (run).
    pub workflow_id: String,
    /// Its agent.
    pub agent_id: AgentId,
    /// Its type.
    pub recommendation_type: String,
    /// `content.<decision_key>` as text, or the whole content.
    pub decision: Option<String>,
}

/// Config `[learning.agreement]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgreementConfig {
    /// Off: the trust vote uses verdict-only accuracy (the rollback switch).
    pub enabled: bool,
    /// Newest unevaluated recommendations read per cycle.
    pub max_pending: u32,
    /// Candidate values of λ, the weight of agreement against verdicts
    /// (0 = verdicts only, 1 = an unevaluated workflow counts as much as an
    /// evaluated one); cross-validation picks one per cycle.
    pub lambdas: Vec<f64>,
    /// Cross-validation folds.
    pub folds: usize,
    /// Least number of evaluated workflow × type groups before agreement is
    /// considered at all (below it there is too little gold to judge it).
    pub min_evaluated_groups: usize,
    /// EM iterations per fit.
    pub iterations: usize,
    /// Prior strength (pseudo-outcomes) of each cell's Beta prior, centred on
    /// the workspace's approval rate.
    pub prior_strength: f64,
    /// A type gets a full Dawid–Skene model (a confusion matrix per agent)
    /// only if its decisions take at most this many distinct values; a
    /// workflow × type group with more is left out of agreement altogether.
    pub max_labels: usize,
}

impl Default for AgreementConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pending: 50_000,
            lambdas: vec![0.0, 0.1, 0.3, 1.0],
            folds: 5,
            min_evaluated_groups: 20,
            iterations: 30,
            prior_strength: 4.0,
            max_labels: 16,
        }
    }
}

impl AgreementConfig {
    /// Checks the knobs: `Err((config key, what to do))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.lambdas.is_empty() || self.lambdas.iter().any(|l| !(0.0..=1.0).contains(l)) {
            return Err((
                "learner.agreement.lambdas",
                "must list values in [0, 1], e.g. [0, 0.1, 0.3, 1]".into(),
            ));
        }
        if !(2..=20).contains(&self.folds) {
            return Err(("learner.agreement.folds", "must be between 2 and 20".into()));
        }
        if !(1..=500).contains(&self.iterations) {
            return Err((
                "learner.agreement.iterations",
                "must be between 1 and 500".into(),
            ));
        }
        if !(2..=64).contains(&self.max_labels) {
            return Err((
                "learner.agreement.max_labels",
                "must be between 2 and 64".into(),
            ));
        }
        if !(self.prior_strength > 0.0 && self.prior_strength <= 1_000.0) {
            return Err((
                "learner.agreement.prior_strength",
                "must be in (0, 1000]".into(),
            ));
        }
        Ok(())
    }
}

/// One agent × type cell's accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgreementCell {
    /// Accuracy with agreement (at the chosen λ), in [0, 1].
    pub accuracy: f64,
    /// Accuracy from verdicts alone (λ = 0), for comparison.
    pub verdict_accuracy: f64,
    /// Evidence: verdicts + λ × unevaluated answers in groups of two or more.
    pub evidence: f64,
}

/// What a cycle learned from agreement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgreementEstimate {
    /// Whether the estimate is in use (λ > 0 chosen).
    pub in_use: bool,
    /// Why it is or is not in use, in one sentence.
    pub reason: String,
    /// The chosen λ (0 when not in use).
    pub lambda: f64,
    /// `(λ, cross-validated Brier score)` per candidate; empty when no choice
    /// was made.
    pub brier: Vec<(f64, f64)>,
    /// Groups (workflow × type) with a verdict.
    pub evaluated_groups: usize,
    /// Groups without any verdict and with two or more answers (the ones
    /// agreement learns from).
    pub unevaluated_groups: usize,
    /// Cells by agent, then type.
    pub cells: BTreeMap<AgentId, BTreeMap<String, AgreementCell>>,
    /// Full Dawid–Skene models by type (the trust vote's first choice).
    /// Not serialised (a confusion matrix per agent and type); restored
    /// nodes use `cells` until the next cycle.
    #[serde(skip)]
    pub models: BTreeMap<String, TypeModel>,
    /// What each full model is, by type.
    #[serde(default)]
    pub model_summaries: BTreeMap<String, ModelSummary>,
}

/// A type's full Dawid–Skene model: semi-supervised EM over the type's
/// workflow groups with the approved answer as gold.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeModel {
    /// The decisions, by class index.
    pub labels: Vec<String>,
    /// Class priors.
    pub prior: Vec<f64>,
    /// Each agent's confusion matrix `[true class][answer]`.
    pub confusion: BTreeMap<AgentId, Vec<Vec<f64>>>,
}

/// A full model in the cycle's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelSummary {
    /// Distinct decisions of the type.
    pub labels: usize,
    /// Agents with a confusion matrix.
    pub agents: usize,
    /// Groups with a gold decision (an approved answer).
    pub gold_groups: usize,
    /// The unlabelled weight chosen by cross-validation.
    pub lambda: f64,
    /// `(λ, held-out gold recovered)` per candidate.
    pub cv_accuracy: Vec<(f64, f64)>,
}

impl TypeModel {
    /// The vote of `answers` (agent, decision) under this model: the
    /// posterior over the type's decisions (`consensus::class_posterior`).
    /// `None` when an answer is a decision the model has never seen or no
    /// answering agent has a matrix (the caller falls back to the one-coin
    /// trust vote).
    pub fn vote(&self, answers: &[(AgentId, String)]) -> Option<TrustVote> {
        let mut known = Vec::new();
        for (agent, decision) in answers {
            let label = self.labels.iter().position(|l| l == decision)?;
            if let Some(m) = self.confusion.get(agent) {
                known.push((m.as_slice(), label));
            }
        }
        if known.is_empty() {
            return None;
        }
        let post = class_posterior(&self.prior, known);
        let best = argmax(&post);
        Some(TrustVote {
            decision: self.labels.get(best)?.clone(),
            posterior: post.get(best).copied()?,
            distribution: self.labels.iter().cloned().zip(post).collect(),
            voters: answers.len(),
        })
    }
}

impl AgreementEstimate {
    /// The accuracy to weigh `agent`'s vote on `rtype` by, if agreement is in
    /// use and the cell exists.
    pub fn accuracy(&self, agent: &AgentId, rtype: &str) -> Option<f64> {
        if !self.in_use {
            return None;
        }
        self.cells.get(agent)?.get(rtype).map(|c| c.accuracy)
    }

    /// The vote of `answers` (agent, decision) on `rtype` under the type's
    /// full model, if it has one and the model knows every decision given.
    pub fn vote(&self, rtype: &str, answers: &[(AgentId, String)]) -> Option<TrustVote> {
        self.models.get(rtype)?.vote(answers)
    }
}

/// The answers of each workflow × type group, with agent × type cells and
/// decisions numbered as they are first seen.
#[derive(Default)]
struct GroupBuilder {
    /// Cell index → (agent, type).
    cells: Vec<(AgentId, String)>,
    cell_index: HashMap<(AgentId, String), usize>,
    /// Workflow × type → (its distinct decisions, its answers).
    groups: BTreeMap<(String, String), (Vec<String>, Vec<GroupAnswer>)>,
    /// Groups with more distinct decisions than this are left out (free
    /// text, not a decision); interning stops there, so it stays linear.
    max_decisions: usize,
}

impl GroupBuilder {
    /// Adds one answer; one without a decision carries no agreement.
    fn add(
        &mut self,
        workflow: &str,
        rtype: &str,
        agent: &AgentId,
        decision: Option<&String>,
        verdict: Option<f64>,
    ) {
        let Some(decision) = decision else { return };
        let key = (agent.clone(), rtype.to_string());
        let next = self.cells.len();
        let cells = &mut self.cells;
        let cell = *self.cell_index.entry(key.clone()).or_insert_with(|| {
            cells.push(key);
            next
        });
        let (decisions, answers) = self
            .groups
            .entry((workflow.to_string(), rtype.to_string()))
            .or_default();
        if decisions.len() > self.max_decisions {
            return;
        }
        let answer = intern(decisions, decision);
        answers.push(GroupAnswer {
            agent: cell,
            answer,
            verdict,
        });
    }
}

/// Fits the agreement model on a workspace's evaluated `records` (verdict:
/// approved = 1, partial or rejected = 0) and `pending` decisions. Pure and
/// deterministic.
pub fn estimate(
    records: &[OutcomeRecord],
    pending: &[PendingDecision],
    config: &AgreementConfig,
) -> AgreementEstimate {
    let mut b = GroupBuilder {
        max_decisions: config.max_labels,
        ..GroupBuilder::default()
    };
    for r in records {
        let v = if r.approved { 1.0 } else { 0.0 };
        b.add(
            &r.workflow_id,
            &r.recommendation_type,
            &r.agent_id,
            r.decision.as_ref(),
            Some(v),
        );
    }
    for p in pending {
        b.add(
            &p.workflow_id,
            &p.recommendation_type,
            &p.agent_id,
            p.decision.as_ref(),
            None,
        );
    }
    b.groups
        .retain(|_, (decisions, _)| decisions.len() <= config.max_labels);
    let models = if config.enabled {
        full_models(&b, config)
    } else {
        BTreeMap::new()
    };
    let GroupBuilder { cells, groups, .. } = b;
    let groups: Vec<Vec<GroupAnswer>> = groups.into_values().map(|(_, g)| g).collect();
    let evaluated_groups = groups
        .iter()
        .filter(|g| g.iter().any(|x| x.verdict.is_some()))
        .count();
    let unevaluated_groups = groups
        .iter()
        .filter(|g| g.len() >= 2 && g.iter().all(|x| x.verdict.is_none()))
        .count();
    let approvals: f64 = records.iter().filter(|r| r.approved).count() as f64;
    let mean = if records.is_empty() {
        0.5
    } else {
        approvals / records.len() as f64
    };
    let k = config.prior_strength;
    let prior = (k * mean, k * (1.0 - mean));
    let mut out = AgreementEstimate {
        evaluated_groups,
        unevaluated_groups,
        model_summaries: models
            .iter()
            .map(|(t, (_, s))| (t.clone(), s.clone()))
            .collect(),
        models: models.into_iter().map(|(t, (m, _))| (t, m)).collect(),
        ..AgreementEstimate::default()
    };
    let choice: Option<WeightChoice> = if !config.enabled {
        out.reason = "switched off (learner.agreement.enabled = false)".into();
        None
    } else if evaluated_groups < config.min_evaluated_groups {
        out.reason = format!(
            "too few evaluated workflows to judge agreement ({evaluated_groups} of the {} needed, learner.agreement.min_evaluated_groups)",
            config.min_evaluated_groups
        );
        None
    } else if unevaluated_groups == 0 {
        out.reason = "no unevaluated workflow with two or more answers to learn from".into();
        None
    } else {
        let c = choose_unlabeled_weight(
            &groups,
            cells.len(),
            prior,
            &config.lambdas,
            config.folds,
            config.iterations,
        );
        if c.is_none() {
            out.reason = "too few evaluated workflows for cross-validation".into();
        }
        c
    };
    if let Some(c) = &choice {
        out.lambda = c.lambda;
        out.brier = c.brier.clone();
        out.in_use = c.lambda > 0.0;
        out.reason = if out.in_use {
            format!(
                "agreement on {unevaluated_groups} unevaluated workflow groups is used at weight {} (chosen by {}-fold cross-validation on {} verdicts)",
                c.lambda, config.folds, c.held_out
            )
        } else {
            format!(
                "cross-validation on {} verdicts found that agreement does not predict them better than verdicts alone (agents may share blind spots): verdicts only",
                c.held_out
            )
        };
    }
    let verdict_only = agreement_accuracy(&groups, cells.len(), prior, 0.0, 1);
    let fitted = if out.in_use {
        agreement_accuracy(&groups, cells.len(), prior, out.lambda, config.iterations)
    } else {
        verdict_only.clone()
    };
    for (i, (agent, rtype)) in cells.into_iter().enumerate() {
        let (Some(&(accuracy, evidence)), Some(&(verdict_accuracy, _))) =
            (fitted.get(i), verdict_only.get(i))
        else {
            continue;
        };
        out.cells.entry(agent).or_default().insert(
            rtype,
            AgreementCell {
                accuracy,
                verdict_accuracy,
                evidence,
            },
        );
    }
    out
}

/// The index of `x` in `seen`, appended if new (small lists: a linear scan).
fn intern<T: PartialEq + Clone>(seen: &mut Vec<T>, x: &T) -> usize {
    seen.iter().position(|s| s == x).unwrap_or_else(|| {
        seen.push(x.clone());
        seen.len() - 1
    })
}

/// Fits a full model per type with at least `min_evaluated_groups` gold
/// groups and at most `max_labels` decisions. A group's gold is its
/// approved decision (one right answer per workflow × type); a group with
/// approved answers that disagree has none.
fn full_models(
    b: &GroupBuilder,
    config: &AgreementConfig,
) -> BTreeMap<String, (TypeModel, ModelSummary)> {
    /// One type's items as Dawid–Skene sees them.
    #[derive(Default)]
    struct Parts {
        labels: Vec<String>,
        agents: Vec<AgentId>,
        /// Builder cell → index in `agents` (cells are agent × type).
        agent_of_cell: HashMap<usize, usize>,
        items: Vec<Vec<(usize, usize)>>,
        gold: Vec<Option<usize>>,
        /// More than `max_labels` decisions: no model (and no more interning,
        /// so free-text decisions cost linear time).
        overflow: bool,
    }
    let mut by_type: BTreeMap<&str, Parts> = BTreeMap::new();
    for ((_, rtype), (decisions, answers)) in &b.groups {
        let t = by_type.entry(rtype.as_str()).or_default();
        if t.overflow {
            continue;
        }
        let mut item = Vec::with_capacity(answers.len());
        let mut approved: Option<Option<usize>> = None;
        for x in answers {
            let (Some(decision), Some((agent, _))) =
                (decisions.get(x.answer), b.cells.get(x.agent))
            else {
                continue;
            };
            let label = intern(&mut t.labels, decision);
            if t.labels.len() > config.max_labels {
                t.overflow = true;
                break;
            }
            let next = t.agents.len();
            let j = *t.agent_of_cell.entry(x.agent).or_insert_with(|| {
                t.agents.push(agent.clone());
                next
            });
            item.push((j, label));
            if x.verdict == Some(1.0) {
                approved = Some(match approved {
                    None => Some(label),
                    Some(Some(l)) if l == label => Some(l),
                    Some(_) => None,
                });
            }
        }
        t.items.push(item);
        t.gold.push(approved.flatten());
    }
    let mut out = BTreeMap::new();
    for (rtype, t) in by_type {
        let Parts {
            labels,
            agents,
            items,
            gold,
            overflow,
            ..
        } = t;
        let gold_groups = gold.iter().filter(|g| g.is_some()).count();
        if overflow || gold_groups < config.min_evaluated_groups {
            continue;
        }
        let Some(fit) = semi_supervised(
            &items,
            agents.len(),
            labels.len(),
            &gold,
            &config.lambdas,
            config.folds,
            config.iterations,
        ) else {
            continue;
        };
        let summary = ModelSummary {
            labels: labels.len(),
            agents: agents.len(),
            gold_groups,
            lambda: fit.lambda,
            cv_accuracy: fit.cv_accuracy,
        };
        let model = TypeModel {
            labels,
            prior: fit.fit.prior,
            confusion: agents.into_iter().zip(fit.fit.confusion).collect(),
        };
        out.insert(rtype.to_string(), (model, summary));
    }
    out
}

/// Publishes to `engine` the agreement estimate of each workspace's latest
/// cycle, if that succeeded (so a restarted node's trust vote uses it at
/// once). Reads one cycle per workspace; a workspace whose report cannot be
/// read is logged and left on the trust cards.
pub async fn restore(store: &dyn crate::ports::Store, engine: &crate::engine::Engine) {
    let workspaces = match store.workspace_ids().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "agreement estimates not restored; the trust vote uses the trust cards until each workspace's next learning cycle");
            return;
        }
    };
    for ws in workspaces {
        restore_workspace(store, engine, ws).await;
    }
}

/// [`restore`] for one workspace (another process finished a cycle of `ws`:
/// the change feed). Logs and keeps the current estimate when the latest
/// report cannot be read.
pub async fn restore_workspace(
    store: &dyn crate::ports::Store,
    engine: &crate::engine::Engine,
    ws: WorkspaceId,
) {
    let latest = match store.cycles(ws, 1).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(workspace = %ws, error = %e, "agreement estimate not restored");
            return;
        }
    };
    let Some(report) = latest.into_iter().next() else {
        return;
    };
    if report.status != "succeeded" {
        return;
    }
    if let Some(raw) = report.insights.get("agreement") {
        match serde_json::from_value::<AgreementEstimate>(raw.clone()) {
            Ok(e) => engine.set_agreement(ws, std::sync::Arc::new(e)),
            Err(e) => {
                tracing::warn!(workspace = %ws, cycle = %report.id, error = %e, "agreement estimate unreadable; the next cycle replaces it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn agent(s: &str) -> AgentId {
        AgentId::parse("agent_id", s).unwrap()
    }

    fn record(wf: &str, a: &str, d: &str, approved: bool) -> OutcomeRecord {
        OutcomeRecord {
            id: Uuid::now_v7(),
            workflow_id: wf.into(),
            agent_id: agent(a),
            recommendation_type: "t".into(),
            confidence: 0.5,
            approved,
            decision: Some(d.into()),
            evaluated_at: Utc::now(),
        }
    }

    fn pending(wf: &str, a: &str, d: &str) -> PendingDecision {
        PendingDecision {
            workflow_id: wf.into(),
            agent_id: agent(a),
            recommendation_type: "t".into(),
            decision: Some(d.into()),
        }
    }

    /// Groups are workflow × type; verdict-only accuracy is the Beta
    /// posterior; the estimate is off with too little gold and when
    /// switched off, and `accuracy` then answers nothing.
    #[test]
    fn groups_counts_and_switches() {
        let records = vec![record("w1", "a", "x", true), record("w1", "b", "y", false)];
        let pending = vec![
            pending("w2", "a", "x"),
            pending("w2", "b", "x"),
            pending("w3", "a", "x"),
        ];
        let config = AgreementConfig::default();
        let e = estimate(&records, &pending, &config);
        assert_eq!(e.evaluated_groups, 1);
        // w3 has one answer: no agreement in it.
        assert_eq!(e.unevaluated_groups, 1);
        assert!(!e.in_use);
        assert!(e.reason.contains("min_evaluated_groups"), "{}", e.reason);
        assert_eq!(e.accuracy(&agent("a"), "t"), None);
        // Prior: strength 4 around the approval rate ½; a: 1 of 1 → 3/5.
        let a = e.cells[&agent("a")]["t"];
        assert!((a.verdict_accuracy - 3.0 / 5.0).abs() < 1e-12, "{a:?}");
        assert_eq!(a.accuracy, a.verdict_accuracy);
        let off = AgreementConfig {
            enabled: false,
            min_evaluated_groups: 0,
            ..AgreementConfig::default()
        };
        let e = estimate(&records, &pending, &off);
        assert!(
            !e.in_use && e.reason.contains("switched off"),
            "{}",
            e.reason
        );
        assert!(AgreementConfig::default().validate().is_ok());
        let bad = AgreementConfig {
            lambdas: vec![2.0],
            ..AgreementConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "learner.agreement.lambdas");
    }

    /// A type's full model learns confusion, which one accuracy cannot: an
    /// agent that always answers the opposite of the truth on a yes/no type
    /// is believed in reverse, and the vote follows the class posterior.
    #[test]
    fn full_model_learns_an_inverted_agent() {
        let mut records = Vec::new();
        for w in 0..40 {
            let truth = if w % 3 == 0 { "yes" } else { "no" };
            let other = if truth == "yes" { "no" } else { "yes" };
            let wf = format!("w{w}");
            records.push(record(&wf, "honest", truth, true));
            records.push(record(&wf, "flip", other, false));
        }
        let e = estimate(&records, &[], &AgreementConfig::default());
        let summary = &e.model_summaries["t"];
        assert_eq!(
            (summary.labels, summary.agents, summary.gold_groups),
            (2, 2, 40)
        );
        // The inverted agent alone: its "no" means "yes".
        let v = e.vote("t", &[(agent("flip"), "no".into())]).unwrap();
        assert_eq!(v.decision, "yes", "{v:?}");
        assert!(v.posterior > 0.9, "{v:?}");
        // A decision the model has never seen: no vote (the caller falls back).
        assert!(e.vote("t", &[(agent("flip"), "maybe".into())]).is_none());
        // Unknown agents only: no vote.
        assert!(e.vote("t", &[(agent("new"), "no".into())]).is_none());
        // Below min_evaluated_groups: no model.
        let e = estimate(&records[..20], &[], &AgreementConfig::default());
        assert!(e.models.is_empty());
    }

    /// A tenant's free text is not a decision: a group with more distinct
    /// decisions than `max_labels` is left out, and building stays linear
    /// (50,000 distinct answers in one workflow would be quadratic).
    #[test]
    fn free_text_groups_are_left_out() {
        let pending: Vec<PendingDecision> = (0..50_000)
            .map(|i| pending("w-big", &format!("a{}", i % 7), &format!("text {i}")))
            .collect();
        let mut records: Vec<OutcomeRecord> = (0..30)
            .map(|w| record(&format!("w{w}"), "a0", "x", true))
            .collect();
        records.push(record("w0", "a1", "y", false));
        let e = estimate(&records, &pending, &AgreementConfig::default());
        assert_eq!(e.unevaluated_groups, 0, "{}", e.reason);
        assert_eq!(e.evaluated_groups, 30);
    }

    /// Measurement (not run by default; `cargo test -p swarmwise-actors
    /// agreement::tests::cost -- --ignored --nocapture`): one estimate over
    /// 200 types × 30 gold workflows × 30 agents, plus 20,000 pending.
    #[test]
    #[ignore]
    fn cost_of_many_types() {
        let agents = 30;
        let mut records = Vec::new();
        for t in 0..200 {
            for w in 0..30 {
                let truth = if (w + t) % 3 == 0 { "yes" } else { "no" };
                for a in 0..agents {
                    let mut r = record(&format!("w{t}-{w}"), &format!("a{a}"), truth, a % 4 != 0);
                    r.recommendation_type = format!("type{t}");
                    if a % 4 == 0 {
                        r.decision = Some(if truth == "yes" { "no" } else { "yes" }.into());
                    }
                    records.push(r);
                }
            }
        }
        let mut pend = Vec::new();
        for i in 0..20_000usize {
            let mut p = pending(
                &format!("p{}", i / 30),
                &format!("a{}", i % agents),
                if i % 2 == 0 { "yes" } else { "no" },
            );
            p.recommendation_type = format!("type{}", (i / 30) % 200);
            pend.push(p);
        }
        let started = std::time::Instant::now();
        let e = estimate(&records, &pend, &AgreementConfig::default());
        println!(
            "records={} pending={} types={} in_use={} elapsed={:?}",
            records.len(),
            pend.len(),
            e.model_summaries.len(),
            e.in_use,
            started.elapsed()
        );
    }
}
