//! Trust on real data with gold labels, nobody here made:
//!
//! - `../shared/crowd/` (duck, dog, product; see its SOURCE.md): workers
//!   are agents, tasks are workflows;
//! - `../shared/llmbar/` (123 LLM-judge configurations on 419 LLMBar items;
//!   see its SOURCE.md): judges are agents, items are workflows.
//!
//! Over 20 random 50/50 splits of the tasks with gold (seeded), on the same
//! held-out half, it compares:
//!
//! - majority vote (a tie counts ½ right);
//! - Dawid–Skene EM, full confusion matrices, **no gold** (Dawid & Skene 1979);
//! - one-coin Dawid–Skene, no gold;
//! - the **trust vote**: each agent's accuracy learned by the product's trust
//!   maths from gold on the training half, answers weighted by
//!   max(0, ln((K−1)p/(1−p))), exactly as `aggregate = "trust_vote"` does;
//! - **semi-supervised trust**: Dawid–Skene EM over every task with the
//!   training half's gold clamped, the unlabeled tasks weighted by λ chosen by
//!   5-fold cross-validation on the training gold from {0, 0.1, 0.3, 1}
//!   (Raykar et al. 2010; Nigam et al. 2000, EM-λ). λ = 0 is "gold only"
//!   (per-agent confusion matrices), λ = 1 plain semi-supervised EM;
//! - the **live cycle's agreement trust**: what a learning cycle computes
//!   (`learner::agreement::estimate`, default `[learner.agreement]`), with the
//!   training half's answers as evaluated recommendations and the rest as
//!   unevaluated ones, weighing the same trust vote.
//!
//! Each figure is the mean accuracy over the splits with a 95% t-interval
//! (t₁₉ = 2.093) of the split-to-split variation (the splits overlap, so the
//! interval is about the choice of split, not a sampling guarantee).
//! LLMBar also reports the Spearman correlation over judges between learned
//! trust (training half) and accuracy on the held-out half, on its published
//! split (`split.csv`) and over the random splits.
//!
//! Run: `cargo bench --bench crowd` (data folders: `SWARMWISE_CROWD_DIR`,
//! default `../shared/crowd`, and `SWARMWISE_LLMBAR_DIR`, default
//! `../shared/llmbar`). A first argument `crowd` or `llmbar` runs only that.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;

use chrono::{TimeDelta, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::{rngs::StdRng, SeedableRng};
use swarmwise_actors::domain::{AgentId, OutcomeSample, Verdict};
use swarmwise_actors::learner::agreement::{
    estimate, AgreementConfig, AgreementEstimate, PendingDecision,
};
use swarmwise_actors::learner::patterns::OutcomeRecord;
use swarmwise_actors::trust::consensus::{argmax, dawid_skene, semi_supervised, trust_vote, Model};
use swarmwise_actors::trust::maths::spearman;
use swarmwise_actors::trust::{TrustParams, WorkspaceTrust};
use uuid::Uuid;

const SPLITS: u64 = 20;
const T19: f64 = 2.093;
const LAMBDAS: [f64; 4] = [0.0, 0.1, 0.3, 1.0];
const EM_ITERATIONS: usize = 50;

/// A dataset as indices: items (workflows) answered by agents with labels.
struct Data {
    agents: Vec<String>,
    labels: Vec<String>,
    /// Per item, (agent, label) answers.
    items: Vec<Vec<(usize, usize)>>,
    /// Per item, its gold label if known.
    gold: Vec<Option<usize>>,
    /// Per item, its name.
    names: Vec<String>,
}

struct Interner(HashMap<String, usize>, Vec<String>);

impl Interner {
    fn new() -> Self {
        Self(HashMap::new(), Vec::new())
    }
    fn id(&mut self, s: &str) -> usize {
        if let Some(&i) = self.0.get(s) {
            return i;
        }
        self.1.push(s.to_owned());
        self.0.insert(s.to_owned(), self.1.len() - 1);
        self.1.len() - 1
    }
}

fn rows(path: &std::path::Path) -> Option<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect(),
    )
}

