//! Trust state: decayed sufficient statistics folded from outcome samples,
//! and the cards computed from them.
//!
//! Invariant: the state of a workspace is a pure function of its outcome
//! samples folded in `OutcomeSample::key` order, so an incremental update and a
//! full recompute from the store give the same numbers. Samples at or below an
//! agent's watermark are ignored, which makes folding idempotent.

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::change::{ChangeDetector, DetectorParams, Direction};
use super::maths::{calibration_error, dispersion_index, weighted_geometric_mean, wilson_lower};
use crate::domain::{AgentFailure, AgentId, FailureKind, OutcomeSample, Priority, Verdict};

/// Weights of the overall trust score; they need not sum to 1 (normalised).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustWeights {
    /// Weight of accuracy.
    pub accuracy: f64,
    /// Weight of reliability.
    pub reliability: f64,
    /// Weight of calibration.
    pub calibration: f64,
    /// Weight of consistency.
    pub consistency: f64,
    /// Weight of timeliness.
    pub timeliness: f64,
}

impl Default for TrustWeights {
    fn default() -> Self {
        Self {
            accuracy: 0.40,
            reliability: 0.20,
            calibration: 0.15,
            consistency: 0.15,
            timeliness: 0.10,
        }
    }
}

/// Every knob of the trust maths (config section `[trust]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustParams {
    /// Prior strength κ of an agent's accuracy (prior mean: workspace mean).
    pub agent_prior_strength: f64,
    /// Prior strength κ of an agent × type cell (prior mean: the agent's accuracy).
    pub type_prior_strength: f64,
    /// Half-life of an outcome's weight, counted in later outcomes of the same cell.
    pub half_life_outcomes: f64,
    /// Half-life of an outcome's weight in days of evaluation time.
    pub half_life_days: f64,
    /// Deadline used by timeliness, in milliseconds.
    pub deadline_ms: f64,
    /// Shrinkage strength of consistency towards 0.5.
    pub consistency_prior_strength: f64,
    /// Consistency: outcomes per block of the dispersion index.
    pub consistency_block: usize,
    /// Calibration an agent is assumed to have before evidence.
    pub calibration_prior: f64,
    /// Weight (in outcomes) of that assumption.
    pub calibration_prior_strength: f64,
    /// Outcomes kept per cell for calibration and trend.
    pub window: usize,
    /// Trend: outcomes in the recent window whose mean, minus the
    /// reference level, is reported as `trend_delta` while stable.
    pub trend_recent: usize,
    /// Trend: target in-control average run length of each one-sided
    /// alarm, in outcomes of a steady agent (sets the CUSUM threshold).
    pub trend_arl0: f64,
    /// Trend: the change of approval rate the CUSUMs are designed to catch.
    pub trend_shift: f64,
    /// Trend: outcomes in the reference before any alarm.
    pub trend_min_reference: usize,
    /// Trend: standard errors the estimated reference level is moved
    /// towards "no alarm".
    pub trend_reference_z: f64,
    /// Shrinkage κ_b of the decision boost.
    pub boost_prior_strength: f64,
    /// Exploration of trust-based selection (`select = { top = N }`): 0 is
    /// greedy by posterior mean, 1 is Thompson sampling from each agent's
    /// posterior, above 1 explores more (the posterior is widened).
    pub selection_exploration: f64,
    /// Approval at or above this quality when no explicit verdict is given.
    pub approve_at_quality: f64,
    /// Partial at or above this quality (and below approval).
    pub partial_at_quality: f64,
    /// Boost above which a task is promoted to CRITICAL.
    pub critical_boost: f64,
    /// Boost below which a task is demoted to LOW.
    pub low_boost: f64,
    /// Weights of the overall score.
    pub weights: TrustWeights,
}

impl Default for TrustParams {
    fn default() -> Self {
        Self {
            agent_prior_strength: 4.0,
            type_prior_strength: 5.0,
            half_life_outcomes: 50.0,
            half_life_days: 30.0,
            deadline_ms: 120_000.0,
            consistency_prior_strength: 5.0,
            consistency_block: 10,
            calibration_prior: 0.7,
            calibration_prior_strength: 20.0,
            window: 200,
            trend_recent: 40,
            trend_arl0: 5000.0,
            trend_shift: 0.15,
            trend_min_reference: 50,
            trend_reference_z: 1.0,
            boost_prior_strength: 5.0,
            selection_exploration: 1.0,
            approve_at_quality: 70.0,
            partial_at_quality: 40.0,
            critical_boost: 0.2,
            low_boost: -0.2,
            weights: TrustWeights::default(),
        }
    }
}

