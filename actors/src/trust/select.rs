//! Trust-based selection that explores: "top N by trust" by Thompson
//! sampling (Thompson 1933; Chapelle & Li 2011; Russo et al. 2018).
//!
//! Greedy top-N by posterior mean locks out a good agent after an unlucky
//! start and starves newcomers. Here each candidate's approval rate on the
//! type is drawn from its Beta posterior (optimistically: never below the
//! posterior mean), the draw is multiplied by its reliability (an agent that
//! does not answer is not worth asking), and the N highest draws are taken. Uncertain agents (newcomers, agents seldom asked) get
//! wide posteriors and so get tried; certain, worse agents rarely win a draw.
//!
//! The posterior is over the agent's **current regime**: every outcome of
//! the agent × type cell since the trend detector's last change point
//! (`trust/change.rs`), undecayed, with the agent's approval rate on its
//! other types as prior mean (κ = `type_prior_strength`), so a sparse type
//! leans on the agent's whole record without counting its own outcomes twice. Without an outcome of the type the agent's card is used
//! (prior: workspace mean, κ = `agent_prior_strength`); an agent without
//! history gets that prior alone. Why not the decayed counts trust uses: with
//! a half-life of 50 outcomes no posterior ever rests on more than ≈ 72
//! outcomes, so sampling never settles; the change detector already says
//! when old outcomes stop being relevant. Measured on the five-agent
//! simulation below (100 seeds, seeds with the best agent in the top 2 for
//! ≥ 90% of the last 200 of 400 runs / mean cumulative regret): greedy
//! 73 / 31.6; plain Thompson on the decayed posterior 93 / 18.2; plain
//! Thompson on the regime 93 / 15.9; optimistic Thompson on the regime
//! (this module) 97 / 14.4. `selection_exploration` scales the spread: 0 is greedy
//! (posterior means), 1 is Thompson sampling, above 1 explores more (the
//! concentration is divided by it).
//!
//! Pure: the caller passes the random source (seeded in tests and
//! simulations, from entropy in the runner).

use rand::Rng;

use super::state::{TrustParams, WorkspaceSnapshot};
use crate::domain::AgentId;

/// One candidate's posterior, as selection sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    /// Posterior mean of the approval rate.
    pub mean: f64,
    /// Posterior concentration α + β (prior strength + effective outcomes).
    pub concentration: f64,
    /// Reliability (1 − failure rate), multiplied into the draw.
    pub reliability: f64,
}

/// The posterior of `agent` on `recommendation_type` (see the module docs):
/// Beta(κ·m + s, κ·(1 − m) + n − s) over the `s` approvals of the `n`
/// outcomes of the current regime. For a type cell `κ = type_prior_strength`
/// and `m` is the agent's approval rate on its other outcomes (shrunk to the
/// workspace mean with `agent_prior_strength`), so the cell's own outcomes
/// are not counted twice; for the agent's card (no outcome of the type),
/// the workspace mean and `κ = agent_prior_strength`.
pub fn arm_of(
    snap: &WorkspaceSnapshot,
    agent: &AgentId,
    recommendation_type: &str,
    p: &TrustParams,
) -> Arm {
    let posterior = |prior: f64, kappa: f64, s: f64, n: f64, reliability: f64| {
        let (a, b) = (kappa * prior + s, kappa * (1.0 - prior) + (n - s).max(0.0));
        Arm {
            mean: a / (a + b),
            concentration: a + b,
            reliability,
        }
    };
    match snap.agents.get(agent) {
        Some(cards) => match cards.per_type.get(recommendation_type) {
            Some(c) => {
                // The prior is the agent's record on its *other* outcomes,
                // so the cell's own outcomes are not counted twice.
                let o = &cards.overall;
                let other_s = (o.regime_successes - c.regime_successes).max(0.0);
                let other_n = (o.regime_outcomes - c.regime_outcomes).max(0.0);
                let kappa = p.agent_prior_strength;
                let m = (kappa * snap.workspace_accuracy + other_s) / (kappa + other_n);
                posterior(
                    m,
                    p.type_prior_strength,
                    c.regime_successes,
                    c.regime_outcomes,
                    c.reliability,
                )
            }
            None => posterior(
                snap.workspace_accuracy,
                p.agent_prior_strength,
                cards.overall.regime_successes,
                cards.overall.regime_outcomes,
                cards.overall.reliability,
            ),
        },
        None => posterior(
            snap.workspace_accuracy,
            p.agent_prior_strength,
            0.0,
            0.0,
            snap.default_card.reliability,
        ),
    }
}