/// Builds a dataset from (item, agent, label) triples and (item, gold) pairs.
fn build(answers: &[(String, String, String)], gold: &[(String, String)]) -> Data {
    let (mut items, mut agents, mut labels) = (Interner::new(), Interner::new(), Interner::new());
    let mut by_item: Vec<Vec<(usize, usize)>> = Vec::new();
    for (t, w, l) in answers {
        let (i, a, c) = (items.id(t), agents.id(w), labels.id(l));
        if by_item.len() <= i {
            by_item.resize(i + 1, Vec::new());
        }
        by_item[i].push((a, c));
    }
    let mut g = vec![None; items.1.len()];
    for (t, l) in gold {
        if let Some(&i) = items.0.get(t) {
            g[i] = Some(labels.id(l));
        }
    }
    Data {
        agents: agents.1,
        labels: labels.1,
        items: by_item,
        gold: g,
        names: items.1,
    }
}

/// Majority vote, a tie scored ½ (shared between the tied labels).
fn majority_score(ans: &[(usize, usize)], k: usize, truth: usize) -> f64 {
    let mut count = vec![0usize; k];
    for &(_, c) in ans {
        count[c] += 1;
    }
    let top = *count.iter().max().unwrap_or(&0);
    let tied = count.iter().filter(|&&c| c == top).count();
    if count[truth] == top {
        1.0 / tied as f64
    } else {
        0.0
    }
}

/// The product's trust maths on the training gold → each agent's accuracy.
fn learned_trust(data: &Data, train: &[usize], tag: &str) -> Vec<f64> {
    let params = TrustParams {
        // Agents do not drift within these datasets: no forgetting.
        half_life_outcomes: 1e12,
        half_life_days: 1e12,
        ..TrustParams::default()
    };
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut samples = Vec::new();
    for &i in train {
        let Some(g) = data.gold[i] else { continue };
        for &(a, c) in &data.items[i] {
            let k = samples.len();
            samples.push(OutcomeSample {
                id: Uuid::from_u128(k as u128),
                agent_id: AgentId::parse("a", &format!("a{a}")).unwrap(),
                agent_name: data.agents[a].clone(),
                recommendation_type: tag.into(),
                confidence: 0.5,
                verdict: if c == g {
                    Verdict::Approved
                } else {
                    Verdict::Rejected
                },
                quality: if c == g { 100.0 } else { 0.0 },
                latency_ms: None,
                deadline_ms: None,
                evaluated_at: t0 + TimeDelta::seconds(k as i64),
            });
        }
    }
    let snap = WorkspaceTrust::from_samples(samples, &params).snapshot(&params);
    (0..data.agents.len())
        .map(|a| {
            AgentId::parse("a", &format!("a{a}"))
                .ok()
                .and_then(|id| snap.agents.get(&id))
                .map_or(snap.workspace_accuracy, |c| c.overall.accuracy_score)
        })
        .collect()
}

fn trust_vote_label(ans: &[(usize, usize)], p: &[f64], data: &Data) -> usize {
    let votes: Vec<(String, f64)> = ans
        .iter()
        .map(|&(a, c)| (format!("{c:08}"), p[a]))
        .collect();
    trust_vote(&votes, data.labels.len())
        .and_then(|v| v.decision.parse().ok())
        .unwrap_or(0)
}

/// Semi-supervised EM with gold clamped on `train`; λ by 5-fold CV on it
/// (`consensus::semi_supervised`).
fn semi_supervised_fit(data: &Data, train: &[usize]) -> (Vec<Vec<f64>>, f64) {
    let mut gold = vec![None; data.items.len()];
    for &i in train {
        gold[i] = data.gold[i];
    }
    let fit = semi_supervised(
        &data.items,
        data.agents.len(),
        data.labels.len(),
        &gold,
        &LAMBDAS,
        5,
        EM_ITERATIONS,
    )
    .expect("enough gold for 5 folds");
    (fit.fit.posteriors, fit.lambda)
}

