//! Pattern mining with honest statistics (LEARNING.md, "Patterns"). Pure:
//! records in, patterns out.
//!
//! Candidates, each a feature of a recommendation within a population:
//! - expert: "by agent A" among recommendations of type T;
//! - high_confidence: "stated confidence > c" among type T;
//! - consensus: "k or more recommendations of the same workflow and type
//!   agree" (same decision) among type T, for k = 2, 3;
//! - combination: "A and B both recommended in the workflow" among the
//!   type-T recommendations of A or B (do they do better or worse together?).
//!
//! Each candidate gets a 2×2 table (feature present/absent × approved/not), a
//! two-sided Fisher exact p-value, a Benjamini–Hochberg q-value over **all**
//! candidates tested, a Wilson 95% interval and the lift. A pattern is emitted
//! when support ≥ `min_support`, q ≤ `max_q` and |lift − 1| ≥ `min_lift_delta`;
//! an expert when the Wilson lower bound of its approval rate exceeds
//! `expert_threshold` with at least `expert_min_n` outcomes **and** it is
//! approved more often than the other agents on that type with q ≤ `max_q`
//! (the same BH family: every agent × type tested in the cycle).
//!
//! Why one file of about 660 lines: 550 of code, the rest its unit tests.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::stats::{benjamini_hochberg, fisher_two_sided, Table};
use crate::domain::AgentId;
use crate::trust::maths::wilson_interval;

/// One evaluated recommendation, as the miner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeRecord {
    /// The recommendation.
    pub id: Uuid,
    /// Its workflow (run).
    pub workflow_id: String,
    /// Its agent.
    pub agent_id: AgentId,
    /// Its type.
    pub recommendation_type: String,
    /// Stated confidence.
    pub confidence: f64,
    /// Approved (partial and rejected are "not approved").
    pub approved: bool,
    /// What it recommended, for agreement: `content.<key>` or the whole content.
    pub decision: Option<String>,
    /// When it was evaluated (chronological hold-out).
    pub evaluated_at: DateTime<Utc>,
}

/// Knobs of the miner (config `[learner]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MiningParams {
    /// Least support (cases with the pattern) to emit.
    pub min_support: u64,
    /// Largest Benjamini–Hochberg q-value to emit.
    pub max_q: f64,
    /// Least |lift − 1| to emit.
    pub min_lift_delta: f64,
    /// Expert: Wilson lower bound of approval above this...
    pub expert_threshold: f64,
    /// ...with at least this many outcomes.
    pub expert_min_n: u64,
    /// "High confidence" means stated confidence above this.
    pub high_confidence: f64,
}

impl Default for MiningParams {
    fn default() -> Self {
        Self {
            min_support: 20,
            max_q: 0.05,
            min_lift_delta: 0.1,
            expert_threshold: 0.75,
            expert_min_n: 10,
            high_confidence: 0.8,
        }
    }
}

/// Pattern families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// k agents agreeing.
    Consensus,
    /// An agent on a type.
    Expert,
    /// High stated confidence.
    HighConfidence,
    /// Two agents together.
    Combination,
}

/// A candidate feature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// By this agent, among type T.
    Agent(AgentId, String),
    /// Confidence above the threshold, among type T.
    HighConfidence(String),
    /// At least k agreeing, among type T.
    Consensus(String, u8),
    /// Both agents in the workflow, among their type-T recommendations.
    Pair(AgentId, AgentId, String),
}

impl Feature {
    /// The family.
    pub fn category(&self) -> Category {
        match self {
            Self::Agent(..) => Category::Expert,
            Self::HighConfidence(_) => Category::HighConfidence,
            Self::Consensus(..) => Category::Consensus,
            Self::Pair(..) => Category::Combination,
        }
    }

    /// A stable identity across cycles.
    pub fn key(&self) -> String {
        match self {
            Self::Agent(a, t) => format!("expert:{a}:{t}"),
            Self::HighConfidence(t) => format!("high_confidence:{t}"),
            Self::Consensus(t, k) => format!("consensus:{t}:{k}"),
            Self::Pair(a, b, t) => format!("combination:{a}+{b}:{t}"),
        }
    }

    /// The recommendation type it is about.
    pub fn recommendation_type(&self) -> &str {
        match self {
            Self::Agent(_, t)
            | Self::HighConfidence(t)
            | Self::Consensus(t, _)
            | Self::Pair(_, _, t) => t,
        }
    }

    /// Participating agents.
    pub fn agents(&self) -> Vec<AgentId> {
        match self {
            Self::Agent(a, _) => vec![a.clone()],
            Self::Pair(a, b, _) => vec![a.clone(), b.clone()],
            _ => Vec::new(),
        }
    }
}