impl TrustParams {
    /// Checks every knob; the error names the key (relative to `[trust]`).
    pub fn validate(&self) -> Result<(), crate::domain::ParseError> {
        use crate::domain::ParseError;
        let positive = [
            ("agent_prior_strength", self.agent_prior_strength),
            ("type_prior_strength", self.type_prior_strength),
            ("half_life_outcomes", self.half_life_outcomes),
            ("half_life_days", self.half_life_days),
            ("deadline_ms", self.deadline_ms),
            ("boost_prior_strength", self.boost_prior_strength),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(ParseError::new(
                    key,
                    format!("must be a positive number, got {v}"),
                ));
            }
        }
        if self.consistency_block == 0 || self.consistency_block * 2 > self.window {
            return Err(ParseError::new(
                "consistency_block",
                "must be at least 1 and at most window / 2",
            ));
        }
        if !(self.selection_exploration.is_finite() && self.selection_exploration >= 0.0) {
            return Err(ParseError::new(
                "selection_exploration",
                "must be a number >= 0 (0 = greedy, 1 = Thompson sampling)",
            ));
        }
        if !(0.0..=1.0).contains(&self.calibration_prior) {
            return Err(ParseError::new("calibration_prior", "must be in [0, 1]"));
        }
        if self.trend_recent == 0 || self.window < self.trend_recent {
            return Err(ParseError::new(
                "window",
                "must be at least trend_recent, and trend_recent > 0",
            ));
        }
        if !(self.trend_arl0.is_finite() && self.trend_arl0 >= 10.0) {
            return Err(ParseError::new("trend_arl0", "must be a number >= 10"));
        }
        if !(self.trend_shift > 0.0 && self.trend_shift <= 0.5) {
            return Err(ParseError::new("trend_shift", "must be in (0, 0.5]"));
        }
        if !(self.trend_reference_z.is_finite() && self.trend_reference_z >= 0.0) {
            return Err(ParseError::new("trend_reference_z", "must be >= 0"));
        }
        if !(self.partial_at_quality <= self.approve_at_quality
            && (0.0..=100.0).contains(&self.partial_at_quality)
            && (0.0..=100.0).contains(&self.approve_at_quality))
        {
            return Err(ParseError::new(
                "approve_at_quality",
                "need 0 <= partial_at_quality <= approve_at_quality <= 100",
            ));
        }
        if self.low_boost.partial_cmp(&self.critical_boost) != Some(std::cmp::Ordering::Less) {
            return Err(ParseError::new("low_boost", "must be below critical_boost"));
        }
        let w = &self.weights;
        let all = [
            w.accuracy,
            w.reliability,
            w.calibration,
            w.consistency,
            w.timeliness,
        ];
        if all.iter().any(|x| !x.is_finite() || *x < 0.0) || all.iter().sum::<f64>() <= 0.0 {
            return Err(ParseError::new(
                "weights",
                "every weight must be >= 0 and at least one > 0",
            ));
        }
        Ok(())
    }

    /// The knobs of the trend's change detector.
    pub fn detector(&self) -> DetectorParams {
        DetectorParams {
            arl0: self.trend_arl0,
            shift: self.trend_shift,
            min_reference: self.trend_min_reference as f64,
            reference_z: self.trend_reference_z,
        }
    }

    /// The verdict derived from a quality score when none was given.
    pub fn derive_verdict(&self, quality: f64) -> Verdict {
        if quality >= self.approve_at_quality {
            Verdict::Approved
        } else if quality >= self.partial_at_quality {
            Verdict::Partial
        } else {
            Verdict::Rejected
        }
    }

    /// The scheduling class for a caller's priority and a trust boost.
    pub fn priority_for(&self, requested: Priority, boost: f64) -> Priority {
        if boost > self.critical_boost {
            Priority::Critical
        } else if boost < self.low_boost {
            Priority::Low
        } else {
            requested
        }
    }
}

/// Decayed sufficient statistics of one cell (an agent, or agent × type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellState {
    /// Evaluation time of the last folded sample (time decay reference).
    last_at: Option<DateTime<Utc>>,
    /// Σ weights: the effective number of outcomes.
    w: f64,
    /// Σ weight · outcome score (approved 1, partial ½).
    wy: f64,
    /// Σ weight · timeliness and Σ weight over samples with a latency.
    wt: f64,
    wt_n: f64,
    /// Successful and failed executions, decayed (reliability).
    w_ok: f64,
    w_err: f64,
    /// Raw counts, never decayed: what the metrics endpoint reports.
    approved: u64,
    partial: u64,
    rejected: u64,
    /// Failed executions, raw, per kind (errors, timeouts, invalid answers).
    errors: u64,
    timeouts: u64,
    invalid: u64,
    sum_quality: f64,
    sum_confidence: f64,
    /// The newest (confidence, score) pairs, oldest first, for calibration and trend.
    recent: VecDeque<(f64, f64)>,
    /// Sequential change detection behind the trend label.
    change: ChangeDetector,
}