/// Agent `a` of a dataset as the product names it.
fn agent(a: usize) -> AgentId {
    AgentId::parse("agent_id", &format!("a{a}")).unwrap()
}

/// The live learning cycle's estimate (`learner::agreement::estimate`, the
/// default `[learner.agreement]` config), fed as the product would see the
/// data: every answer of a training item is a recommendation evaluated
/// approved (its label is the gold) or rejected, every other answer is an
/// unevaluated one.
fn live_agreement(data: &Data, train: &[usize]) -> AgreementEstimate {
    let at = Utc.timestamp_opt(1_700_000_000, 0).single().unwrap();
    let in_train: std::collections::HashSet<usize> = train.iter().copied().collect();
    let (mut records, mut pending) = (Vec::new(), Vec::new());
    for (i, ans) in data.items.iter().enumerate() {
        for &(a, c) in ans {
            let decision = Some(format!("{c}"));
            match data.gold[i].filter(|_| in_train.contains(&i)) {
                Some(g) => records.push(OutcomeRecord {
                    id: Uuid::now_v7(),
                    workflow_id: format!("w{i}"),
                    agent_id: agent(a),
                    recommendation_type: "label".into(),
                    confidence: 0.5,
                    approved: c == g,
                    decision,
                    evaluated_at: at,
                }),
                None => pending.push(PendingDecision {
                    workflow_id: format!("w{i}"),
                    agent_id: agent(a),
                    recommendation_type: "label".into(),
                    decision,
                }),
            }
        }
    }
    estimate(&records, &pending, &AgreementConfig::default())
}

/// The live trust vote of one item: the type's full model when the cycle
/// built one, else the one-coin vote with the cells' accuracies.
fn live_label(e: &AgreementEstimate, ans: &[(usize, usize)], data: &Data) -> usize {
    let answers: Vec<(AgentId, String)> = ans
        .iter()
        .map(|&(a, c)| (agent(a), format!("{c}")))
        .collect();
    if let Some(v) = e.vote("label", &answers) {
        return v.decision.parse().unwrap();
    }
    let p: Vec<f64> = (0..data.agents.len())
        .map(|a| {
            e.cells
                .get(&agent(a))
                .and_then(|t| t.get("label"))
                .map_or(0.5, |c| c.accuracy)
        })
        .collect();
    trust_vote_label(ans, &p, data)
}

/// Per-agent accuracy on `items` (raw), NaN without answers.
fn raw_accuracy(data: &Data, items: &[usize]) -> Vec<f64> {
    let mut right = vec![0.0; data.agents.len()];
    let mut all = vec![0.0; data.agents.len()];
    for &i in items {
        let Some(g) = data.gold[i] else { continue };
        for &(a, c) in &data.items[i] {
            all[a] += 1.0;
            right[a] += f64::from(u8::from(c == g));
        }
    }
    right
        .iter()
        .zip(&all)
        .map(|(r, n)| if *n > 0.0 { r / n } else { f64::NAN })
        .collect()
}

/// Spearman over agents answering in both halves.
fn trust_spearman(data: &Data, learned: &[f64], test: &[usize]) -> f64 {
    let held = raw_accuracy(data, test);
    let (a, b): (Vec<f64>, Vec<f64>) = learned
        .iter()
        .zip(&held)
        .filter(|(_, h)| !h.is_nan())
        .map(|(l, h)| (*l, *h))
        .unzip();
    spearman(&a, &b)
}

const METHODS: [&str; 6] = [
    "majority vote",
    "Dawid-Skene (no gold)",
    "one-coin Dawid-Skene (no gold)",
    "trust vote (gold on the training half)",
    "semi-supervised trust (gold + agreement)",
    "live learning cycle's vote (verdicts + agreement)",
];

