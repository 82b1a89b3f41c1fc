//! Combining agents' answers: the trust-weighted vote at a barrier, and
//! Dawid–Skene EM (standard, one-coin, and semi-supervised with gold
//! clamped) for learning agents' reliability from agreement.
//!
//! Pure functions: answers in, posteriors out. Used by the workflow runner
//! (`aggregate = "trust_vote"`) and by the real-data benchmarks
//! (`benches/crowd.rs`, `benches/llmbar.rs`). Formulas and measured figures:
//! docs/trust.md, "Consensus".
//!
//! Why one file of about 800 lines: 560 of pure maths sharing one data shape
//! (the vote, Dawid–Skene and the agreement EM), and their seeded tests.

use std::collections::BTreeMap;

use serde::Serialize;

/// The log-odds weight of an agent right with probability `p` among `k`
/// possible answers: ln((k − 1)·p / (1 − p)) (Nitzan & Paroush 1982), with
/// `p` clamped to [0.01, 0.99]. Zero at chance level 1/k.
pub fn log_odds_weight(p: f64, k: usize) -> f64 {
    let p = p.clamp(0.01, 0.99);
    ((k.max(2) as f64 - 1.0) * p / (1.0 - p)).ln()
}

/// The barrier's aggregate answer.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TrustVote {
    /// The answer with the highest posterior.
    pub decision: String,
    /// Its posterior probability.
    pub posterior: f64,
    /// Posterior of every answer given, by answer.
    pub distribution: BTreeMap<String, f64>,
    /// Answers that took part.
    pub voters: usize,
}

/// Trust-weighted vote over `(answer, p)` pairs, `p` each agent's
/// probability of being right for the type. Under the one-coin model (an
/// agent is right with probability p, else any of the other k − 1 answers
/// alike) and a uniform prior over the `k` possible answers, the posterior
/// of answer `a` is ∝ exp(Σ_{agents answering a} w), w = [`log_odds_weight`].
/// Weights are clipped at 0: an agent below chance is ignored, never
/// believed in reverse (a tenant's agent must not steer by being wrong).
/// `k` is at least the number of distinct answers (and 2). `None` without
/// answers.
pub fn trust_vote(votes: &[(String, f64)], k: usize) -> Option<TrustVote> {
    if votes.is_empty() {
        return None;
    }
    let mut score: BTreeMap<String, f64> = BTreeMap::new();
    for (answer, _) in votes {
        score.entry(answer.clone()).or_insert(0.0);
    }
    let k = k.max(score.len()).max(2);
    for (answer, p) in votes {
        if let Some(s) = score.get_mut(answer) {
            *s += log_odds_weight(*p, k).max(0.0);
        }
    }
    // Answers nobody gave share the rest of the mass (score 0 each).
    let unseen = (k - score.len()) as f64;
    let top = score.values().copied().fold(0.0f64, f64::max);
    let z = score.values().map(|s| (s - top).exp()).sum::<f64>() + unseen * (-top).exp();
    let distribution: BTreeMap<String, f64> = score
        .iter()
        .map(|(a, s)| (a.clone(), (s - top).exp() / z))
        .collect();
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (answer, _) in votes {
        *count.entry(answer.as_str()).or_default() += 1;
    }
    let n = |a: &str| count.get(a).copied().unwrap_or(0);
    // Highest posterior; equal posteriors (e.g. no trust yet): more votes,
    // then the smaller answer, so the result is deterministic.
    let (decision, posterior) = distribution
        .iter()
        .max_by(|a, b| {
            a.1.total_cmp(b.1)
                .then_with(|| n(a.0).cmp(&n(b.0)))
                .then_with(|| b.0.cmp(a.0))
        })
        .map(|(a, p)| (a.clone(), *p))?;
    Some(TrustVote {
        decision,
        posterior,
        distribution,
        voters: votes.len(),
    })
}

/// Which Dawid–Skene model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// A full k × k confusion matrix per agent (Dawid & Skene 1979).
    Full,
    /// One accuracy per agent, errors spread evenly ("one-coin").
    OneCoin,
}

/// What EM learned.
#[derive(Debug, Clone, PartialEq)]
pub struct DsFit {
    /// Per item, the posterior over the k classes.
    pub posteriors: Vec<Vec<f64>>,
    /// Per agent, its estimated probability of answering the true class.
    pub accuracy: Vec<f64>,
    /// Per agent, its confusion matrix: `confusion[j][c][a]` = P(agent j
    /// answers a | the true class is c); rows sum to 1.
    pub confusion: Vec<Vec<Vec<f64>>>,
    /// Class priors; sum to 1.
    pub prior: Vec<f64>,
}