/// A standard normal draw (Box–Muller).
fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A Gamma(shape, 1) draw: Marsaglia & Tsang (2000) for shape ≥ 1, and
/// `Gamma(a + 1)·U^(1/a)` below 1.
pub fn sample_gamma<R: Rng + ?Sized>(shape: f64, rng: &mut R) -> f64 {
    if !(shape > 0.0 && shape.is_finite()) {
        return 0.0;
    }
    if shape < 1.0 {
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        return sample_gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Beta(a, b) draw from two Gamma draws.
pub fn sample_beta<R: Rng + ?Sized>(a: f64, b: f64, rng: &mut R) -> f64 {
    let x = sample_gamma(a, rng);
    let y = sample_gamma(b, rng);
    if x + y <= 0.0 {
        return a / (a + b);
    }
    x / (x + y)
}

/// The score an arm gets in one selection: its posterior mean when
/// `exploration` is 0, else the larger of its mean and a draw from
/// Beta(m·c/e, (1−m)·c/e) (optimistic Thompson sampling, May, Korda, Lee &
/// Leslie 2012: an arm is never scored below its mean, so a well-known good
/// agent is not dropped on an unlucky draw, while uncertain agents still
/// get tried), times its reliability.
pub fn draw<R: Rng + ?Sized>(arm: &Arm, exploration: f64, rng: &mut R) -> f64 {
    let m = arm.mean.clamp(1e-6, 1.0 - 1e-6);
    let theta = if exploration <= 0.0 {
        m
    } else {
        let c = (arm.concentration / exploration).max(1e-3);
        // Optimistic: a draw below the mean counts as the mean.
        sample_beta(m * c, (1.0 - m) * c, rng).max(m)
    };
    theta * arm.reliability.clamp(0.0, 1.0)
}

/// Indices of the `n` arms with the highest draws (ties by index, so the
/// order of `arms` decides among equal scores).
pub fn top_n<R: Rng + ?Sized>(arms: &[Arm], n: usize, exploration: f64, rng: &mut R) -> Vec<usize> {
    let mut scored: Vec<(f64, usize)> = arms
        .iter()
        .enumerate()
        .map(|(i, a)| (draw(a, exploration, rng), i))
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.cmp(&y.1)));
    scored.into_iter().take(n).map(|x| x.1).collect()
}