impl CellState {
    /// Decays every sum by one observation's step (λ = 2^(−1/H_n) · 2^(−Δdays/H_d))
    /// before the observation at `at` is added.
    fn advance(&mut self, at: DateTime<Utc>, p: &TrustParams) {
        let mut decay = 0.5f64.powf(1.0 / p.half_life_outcomes);
        if let Some(last) = self.last_at {
            let days = (at - last).num_microseconds().unwrap_or(0).max(0) as f64 / 86_400_000_000.0;
            decay *= 0.5f64.powf(days / p.half_life_days);
        }
        self.last_at = Some(at);
        for v in [
            &mut self.w,
            &mut self.wy,
            &mut self.wt,
            &mut self.wt_n,
            &mut self.w_ok,
            &mut self.w_err,
        ] {
            *v *= decay;
        }
    }

    /// Folds one failed execution in: an observation of reliability only
    /// (it says nothing about how good the agent's answers are).
    pub fn observe_failure(&mut self, f: &AgentFailure, p: &TrustParams) {
        self.advance(f.occurred_at, p);
        self.w_err += 1.0;
        match f.kind {
            FailureKind::Error => self.errors += 1,
            FailureKind::Timeout => self.timeouts += 1,
            FailureKind::Invalid => self.invalid += 1,
        }
    }

    /// Folds one evaluated sample in.
    pub fn observe(&mut self, s: &OutcomeSample, p: &TrustParams) {
        self.advance(s.evaluated_at, p);
        let y = s.verdict.score();
        self.w += 1.0;
        self.wy += y;
        if let Some(lat) = s.latency_ms {
            let lat = lat.max(0) as f64;
            let deadline = s
                .deadline_ms
                .filter(|d| *d > 0)
                .map_or(p.deadline_ms, |d| d as f64);
            let t = if lat <= deadline {
                1.0
            } else {
                (1.0 - (lat - deadline) / deadline).max(0.0)
            };
            self.wt += t;
            self.wt_n += 1.0;
        }
        self.w_ok += 1.0;
        match s.verdict {
            Verdict::Approved => self.approved += 1,
            Verdict::Partial => self.partial += 1,
            Verdict::Rejected => self.rejected += 1,
        }
        self.sum_quality += s.quality;
        self.sum_confidence += s.confidence;
        self.change.observe(y, &p.detector());
        self.recent.push_back((s.confidence, y));
        while self.recent.len() > p.window {
            self.recent.pop_front();
        }
    }

    /// Number of evaluated outcomes (raw).
    pub fn count(&self) -> u64 {
        self.approved + self.partial + self.rejected
    }

    /// Number of failed executions (raw).
    pub fn failures(&self) -> u64 {
        self.errors + self.timeouts + self.invalid
    }

    /// Effective (decayed) number of outcomes.
    pub fn effective(&self) -> f64 {
        self.w
    }

    fn posterior_accuracy(&self, prior_mean: f64, kappa: f64) -> f64 {
        (kappa * prior_mean + self.wy) / (kappa + self.w)
    }
}

/// Improving, stable or declining, from sequential change detection
/// (`trust/change.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// A rise was detected and the level has not fallen back.
    Improving,
    /// No change detected (or too little data).
    Stable,
    /// A drop was detected and the level has not come back.
    Declining,
}

/// Recommendation strength from the Wilson lower bound of the approval rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Lower bound below 0.4 (including agents with little evidence).
    Weak,
    /// Lower bound in [0.4, 0.6).
    Moderate,
    /// Lower bound in [0.6, 0.75).
    Strong,
    /// Lower bound at or above 0.75.
    VeryStrong,
}