/// Dawid–Skene EM. `items[i]` lists `(agent, answer)` with agents in
/// `0..n_agents` and answers in `0..k`. `gold[i] = Some(c)` clamps item i's
/// class to c (semi-supervised: Raykar et al. 2010; Nigam et al. 2000), and
/// `unlabeled_weight` λ ∈ [0, 1] scales how much the items without gold count
/// in the M-step (λ = 1 is plain EM, λ = 0 learns from gold only; Nigam et
/// al.'s EM-λ). Initialised from gold where given, else the majority vote.
/// Confusion rows get a Dirichlet(1) smoothing (add-one), class priors too.
pub fn dawid_skene(
    items: &[Vec<(usize, usize)>],
    n_agents: usize,
    k: usize,
    gold: &[Option<usize>],
    model: Model,
    unlabeled_weight: f64,
    iterations: usize,
) -> DsFit {
    let k = k.max(2);
    let lambda = unlabeled_weight.clamp(0.0, 1.0);
    let one_hot = |c: usize| {
        let mut v = vec![0.0; k];
        if let Some(x) = v.get_mut(c) {
            *x = 1.0;
        }
        v
    };
    // Initial posteriors: gold, else the majority vote's shares.
    let mut post: Vec<Vec<f64>> = items
        .iter()
        .enumerate()
        .map(|(i, ans)| match gold.get(i).copied().flatten() {
            Some(c) => one_hot(c),
            None => {
                let mut v = vec![0.0; k];
                for &(_, a) in ans {
                    if let Some(x) = v.get_mut(a) {
                        *x += 1.0;
                    }
                }
                let s: f64 = v.iter().sum();
                if s > 0.0 {
                    v.iter_mut().for_each(|x| *x /= s);
                } else {
                    v.iter_mut().for_each(|x| *x = 1.0 / k as f64);
                }
                v
            }
        })
        .collect();
    let mut confusion = vec![vec![vec![0.0f64; k]; k]; n_agents];
    let mut prior = vec![1.0 / k as f64; k];
    for _ in 0..iterations.max(1) {
        // M-step: expected counts (unlabeled items weighted by λ), add-one.
        let mut counts = vec![vec![vec![1.0f64; k]; k]; n_agents];
        let mut class = vec![1.0f64; k];
        for (i, ans) in items.iter().enumerate() {
            let w = if gold.get(i).copied().flatten().is_some() {
                1.0
            } else {
                lambda
            };
            let Some(q) = post.get(i) else { continue };
            for (c, qc) in q.iter().enumerate() {
                if let Some(x) = class.get_mut(c) {
                    *x += w * qc;
                }
                for &(j, a) in ans {
                    if let Some(x) = counts
                        .get_mut(j)
                        .and_then(|m| m.get_mut(c))
                        .and_then(|r| r.get_mut(a))
                    {
                        *x += w * qc;
                    }
                }
            }
        }
        let total: f64 = class.iter().sum();
        prior = class.iter().map(|x| x / total).collect();
        for (j, m) in counts.iter().enumerate() {
            let Some(target) = confusion.get_mut(j) else {
                continue;
            };
            match model {
                Model::Full => {
                    for (c, row) in m.iter().enumerate() {
                        let s: f64 = row.iter().sum();
                        if let Some(t) = target.get_mut(c) {
                            *t = row.iter().map(|x| x / s).collect();
                        }
                    }
                }
                Model::OneCoin => {
                    let (mut right, mut all) = (0.0, 0.0);
                    for (c, row) in m.iter().enumerate() {
                        right += row.get(c).copied().unwrap_or(0.0) - 1.0;
                        all += row.iter().sum::<f64>() - k as f64;
                    }
                    let p = (right + 1.0) / (all + 2.0);
                    for (c, t) in target.iter_mut().enumerate() {
                        *t = (0..k)
                            .map(|a| {
                                if a == c {
                                    p
                                } else {
                                    (1.0 - p) / (k as f64 - 1.0)
                                }
                            })
                            .collect();
                    }
                }
            }
        }
        // E-step.
        for (i, ans) in items.iter().enumerate() {
            let Some(slot) = post.get_mut(i) else {
                continue;
            };
            if let Some(c) = gold.get(i).copied().flatten() {
                *slot = one_hot(c);
                continue;
            }
            *slot = class_posterior(
                &prior,
                ans.iter()
                    .filter_map(|&(j, a)| confusion.get(j).map(|m| (m.as_slice(), a))),
            );
        }
    }
    // Accuracy: probability of answering the true class, under the prior.
    let accuracy = confusion
        .iter()
        .map(|m| {
            m.iter()
                .enumerate()
                .map(|(c, row)| {
                    prior.get(c).copied().unwrap_or(0.0) * row.get(c).copied().unwrap_or(0.0)
                })
                .sum()
        })
        .collect();
    DsFit {
        posteriors: post,
        accuracy,
        confusion,
        prior,
    }
}

