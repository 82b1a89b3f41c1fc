//! Sequential change detection behind the trend label (improving / stable /
//! declining).
//!
//! The earlier label re-ran a two-proportion test after every outcome with no
//! correction: a steady agent was labelled `declining` at some point within
//! 1,000 outcomes with probability ≈ 0.8, and after a real drop the label
//! went back to `stable` once the window forgot the old level. A repeated
//! test is a sequential procedure, so it is built as one here:
//!
//! - Two one-sided Bernoulli CUSUMs of the log-likelihood ratio (Page 1954;
//!   Reynolds & Stoumbos 1999 for binary data) run against the agent's
//!   reference level `p₀`: one for a drop to `p₀ − shift`, one for a rise to
//!   `p₀ + shift`. `p₀` is the mean of the outcomes since the last reset,
//!   moved by `reference_z` standard errors towards "no alarm", so the
//!   uncertainty of an estimated `p₀` does not read as a change.
//! - The threshold `h` is set from the target in-control average run length
//!   ARL₀ (`trust.trend_arl0`), computed with the Markov-chain method of
//!   Brook & Evans (1972) on a fine grid and solved for `h` by bisection.
//! - After an alarm the episode stays open while the post-change level stays
//!   below (above) the pre-change level: it closes only when a third CUSUM,
//!   of the post-change level against the pre-change level, alarms at the
//!   same ARL₀. A persistent drop therefore stays `declining`.
//!
//! Everything is a pure function of the outcome sequence; thresholds are
//! memoised by (p₀, p₁, ARL₀) on a 0.01 grid, which changes no result.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// Average run length of a CUSUM `S ← max(0, S + X)`, started at 0, until
/// `S ≥ h`, where `X` is `+up` with probability `q` and `−down` otherwise
/// (`up, down > 0`). Markov chain on a lattice of `n` cells of width
/// `h / n` (Brook & Evans 1972), solved exactly with banded elimination
/// (the matrix `I − P` is an M-matrix, so no pivoting is needed). Infinite
/// when the chain cannot reach `h`.
pub fn cusum_arl(up: f64, down: f64, q: f64, h: f64) -> f64 {
    if !(up > 0.0 && down >= 0.0 && h > 0.0 && (0.0..=1.0).contains(&q)) || q == 0.0 {
        return f64::INFINITY;
    }
    // At least 4 cells per down-step and 200 cells in all, at most 4,000.
    let n = ((4.0 * h / down.max(1e-9)).ceil() as usize).clamp(200, 4000);
    let g = h / n as f64;
    let u = ((up / g).round() as usize).max(1);
    let d = (down / g).round() as usize;
    // Dense storage, band-limited loops: a[i][j] for j in [i − d, i + u].
    let mut a = vec![0.0f64; n * n];
    let mut b = vec![1.0f64; n];
    let at = |i: usize, j: usize| i * n + j;
    for i in 0..n {
        if let Some(x) = a.get_mut(at(i, i)) {
            *x += 1.0;
        }
        if i + u < n {
            if let Some(x) = a.get_mut(at(i, i + u)) {
                *x -= q;
            }
        }
        let lo = i.saturating_sub(d);
        if let Some(x) = a.get_mut(at(i, lo)) {
            *x -= 1.0 - q;
        }
    }
    // Forward elimination within the band (lower bandwidth d, upper u).
    for k in 0..n {
        let pivot = a.get(at(k, k)).copied().unwrap_or(0.0);
        if pivot.abs() < 1e-300 {
            return f64::INFINITY;
        }
        let last_row = (k + d).min(n - 1);
        let last_col = (k + u).min(n - 1);
        for i in k + 1..=last_row {
            let factor = a.get(at(i, k)).copied().unwrap_or(0.0) / pivot;
            if factor == 0.0 {
                continue;
            }
            for j in k..=last_col {
                let v = a.get(at(k, j)).copied().unwrap_or(0.0);
                if let Some(x) = a.get_mut(at(i, j)) {
                    *x -= factor * v;
                }
            }
            let bk = b.get(k).copied().unwrap_or(0.0);
            if let Some(x) = b.get_mut(i) {
                *x -= factor * bk;
            }
        }
    }
    // Back substitution.
    let mut x = vec![0.0f64; n];
    for i in (0..n).rev() {
        let mut s = b.get(i).copied().unwrap_or(0.0);
        for j in i + 1..=(i + u).min(n - 1) {
            s -= a.get(at(i, j)).copied().unwrap_or(0.0) * x.get(j).copied().unwrap_or(0.0);
        }
        let pivot = a.get(at(i, i)).copied().unwrap_or(1.0);
        if let Some(slot) = x.get_mut(i) {
            *slot = s / pivot;
        }
    }
    x.first().copied().unwrap_or(f64::INFINITY)
}