struct Figures {
    /// Per method, accuracy per split.
    acc: Vec<Vec<f64>>,
    lambdas: Vec<f64>,
    spearman: Vec<f64>,
}

/// Runs every method over `splits` (each a (train, test) pair of item indices).
fn evaluate(data: &Data, tag: &str, splits: &[(Vec<usize>, Vec<usize>)]) -> Figures {
    let k = data.labels.len();
    let no_gold = vec![None; data.items.len()];
    let ds = dawid_skene(
        &data.items,
        data.agents.len(),
        k,
        &no_gold,
        Model::Full,
        1.0,
        EM_ITERATIONS,
    );
    let one = dawid_skene(
        &data.items,
        data.agents.len(),
        k,
        &no_gold,
        Model::OneCoin,
        1.0,
        EM_ITERATIONS,
    );
    let mut fig = Figures {
        acc: vec![Vec::new(); METHODS.len()],
        lambdas: Vec::new(),
        spearman: Vec::new(),
    };
    for (train, test) in splits {
        let p = learned_trust(data, train, tag);
        let (semi, lambda) = semi_supervised_fit(data, train);
        let live = live_agreement(data, train);
        let mut right = [0.0; 6];
        for &i in test {
            let g = data.gold[i].unwrap();
            let ans = &data.items[i];
            right[0] += majority_score(ans, k, g);
            right[1] += f64::from(u8::from(argmax(&ds.posteriors[i]) == g));
            right[2] += f64::from(u8::from(argmax(&one.posteriors[i]) == g));
            right[3] += f64::from(u8::from(trust_vote_label(ans, &p, data) == g));
            right[4] += f64::from(u8::from(argmax(&semi[i]) == g));
            right[5] += f64::from(u8::from(live_label(&live, ans, data) == g));
        }
        for (m, r) in right.iter().enumerate() {
            fig.acc[m].push(100.0 * r / test.len() as f64);
        }
        fig.lambdas.push(lambda);
        fig.spearman.push(trust_spearman(data, &p, test));
    }
    fig
}

fn random_splits(data: &Data, seed: u64) -> Vec<(Vec<usize>, Vec<usize>)> {
    let with_gold: Vec<usize> = (0..data.items.len())
        .filter(|&i| data.gold[i].is_some())
        .collect();
    (0..SPLITS)
        .map(|s| {
            let mut v = with_gold.clone();
            v.shuffle(&mut StdRng::seed_from_u64(seed + s));
            let half = v.len() / 2;
            let test = v.split_off(half);
            (v, test)
        })
        .collect()
}

fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let sd = (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    (m, T19 * sd / n.sqrt())
}

fn print_table(name: &str, data: &Data, fig: &Figures) {
    let answers: usize = data.items.iter().map(Vec::len).sum();
    let gold = data.gold.iter().filter(|g| g.is_some()).count();
    println!(
        "\n{name}: {} items ({gold} with gold), {} agents, {answers} answers, {} labels; {} random 50/50 splits, held-out half",
        data.items.len(),
        data.agents.len(),
        data.labels.len(),
        fig.acc[0].len()
    );
    println!("| method | accuracy % (mean ± 95% CI over splits) | min – max |");
    println!("|---|---|---|");
    for (m, label) in METHODS.iter().enumerate() {
        let (mean, ci) = mean_ci(&fig.acc[m]);
        let lo = fig.acc[m].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = fig.acc[m].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!("| {label} | {mean:.2} ± {ci:.2} | {lo:.1} – {hi:.1} |");
    }
    let mut lambdas: HashMap<String, usize> = HashMap::new();
    for l in &fig.lambdas {
        *lambdas.entry(format!("{l}")).or_default() += 1;
    }
    let mut lambdas: Vec<_> = lambdas.into_iter().collect();
    lambdas.sort();
    let (ds, _) = mean_ci(&fig.acc[1]);
    let versus_ds = |m: usize, label: &str, extra: &str| {
        let (mean, _) = mean_ci(&fig.acc[m]);
        let wins = fig.acc[m]
            .iter()
            .zip(&fig.acc[1])
            .filter(|(s, d)| s >= d)
            .count();
        println!(
            "{label} − Dawid-Skene: {:+.2} points (at or above it in {wins} of {} splits){extra}",
            mean - ds,
            fig.acc[m].len()
        );
    };
    versus_ds(4, "semi-supervised", &format!("; λ chosen: {lambdas:?}"));
    versus_ds(5, "live learning cycle", "");
}