/// The posterior over the k classes of one item given its answers, each an
/// agent's confusion matrix (`[true class][answer]`) and its answer:
/// P(c | answers) ∝ prior_c · Π_j confusion_j[c][a_j] (Dawid & Skene 1979,
/// the E-step). Computed in log space; answers outside the matrix are
/// ignored. Sums to 1.
pub fn class_posterior<'a>(
    prior: &[f64],
    answers: impl IntoIterator<Item = (&'a [Vec<f64>], usize)>,
) -> Vec<f64> {
    let mut v: Vec<f64> = prior.iter().map(|p| p.max(1e-300).ln()).collect();
    for (m, a) in answers {
        for (c, x) in v.iter_mut().enumerate() {
            if let Some(pr) = m.get(c).and_then(|r| r.get(a)) {
                *x += pr.max(1e-300).ln();
            }
        }
    }
    let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - top).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// The λ of the `(λ, loss)` pair with the least loss; losses within 1e-12
/// count as equal and then the smaller λ wins (verdicts are preferred to
/// agreement when agreement does not help). NaN for no pairs.
fn least_loss_weight(scores: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    scores
        .into_iter()
        .fold((f64::NAN, f64::INFINITY), |best, (l, loss)| {
            if loss < best.1 - 1e-12 || (loss <= best.1 + 1e-12 && l < best.0) {
                (l, loss)
            } else {
                best
            }
        })
        .0
}

/// Semi-supervised Dawid–Skene with λ chosen by cross-validation.
#[derive(Debug, Clone, PartialEq)]
pub struct SemiSupervised {
    /// The fit on all the gold at the chosen λ.
    pub fit: DsFit,
    /// The chosen λ (the smallest among equal scores).
    pub lambda: f64,
    /// `(λ, share of held-out gold items whose posterior argmax is the gold)`
    /// per candidate, in the order given.
    pub cv_accuracy: Vec<(f64, f64)>,
}

/// [`dawid_skene`] with the full model and gold clamped, its unlabelled
/// weight λ chosen from `grid` by `folds`-fold cross-validation over the
/// gold items (folds round-robin in item order, so deterministic): each
/// fold's gold is hidden, and the λ whose posteriors recover most of it
/// wins (Nigam et al. 2000 choose λ the same way). `None` with fewer gold
/// items than folds.
pub fn semi_supervised(
    items: &[Vec<(usize, usize)>],
    n_agents: usize,
    k: usize,
    gold: &[Option<usize>],
    grid: &[f64],
    folds: usize,
    iterations: usize,
) -> Option<SemiSupervised> {
    let folds = folds.max(2);
    let labelled: Vec<usize> = (0..items.len())
        .filter(|&i| gold.get(i).copied().flatten().is_some())
        .collect();
    if labelled.len() < folds || grid.is_empty() {
        return None;
    }
    let mut cv_accuracy = Vec::with_capacity(grid.len());
    for &lambda in grid {
        let mut right = 0usize;
        for f in 0..folds {
            let mut train = gold.to_vec();
            let held: Vec<usize> = labelled.iter().skip(f).step_by(folds).copied().collect();
            for &i in &held {
                if let Some(g) = train.get_mut(i) {
                    *g = None;
                }
            }
            let fit = dawid_skene(items, n_agents, k, &train, Model::Full, lambda, iterations);
            right += held
                .iter()
                .filter(|&&i| {
                    fit.posteriors.get(i).map(|p| argmax(p)) == gold.get(i).copied().flatten()
                })
                .count();
        }
        cv_accuracy.push((lambda, right as f64 / labelled.len() as f64));
    }
    let lambda = least_loss_weight(cv_accuracy.iter().map(|&(l, a)| (l, -a)));
    let fit = dawid_skene(items, n_agents, k, gold, Model::Full, lambda, iterations);
    Some(SemiSupervised {
        fit,
        lambda,
        cv_accuracy,
    })
}