/// The trust card of an agent or of an agent × type cell (DESIGN §4 names).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrustCard {
    /// Weighted geometric mean of the five sub-scores (docs/trust.md).
    pub overall_trust: f64,
    /// Bayesian approval rate with prior and decay.
    pub accuracy_score: f64,
    /// Stability of the approval rate over time, capped by accuracy (consistently good).
    pub consistency_score: f64,
    /// Latency against the deadline.
    pub timeliness: f64,
    /// 1 − error/timeout rate (posterior).
    pub reliability: f64,
    /// 1 − expected calibration error, shrunk towards the prior.
    pub calibration: f64,
    /// Brier score of stated confidence (lower is better); null without data.
    pub brier_score: Option<f64>,
    /// Improving, stable or declining.
    pub trend: Trend,
    /// During an episode, post-change minus pre-change approval rate; while
    /// stable, the recent window minus the reference level.
    pub trend_delta: f64,
    /// Approved / evaluated, raw.
    pub approval_rate: f64,
    /// Mean outcome quality, raw.
    pub avg_quality: f64,
    /// Mean stated confidence, raw.
    pub avg_confidence: f64,
    /// Evaluated outcomes, raw.
    pub sample_count: u64,
    /// Effective (decayed) outcome count.
    pub effective_samples: f64,
    /// n_eff / (n_eff + κ): how much the numbers rest on evidence.
    pub trust_confidence: f64,
    /// Weak … very_strong.
    pub strength: Strength,
    /// Counts per verdict.
    pub approved_count: u64,
    /// Partial verdicts.
    pub partial_count: u64,
    /// Rejections.
    pub rejected_count: u64,
    /// Failed executions (errors + timeouts + invalid answers), raw.
    pub failure_count: u64,
    /// Backend errors, raw.
    pub error_count: u64,
    /// Timeouts (no answer before the barrier completed), raw.
    pub timeout_count: u64,
    /// Invalid answers, raw.
    pub invalid_count: u64,
    /// Decision boost in [−0.5, +0.5].
    pub boost: f64,
    /// Approvals (partial = ½) in the current regime: every outcome since
    /// the trend detector's last change point, undecayed (selection's
    /// posterior; not part of the API).
    #[serde(skip)]
    pub regime_successes: f64,
    /// Outcomes in the current regime.
    #[serde(skip)]
    pub regime_outcomes: f64,
}

impl TrustCard {
    /// Everything observed of the agent: evaluated outcomes plus failed
    /// executions (what `agents.disable_min_samples` counts).
    pub fn observations(&self) -> u64 {
        self.sample_count + self.failure_count
    }
}

/// `parent_boost`: for a type cell, the agent's own boost, which the cell's
/// boost is shrunk towards (κ_b outcomes' worth), so one outcome of a new
/// type cannot swing an agent's priority class; `None` for an agent's card,
/// shrunk towards 0.
fn card(
    cell: &CellState,
    prior_mean: f64,
    kappa: f64,
    reference: f64,
    reliability_prior: f64,
    parent_boost: Option<f64>,
    p: &TrustParams,
) -> TrustCard {
    let accuracy = cell.posterior_accuracy(prior_mean, kappa);
    let reliability = (kappa * reliability_prior + cell.w_ok) / (kappa + cell.w_ok + cell.w_err);
    let timeliness = (1.0 + cell.wt) / (1.0 + cell.wt_n);
    // Stability of the approval rate across consecutive blocks of the recent
    // window, 1 / max(1, D) with D the dispersion index, shrunk towards 0.5;
    // then capped by accuracy: an agent that is reliably wrong is stable,
    // and must not score as "consistent" (consistently good is what the name
    // promises an operator). The sd of quality used before scored a
    // coin-flipping agent lowest and an always-wrong one highest.
    let ys: Vec<f64> = cell.recent.iter().map(|x| x.1).collect();
    let stability = match dispersion_index(&ys, p.consistency_block) {
        Some((d, used)) => {
            let raw = 1.0 / d.max(1.0);
            let n = used as f64;
            (n * raw + p.consistency_prior_strength * 0.5) / (n + p.consistency_prior_strength)
        }
        None => 0.5,
    };
    let consistency = stability.min(accuracy);
    let pairs: Vec<(f64, f64)> = cell.recent.iter().copied().collect();
    let n = pairs.len();
    let (calibration, brier) = if n == 0 {
        (p.calibration_prior, None)
    } else {
        let bins = (n / 10).clamp(2, 10);
        let (ece, brier) = calibration_error(&pairs, bins);
        let nf = n as f64;
        (
            (nf * (1.0 - ece) + p.calibration_prior_strength * p.calibration_prior)
                / (nf + p.calibration_prior_strength),
            Some(brier),
        )
    };
    let (trend, trend_delta) = trend_of(cell, &pairs, p);
    let w = &p.weights;
    // Accuracy enters as accuracy × reliability, the probability that a task
    // sent to the agent comes back approved: an agent that never answers has
    // no evidence against its accuracy, yet is of no use.
    let overall = weighted_geometric_mean(&[
        (w.accuracy, accuracy * reliability),
        (w.reliability, reliability),
        (w.calibration, calibration),
        (w.consistency, consistency),
        (w.timeliness, timeliness),
    ]);
    let count = cell.count();
    let nf = count as f64;
    let successes = cell.approved as f64 + 0.5 * cell.partial as f64;
    let lower = wilson_lower(successes, nf, 1.96);
    let strength = if lower >= 0.75 {
        Strength::VeryStrong
    } else if lower >= 0.6 {
        Strength::Strong
    } else if lower >= 0.4 {
        Strength::Moderate
    } else {
        Strength::Weak
    };
    let kb = p.boost_prior_strength;
    let executions = cell.w_ok + cell.w_err;
    let boost = if executions > 0.0 && 1.0 - reliability > 0.5 {
        -0.5
    } else {
        let parent = parent_boost.unwrap_or(0.0);
        ((kb * parent + cell.w * (accuracy - reference)) / (kb + cell.w)).clamp(-0.5, 0.5)
    };
    let per = |x: f64| if count == 0 { 0.0 } else { x / nf };
    TrustCard {
        overall_trust: overall.clamp(0.0, 1.0),
        accuracy_score: accuracy,
        consistency_score: consistency,
        timeliness,
        reliability,
        calibration,
        brier_score: brier,
        trend,
        trend_delta,
        approval_rate: per(cell.approved as f64),
        avg_quality: per(cell.sum_quality),
        avg_confidence: per(cell.sum_confidence),
        sample_count: count,
        effective_samples: cell.w,
        trust_confidence: cell.w / (cell.w + kappa),
        strength,
        approved_count: cell.approved,
        partial_count: cell.partial,
        rejected_count: cell.rejected,
        regime_successes: cell.change.regime().0,
        regime_outcomes: cell.change.regime().1,
        failure_count: cell.failures(),
        error_count: cell.errors,
        timeout_count: cell.timeouts,
        invalid_count: cell.invalid,
        boost,
    }
}

