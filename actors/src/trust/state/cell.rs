//! Cell state: the decayed sufficient statistics of one cell (an agent, or
//! agent × recommendation type), their time and count decay, and the
//! posterior accuracy the cards read.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use super::TrustParams;
use crate::domain::{AgentFailure, FailureKind, OutcomeSample, Verdict};
use crate::trust::change::ChangeDetector;

/// Decayed sufficient statistics of one cell (an agent, or agent × type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CellState {
    /// Evaluation time of the last folded sample (time decay reference).
    pub(super) last_at: Option<DateTime<Utc>>,
    /// Σ weights: the effective number of outcomes.
    pub(super) w: f64,
    /// Σ weight · outcome score (approved 1, partial ½).
    pub(super) wy: f64,
    /// Σ weight · timeliness and Σ weight over samples with a latency.
    pub(super) wt: f64,
    pub(super) wt_n: f64,
    /// Successful and failed executions, decayed (reliability).
    pub(super) w_ok: f64,
    pub(super) w_err: f64,
    /// Raw counts, never decayed: what the metrics endpoint reports.
    pub(super) approved: u64,
    pub(super) partial: u64,
    pub(super) rejected: u64,
    /// Failed executions, raw, per kind (errors, timeouts, invalid answers).
    pub(super) errors: u64,
    pub(super) timeouts: u64,
    pub(super) invalid: u64,
    pub(super) sum_quality: f64,
    pub(super) sum_confidence: f64,
    /// The newest (confidence, score) pairs, oldest first, for calibration and trend.
    pub(super) recent: VecDeque<(f64, f64)>,
    /// Sequential change detection behind the trend label.
    pub(super) change: ChangeDetector,
}

impl CellState {
    /// Decays every sum by one observation's step (λ = 2^(−1/H_n) · 2^(−Δdays/H_d))
    /// before the observation at `at` is added.
    pub(super) fn advance(&mut self, at: DateTime<Utc>, p: &TrustParams) {
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

    pub(super) fn posterior_accuracy(&self, prior_mean: f64, kappa: f64) -> f64 {
        (kappa * prior_mean + self.wy) / (kappa + self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::{TrustParams, WorkspaceTrust};
    use crate::domain::Verdict;
    use proptest::prelude::*;

    proptest! {
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
    }
}