/// The log-likelihood-ratio steps of one outcome for "p₀ → p₁":
/// `(on success, on failure)` = `(ln(p₁/p₀), ln((1−p₁)/(1−p₀)))`. An
/// outcome `y ∈ [0, 1]` (partial = ½) adds `y·s + (1 − y)·f`.
pub fn llr_steps(p0: f64, p1: f64) -> (f64, f64) {
    ((p1 / p0).ln(), ((1.0 - p1) / (1.0 - p0)).ln())
}

/// Threshold `h` of the LLR CUSUM for "p₀ → p₁" whose in-control ARL is
/// `arl0` (bisection on [`cusum_arl`]); uncached.
pub fn cusum_threshold_exact(p0: f64, p1: f64, arl0: f64) -> f64 {
    let (s, f) = llr_steps(p0, p1);
    // The positive step happens with the in-control probability of its outcome.
    let (up, down, q) = if s > 0.0 {
        (s, -f, p0)
    } else {
        (f, -s, 1.0 - p0)
    };
    if !(up.is_finite() && down.is_finite()) || up <= 0.0 {
        return f64::INFINITY;
    }
    let (mut lo, mut hi) = (1e-3, 1.0);
    while cusum_arl(up, down, q, hi) < arl0 && hi < 200.0 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..40 {
        let mid = 0.5 * (lo + hi);
        if cusum_arl(up, down, q, mid) < arl0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-3 {
            break;
        }
    }
    hi
}

/// [`cusum_threshold_exact`] with `p₀`, `p₁` rounded to 0.01 and memoised
/// per process (a threshold depends on nothing else, so the cache cannot
/// change a result; it only spares the solve on the fold's hot path).
pub fn cusum_threshold(p0: f64, p1: f64, arl0: f64) -> f64 {
    /// (p₀ in hundredths, p₁ in hundredths, ARL₀ bits) → h.
    type Thresholds = HashMap<(u32, u32, u64), f64>;
    static CACHE: OnceLock<Mutex<Thresholds>> = OnceLock::new();
    let r = |p: f64| (p.clamp(0.01, 0.99) * 100.0).round() as u32;
    let key = (r(p0), r(p1), arl0.to_bits());
    if key.0 == key.1 {
        return f64::INFINITY;
    }
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock() {
        if let Some(h) = map.get(&key) {
            return *h;
        }
    }
    let h = cusum_threshold_exact(f64::from(key.0) / 100.0, f64::from(key.1) / 100.0, arl0);
    if let Ok(mut map) = cache.lock() {
        map.insert(key, h);
    }
    h
}

/// The detector's knobs (from `[trust]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorParams {
    /// Target in-control average run length, in outcomes, of each one-sided
    /// alarm (`trend_arl0`).
    pub arl0: f64,
    /// Design shift of the approval rate (`trend_shift`).
    pub shift: f64,
    /// Outcomes in the reference before any alarm (`trend_min_reference`).
    pub min_reference: f64,
    /// Standard errors the reference level is moved towards "no alarm"
    /// (`trend_reference_z`).
    pub reference_z: f64,
}

/// Direction of an open episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// The approval rate fell.
    Down,
    /// The approval rate rose.
    Up,
}

/// A CUSUM and the outcomes of its current excursion (since it last was 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Excursion {
    s: f64,
    sum: f64,
    n: f64,
}

