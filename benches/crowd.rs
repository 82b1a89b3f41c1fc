//! Trust on real crowdsourcing data with gold labels (`../shared/crowd/`,
//! see its SOURCE.md): workers are agents, tasks are workflows. Trust is
//! learned from gold on half of the tasks (even positions in task order);
//! on the other half each task's answer is a vote weighted by
//! ln((K−1)·p/(1−p)) with p the worker's learned accuracy (Nitzan & Paroush
//! 1982). Compared, on the same held-out tasks, with majority vote and with
//! one-coin Dawid–Skene EM (which uses no gold at all).
//!
//! Run: `cargo bench --bench crowd` (data folder: `SWARMWISE_CROWD_DIR`,
//! default `../shared/crowd`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{TimeDelta, TimeZone, Utc};
use swarmwise_actors::domain::{AgentId, OutcomeSample, Verdict};
use swarmwise_actors::trust::{TrustParams, WorkspaceTrust};
use uuid::Uuid;

type Answers = Vec<(String, String, String)>; // task, worker, label

fn read(path: &std::path::Path) -> Option<Vec<Vec<String>>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(
        text.lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect(),
    )
}

fn weighted_vote(votes: &[(&str, f64)], labels: &BTreeSet<String>) -> String {
    let k = labels.len().max(2) as f64;
    let mut score: BTreeMap<&str, f64> = BTreeMap::new();
    for (label, p) in votes {
        let p = p.clamp(0.01, 0.99);
        *score.entry(label).or_default() += ((k - 1.0) * p / (1.0 - p)).ln();
    }
    score
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|x| x.0.to_owned())
        .unwrap_or_default()
}

fn majority(votes: &[&str]) -> String {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for v in votes {
        *count.entry(v).or_default() += 1;
    }
    count
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|x| x.0.to_owned())
        .unwrap_or_default()
}

/// One-coin Dawid–Skene: each worker is right with probability p_w, wrong
/// uniformly otherwise; EM over all answers.
fn dawid_skene(answers: &Answers, labels: &BTreeSet<String>) -> HashMap<String, String> {
    let k = labels.len().max(2) as f64;
    let labels: Vec<&String> = labels.iter().collect();
    let mut by_task: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for (t, w, l) in answers {
        by_task.entry(t).or_default().push((w, l));
    }
    let mut p: HashMap<&str, f64> = answers.iter().map(|(_, w, _)| (w.as_str(), 0.7)).collect();
    let mut prior: Vec<f64> = vec![1.0 / labels.len() as f64; labels.len()];
    let mut post: HashMap<&str, Vec<f64>> = HashMap::new();
    for _ in 0..50 {
        post.clear();
        for (t, ans) in &by_task {
            let mut v: Vec<f64> = prior.iter().map(|x| x.ln()).collect();
            for (w, l) in ans {
                let pw = p[w].clamp(0.01, 0.99);
                for (i, lab) in labels.iter().enumerate() {
                    v[i] += if lab.as_str() == *l {
                        pw.ln()
                    } else {
                        ((1.0 - pw) / (k - 1.0)).ln()
                    };
                }
            }
            let m = v.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
            let s: f64 = e.iter().sum();
            post.insert(t, e.into_iter().map(|x| x / s).collect());
        }
        let mut right: HashMap<&str, (f64, f64)> = HashMap::new();
        for (t, ans) in &by_task {
            let q = &post[t];
            for (w, l) in ans {
                let i = labels.iter().position(|x| x.as_str() == *l).unwrap_or(0);
                let e = right.entry(w).or_default();
                e.0 += q[i];
                e.1 += 1.0;
            }
        }
        for (w, (r, n)) in right {
            p.insert(w, (r + 1.0) / (n + 2.0));
        }
        let n = post.len() as f64;
        prior = (0..labels.len())
            .map(|i| post.values().map(|q| q[i]).sum::<f64>() / n)
            .collect();
    }
    post.into_iter()
        .map(|(t, q)| {
            let best = q
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |x| x.0);
            (t.to_owned(), labels[best].clone())
        })
        .collect()
}