/// Chooses `n` of `pool` for `recommendation_type` (see the module docs).
pub fn select_agents<R: Rng + ?Sized>(
    snap: &WorkspaceSnapshot,
    pool: &[AgentId],
    recommendation_type: &str,
    n: usize,
    p: &TrustParams,
    rng: &mut R,
) -> Vec<AgentId> {
    let arms: Vec<Arm> = pool
        .iter()
        .map(|a| arm_of(snap, a, recommendation_type, p))
        .collect();
    top_n(&arms, n, p.selection_exploration, rng)
        .into_iter()
        .filter_map(|i| pool.get(i).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::domain::{OutcomeSample, Verdict};
    use crate::trust::WorkspaceTrust;
    use chrono::{TimeZone, Utc};
    use rand::{rngs::StdRng, SeedableRng};
    use uuid::Uuid;

    #[test]
    fn beta_draws_have_the_right_mean_and_spread() {
        let mut rng = StdRng::seed_from_u64(1);
        for (a, b) in [(0.5, 0.5), (2.0, 8.0), (40.0, 10.0)] {
            let xs: Vec<f64> = (0..20_000).map(|_| sample_beta(a, b, &mut rng)).collect();
            let m = xs.iter().sum::<f64>() / xs.len() as f64;
            let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
            let (em, ev) = (a / (a + b), a * b / ((a + b) * (a + b) * (a + b + 1.0)));
            // 20,000 draws: the mean's sd is < 0.004; tolerance 0.01 and 10% of the variance.
            assert!((m - em).abs() < 0.01, "Beta({a},{b}) mean {m} vs {em}");
            assert!((v - ev).abs() < 0.1 * ev, "Beta({a},{b}) var {v} vs {ev}");
        }
    }

    fn agent(i: usize) -> AgentId {
        AgentId::parse("a", &format!("agent{i}")).unwrap()
    }

    /// Simulates `runs` runs of a stage `select = { top = 2 }` over agents
    /// of true skill `skills`, `history[i]` earlier outcomes at that skill
    /// for agent i; every selected agent's answer is judged by its skill.
    /// Returns, per run, the selected indices.
    fn simulate(
        skills: &[f64],
        history: &[usize],
        runs: usize,
        exploration: f64,
        seed: u64,
    ) -> Vec<Vec<usize>> {
        simulate_with(
            skills,
            history,
            runs,
            TrustParams {
                selection_exploration: exploration,
                ..TrustParams::default()
            },
            seed,
        )
    }

    fn simulate_with(
        skills: &[f64],
        history: &[usize],
        runs: usize,
        p: TrustParams,
        seed: u64,
    ) -> Vec<Vec<usize>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let mut ws = WorkspaceTrust::default();
        let mut k = 0u64;
        let sample = |i: usize, good: bool, k: &mut u64| {
            *k += 1;
            OutcomeSample {
                id: Uuid::from_u128(u128::from(*k)),
                agent_id: agent(i),
                agent_name: format!("agent{i}"),
                recommendation_type: "strategy".into(),
                confidence: 0.7,
                verdict: if good {
                    Verdict::Approved
                } else {
                    Verdict::Rejected
                },
                quality: if good { 100.0 } else { 0.0 },
                latency_ms: Some(100),
                deadline_ms: None,
                evaluated_at: t0 + chrono::TimeDelta::seconds(*k as i64),
            }
        };
        let mut first = Vec::new();
        for (i, &h) in history.iter().enumerate() {
            for _ in 0..h {
                let good = rng.gen_bool(skills[i]);
                first.push(sample(i, good, &mut k));
            }
        }
        ws.fold(&first, &p);
        let pool: Vec<AgentId> = (0..skills.len()).map(agent).collect();
        let mut picks = Vec::with_capacity(runs);
        for _ in 0..runs {
            let snap = ws.snapshot(&p);
            let chosen = select_agents(&snap, &pool, "strategy", 2, &p, &mut rng);
            let idx: Vec<usize> = chosen
                .iter()
                .map(|a| pool.iter().position(|x| x == a).unwrap())
                .collect();
            let outcomes: Vec<OutcomeSample> = idx
                .iter()
                .map(|&i| {
                    let good = rng.gen_bool(skills[i]);
                    sample(i, good, &mut k)
                })
                .collect();
            ws.fold(&outcomes, &p);
            picks.push(idx);
        }
        picks
    }

    /// Cumulative regret: Σ over runs of (the two best skills − the chosen skills).
    fn regret(skills: &[f64], picks: &[Vec<usize>]) -> f64 {
        let mut sorted = skills.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let best: f64 = sorted.iter().take(2).sum();
        picks
            .iter()
            .map(|p| best - p.iter().map(|&i| skills[i]).sum::<f64>())
            .sum()
    }

    /// Issue 10, item 4: five agents between 0.70 and 0.90, top-2
    /// selection, 400 runs, 100 seeds. The best agent must be in the top 2
    /// for ≥ 90% of the last 200 runs in ≥ 95% of seeds. Greedy selection
    /// (exploration 0) is measured beside it for the docs.
    #[test]
    fn thompson_finds_the_best_of_five() {
        let skills = [0.70, 0.75, 0.80, 0.85, 0.90];
        let history = [0; 5];
        let seeds = 100u32;
        let (mut good_seeds, mut greedy_good, mut greedy_locked_out) = (0u32, 0u32, 0u32);
        let (mut r_ts, mut r_greedy, mut r_half, mut half_good) = (0.0, 0.0, 0.0, 0u32);
        for seed in 0..u64::from(seeds) {
            let picks = simulate(&skills, &history, 400, 1.0, seed);
            let share = picks[200..].iter().filter(|p| p.contains(&4)).count() as f64 / 200.0;
            good_seeds += u32::from(share >= 0.9);
            r_ts += regret(&skills, &picks);
            let h = simulate(&skills, &history, 400, 0.5, seed);
            let hshare = h[200..].iter().filter(|p| p.contains(&4)).count() as f64 / 200.0;
            half_good += u32::from(hshare >= 0.9);
            r_half += regret(&skills, &h);
            let g = simulate(&skills, &history, 400, 0.0, seed);
            let gshare = g[200..].iter().filter(|p| p.contains(&4)).count() as f64 / 200.0;
            greedy_good += u32::from(gshare >= 0.9);
            greedy_locked_out += u32::from(g.iter().all(|p| !p.contains(&4)));
            r_greedy += regret(&skills, &g);
        }
        eprintln!(
            "best of five, top 2, 400 runs, {seeds} seeds: Thompson {good_seeds}/{seeds} seeds with the best in the top 2 for >= 90% of the last 200 runs, mean cumulative regret {:.1}; exploration 0.5: {half_good}/{seeds}, regret {:.1}; greedy {greedy_good}/{seeds}, best never picked in {greedy_locked_out} seeds, regret {:.1}",
            r_ts / f64::from(seeds),
            r_half / f64::from(seeds),
            r_greedy / f64::from(seeds)
        );
        assert!(
            f64::from(good_seeds) >= 0.95 * f64::from(seeds),
            "{good_seeds} of {seeds}"
        );
    }

    /// Issue 10, item 4: a 0.95 newcomer among four agents with 100
    /// outcomes each (0.70–0.85) is in the top 2 by posterior mean within 100
    /// runs, in every one of 40 seeds.
    #[test]
    fn a_strong_newcomer_reaches_the_top_two() {
        let skills = [0.70, 0.75, 0.80, 0.85, 0.95];
        let history = [100, 100, 100, 100, 0];
        let mut reached = Vec::new();
        for seed in 0..40 {
            let picks = simulate(&skills, &history, 100, 1.0, seed);
            // Picked in both of two consecutive runs counts as "in the top 2".
            let at = picks
                .windows(2)
                .position(|w| w[0].contains(&4) && w[1].contains(&4));
            reached.push(at.map_or(usize::MAX, |x| x + 2));
        }
        reached.sort_unstable();
        eprintln!(
            "0.95 newcomer: in the top 2 (two runs in a row) after median {} runs, worst {} (of 100)",
            reached[reached.len() / 2],
            reached[reached.len() - 1]
        );
        assert!(reached.iter().all(|&r| r <= 100), "{reached:?}");
    }
}