impl Excursion {
    /// Adds one outcome's LLR; true when `S ≥ h`.
    fn step(&mut self, y: f64, p0: f64, p1: f64, h: f64) -> bool {
        let (s, f) = llr_steps(p0, p1);
        self.s = (self.s + y * s + (1.0 - y) * f).max(0.0);
        if self.s == 0.0 {
            self.sum = 0.0;
            self.n = 0.0;
        } else {
            self.sum += y;
            self.n += 1.0;
        }
        self.s >= h
    }
}

/// An open change episode.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Episode {
    direction: Direction,
    /// The level before the change (reference without the alarm's excursion).
    pre: f64,
    /// Outcomes since the change began (the alarm's excursion on).
    post_sum: f64,
    post_n: f64,
    /// CUSUM of "post level → pre level": alarms when the agent is back.
    recovery: Excursion,
}

/// Sequential change state of one cell, folded outcome by outcome.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeDetector {
    /// Σy and n of the reference segment (since the start or the last episode).
    ref_sum: f64,
    ref_n: f64,
    down: Excursion,
    up: Excursion,
    episode: Option<Episode>,
    /// Episodes opened so far, per direction (for tests and simulations).
    pub opened_down: u64,
    /// Rising episodes opened so far.
    pub opened_up: u64,
}

fn clamp_p(p: f64) -> f64 {
    p.clamp(0.01, 0.99)
}

impl ChangeDetector {
    /// Folds one outcome score `y ∈ [0, 1]`.
    pub fn observe(&mut self, y: f64, p: &DetectorParams) {
        match self.episode.as_mut() {
            Some(ep) => {
                ep.post_sum += y;
                ep.post_n += 1.0;
                let mean = clamp_p(ep.post_sum / ep.post_n);
                let pre = clamp_p(ep.pre);
                // The post-change level, moved by reference_z standard
                // errors towards the pre-change level, so that the noise of
                // a short post-change segment does not read as a recovery.
                let se = (mean * (1.0 - mean) / ep.post_n).sqrt();
                let post = match ep.direction {
                    Direction::Down => clamp_p(mean + p.reference_z * se),
                    Direction::Up => clamp_p(mean - p.reference_z * se),
                };
                let back = match ep.direction {
                    Direction::Down => mean >= pre,
                    Direction::Up => mean <= pre,
                } || {
                    let apart = match ep.direction {
                        Direction::Down => post < pre - 0.005,
                        Direction::Up => post > pre + 0.005,
                    };
                    apart && {
                        let h = cusum_threshold(post, pre, p.arl0);
                        ep.recovery.step(y, post, pre, h)
                    }
                };
                if back {
                    // The new reference is what the recovery alarm rests on.
                    let r = ep.recovery;
                    *self = Self {
                        ref_sum: r.sum,
                        ref_n: r.n,
                        opened_down: self.opened_down,
                        opened_up: self.opened_up,
                        ..Self::default()
                    };
                }
            }
            None => {
                if self.ref_n >= p.min_reference {
                    let m = clamp_p(self.ref_sum / self.ref_n);
                    let se = (m * (1.0 - m) / self.ref_n).sqrt();
                    let p0_down = clamp_p(m - p.reference_z * se);
                    let p1_down = clamp_p(p0_down - p.shift);
                    let p0_up = clamp_p(m + p.reference_z * se);
                    let p1_up = clamp_p(p0_up + p.shift);
                    let fired = if p1_down < p0_down - 0.005 {
                        let h = cusum_threshold(p0_down, p1_down, p.arl0);
                        self.down
                            .step(y, p0_down, p1_down, h)
                            .then_some(Direction::Down)
                    } else {
                        None
                    };
                    let fired = fired.or_else(|| {
                        if p1_up > p0_up + 0.005 {
                            let h = cusum_threshold(p0_up, p1_up, p.arl0);
                            self.up.step(y, p0_up, p1_up, h).then_some(Direction::Up)
                        } else {
                            None
                        }
                    });
                    if let Some(direction) = fired {
                        let exc = match direction {
                            Direction::Down => self.down,
                            Direction::Up => self.up,
                        };
                        let rest_n = self.ref_n - (exc.n - 1.0);
                        let pre = if rest_n > 0.0 {
                            (self.ref_sum - (exc.sum - y)) / rest_n
                        } else {
                            m
                        };
                        match direction {
                            Direction::Down => self.opened_down += 1,
                            Direction::Up => self.opened_up += 1,
                        }
                        self.episode = Some(Episode {
                            direction,
                            pre,
                            post_sum: exc.sum,
                            post_n: exc.n,
                            recovery: Excursion::default(),
                        });
                        self.down = Excursion::default();
                        self.up = Excursion::default();
                        return;
                    }
                }
                self.ref_sum += y;
                self.ref_n += 1.0;
            }
        }
    }