/// A tested candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// What.
    pub feature: Feature,
    /// Its table.
    pub table: Table,
    /// Two-sided Fisher p.
    pub p_value: f64,
    /// BH q over all candidates.
    pub q_value: f64,
    /// Wilson 95% interval of the approval rate with the feature.
    pub interval: (f64, f64),
    /// Emitted as a pattern.
    pub significant: bool,
}

impl Candidate {
    /// Human-readable description with the figures.
    pub fn describe(&self, p: &MiningParams) -> String {
        let pct = |x: f64| format!("{:.0}%", 100.0 * x);
        let t = &self.table;
        match &self.feature {
            Feature::Agent(a, ty) => format!(
                "{a} on {ty}: {} approved of {} (95% CI {}–{}; others {})",
                pct(t.rate()),
                t.support(),
                pct(self.interval.0),
                pct(self.interval.1),
                pct(if t.c + t.d == 0 { 0.0 } else { t.c as f64 / (t.c + t.d) as f64 })
            ),
            Feature::HighConfidence(ty) => format!(
                "{ty} recommendations with confidence > {:.2} are approved {} of the time (n = {}, lift {:.2})",
                p.high_confidence,
                pct(t.rate()),
                t.support(),
                t.lift()
            ),
            Feature::Consensus(ty, k) => format!(
                "when {k} or more agents agree on {ty}, approval is {} (n = {}, lift {:.2})",
                pct(t.rate()),
                t.support(),
                t.lift()
            ),
            Feature::Pair(a, b, ty) => format!(
                "{a} and {b} together on {ty}: approval {} (n = {}, lift {:.2}: {})",
                pct(t.rate()),
                t.support(),
                t.lift(),
                if t.lift() >= 1.0 { "better together" } else { "worse together" }
            ),
        }
    }
}

/// Every record's features as ids into `table` (interned: a million
/// records share a few hundred distinct features).
#[derive(Debug, Clone, Default)]
pub struct FeatureSet {
    /// Distinct features; ids index this.
    pub table: Vec<Feature>,
    /// Per record, the ids of its features.
    pub of: Vec<Vec<u32>>,
    /// Per record, the id of its type (populations).
    type_of: Vec<u32>,
    /// Per record, the id of its agent.
    agent_of: Vec<u32>,
    /// Per feature id: its population is the records of this type, or, for
    /// pairs, the records of these two agents of this type.
    population: Vec<(u32, Option<(u32, u32)>)>,
    /// Distinct types and agents.
    n_types: usize,
    n_agents: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Agent(u32, u32),
    High(u32),
    Consensus(u32, u8),
    Pair(u32, u32, u32),
}

