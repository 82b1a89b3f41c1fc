//! Trust parameters: the weights of the overall score, priors, half-lives,
//! thresholds (`[trust]` in `config/default.toml`), their defaults and
//! validation, and the verdict and priority they derive.

use serde::{Deserialize, Serialize};

use crate::domain::{Priority, Verdict};
use crate::trust::change::DetectorParams;

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
    /// Least time between two saves of the changed trust cards to the
    /// store, in milliseconds (0: the next save starts as soon as the
    /// previous one finished). The cards served by the API are the ones in
    /// memory; the stored cards (a materialised view for SQL readers) and
    /// the trust history lag by at most this. Each save is one write
    /// transaction and one history point per changed agent, so under load a
    /// longer interval means fewer of both (on SQLite, less of the single
    /// writer's time). At most 60,000.
    pub persist_interval_ms: u64,
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
            persist_interval_ms: 250,
        }
    }
}

impl TrustParams {
    /// Checks every knob; the error names the key (relative to `[trust]`).
    pub fn validate(&self) -> Result<(), crate::domain::ParseError> {
        use crate::domain::ParseError;
        if self.persist_interval_ms > 60_000 {
            return Err(ParseError::new(
                "persist_interval_ms",
                format!(
                    "must be at most 60000 (one minute), got {}",
                    self.persist_interval_ms
                ),
            ));
        }
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