    /// The open episode's direction, if any.
    pub fn direction(&self) -> Option<Direction> {
        self.episode.map(|e| e.direction)
    }

    /// Post-change minus pre-change level during an episode.
    pub fn episode_delta(&self) -> Option<f64> {
        self.episode
            .filter(|e| e.post_n > 0.0)
            .map(|e| e.post_sum / e.post_n - e.pre)
    }

    /// Σy and n of the current regime: the post-change segment during an
    /// episode, else the reference segment (every outcome since the last
    /// change point). Selection samples from a posterior over these.
    pub fn regime(&self) -> (f64, f64) {
        match self.episode {
            Some(e) => (e.post_sum, e.post_n),
            None => (self.ref_sum, self.ref_n),
        }
    }

    /// Mean of the reference segment, if it has outcomes.
    pub fn reference_mean(&self) -> Option<f64> {
        (self.ref_n > 0.0).then(|| self.ref_sum / self.ref_n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn defaults() -> DetectorParams {
        crate::trust::TrustParams::default().detector()
    }

    /// Steady agents: false `declining` episodes per 5,000 outcomes.
    fn false_declines_per_5000(rate: f64, agents: u64, outcomes: u64, seed: u64) -> (f64, u64) {
        let p = defaults();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut episodes = 0;
        for _ in 0..agents {
            let mut d = ChangeDetector::default();
            for _ in 0..outcomes {
                d.observe(f64::from(u8::from(rng.gen_bool(rate))), &p);
            }
            episodes += d.opened_down;
        }
        (
            episodes as f64 * 5000.0 / (agents * outcomes) as f64,
            episodes,
        )
    }

    /// Issue 10, item 2: the false-alarm target of the config (at most one
    /// false `declining` episode per 5,000 outcomes of a steady agent) holds
    /// by simulation, fixed seed. 30 agents × 5,000 outcomes per rate
    /// (150,000 outcomes); tolerance: the measured rate must be ≤ 1 per
    /// 5,000 at every rate (a rate of 1 would give ≈ 30 ± 5.5 episodes).
    #[test]
    fn steady_agents_rarely_raise_a_false_decline() {
        for rate in [0.5, 0.7, 0.9] {
            let (per_5000, n) = false_declines_per_5000(rate, 30, 5000, 11);
            eprintln!("steady {rate}: {n} false declining episodes in 150,000 outcomes = {per_5000:.3} per 5,000");
            assert!(per_5000 <= 1.0, "rate {rate}: {per_5000} per 5,000");
        }
    }

    /// Issue 10, item 2: a drop 0.85 → 0.60 after 300 outcomes is detected
    /// quickly, and the label stays `declining` while the drop persists.
    /// 200 seeded agents. Tolerances: ≥ 95% detected within 150 outcomes,
    /// median delay ≤ 60; after detection, ≥ 95% of the remaining outcomes
    /// of the 600 after the change are labelled declining.
    #[test]
    fn a_drop_is_detected_and_the_label_persists() {
        let p = defaults();
        let mut rng = StdRng::seed_from_u64(5);
        let mut delays = Vec::new();
        let (mut labelled, mut after_detection) = (0u64, 0u64);
        let mut false_before = 0;
        for _ in 0..200 {
            let mut d = ChangeDetector::default();
            for _ in 0..300 {
                d.observe(f64::from(u8::from(rng.gen_bool(0.85))), &p);
            }
            false_before += d.opened_down;
            let before = d.opened_down;
            let mut detected = None;
            for t in 1..=600u64 {
                d.observe(f64::from(u8::from(rng.gen_bool(0.60))), &p);
                if detected.is_none() && d.opened_down > before {
                    detected = Some(t);
                }
                if detected.is_some() {
                    after_detection += 1;
                    labelled += u64::from(d.direction() == Some(Direction::Down));
                }
            }
            delays.push(detected.unwrap_or(u64::MAX));
        }
        delays.sort_unstable();
        let median = delays[delays.len() / 2];
        let within = delays.iter().filter(|&&x| x <= 150).count() as f64 / delays.len() as f64;
        let detected: Vec<f64> = delays
            .iter()
            .filter(|&&x| x != u64::MAX)
            .map(|&x| x as f64)
            .collect();
        let mean = detected.iter().sum::<f64>() / detected.len() as f64;
        let persist = labelled as f64 / after_detection as f64;
        eprintln!(
            "0.85 -> 0.60: median delay {median}, mean {mean:.1}, 90th pct {}, detected within 150: {:.1}%, label kept {:.1}% of outcomes after detection, false declines before the change: {false_before}",
            delays[delays.len() * 9 / 10],
            within * 100.0,
            persist * 100.0
        );
        assert!(within >= 0.95, "{within}");
        assert!(median <= 60, "{median}");
        assert!(persist >= 0.95, "{persist}");
    }

    /// After a detected drop, an agent that comes back to its old level is
    /// labelled stable again: 100 seeded agents, 0.85 for 300, 0.60 for 200,
    /// then 0.85; tolerance: ≥ 90% stable again within 300 outcomes.
    #[test]
    fn a_recovery_closes_the_episode() {
        let p = defaults();
        let mut rng = StdRng::seed_from_u64(9);
        let mut recovered = Vec::new();
        for _ in 0..100 {
            let mut d = ChangeDetector::default();
            for t in 0..500 {
                let rate = if t < 300 { 0.85 } else { 0.60 };
                d.observe(f64::from(u8::from(rng.gen_bool(rate))), &p);
            }
            if d.direction() != Some(Direction::Down) {
                continue;
            }
            let back = (1..=300u64).find(|_| {
                d.observe(f64::from(u8::from(rng.gen_bool(0.85))), &p);
                d.direction().is_none()
            });
            recovered.push(back.unwrap_or(u64::MAX));
        }
        recovered.sort_unstable();
        let share = recovered.iter().filter(|&&x| x <= 300).count() as f64 / recovered.len() as f64;
        eprintln!(
            "recovery 0.60 -> 0.85: {} declining at the recovery, median {} outcomes to stable, {:.1}% within 300",
            recovered.len(),
            recovered[recovered.len() / 2],
            share * 100.0
        );
        assert!(recovered.len() >= 90);
        assert!(share >= 0.9, "{share}");
    }

    /// A symmetric ±1 walk with q = ½ hitting h: the CUSUM reflected at 0
    /// has ARL = (h)(h+1) for integer h (gambler's ruin with a reflecting
    /// barrier); the lattice solution must reproduce it.
    #[test]
    fn arl_of_a_symmetric_walk() {
        for h in [3.0f64, 5.0, 10.0] {
            let arl = cusum_arl(1.0, 1.0, 0.5, h);
            let expected = h * (h + 1.0);
            assert!(
                (arl - expected).abs() / expected < 0.02,
                "h {h}: {arl} vs {expected}"
            );
        }
    }

    #[test]
    fn threshold_grows_with_arl0_and_meets_it() {
        let h1 = cusum_threshold_exact(0.85, 0.70, 1000.0);
        let h2 = cusum_threshold_exact(0.85, 0.70, 5000.0);
        assert!(h1 < h2, "{h1} {h2}");
        // Lorden's bound: ARL₀ ≥ e^h for an LLR CUSUM, so h ≤ ln(ARL₀).
        assert!(h2 <= 5000f64.ln() + 0.05, "{h2}");
        let (s, f) = llr_steps(0.85, 0.70);
        // The lattice rounds the steps, so ARL(h) moves in small jumps and
        // the bisection lands at or just above the target (conservative).
        let arl = cusum_arl(f, -s, 0.15, h2);
        assert!((4950.0..6250.0).contains(&arl), "{arl}");
    }
}