/// Features of every record, from its workflow group.
pub fn features(records: &[OutcomeRecord], p: &MiningParams) -> FeatureSet {
    // Every interned index comes from `agent_names`; the fallback only keeps the code panic-free.
    let Ok(fallback) = AgentId::parse("a", "unknown") else {
        return FeatureSet::default();
    };
    let mut agents: HashMap<&AgentId, u32> = HashMap::new();
    let mut agent_names: Vec<&AgentId> = Vec::new();
    let mut types: HashMap<&str, u32> = HashMap::new();
    let mut type_names: Vec<&str> = Vec::new();
    let mut agent_of = Vec::with_capacity(records.len());
    let mut type_of = Vec::with_capacity(records.len());
    for r in records {
        let a = *agents.entry(&r.agent_id).or_insert_with(|| {
            agent_names.push(&r.agent_id);
            (agent_names.len() - 1) as u32
        });
        let t = *types
            .entry(r.recommendation_type.as_str())
            .or_insert_with(|| {
                type_names.push(r.recommendation_type.as_str());
                (type_names.len() - 1) as u32
            });
        agent_of.push(a);
        type_of.push(t);
    }
    let mut ids: HashMap<Key, u32> = HashMap::new();
    let mut set = FeatureSet {
        n_types: type_names.len(),
        n_agents: agent_names.len(),
        ..FeatureSet::default()
    };
    let mut intern = |k: Key, set: &mut FeatureSet| -> u32 {
        *ids.entry(k).or_insert_with(|| {
            let name = |i: u32| {
                agent_names
                    .get(i as usize)
                    .map_or_else(|| fallback.clone(), |a| (*a).clone())
            };
            let ty = |i: u32| {
                type_names
                    .get(i as usize)
                    .map_or_else(String::new, |t| (*t).to_owned())
            };
            let (feature, population) = match k {
                Key::Agent(a, t) => (Feature::Agent(name(a), ty(t)), (t, None)),
                Key::High(t) => (Feature::HighConfidence(ty(t)), (t, None)),
                Key::Consensus(t, k) => (Feature::Consensus(ty(t), k), (t, None)),
                Key::Pair(a, b, t) => (Feature::Pair(name(a), name(b), ty(t)), (t, Some((a, b)))),
            };
            set.table.push(feature);
            set.population.push(population);
            (set.table.len() - 1) as u32
        })
    };
    let mut groups: HashMap<(&str, u32), Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        groups
            .entry((r.workflow_id.as_str(), type_of.get(i).copied().unwrap_or(0)))
            .or_default()
            .push(i);
    }
    let mut of: Vec<Vec<u32>> = vec![Vec::new(); records.len()];
    for (i, r) in records.iter().enumerate() {
        let (a, t) = (
            agent_of.get(i).copied().unwrap_or(0),
            type_of.get(i).copied().unwrap_or(0),
        );
        let mut f = vec![intern(Key::Agent(a, t), &mut set)];
        if r.confidence > p.high_confidence {
            f.push(intern(Key::High(t), &mut set));
        }
        if let Some(slot) = of.get_mut(i) {
            *slot = f;
        }
    }
    for (&(_, t), members) in &groups {
        let mut agree: HashMap<&str, u8> = HashMap::new();
        for &i in members {
            if let Some(d) = records.get(i).and_then(|r| r.decision.as_deref()) {
                let e = agree.entry(d).or_insert(0);
                *e = e.saturating_add(1);
            }
        }
        let mut present: Vec<u32> = members
            .iter()
            .filter_map(|&i| agent_of.get(i).copied())
            .collect();
        present.sort_unstable();
        present.dedup();
        for &i in members {
            let Some(r) = records.get(i) else { continue };
            let me = agent_of.get(i).copied().unwrap_or(0);
            let mut extra = Vec::new();
            if let Some(k) = r.decision.as_deref().and_then(|d| agree.get(d)) {
                for min_k in [2u8, 3] {
                    if *k >= min_k {
                        extra.push(intern(Key::Consensus(t, min_k), &mut set));
                    }
                }
            }
            for &other in &present {
                if other != me {
                    // Order the pair by agent id so A+B and B+A are one feature.
                    let (x, y) = if agent_names.get(me as usize) < agent_names.get(other as usize) {
                        (me, other)
                    } else {
                        (other, me)
                    };
                    extra.push(intern(Key::Pair(x, y, t), &mut set));
                }
            }
            if let Some(f) = of.get_mut(i) {
                f.extend(extra);
            }
        }
    }
    set.of = of;
    set.type_of = type_of;
    set.agent_of = agent_of;
    set
}