/// One answer of a workflow group (one workflow × type) as agreement EM sees
/// it: whose, which answer (an index local to the group: equal decisions,
/// equal index), and its verdict score if the recommendation was evaluated
/// (1 approved, ½ partial, 0 rejected).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupAnswer {
    /// Agent index.
    pub agent: usize,
    /// Answer index within the group.
    pub answer: usize,
    /// The verdict's score, if evaluated.
    pub verdict: Option<f64>,
}

/// Each agent's accuracy learned from verdicts **and** agreement: a
/// one-coin Dawid–Skene EM in which evaluated answers are observed
/// correctness (the anchor) and every group without any verdict is a latent
/// class problem over its distinct answers (semi-supervised EM: Raykar et
/// al. 2010; Nigam et al. 2000). E-step, for a group without verdicts with
/// K = max(2, distinct answers): P(truth = a) ∝ Π_j p_j^[v_j = a]·((1 −
/// p_j)/(K − 1))^[v_j ≠ a], and agent j's expected correctness is P(truth =
/// v_j). M-step: p_j = (α₀ + S_j + λ·E_j) / (α₀ + β₀ + N_j + λ·M_j) with
/// S_j/N_j its verdict sum and count, E_j/M_j its expected correctness and
/// count on unevaluated groups, λ = `unlabeled_weight` (0 = verdicts only).
/// Groups with one answer carry no agreement and are left out. Returns per
/// agent (accuracy, evidence N_j + λ·M_j).
pub fn agreement_accuracy(
    groups: &[Vec<GroupAnswer>],
    n_agents: usize,
    prior: (f64, f64),
    unlabeled_weight: f64,
    iterations: usize,
) -> Vec<(f64, f64)> {
    let lambda = unlabeled_weight.clamp(0.0, 1.0);
    let (a0, b0) = (prior.0.max(1e-6), prior.1.max(1e-6));
    let mut gold = vec![(0.0f64, 0.0f64); n_agents];
    for g in groups {
        for x in g {
            if let (Some(v), Some(slot)) = (x.verdict, gold.get_mut(x.agent)) {
                slot.0 += v.clamp(0.0, 1.0);
                slot.1 += 1.0;
            }
        }
    }
    let latent: Vec<&Vec<GroupAnswer>> = groups
        .iter()
        .filter(|g| g.len() >= 2 && g.iter().all(|x| x.verdict.is_none()))
        .collect();
    let estimate = |extra: &[(f64, f64)]| -> Vec<(f64, f64)> {
        gold.iter()
            .zip(extra)
            .map(|(&(s, n), &(e, m))| {
                let evidence = n + lambda * m;
                ((a0 + s + lambda * e) / (a0 + b0 + evidence), evidence)
            })
            .collect()
    };
    let mut p = estimate(&vec![(0.0, 0.0); n_agents]);
    for _ in 0..iterations.max(1) {
        let mut extra = vec![(0.0f64, 0.0f64); n_agents];
        for g in &latent {
            let k_answers = g.iter().map(|x| x.answer).max().map_or(0, |m| m + 1);
            let k = k_answers.max(2) as f64;
            let mut log = vec![0.0f64; k_answers];
            for x in g.iter() {
                let pj = p.get(x.agent).map_or(0.5, |e| e.0).clamp(1e-3, 1.0 - 1e-3);
                for (a, l) in log.iter_mut().enumerate() {
                    *l += if a == x.answer {
                        pj.ln()
                    } else {
                        ((1.0 - pj) / (k - 1.0)).ln()
                    };
                }
            }
            // Truths nobody answered: every agent wrong.
            let nobody: f64 = g
                .iter()
                .map(|x| {
                    let pj = p.get(x.agent).map_or(0.5, |e| e.0).clamp(1e-3, 1.0 - 1e-3);
                    ((1.0 - pj) / (k - 1.0)).ln()
                })
                .sum();
            let unseen = (k - k_answers as f64).max(0.0);
            let top = log.iter().copied().fold(nobody, f64::max);
            let z: f64 =
                log.iter().map(|l| (l - top).exp()).sum::<f64>() + unseen * (nobody - top).exp();
            for x in g.iter() {
                if let (Some(l), Some(slot)) = (log.get(x.answer), extra.get_mut(x.agent)) {
                    slot.0 += (l - top).exp() / z;
                    slot.1 += 1.0;
                }
            }
        }
        p = estimate(&extra);
    }
    p
}