fn crowd() {
    let dir = std::env::var("SWARMWISE_CROWD_DIR").unwrap_or_else(|_| "../shared/crowd".into());
    println!("# Crowd datasets ({dir})");
    for name in ["duck", "dog", "product"] {
        let base = std::path::Path::new(&dir).join(name);
        let (Some(answers), Some(truth)) = (
            rows(&base.join("answers.csv")),
            rows(&base.join("truth.csv")),
        ) else {
            println!("{name}: data not found; skipped");
            continue;
        };
        let answers: Vec<(String, String, String)> = answers
            .into_iter()
            .filter(|r| r.len() == 3)
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect();
        let gold: Vec<(String, String)> = truth
            .into_iter()
            .filter(|r| r.len() == 2)
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        let data = build(&answers, &gold);
        let started = std::time::Instant::now();
        let fig = evaluate(&data, name, &random_splits(&data, 1000));
        print_table(name, &data, &fig);
        println!("({:.1} s)", started.elapsed().as_secs_f64());
    }
}

fn llmbar() {
    let dir = std::env::var("SWARMWISE_LLMBAR_DIR").unwrap_or_else(|_| "../shared/llmbar".into());
    println!("\n# LLMBar judges ({dir})");
    let base = std::path::Path::new(&dir);
    let (Some(answers), Some(split)) = (
        rows(&base.join("answers.csv")),
        rows(&base.join("split.csv")),
    ) else {
        println!("llmbar: data not found; skipped");
        return;
    };
    // item_id,subset,judge,answer,gold
    let triples: Vec<(String, String, String)> = answers
        .iter()
        .filter(|r| r.len() == 5)
        .map(|r| (r[0].clone(), r[2].clone(), r[3].clone()))
        .collect();
    // item_id,subset,gold,half
    let gold: Vec<(String, String)> = split
        .iter()
        .filter(|r| r.len() == 4)
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    let data = build(&triples, &gold);
    let index: HashMap<&str, usize> = data
        .names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for r in split.iter().filter(|r| r.len() == 4) {
        if let Some(&i) = index.get(r[0].as_str()) {
            if r[3] == "train" {
                train.push(i);
            } else {
                test.push(i);
            }
        }
    }
    let published = evaluate(&data, "judge", &[(train, test)]);
    println!("\nPublished split (split.csv: 210 train / 209 test):");
    for (m, label) in METHODS.iter().enumerate() {
        println!("  {label}: {:.2}%", published.acc[m][0]);
    }
    println!(
        "  Spearman(learned trust on train, accuracy on test) over judges: {:.4}; λ chosen {}",
        published.spearman[0], published.lambdas[0]
    );
    let fig = evaluate(&data, "judge", &random_splits(&data, 2000));
    print_table("llmbar (all 123 judges)", &data, &fig);
    let (rho, ci) = mean_ci(&fig.spearman);
    println!("Spearman(learned trust, held-out accuracy) over judges: {rho:.4} ± {ci:.4} (mean over splits)");
}

fn main() {
    let only = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    match only.as_deref() {
        Some("crowd") => crowd(),
        Some("llmbar") => llmbar(),
        _ => {
            crowd();
            llmbar();
        }
    }
}