/// Tests every candidate on `idx` (a subset of records) and corrects for
/// the number tested.
pub fn mine(
    records: &[OutcomeRecord],
    feats: &FeatureSet,
    idx: &[usize],
    p: &MiningParams,
) -> Vec<Candidate> {
    let mut by_type = vec![(0u64, 0u64); feats.n_types];
    let mut by_agent = vec![(0u64, 0u64); feats.n_types * feats.n_agents];
    let mut present = vec![(0u64, 0u64); feats.table.len()];
    for &i in idx {
        let (Some(r), Some(fs)) = (records.get(i), feats.of.get(i)) else {
            continue;
        };
        let y = u64::from(r.approved);
        let t = feats.type_of.get(i).copied().unwrap_or(0) as usize;
        let a = feats.agent_of.get(i).copied().unwrap_or(0) as usize;
        if let Some(e) = by_type.get_mut(t) {
            e.0 += 1;
            e.1 += y;
        }
        if let Some(e) = by_agent.get_mut(a * feats.n_types + t) {
            e.0 += 1;
            e.1 += y;
        }
        for &f in fs {
            if let Some(e) = present.get_mut(f as usize) {
                e.0 += 1;
                e.1 += y;
            }
        }
    }
    let agent_count = |a: u32, t: u32| {
        by_agent
            .get(a as usize * feats.n_types + t as usize)
            .copied()
            .unwrap_or_default()
    };
    let mut cands: Vec<Candidate> = present
        .iter()
        .enumerate()
        .filter(|(_, c)| c.0 > 0)
        .filter_map(|(id, &(n_f, a_f))| {
            let feature = feats.table.get(id)?.clone();
            let (t, pair) = feats.population.get(id).copied()?;
            let (n_pop, a_pop) = match pair {
                Some((a, b)) => {
                    let (x, y) = (agent_count(a, t), agent_count(b, t));
                    (x.0 + y.0, x.1 + y.1)
                }
                None => by_type.get(t as usize).copied().unwrap_or_default(),
            };
            let table = Table {
                a: a_f,
                b: n_f - a_f,
                c: a_pop.saturating_sub(a_f),
                d: (n_pop - n_f).saturating_sub(a_pop.saturating_sub(a_f)),
            };
            Some(Candidate {
                feature,
                table,
                p_value: fisher_two_sided(table),
                q_value: 1.0,
                interval: wilson_interval(a_f as f64, n_f as f64, 1.96),
                significant: false,
            })
        })
        .collect();
    cands.sort_by(|a, b| a.feature.cmp(&b.feature));
    let q = benjamini_hochberg(&cands.iter().map(|c| c.p_value).collect::<Vec<_>>());
    for (c, q) in cands.iter_mut().zip(q) {
        c.q_value = q;
        c.significant = match c.feature {
            // An expert clears the absolute bar *and* beats its peers on
            // the type (Fisher test of the agent against the rest), inside
            // the same Benjamini–Hochberg family as every other candidate:
            // an absolute bar alone calls the worst of a strong team an
            // expert.
            Feature::Agent(..) => {
                let t = &c.table;
                let peers = if t.c + t.d == 0 {
                    1.0
                } else {
                    t.c as f64 / (t.c + t.d) as f64
                };
                t.support() >= p.expert_min_n
                    && c.interval.0 > p.expert_threshold
                    && t.rate() > peers
                    && c.q_value <= p.max_q
            }
            _ => {
                c.table.support() >= p.min_support
                    && c.q_value <= p.max_q
                    && (c.table.lift() - 1.0).abs() >= p.min_lift_delta
            }
        };
    }
    cands
}

/// Hold-out quality of the mined patterns.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holdout {
    /// Outcomes mined on (the oldest 70%).
    pub train: u64,
    /// Outcomes predicted (the newest 30%).
    pub test: u64,
    /// Share of test outcomes predicted right (approve if predicted p ≥ 0.5).
    pub model_accuracy: f64,
    /// The majority class of the training data, on the test outcomes.
    pub baseline_accuracy: f64,
    /// Mean squared error of the predicted probability.
    pub brier: f64,
    /// Share of test outcomes some pattern applies to.
    pub coverage: f64,
}