/// The unlabelled weight λ chosen by cross-validation, with what each
/// candidate scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightChoice {
    /// The chosen λ (the smallest among equal scores: verdicts are preferred
    /// to agreement when agreement does not help).
    pub lambda: f64,
    /// `(λ, mean Brier score of the held-out verdicts)` per candidate, in the
    /// order given.
    pub brier: Vec<(f64, f64)>,
    /// Held-out verdicts scored per candidate (every evaluated answer once).
    pub held_out: usize,
}

/// Chooses `unlabeled_weight` λ for [`agreement_accuracy`] by `folds`-fold
/// cross-validation over the groups that carry verdicts: each fold's
/// verdicts are hidden (their groups join the unlabelled ones, as they would
/// be in production), the model is fitted on the rest, and every hidden
/// verdict `v` of agent `j` is scored by the Brier score (p̂_j − v)²
/// (Brier 1950). The λ with the lowest mean wins; ties go to the smaller λ.
/// Folds are assigned round-robin in the order of `groups` (deterministic).
/// `None` when fewer than `folds` groups carry a verdict (too little gold to
/// judge agreement: the caller keeps verdicts only).
pub fn choose_unlabeled_weight(
    groups: &[Vec<GroupAnswer>],
    n_agents: usize,
    prior: (f64, f64),
    grid: &[f64],
    folds: usize,
    iterations: usize,
) -> Option<WeightChoice> {
    let folds = folds.max(2);
    let labelled: Vec<usize> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| g.iter().any(|x| x.verdict.is_some()))
        .map(|(i, _)| i)
        .collect();
    if labelled.len() < folds || grid.is_empty() {
        return None;
    }
    let mut fold_of = vec![usize::MAX; groups.len()];
    for (n, &i) in labelled.iter().enumerate() {
        if let Some(slot) = fold_of.get_mut(i) {
            *slot = n % folds;
        }
    }
    let mut brier = Vec::with_capacity(grid.len());
    let mut held_out = 0;
    for &lambda in grid {
        let (mut loss, mut count) = (0.0f64, 0usize);
        for f in 0..folds {
            let train: Vec<Vec<GroupAnswer>> = groups
                .iter()
                .zip(&fold_of)
                .map(|(g, &gf)| {
                    if gf == f {
                        g.iter()
                            .map(|x| GroupAnswer {
                                verdict: None,
                                ..*x
                            })
                            .collect()
                    } else {
                        g.clone()
                    }
                })
                .collect();
            let fit = agreement_accuracy(&train, n_agents, prior, lambda, iterations);
            for (g, _) in groups.iter().zip(&fold_of).filter(|(_, &gf)| gf == f) {
                for x in g {
                    if let (Some(v), Some(&(p, _))) = (x.verdict, fit.get(x.agent)) {
                        loss += (p - v.clamp(0.0, 1.0)).powi(2);
                        count += 1;
                    }
                }
            }
        }
        held_out = count;
        brier.push((lambda, loss / count.max(1) as f64));
    }
    let lambda = least_loss_weight(brier.iter().copied());
    Some(WeightChoice {
        lambda,
        brier,
        held_out,
    })
}

