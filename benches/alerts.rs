//! Alert benchmark (issue 12, "Numbers"):
//!
//! 1. The cost of one evaluation tick of the trust rules for a workspace of
//!    1,000 agents (readings from the snapshot, then the state machine),
//!    beside one deep clone of the same trust snapshot in the same run.
//! 2. The time from an agent crossing `agent_trust_low` to the rule's
//!    action: from sending the outcome that gives a failing agent its 20th
//!    observation (`agents.disable_min_samples`) over HTTP to the `alert`
//!    event, which the Alerter publishes once the quarantine has been
//!    requested; beside the outcome request's own round trip.
//!
//! Run: `cargo bench --bench alerts` (`-- --quick`: fewer repetitions).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;
use swarmwise::config::Settings;
use swarmwise::startup::Application;
use swarmwise_actors::alerts::rules::{evaluate, trust_readings, AlertBook};
use swarmwise_actors::alerts::AlertsConfig;
use swarmwise_actors::domain::{AgentId, OutcomeSample, Verdict, WorkspaceId};
use swarmwise_actors::events::Event;
use swarmwise_actors::trust::{TrustParams, WorkspaceTrust};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fmt(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

/// A snapshot of `agents` agents with 50 outcomes each (approval 0.1 to 0.95).
fn snapshot(agents: usize) -> swarmwise_actors::trust::WorkspaceSnapshot {
    let p = TrustParams::default();
    let mut rng = StdRng::seed_from_u64(1);
    let t0 = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let mut samples = Vec::with_capacity(agents * 50);
    for i in 0..agents * 50 {
        let a = i % agents;
        let skill = 0.1 + 0.85 * a as f64 / agents as f64;
        let verdict = if rng.gen_bool(skill) {
            Verdict::Approved
        } else {
            Verdict::Rejected
        };
        samples.push(OutcomeSample {
            id: uuid::Uuid::from_u128(i as u128 + 1),
            agent_id: AgentId::parse("a", &format!("agent{a:04}")).unwrap(),
            agent_name: format!("Agent {a}"),
            recommendation_type: "strategy".into(),
            confidence: skill,
            verdict,
            quality: verdict.score() * 100.0,
            latency_ms: Some(800),
            deadline_ms: None,
            evaluated_at: t0 + TimeDelta::seconds(i as i64),
        });
    }
    WorkspaceTrust::from_samples(samples, &p).snapshot(&p)
}

fn tick_cost(reps: usize) {
    let rules = AlertsConfig::default().resolve(0.3, 20).unwrap();
    let snap = snapshot(1_000);
    let ws = WorkspaceId(uuid::Uuid::nil());
    let mut book = AlertBook::default();
    let (mut readings, mut out) = (Vec::new(), Vec::new());
    let now = Utc::now();
    // Warm: the agents below the thresholds fire once; later ticks are the
    // steady state (every reading compared, nothing new).
    trust_readings(ws, &snap, None, &rules, &mut readings);
    evaluate(&mut book, &rules, &readings, now, &mut out);
    let firing = out.len();
    let (mut ours, mut reference) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let t = Instant::now();
        readings.clear();
        out.clear();
        trust_readings(ws, &snap, None, &rules, &mut readings);
        evaluate(&mut book, &rules, &readings, now, &mut out);
        ours.push(t.elapsed().as_secs_f64());
        assert!(out.is_empty());
        let t = Instant::now();
        let copy = std::hint::black_box(snap.clone());
        reference.push(t.elapsed().as_secs_f64());
        drop(copy);
    }
    let (o, r) = (median(ours), median(reference));
    println!(
        "evaluation tick, 1,000 agents ({} readings, {firing} alerts open): median {} | one trust snapshot clone: median {} | ratio {:.2}×",
        readings.len(),
        fmt(o),
        fmt(r),
        o / r
    );
}

async fn crossing_to_action(reps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.database.url = format!("sqlite://{}/alerts.db", dir.path().display());
    s.demo.enabled = false;
    s.auth.admin_key = "bench-admin".into();
    // Ticks out of the way: what is measured is the trust-update path.
    s.alerts.evaluate_every_secs = 3600;
    let app = Application::build(s).await.unwrap();
    let base = format!("http://{}", app.address());
    let engine = app.engine().clone();
    let handle = app.handle();
    let mut events = engine.events().subscribe();
    actix_web::rt::spawn(app.run());
    let c = reqwest::Client::new();
    let ws: serde_json::Value = c
        .post(format!("{base}/api/v1/workspaces"))
        .bearer_auth("bench-admin")
        .json(&json!({"name": "bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap().to_owned();
    let ws_id = WorkspaceId(uuid::Uuid::parse_str(ws["id"].as_str().unwrap()).unwrap());
    let mut n = 0u64;
    let mut outcome = |agent: String| {
        n += 1;
        let (c, base, key) = (c.clone(), base.clone(), key.clone());
        let wf = format!("wf{n}");
        async move {
            let r: serde_json::Value = c
                .post(format!("{base}/api/v1/recommendations"))
                .bearer_auth(&key)
                .json(
                    &json!({"agent_id": agent, "correlation_id": wf, "workflow_id": wf,
                    "recommendation_type": "strategy", "content": {"decision": "go"},
                    "confidence": 0.9, "latency_ms": 500}),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = r["id"].as_str().unwrap().to_owned();
            let t = Instant::now();
            let res = c
                .post(format!("{base}/api/v1/workflows/{wf}/outcome"))
                .bearer_auth(&key)
                .json(&json!({"overall_quality_score": 0,
                    "verdicts": [{"recommendation_id": id, "status": "rejected", "quality": 0}]}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
            (t, t.elapsed().as_secs_f64())
        }
    };
    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    for k in 0..reps {
        let agent = format!("bad{k}");
        let res = c
            .post(format!("{base}/api/v1/agents"))
            .bearer_auth(&key)
            .json(&json!({"id": agent, "name": agent, "kind": "external"}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        for _ in 0..19 {
            outcome(agent.clone()).await;
        }
        // Below the threshold already, one observation short of the evidence.
        engine.trust_settled().await.unwrap();
        let card = engine.trust(ws_id).agents[&AgentId::parse("a", &agent).unwrap()]
            .overall
            .clone();
        assert!(
            card.overall_trust < 0.3 && card.observations() == 19,
            "{card:?}"
        );
        // The 20th observation crosses agents.disable_min_samples.
        let (sent, round_trip) = outcome(agent.clone()).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let e = tokio::time::timeout_at(deadline, events.recv())
                .await
                .expect("an alert within 30 s");
            if let Ok(Event::Alert { alert, .. }) = e {
                if alert.subject == agent && alert.rule == "agent_trust_low" {
                    break;
                }
            }
        }
        ours.push(sent.elapsed().as_secs_f64());
        reference.push(round_trip);
    }
    handle.stop().await;
    let (o, r) = (median(ours), median(reference));
    println!(
        "crossing agent_trust_low -> quarantine requested and alert published, {reps} agents: median {} from sending the outcome | the outcome request's round trip: median {} | ratio {:.2}×",
        fmt(o),
        fmt(r),
        o / r
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    println!(
        "swarmwise alerts benchmark ({})",
        if quick { "quick" } else { "full" }
    );
    tick_cost(if quick { 50 } else { 500 });
    actix_web::rt::System::new().block_on(crossing_to_action(if quick { 5 } else { 30 }));
}