/// Mines on the oldest `train_share` of records and predicts the rest: a
/// test record's probability is the training approval rate of the matching
/// significant pattern with the smallest q (else the training base rate).
pub fn holdout(
    records: &[OutcomeRecord],
    feats: &FeatureSet,
    train_share: f64,
    p: &MiningParams,
) -> Holdout {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| records.get(i).map(|r| (r.evaluated_at, r.id)));
    let cut = ((order.len() as f64) * train_share.clamp(0.0, 1.0)).round() as usize;
    let (train, test) = order.split_at(cut.min(order.len()));
    if train.is_empty() || test.is_empty() {
        return Holdout::default();
    }
    let cands = mine(records, feats, train, p);
    // Every candidate passing the support, q and lift rule predicts here,
    // including agents that do worse than average (not "experts", but they
    // predict rejections).
    let predictive = |c: &Candidate| {
        c.significant
            || (c.table.support() >= p.min_support
                && c.q_value <= p.max_q
                && (c.table.lift() - 1.0).abs() >= p.min_lift_delta)
    };
    let useful: HashMap<&Feature, &Candidate> = cands
        .iter()
        .filter(|c| predictive(c))
        .map(|c| (&c.feature, c))
        .collect();
    let approved_train = train
        .iter()
        .filter(|&&i| records.get(i).is_some_and(|r| r.approved))
        .count();
    let base = approved_train as f64 / train.len() as f64;
    let majority = base >= 0.5;
    let (mut right, mut base_right, mut covered, mut brier) = (0u64, 0u64, 0u64, 0.0);
    for &i in test {
        let (Some(r), Some(fs)) = (records.get(i), feats.of.get(i)) else {
            continue;
        };
        let best = fs
            .iter()
            .filter_map(|&f| {
                feats
                    .table
                    .get(f as usize)
                    .and_then(|feat| useful.get(feat))
            })
            .min_by(|a, b| a.q_value.total_cmp(&b.q_value));
        let prob = best.map_or(base, |c| c.table.rate());
        covered += u64::from(best.is_some());
        right += u64::from((prob >= 0.5) == r.approved);
        base_right += u64::from(majority == r.approved);
        let y = if r.approved { 1.0 } else { 0.0 };
        brier += (prob - y) * (prob - y);
    }
    let n = test.len() as f64;
    Holdout {
        train: train.len() as u64,
        test: test.len() as u64,
        model_accuracy: right as f64 / n,
        baseline_accuracy: base_right as f64 / n,
        brier: brier / n,
        coverage: covered as f64 / n,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::TimeZone;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn id(s: &str) -> AgentId {
        AgentId::parse("a", s).unwrap()
    }

    /// Workflows with 6 agents on type "t". Planted: agent a0 is approved 90%;
    /// when a4 and a5 are both in a workflow they are approved 20%; everyone
    /// else 50%. Decisions: approved answers say "go", others random.
    fn planted(workflows: usize, seed: u64, plant: bool) -> Vec<OutcomeRecord> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::new();
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        for w in 0..workflows {
            let present: Vec<usize> = (0..6).filter(|_| rng.gen_bool(0.7)).collect();
            let both = present.contains(&4) && present.contains(&5);
            for &a in &present {
                let p = if !plant {
                    0.5
                } else if a == 0 {
                    0.9
                } else if both && (a == 4 || a == 5) {
                    0.2
                } else {
                    0.5
                };
                let approved = rng.gen_bool(p);
                out.push(OutcomeRecord {
                    id: Uuid::from_u128((w * 10 + a) as u128),
                    workflow_id: format!("w{w}"),
                    agent_id: id(&format!("a{a}")),
                    recommendation_type: "t".into(),
                    confidence: rng.gen_range(0.3..0.95),
                    approved,
                    decision: Some(if approved || rng.gen_bool(0.5) {
                        "go".into()
                    } else {
                        "stop".into()
                    }),
                    evaluated_at: t0 + chrono::TimeDelta::seconds(w as i64),
                });
            }
        }
        out
    }

    #[test]
    fn planted_patterns_are_found_with_rates_inside_their_intervals() {
        let p = MiningParams::default();
        let recs = planted(1500, 11, true);
        let feats = features(&recs, &p);
        let all: Vec<usize> = (0..recs.len()).collect();
        let cands = mine(&recs, &feats, &all, &p);
        let get = |key: &str| {
            cands
                .iter()
                .find(|c| c.feature.key() == key)
                .unwrap_or_else(|| panic!("{key}"))
        };
        let expert = get("expert:a0:t");
        assert!(expert.significant, "{expert:?}");
        assert!(
            expert.interval.0 <= 0.9 && 0.9 <= expert.interval.1,
            "true rate inside the interval: {expert:?}"
        );
        let pair = get("combination:a4+a5:t");
        assert!(pair.significant && pair.table.lift() < 0.9, "{pair:?}");
        assert!(pair.interval.0 <= 0.2 && 0.2 <= pair.interval.1, "{pair:?}");
        // Agents without an effect are not experts.
        assert!(!get("expert:a1:t").significant);
        // Consensus is real here (approved answers agree on "go").
        assert!(get("consensus:t:3").significant);
        let h = holdout(&recs, &feats, 0.7, &p);
        assert!(h.model_accuracy > h.baseline_accuracy, "{h:?}");
        assert!(h.coverage > 0.0 && h.coverage <= 1.0);
    }

    /// Pure noise: every agent 50%, decisions random. Over 40 seeds with
    /// ~30 candidates each, BH at q ≤ 0.05 should emit almost nothing: we allow
    /// at most 5% of seeds with any non-consensus discovery.
    #[test]
    fn pure_noise_confirms_at_most_the_expected_false_discovery_share() {
        let p = MiningParams::default();
        let mut seeds_with_discoveries = 0;
        let mut tested = 0;
        for seed in 0..40 {
            let mut recs = planted(400, 1000 + seed, false);
            let mut rng = StdRng::seed_from_u64(seed);
            for r in &mut recs {
                r.decision = Some(if rng.gen_bool(0.5) {
                    "go".into()
                } else {
                    "stop".into()
                });
            }
            let feats = features(&recs, &p);
            let all: Vec<usize> = (0..recs.len()).collect();
            let cands = mine(&recs, &feats, &all, &p);
            tested += cands.len();
            if cands.iter().any(|c| c.significant) {
                seeds_with_discoveries += 1;
            }
        }
        assert!(
            tested > 40 * 20,
            "hundreds of candidates were tested: {tested}"
        );
        assert!(
            seeds_with_discoveries <= 2,
            "{seeds_with_discoveries} of 40 seeds found a pattern in noise"
        );
    }
}