/// The class with the highest posterior (lowest index on ties).
pub fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, x)| {
            if *x > best.1 {
                (i, *x)
            } else {
                best
            }
        })
        .0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn strong_agent_outvotes_two_weak_ones() {
        let votes = vec![
            ("go".to_string(), 0.95),
            ("stop".to_string(), 0.6),
            ("stop".to_string(), 0.6),
        ];
        let v = trust_vote(&votes, 2).unwrap();
        // w(0.95) = ln 19 = 2.94 > 2·ln 1.5 = 0.81: posterior e^2.13/(1+e^2.13).
        assert_eq!(v.decision, "go");
        let expected = 1.0 / (1.0 + (2.0 * 1.5f64.ln() - 19f64.ln()).exp());
        assert!((v.posterior - expected).abs() < 1e-9, "{v:?}");
        assert_eq!(v.voters, 3);
        // A below-chance agent is ignored, not reversed.
        let v = trust_vote(&[("a".into(), 0.2), ("b".into(), 0.5)], 2).unwrap();
        assert!((v.posterior - 0.5).abs() < 1e-9, "{v:?}");
        assert!(trust_vote(&[], 2).is_none());
    }

    /// Agreement sharpens sparse verdicts: 12 agents (accuracy 0.55–0.95),
    /// 600 workflows of 5 answers on a 3-way decision, verdicts on only 5% of
    /// them. The accuracies learned with agreement (λ = 1) rank the agents
    /// better than verdicts alone (λ = 0), and λ = 0 equals the Beta
    /// posterior of the verdicts. Seeded.
    #[test]
    fn agreement_sharpens_sparse_verdicts() {
        let mut rng = StdRng::seed_from_u64(8);
        let skill: Vec<f64> = (0..12).map(|j| 0.55 + 0.4 * j as f64 / 11.0).collect();
        let groups = independent_crowd(&mut rng, &skill, 600, 20);
        let only_verdicts = agreement_accuracy(&groups, 12, (1.0, 1.0), 0.0, 30);
        let with_agreement = agreement_accuracy(&groups, 12, (1.0, 1.0), 1.0, 30);
        let acc = |v: &[(f64, f64)]| v.iter().map(|x| x.0).collect::<Vec<_>>();
        let rho0 = crate::trust::maths::spearman(&skill, &acc(&only_verdicts));
        let rho1 = crate::trust::maths::spearman(&skill, &acc(&with_agreement));
        let err = |v: &[(f64, f64)]| {
            v.iter()
                .zip(&skill)
                .map(|(x, s)| (x.0 - s).abs())
                .sum::<f64>()
                / 12.0
        };
        eprintln!(
            "agreement EM: Spearman {rho0:.3} -> {rho1:.3}, mean |error| {:.3} -> {:.3}",
            err(&only_verdicts),
            err(&with_agreement)
        );
        assert!(rho1 > rho0, "{rho0} {rho1}");
        assert!(err(&with_agreement) < err(&only_verdicts));
        assert!(with_agreement.iter().all(|x| x.1 > 50.0));
    }

    /// Simulated crowd: 30 agents of accuracy 0.55–0.9 on 300 binary items,
    /// 5 answers per item. EM recovers the truth better than the majority,
    /// and clamping gold on a third of the items does not hurt. Seeded.
    #[test]
    fn em_beats_majority_on_a_simulated_crowd() {
        let mut rng = StdRng::seed_from_u64(4);
        let skill: Vec<f64> = (0..30).map(|j| 0.55 + 0.35 * j as f64 / 29.0).collect();
        let truth: Vec<usize> = (0..300).map(|_| usize::from(rng.gen_bool(0.5))).collect();
        let items: Vec<Vec<(usize, usize)>> = truth
            .iter()
            .map(|&t| {
                (0..5)
                    .map(|_| {
                        let j = rng.gen_range(0..30);
                        (j, if rng.gen_bool(skill[j]) { t } else { 1 - t })
                    })
                    .collect()
            })
            .collect();
        let no_gold = vec![None; 300];
        let mv: usize = items
            .iter()
            .zip(&truth)
            .filter(|(ans, &t)| {
                let ones = ans.iter().filter(|a| a.1 == 1).count();
                usize::from(ones * 2 > ans.len()) == t
            })
            .count();
        for model in [Model::Full, Model::OneCoin] {
            let fit = dawid_skene(&items, 30, 2, &no_gold, model, 1.0, 50);
            let right = fit
                .posteriors
                .iter()
                .zip(&truth)
                .filter(|(q, &t)| argmax(q) == t)
                .count();
            assert!(right >= mv, "{model:?}: {right} vs majority {mv}");
        }
        let gold: Vec<Option<usize>> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| (i % 3 == 0).then_some(t))
            .collect();
        let fit = dawid_skene(&items, 30, 2, &gold, Model::Full, 1.0, 50);
        let right = (0..300)
            .filter(|i| i % 3 != 0)
            .filter(|&i| argmax(&fit.posteriors[i]) == truth[i])
            .count();
        assert!(
            right as f64 / 200.0 > mv as f64 / 300.0 - 0.02,
            "{right}/200 vs {mv}/300"
        );
        // The learned accuracies rank the agents.
        let rho = crate::trust::maths::spearman(&skill, &fit.accuracy);
        assert!(rho > 0.5, "{rho}");
    }

    /// One workflow group from `(agent, decision, right)` answers: equal
    /// decisions share an answer index; verdicts (1 right, 0 wrong) if
    /// `evaluated`.
    fn group(answers: &[(usize, usize, bool)], evaluated: bool) -> Vec<GroupAnswer> {
        let mut seen: Vec<usize> = Vec::new();
        answers
            .iter()
            .map(|&(agent, decision, right)| {
                let answer = seen.iter().position(|&d| d == decision).unwrap_or_else(|| {
                    seen.push(decision);
                    seen.len() - 1
                });
                GroupAnswer {
                    agent,
                    answer,
                    verdict: evaluated.then_some(if right { 1.0 } else { 0.0 }),
                }
            })
            .collect()
    }

    /// `n` workflows of 5 answers on a 3-way decision by agents erring
    /// independently with the given skill; every `evaluated_every`-th is
    /// evaluated.
    fn independent_crowd(
        rng: &mut StdRng,
        skill: &[f64],
        n: usize,
        evaluated_every: usize,
    ) -> Vec<Vec<GroupAnswer>> {
        (0..n)
            .map(|w| {
                let truth = rng.gen_range(0..3usize);
                let answers: Vec<(usize, usize, bool)> = (0..5)
                    .map(|_| {
                        let j = rng.gen_range(0..skill.len());
                        let right = rng.gen_bool(skill[j]);
                        let decision = if right {
                            truth
                        } else {
                            (truth + rng.gen_range(1..3)) % 3
                        };
                        (j, decision, right)
                    })
                    .collect();
                group(&answers, w % evaluated_every == 0)
            })
            .collect()
    }

    /// Cross-validation turns agreement on where agents err independently,
    /// and off where they share a blind spot. Seeded.
    #[test]
    fn cross_validation_uses_agreement_only_where_it_helps() {
        let grid = [0.0, 0.1, 0.3, 1.0];
        // Independent errors, verdicts on 1 workflow in 10: agreement helps.
        let mut rng = StdRng::seed_from_u64(11);
        let skill: Vec<f64> = (0..12).map(|j| 0.55 + 0.4 * j as f64 / 11.0).collect();
        let groups = independent_crowd(&mut rng, &skill, 600, 10);
        let choice = choose_unlabeled_weight(&groups, 12, (1.0, 1.0), &grid, 5, 30).unwrap();
        eprintln!("independent: {choice:?}");
        assert!(choice.lambda > 0.0, "{choice:?}");
        assert_eq!(
            choice.held_out,
            groups
                .iter()
                .flatten()
                .filter(|x| x.verdict.is_some())
                .count()
        );
        // A herd: agents 0–8 always give the same answer, right half the
        // time; agents 9–11 are right 90% of the time on their own. The
        // herd's agreement would make it look perfect: CV keeps verdicts only.
        let mut rng = StdRng::seed_from_u64(12);
        let groups: Vec<Vec<GroupAnswer>> = (0..600)
            .map(|w| {
                let truth = rng.gen_range(0..3usize);
                let herd_right = rng.gen_bool(0.5);
                let herd = if herd_right { truth } else { (truth + 1) % 3 };
                let mut answers: Vec<(usize, usize, bool)> =
                    (0..9).map(|j| (j, herd, herd_right)).collect();
                for j in 9..12 {
                    let right = rng.gen_bool(0.9);
                    let d = if right {
                        truth
                    } else {
                        (truth + rng.gen_range(1..3)) % 3
                    };
                    answers.push((j, d, right));
                }
                group(&answers, w % 5 == 0)
            })
            .collect();
        let choice = choose_unlabeled_weight(&groups, 12, (1.0, 1.0), &grid, 5, 30).unwrap();
        eprintln!("herd: {choice:?}");
        assert_eq!(choice.lambda, 0.0, "{choice:?}");
        // Too little gold to judge: no choice.
        let sparse: Vec<Vec<GroupAnswer>> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                g.iter()
                    .map(|x| GroupAnswer {
                        verdict: if i < 15 { x.verdict } else { None },
                        ..*x
                    })
                    .collect()
            })
            .collect();
        assert!(choose_unlabeled_weight(&sparse, 12, (1.0, 1.0), &grid, 5, 30).is_none());
    }
}
