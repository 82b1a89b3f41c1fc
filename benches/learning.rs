//! Learning-cycle benchmark: cycle time on 1k, 100k and 1M evaluated
//! recommendations, split into loading (from SQLite) and mining, plus the
//! pattern query over HTTP beside `/healthz` in the same run.
//!
//! Run: `cargo bench --bench learning` (`-- --quick`: 1k and 100k only).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;
use swarmwise::config::{DatabaseSettings, Settings};
use swarmwise::startup::Application;
use swarmwise_actors::domain::{
    to_micros, AgentId, Recommendation, RecommendationStatus, Verdict, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::learner::cycle::{run_cycle, LifecycleParams};
use swarmwise_actors::learner::patterns::MiningParams;
use swarmwise_actors::trust::{TrustParams, WorkspaceTrust};

/// Writes `n` evaluated recommendations: 20 agents of skills 0.2..0.95, 3
/// types, 6 agents per workflow, decisions that agree more when right.
async fn fill(
    store: &Arc<dyn swarmwise::store::AdminStore>,
    ws: WorkspaceId,
    from: usize,
    n: usize,
) {
    let mut rng = StdRng::seed_from_u64(1);
    let t0 = to_micros(Utc::now()) - TimeDelta::days(30);
    let types = ["strategy", "research", "risk"];
    let chunk = 20_000;
    let mut done = from;
    let n = from + n;
    while done < n {
        let m = chunk.min(n - done);
        let mut recs = Vec::with_capacity(m);
        let mut verdicts = Vec::with_capacity(m);
        for i in done..done + m {
            let w = i / 6;
            let a = (w * 7 + i % 6) % 20;
            let skill = 0.2 + 0.75 * a as f64 / 19.0;
            let good = rng.gen_bool(skill);
            let at = t0 + TimeDelta::seconds(w as i64);
            let rec = Recommendation {
                id: uuid::Uuid::now_v7(),
                workspace_id: ws,
                agent_id: AgentId::parse("a", &format!("agent{a:02}")).unwrap(),
                agent_name: format!("Agent {a}"),
                correlation_id: format!("c{w}"),
                workflow_id: format!("w{w}"),
                recommendation_type: types[w % 3].into(),
                content: json!({"decision": if good { "go" } else if rng.gen_bool(0.5) { "stop" } else { "wait" }}),
                confidence: (skill + rng.gen_range(-0.1..0.1)).clamp(0.0, 1.0),
                reasoning: None,
                latency_ms: Some(500),
                deadline_ms: None,
                status: RecommendationStatus::Pending,
                outcome_quality: None,
                feedback: None,
                created_at: at,
                evaluated_at: None,
                usage: Default::default(),
            };
            verdicts.push(VerdictUpdate {
                id: rec.id,
                verdict: if good {
                    Verdict::Approved
                } else {
                    Verdict::Rejected
                },
                quality: if good { 85.0 } else { 20.0 },
                feedback: None,
                evaluated_at: at,
            });
            recs.push(rec);
        }
        store.insert_recommendations(&recs).await.unwrap();
        store.apply_verdicts(ws, &verdicts).await.unwrap();
        done += m;
        eprint!("\r  writing {done}/{n}");
    }
    eprintln!();
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick {
        &[1_000, 100_000]
    } else {
        &[1_000, 100_000, 1_000_000]
    };
    actix_web::rt::System::new().block_on(async move {
        println!("swarmwise learning benchmark ({})", if quick { "quick" } else { "full" });
        let mut keep = None;
        for &n in sizes {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/bench.db", dir.path().display());
            let store = swarmwise::store::connect(&DatabaseSettings { url: url.clone(), ..Default::default() }).await.unwrap();
            let ws = WorkspaceId(uuid::Uuid::now_v7());
            let (plain_key, key) = swarmwise::auth::generate_key("swk_");
            store.create_workspace(ws, "bench", &key, Utc::now()).await.unwrap();
            fill(&store, ws, 0, n).await;
            // The engine already holds the trust snapshot a cycle reads; build it untimed.
            let params = TrustParams::default();
            let samples = store.outcome_samples(ws, None).await.unwrap();
            let trust = WorkspaceTrust::from_samples(samples, &params).snapshot(&params);
            // What a cycle does: load outcomes and patterns, then mine.
            let t = Instant::now();
            let records = store.outcome_records(ws, "decision", None).await.unwrap();
            let existing = store.patterns(ws).await.unwrap();
            let load = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let outcome = run_cycle(&records, existing, &trust, &MiningParams::default(), &LifecycleParams::default(), Utc::now());
            let mine = t.elapsed().as_secs_f64();
            println!(
                "learning cycle, {n:>9} outcomes: total {:.3} s = load {:.3} s + mining {:.3} s | {} candidates tested, {} patterns, hold-out accuracy {:.1}% (baseline {:.1}%)",
                load + mine,
                load,
                mine,
                outcome.tested,
                outcome.patterns.len(),
                100.0 * outcome.holdout.model_accuracy,
                100.0 * outcome.holdout.baseline_accuracy
            );
            // The real cycle (engine, lock, store writes), then an incremental one
            // after 1,000 new outcomes.
            let engine = swarmwise_actors::Engine::start(store.clone(), swarmwise_actors::EngineConfig { learning_enabled: true, ..Default::default() });
            engine.trust_settled().await.unwrap();
            let cache = swarmwise_actors::learner::actor::OutcomeCache::default();
            let config = Arc::new(swarmwise_actors::learner::actor::LearnerConfig::default());
            let noop: swarmwise_actors::learner::actor::Progress = Arc::new(|_: &str| {});
            let run = |reason: &'static str| {
                swarmwise_actors::learner::actor::cycle(store.clone(), engine.clone(), Arc::clone(&config), ws, reason.into(), Arc::clone(&noop), Arc::clone(&cache))
            };
            let t = Instant::now();
            run("bench").await.unwrap();
            let full = t.elapsed().as_secs_f64();
            fill(&store, ws, n, 1_000).await;
            let t = Instant::now();
            let r = run("bench").await.unwrap();
            let incremental = t.elapsed().as_secs_f64();
            println!(
                "  through the MetaLearner (store writes included): first cycle {full:.3} s; next cycle after 1,000 new outcomes {incremental:.3} s (read {} new of {})",
                r.insights["new_outcomes"], r.recommendations_processed
            );
            if n == 100_000 {
                keep = Some((dir, url, plain_key));
            }
        }
        // Pattern query over HTTP on the 100k workspace, beside /healthz.
        let (_dir, url, key) = keep.unwrap();
        let mut s = Settings::default();
        s.server.bind = "127.0.0.1:0".into();
        s.server.workers = 1;
        s.database.url = url;
        s.demo.enabled = false;
        s.auth.admin_key = "bench-admin".into();
        let app = Application::build(s).await.unwrap();
        let base = format!("http://{}", app.address());
        actix_web::rt::spawn(app.run());
        let client = reqwest::Client::new();
        // Store the 100k workspace's patterns with one cycle, then query them.
        let cycle = client.post(format!("{base}/api/v1/learning/cycles")).bearer_auth(&key).send().await.unwrap();
        assert!(cycle.status().is_success());
        let mut ours = Vec::new();
        let mut reference = Vec::new();
        for _ in 0..2_000 {
            let t = Instant::now();
            client.get(format!("{base}/healthz")).send().await.unwrap();
            reference.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let r = client.get(format!("{base}/api/v1/learning/patterns?status=candidate")).bearer_auth(&key).send().await.unwrap();
            assert!(r.status().is_success());
            ours.push(t.elapsed().as_secs_f64());
        }
        println!(
            "pattern query over HTTP, 2000 sequential: p50 {:.0} µs p99 {:.0} µs | /healthz p50 {:.0} µs p99 {:.0} µs | ratio p50 {:.1}×",
            pct(ours.clone(), 0.5) * 1e6,
            pct(ours.clone(), 0.99) * 1e6,
            pct(reference.clone(), 0.5) * 1e6,
            pct(reference.clone(), 0.99) * 1e6,
            pct(ours, 0.5) / pct(reference, 0.5)
        );
    });
}