fn trend_of(cell: &CellState, pairs: &[(f64, f64)], p: &TrustParams) -> (Trend, f64) {
    match cell.change.direction() {
        Some(Direction::Down) => (Trend::Declining, cell.change.episode_delta().unwrap_or(0.0)),
        Some(Direction::Up) => (Trend::Improving, cell.change.episode_delta().unwrap_or(0.0)),
        None => {
            // Stable: the recent window against the reference, for display only.
            let recent = pairs
                .get(pairs.len().saturating_sub(p.trend_recent)..)
                .unwrap_or_default();
            let delta = match (cell.change.reference_mean(), recent.is_empty()) {
                (Some(reference), false) => {
                    recent.iter().map(|x| x.1).sum::<f64>() / recent.len() as f64 - reference
                }
                _ => 0.0,
            };
            (Trend::Stable, delta)
        }
    }
}

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
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn sample(agent: &str, t: &str, verdict: Verdict, conf: f64, i: i64) -> OutcomeSample {
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

    fn failure(agent: &str, t: &str, kind: FailureKind, i: i64) -> AgentFailure {
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
    enum Ev {
        Outcome {
            verdict: Verdict,
            confidence: f64,
            latency_ms: i64,
        },
        Failure(FailureKind),
    }

    fn ev_strategy() -> impl Strategy<Value = Ev> {
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
    fn worst_strategy() -> impl Strategy<Value = Ev> {
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
    fn workspace_of(records: &[(String, Vec<Ev>)]) -> WorkspaceSnapshot {
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

    fn overall(snap: &WorkspaceSnapshot, agent: &str) -> f64 {
        snap.agents[&AgentId::parse("a", agent).unwrap()]
            .overall
            .overall_trust
    }

    fn verdict_of(x: u8) -> Verdict {
        match x % 3 {
            0 => Verdict::Approved,
            1 => Verdict::Partial,
            _ => Verdict::Rejected,
        }
    }

    proptest! {
        #[test]
        fn every_score_is_bounded(verdicts in proptest::collection::vec((0u8..3, 0.0f64..=1.0), 0..300)) {
            let p = TrustParams::default();
            let samples: Vec<_> = verdicts.iter().enumerate()
                .map(|(i, (v, c))| sample("a", "strategy", verdict_of(*v), *c, i as i64)).collect();
            let snap = WorkspaceTrust::from_samples(samples, &p).snapshot(&p);
            for cards in snap.agents.values() {
                for c in std::iter::once(&cards.overall).chain(cards.per_type.values()) {
                    for x in [c.overall_trust, c.accuracy_score, c.consistency_score, c.timeliness,
                              c.reliability, c.calibration, c.approval_rate, c.trust_confidence] {
                        prop_assert!((0.0..=1.0).contains(&x), "score {x} out of [0,1]");
                    }
                    prop_assert!((-0.5..=0.5).contains(&c.boost));
                    prop_assert!((0.0..=100.0).contains(&c.avg_quality));
                }
            }
        }

        #[test]
        fn an_extra_approval_never_lowers_accuracy(verdicts in proptest::collection::vec(0u8..3, 0..200)) {
            let p = TrustParams::default();
            let samples: Vec<_> = verdicts.iter().enumerate()
                .map(|(i, v)| sample("a", "t", verdict_of(*v), 0.5, i as i64)).collect();
            let n = samples.len() as i64;
            let base = WorkspaceTrust::from_samples(samples.clone(), &p);
            // Accuracy relative to a fixed prior mean, so the workspace mean does not move with it.
            let before = base.agents.values().next().map_or(0.5, |a| a.overall.posterior_accuracy(0.5, 4.0));
            let mut more = samples;
            more.push(sample("a", "t", Verdict::Approved, 0.5, n));
            let after_ws = WorkspaceTrust::from_samples(more, &p);
            let after = after_ws.agents.values().next().map_or(0.5, |a| a.overall.posterior_accuracy(0.5, 4.0));
            prop_assert!(after >= before - 1e-12, "accuracy fell from {before} to {after}");
        }

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

    /// Errors, timeouts and invalid answers are counted and lower
    /// reliability; an agent failing more than half the time gets boost −0.5.
    #[test]
    fn failures_move_reliability_and_are_counted() {
        let p = TrustParams::default();
        let mut samples = Vec::new();
        let mut failures = Vec::new();
        for i in 0..60i64 {
            samples.push(sample("flaky", "t", Verdict::Approved, 0.8, 2 * i));
            let kind = [
                FailureKind::Error,
                FailureKind::Timeout,
                FailureKind::Invalid,
            ][(i % 3) as usize];
            failures.push(failure("flaky", "t", kind, 2 * i + 1));
            samples.push(sample("solid", "t", Verdict::Approved, 0.8, 1000 + i));
        }
        for i in 0..10i64 {
            failures.push(failure("dead", "t", FailureKind::Timeout, 5000 + i));
        }
        let snap = WorkspaceTrust::from_observations(samples, failures, &p).snapshot(&p);
        let card = |a: &str| {
            snap.agents[&AgentId::parse("a", a).unwrap()]
                .overall
                .clone()
        };
        let (flaky, solid, dead) = (card("flaky"), card("solid"), card("dead"));
        assert_eq!(
            (flaky.error_count, flaky.timeout_count, flaky.invalid_count),
            (20, 20, 20)
        );
        assert_eq!(flaky.failure_count, 60);
        assert_eq!(flaky.observations(), 120);
        assert!(
            (flaky.reliability - 0.5).abs() < 0.05,
            "{}",
            flaky.reliability
        );
        assert!(solid.reliability > 0.95, "{}", solid.reliability);
        assert!(flaky.overall_trust < solid.overall_trust);
        // Per-type cells see them too.
        assert_eq!(
            snap.agents[&AgentId::parse("a", "flaky").unwrap()].per_type["t"].failure_count,
            60
        );
        assert_eq!(dead.sample_count, 0);
        assert_eq!(dead.failure_count, 10);
        assert!(dead.reliability < 0.3, "{}", dead.reliability);
        assert_eq!(
            snap.boost(&AgentId::parse("a", "dead").unwrap(), Some("t")),
            -0.5
        );
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

    /// An always-wrong agent is not "consistent": consistency is capped by
    /// accuracy (sd of a constant 0 quality is 0, which alone would score 1).
    #[test]
    fn always_wrong_is_not_consistent() {
        let p = TrustParams::default();
        let mut samples: Vec<_> = (0..100)
            .map(|i| sample("wrong", "t", Verdict::Rejected, 0.5, i))
            .collect();
        samples.extend((0..100).map(|i| sample("right", "t", Verdict::Approved, 0.5, 1000 + i)));
        let snap = WorkspaceTrust::from_samples(samples, &p).snapshot(&p);
        let c = |a: &str| {
            snap.agents[&AgentId::parse("a", a).unwrap()]
                .overall
                .consistency_score
        };
        assert!(c("wrong") < 0.05, "{}", c("wrong"));
        assert!(c("right") > 0.9, "{}", c("right"));
    }

    /// Steps until an always-rejected agent, joining peers that already
    /// have 100 outcomes at `peer_rate`, falls below 0.3.
    fn outcomes_to_disable(peer_rate: f64, confidence: f64, failing: bool) -> usize {
        let p = TrustParams::default();
        let mut ws = WorkspaceTrust::default();
        let mut i = 0i64;
        for k in 0..100 {
            // Deterministic peers: the first peer_rate·100 approved.
            let v = if f64::from(k) < peer_rate * 100.0 {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            i += 1;
            ws.fold(&[sample("peer", "t", v, 0.7, i)], &p);
        }
        let bad = AgentId::parse("a", "bad").unwrap();
        for n in 1..=500 {
            i += 1;
            if failing {
                ws.fold_failures(&[failure("bad", "t", FailureKind::Error, i)], &p);
            } else {
                ws.fold(&[sample("bad", "t", Verdict::Rejected, confidence, i)], &p);
            }
            let snap = ws.snapshot(&p);
            if snap.agents[&bad].overall.overall_trust < 0.3 {
                return n;
            }
        }
        usize::MAX
    }

    /// Item 1 of issue 10: a consistently bad agent ends below
    /// `agents.disable_below_trust` (0.3) within a bounded number of
    /// outcomes, whatever its peers and its stated confidence (confidence 0
    /// is the most favourable: it is perfectly calibrated). Deterministic.
    #[test]
    fn consistently_bad_agent_falls_below_disable_threshold() {
        let mut worst = 0;
        for peer_rate in [0.3, 0.6, 0.9, 1.0] {
            for confidence in [0.0, 0.5, 1.0] {
                let n = outcomes_to_disable(peer_rate, confidence, false);
                worst = worst.max(n);
                eprintln!(
                    "peers {peer_rate}, confidence {confidence}: below 0.3 after {n} rejections"
                );
                assert!(
                    n <= 40,
                    "peers {peer_rate}, confidence {confidence}: {n} outcomes"
                );
            }
            // An agent that only ever fails (no answer to judge) too.
            let n = outcomes_to_disable(peer_rate, 0.0, true);
            eprintln!("peers {peer_rate}: below 0.3 after {n} failures");
            assert!(n <= 30, "always failing, peers {peer_rate}: {n} failures");
        }
        assert!(worst >= 10, "suspiciously fast: {worst}");
    }

    /// Issue 10, item 4: one outcome of a new type does not swing an
    /// agent's boost (the type cell borrows the agent's boost), and many
    /// outcomes of the type still move it.
    #[test]
    fn boost_does_not_jump_on_one_outcome_of_a_new_type() {
        let p = TrustParams::default();
        let mut samples = Vec::new();
        for i in 0..100 {
            samples.push(sample("star", "strategy", Verdict::Approved, 0.9, i));
            let v = if i % 10 < 3 {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            samples.push(sample("peer", "strategy", v, 0.3, 1000 + i));
        }
        let snap = WorkspaceTrust::from_samples(samples.clone(), &p).snapshot(&p);
        let star = AgentId::parse("a", "star").unwrap();
        let before = snap.boost(&star, Some("risk"));
        assert!(before > 0.25, "CRITICAL on its record: {before}");
        for (k, v) in [Verdict::Approved, Verdict::Rejected]
            .into_iter()
            .enumerate()
        {
            let mut one = samples.clone();
            one.push(sample("star", "risk", v, 0.9, 5000 + k as i64));
            let snap = WorkspaceTrust::from_samples(one, &p).snapshot(&p);
            let after = snap.boost(&star, Some("risk"));
            assert!((after - before).abs() < 0.1, "{v:?}: {before} -> {after}");
            assert_eq!(p.priority_for(Priority::Normal, after), Priority::Critical);
        }
        // Thirty rejections on the type do move it.
        let mut many = samples;
        many.extend((0..30).map(|k| sample("star", "risk", Verdict::Rejected, 0.9, 6000 + k)));
        many.extend((0..30).map(|k| sample("peer", "risk", Verdict::Approved, 0.9, 7000 + k)));
        let snap = WorkspaceTrust::from_samples(many, &p).snapshot(&p);
        assert!(snap.boost(&star, Some("risk")) < 0.0);
    }

    #[test]
    fn late_replies_count_against_timeliness_by_their_own_deadline() {
        let p = TrustParams::default();
        let mut late = sample("late", "t", Verdict::Approved, 0.5, 1);
        late.latency_ms = Some(1_500);
        late.deadline_ms = Some(1_000);
        let mut global = sample("global", "t", Verdict::Approved, 0.5, 2);
        global.latency_ms = Some(1_500);
        let snap = WorkspaceTrust::from_samples(vec![late, global], &p).snapshot(&p);
        let t = |a: &str| {
            snap.agents[&AgentId::parse("a", a).unwrap()]
                .overall
                .timeliness
        };
        // (1 + 0.5) / (1 + 1) for the late one; on time against the 120 s default.
        assert!((t("late") - 0.75).abs() < 1e-12, "{}", t("late"));
        assert!((t("global") - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_history_means_zero_boost() {
        let p = TrustParams::default();
        let samples = (0..50)
            .map(|i| sample("old", "t", Verdict::Approved, 0.9, i))
            .collect();
        let snap = WorkspaceTrust::from_samples(samples, &p).snapshot(&p);
        let newcomer = AgentId::parse("a", "new").unwrap();
        assert_eq!(snap.boost(&newcomer, Some("t")), 0.0);
        assert_eq!(snap.default_card.boost, 0.0);
        assert_eq!(snap.default_card.sample_count, 0);
    }

    #[test]
    fn overconfident_agent_scores_low_calibration() {
        let p = TrustParams::default();
        let mut samples = Vec::new();
        for i in 0..200 {
            let right = i % 2 == 0;
            let v = if right {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            samples.push(sample("overconfident", "t", v, 0.95, i));
            samples.push(sample("honest", "t", v, 0.5, 1000 + i));
        }
        let snap = WorkspaceTrust::from_samples(samples, &p).snapshot(&p);
        let get = |a: &str| {
            snap.agents[&AgentId::parse("a", a).unwrap()]
                .overall
                .calibration
        };
        assert!(get("overconfident") < 0.65, "{}", get("overconfident"));
        assert!(get("honest") > 0.9, "{}", get("honest"));
    }

    #[test]
    fn sharp_drop_is_declining_and_steady_is_stable() {
        let p = TrustParams::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut samples = Vec::new();
        for i in 0..200i64 {
            let skill = if i < 140 { 0.85 } else { 0.35 };
            let v = if rng.gen_bool(skill) {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            samples.push(sample("drifter", "t", v, 0.7, i));
            let v = if rng.gen_bool(0.7) {
                Verdict::Approved
            } else {
                Verdict::Rejected
            };
            samples.push(sample("steady", "t", v, 0.7, 1000 + i));
        }
        let snap = WorkspaceTrust::from_samples(samples, &p).snapshot(&p);
        let drifter = &snap.agents[&AgentId::parse("a", "drifter").unwrap()].overall;
        assert_eq!(
            drifter.trend,
            Trend::Declining,
            "delta {}",
            drifter.trend_delta
        );
        assert!(drifter.trend_delta < -0.3);
        let steady = &snap.agents[&AgentId::parse("a", "steady").unwrap()].overall;
        assert_eq!(steady.trend, Trend::Stable, "delta {}", steady.trend_delta);
    }

    /// Convergence: simulated agents of known accuracy, outcomes drawn with a
    /// fixed seed; after 300 outcomes each, the accuracy ranking must match the
    /// true ranking with Spearman >= 0.9 (tolerance stated by the issue).
    #[test]
    fn trust_ranking_converges_to_true_skill() {
        let p = TrustParams::default();
        let skills = [0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 0.95];
        let mut rng = StdRng::seed_from_u64(42);
        let mut samples = Vec::new();
        let mut i = 0;
        for round in 0..300 {
            for (k, skill) in skills.iter().enumerate() {
                let v = if rng.gen_bool(*skill) {
                    Verdict::Approved
                } else {
                    Verdict::Rejected
                };
                samples.push(sample(&format!("agent{k:02}"), "t", v, 0.6, i));
                i += 1;
            }
            let _ = round;
        }
        let snap = WorkspaceTrust::from_samples(samples, &p).snapshot(&p);
        let learned: Vec<f64> = (0..skills.len())
            .map(|k| {
                snap.agents[&AgentId::parse("a", &format!("agent{k:02}")).unwrap()]
                    .overall
                    .accuracy_score
            })
            .collect();
        let rho = super::super::maths::spearman(&skills, &learned);
        assert!(rho >= 0.9, "spearman {rho}, learned {learned:?}");
        // The best agent gets a positive boost, the worst a negative one.
        let best = snap.boost(&AgentId::parse("a", "agent09").unwrap(), Some("t"));
        let worst = snap.boost(&AgentId::parse("a", "agent00").unwrap(), Some("t"));
        assert!(best > 0.2 && worst < -0.2, "best {best} worst {worst}");
    }
}