fn main() {
    let dir = std::env::var("SWARMWISE_CROWD_DIR").unwrap_or_else(|_| "../shared/crowd".into());
    println!("trust-weighted voting on crowd data with gold labels ({dir})");
    let params = TrustParams {
        // Workers do not drift within these datasets: no forgetting.
        half_life_outcomes: 1e12,
        half_life_days: 1e12,
        ..TrustParams::default()
    };
    for name in ["duck", "dog", "product"] {
        let base = std::path::Path::new(&dir).join(name);
        let (Some(answers), Some(truth)) = (
            read(&base.join("answers.csv")),
            read(&base.join("truth.csv")),
        ) else {
            println!("{name}: data not found; skipped");
            continue;
        };
        let answers: Answers = answers
            .into_iter()
            .filter(|r| r.len() == 3)
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect();
        let gold: HashMap<String, String> = truth
            .into_iter()
            .filter(|r| r.len() == 2)
            .map(|r| (r[0].clone(), r[1].clone()))
            .collect();
        let labels: BTreeSet<String> = answers
            .iter()
            .map(|a| a.2.clone())
            .chain(gold.values().cloned())
            .collect();
        let mut tasks: Vec<&String> = gold.keys().collect();
        tasks.sort();
        let train: BTreeSet<&str> = tasks.iter().step_by(2).map(|t| t.as_str()).collect();
        let test: Vec<&str> = tasks
            .iter()
            .skip(1)
            .step_by(2)
            .map(|t| t.as_str())
            .collect();
        // Learn trust from gold on the training tasks.
        let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let samples: Vec<OutcomeSample> = answers
            .iter()
            .enumerate()
            .filter(|(_, (t, _, _))| train.contains(t.as_str()))
            .filter_map(|(i, (t, w, l))| {
                let g = gold.get(t)?;
                Some(OutcomeSample {
                    id: Uuid::from_u128(i as u128),
                    agent_id: AgentId::parse("w", &format!("w{w}")).ok()?,
                    agent_name: w.clone(),
                    recommendation_type: name.into(),
                    confidence: 0.5,
                    verdict: if l == g {
                        Verdict::Approved
                    } else {
                        Verdict::Rejected
                    },
                    quality: if l == g { 100.0 } else { 0.0 },
                    latency_ms: None,
                    deadline_ms: None,
                    evaluated_at: t0 + TimeDelta::seconds(i as i64),
                })
            })
            .collect();
        let snap = WorkspaceTrust::from_samples(samples, &params).snapshot(&params);
        let accuracy = |w: &str| {
            AgentId::parse("w", &format!("w{w}"))
                .ok()
                .and_then(|a| snap.agents.get(&a))
                .map_or(snap.workspace_accuracy, |c| c.overall.accuracy_score)
        };
        let mut by_task: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
        for (t, w, l) in &answers {
            by_task.entry(t).or_default().push((w, l));
        }
        let ds = dawid_skene(&answers, &labels);
        let (mut ours, mut mv, mut em, mut n) = (0, 0, 0, 0);
        for t in &test {
            let Some(ans) = by_task.get(t) else { continue };
            let g = &gold[*t];
            n += 1;
            let weighted: Vec<(&str, f64)> = ans.iter().map(|(w, l)| (*l, accuracy(w))).collect();
            ours += usize::from(&weighted_vote(&weighted, &labels) == g);
            mv += usize::from(&majority(&ans.iter().map(|x| x.1).collect::<Vec<_>>()) == g);
            em += usize::from(ds.get(*t) == Some(g));
        }
        let pct = |x: usize| 100.0 * x as f64 / n.max(1) as f64;
        println!(
            "{name:>8}: {n} held-out tasks, {} answers, {} labels | trust-weighted vote {:.1}% | majority vote {:.1}% | Dawid-Skene (no gold) {:.1}%",
            answers.len(),
            labels.len(),
            pct(ours),
            pct(mv),
            pct(em)
        );
    }
}
