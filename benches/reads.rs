//! Read endpoints at a million rows, each beside `/healthz` measured in the
//! same run (the machines are shared and noisy: compare ratios).
//!
//! Run: `cargo bench --bench reads` (1,000,000 tracked rows; add
//! `-- --quick` for 100,000 and shorter runs).
//!
//! The service is built in this process (`Application::build`, release
//! profile) on a SQLite file. The rows are written straight through the
//! store in large batches (the fill is not what is measured): workspace A
//! holds 80% of them over 8 agents, workspace C the rest, workspace B starts
//! empty. Then 16 keep-alive connections drive each endpoint in a closed
//! loop (each sends its next request when the previous answered) and the
//! bench prints p50, p99, requests/s and the p50 ratio to `/healthz`.
//! Last, A's reads are measured while B posts batches of 100 on 4 other
//! connections. Prints figures; asserts nothing but 2xx answers.
//! `SWARMWISE_BENCH_ONLY=text` measures `/healthz` and only the endpoints
//! whose name contains `text` (e.g. `agent_id`, to profile one).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use swarmwise::config::{DatabaseSettings, Settings};
use swarmwise::startup::Application;
use swarmwise_actors::domain::{
    to_micros, AgentId, Recommendation, RecommendationStatus, WorkspaceId,
};
use uuid::Uuid;

#[path = "common.rs"]
mod common;
use common::{summary, us};

const AGENTS: usize = 8;
const TYPES: [&str; 4] = ["strategy", "content", "risk", "pricing"];
const CONNECTIONS: usize = 16;

fn rec(ws: WorkspaceId, i: usize) -> Recommendation {
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: ws,
        agent_id: AgentId::parse("a", &format!("agent-{}", i % AGENTS)).unwrap(),
        agent_name: "Agent".into(),
        correlation_id: "bench".into(),
        workflow_id: format!("wf-{}", i / AGENTS),
        recommendation_type: TYPES[(i / AGENTS) % TYPES.len()].into(),
        content: json!({"decision": "go", "score": i % 100}),
        confidence: 0.7,
        reasoning: None,
        latency_ms: Some(100),
        deadline_ms: None,
        // One row in 20 carries a status other than pending: the status
        // filter then has a sparse value to find.
        status: if i % 20 == 0 {
            RecommendationStatus::Approved
        } else {
            RecommendationStatus::Pending
        },
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now()),
        evaluated_at: None,
        usage: Default::default(),
    }
}

async fn fill(url: &str, ws: WorkspaceId, n: usize) {
    let store = swarmwise::store::connect(&DatabaseSettings {
        url: url.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let chunk = 20_000;
    let mut i = 0;
    while i < n {
        let end = (i + chunk).min(n);
        let recs: Vec<Recommendation> = (i..end).map(|j| rec(ws, j)).collect();
        store.insert_recommendations(&recs).await.unwrap();
        i = end;
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, key: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str, key: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.unwrap()
    }
}

/// `CONNECTIONS` closed loops of GET `path` for `secs`: latencies in
/// seconds, non-2xx answers, requests per second.
async fn closed_loop(
    client: &Client,
    path: &str,
    key: &str,
    secs: f64,
    conns: usize,
) -> (Vec<f64>, usize, f64) {
    let url = format!("{}{path}", client.base);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..conns {
        let http = client.http.clone();
        let url = url.clone();
        let key = key.to_owned();
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < until {
                let t = Instant::now();
                let ok = match http.get(&url).bearer_auth(&key).send().await {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        ok && r.bytes().await.is_ok()
                    }
                    Err(_) => false,
                };
                lat.push(t.elapsed().as_secs_f64());
                errors += usize::from(!ok);
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.await.unwrap();
        lat.extend(l);
        errors += e;
    }
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    (lat, errors, rate)
}

/// Closed loops of POST /recommendations/batch (100 items) by workspace B
/// until `stop` is set; returns (requests, non-2xx).
async fn batch_writer(
    client: &Client,
    key: &str,
    conns: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize) {
    let url = format!("{}/api/v1/recommendations/batch", client.base);
    let items: Vec<Value> = (0..100)
        .map(|i| {
            json!({"agent_id": format!("agent-{}", i % AGENTS), "correlation_id": "c",
                   "workflow_id": format!("wfb-{}", i / AGENTS), "recommendation_type": "strategy",
                   "content": {"decision": "go"}, "confidence": 0.7})
        })
        .collect();
    let body = json!({ "items": items });
    let mut handles = Vec::new();
    for _ in 0..conns {
        let http = client.http.clone();
        let url = url.clone();
        let key = key.to_owned();
        let body = body.clone();
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            let (mut n, mut errors) = (0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ok = match http.post(&url).bearer_auth(&key).json(&body).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                n += 1;
                errors += usize::from(!ok);
                if !ok {
                    // A shed request comes back at once: do not spin.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            (n, errors)
        }));
    }
    let (mut n, mut errors) = (0, 0);
    for h in handles {
        let (a, b) = h.await.unwrap();
        n += a;
        errors += b;
    }
    (n, errors)
}

async fn workspace(client: &Client, admin: &str, name: &str) -> (WorkspaceId, String) {
    let ws = client
        .post("/api/v1/workspaces", admin, json!({ "name": name }))
        .await;
    let id = WorkspaceId(Uuid::parse_str(ws["id"].as_str().unwrap()).unwrap());
    let key = ws["api_key"].as_str().unwrap().to_owned();
    for a in 0..AGENTS {
        client
            .post(
                "/api/v1/agents",
                &key,
                json!({"id": format!("agent-{a}"), "name": format!("Agent {a}"), "kind": "external"}),
            )
            .await;
    }
    (id, key)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rows: usize = std::env::var("SWARMWISE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 1_000_000 });
    let secs = if quick { 1.0 } else { 3.0 };
    actix_web::rt::System::new().block_on(async move {
        println!(
            "swarmwise reads benchmark ({}), {} cores, {rows} rows on SQLite, {CONNECTIONS} keep-alive connections in a closed loop, {secs} s per endpoint",
            if quick { "quick" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        let mut s = Settings::default();
        s.server.bind = "127.0.0.1:0".into();
        s.auth.admin_key = "bench-admin".into();
        s.database.url = url.clone();
        s.telemetry.log_level = "warn".into();
        // 16 connections in a closed loop would measure the per-key limiter.
        s.limits.key_requests_per_second = 0;
        // No scheduled cycle or recompute in the middle of a measurement,
        // and no demo swarm running workflows beside it.
        s.scheduler.enabled = false;
        s.demo.enabled = false;
        s.learning.cycle_every_outcomes = 0;
        let app = Application::build(s).await.unwrap();
        let base = format!("http://{}", app.address());
        actix_web::rt::spawn(app.run());
        let client = Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            base,
        };
        let admin = "bench-admin";
        let (ws_a, key_a) = workspace(&client, admin, "a").await;
        let (_ws_b, key_b) = workspace(&client, admin, "b").await;
        let (ws_c, _key_c) = workspace(&client, admin, "c").await;
        let t = Instant::now();
        let in_a = rows * 4 / 5;
        fill(&url, ws_a, in_a).await;
        fill(&url, ws_c, rows - in_a).await;
        println!(
            "filled {rows} rows ({in_a} in workspace A, {} in C) in {:.1} s",
            rows - in_a,
            t.elapsed().as_secs_f64()
        );
        // Trust state and a pattern set for the learning reads: outcomes of
        // a few workflows of A through the API.
        for w in 0..50 {
            let _ = client
                .http
                .post(format!("{}/api/v1/workflows/wf-{w}/outcome", client.base))
                .bearer_auth(&key_a)
                .json(&json!({"overall_quality_score": 20 + w}))
                .send()
                .await
                .unwrap();
        }
        let first = client
            .get("/api/v1/recommendations?agent_id=agent-3&limit=50", &key_a)
            .await;
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let endpoints: Vec<(&str, String, &str)> = vec![
            ("healthz (reference)", "/healthz".into(), key_a.as_str()),
            ("recommendations", "/api/v1/recommendations?limit=50".into(), &key_a),
            ("  ?agent_id", "/api/v1/recommendations?agent_id=agent-3&limit=50".into(), &key_a),
            ("  ?agent_id, 2nd page", format!("/api/v1/recommendations?agent_id=agent-3&limit=50&cursor={cursor}"), &key_a),
            ("  ?workflow_id", "/api/v1/recommendations?workflow_id=wf-1234&limit=50".into(), &key_a),
            ("  ?status=approved", "/api/v1/recommendations?status=approved&limit=50".into(), &key_a),
            ("  ?recommendation_type", "/api/v1/recommendations?recommendation_type=risk&limit=50".into(), &key_a),
            ("  ?agent_id&type", "/api/v1/recommendations?agent_id=agent-3&recommendation_type=risk&limit=50".into(), &key_a),
            ("recommendations/{id}", format!("/api/v1/recommendations/{}", first["items"][0]["id"].as_str().unwrap()), &key_a),
            ("agents", "/api/v1/agents".into(), &key_a),
            ("learning/trust-scores", "/api/v1/learning/trust-scores".into(), &key_a),
            ("learning/trust-scores/{id}", "/api/v1/learning/trust-scores/agent-3".into(), &key_a),
            ("learning/agents/{id}/boost", "/api/v1/learning/agents/agent-3/boost?recommendation_type=risk".into(), &key_a),
            ("learning/agents/{id}/metrics", "/api/v1/learning/agents/agent-3/metrics".into(), &key_a),
            ("learning/agents/metrics.csv", "/api/v1/learning/agents/metrics.csv".into(), &key_a),
            ("learning/costs", "/api/v1/learning/costs".into(), &key_a),
            ("learning/patterns", "/api/v1/learning/patterns".into(), &key_a),
            ("learning/cycles", "/api/v1/learning/cycles".into(), &key_a),
            ("workflows/runs", "/api/v1/workflows/runs".into(), &key_a),
            ("alerts", "/api/v1/alerts".into(), &key_a),
            ("audit (admin)", "/api/v1/audit".into(), admin),
        ];
        // `SWARMWISE_BENCH_ONLY=text`: `/healthz` and the endpoints whose
        // name contains `text` (to profile one of them).
        let only = std::env::var("SWARMWISE_BENCH_ONLY").unwrap_or_default();
        let endpoints: Vec<_> = endpoints
            .into_iter()
            .enumerate()
            .filter(|(i, (name, _, _))| *i == 0 || name.contains(only.as_str()))
            .map(|(_, e)| e)
            .collect();
        // Warm-up: every endpoint once, then a short loop on each.
        for (_, path, key) in &endpoints {
            let _ = closed_loop(&client, path, key, 0.2, CONNECTIONS).await;
        }
        println!(
            "{:<32} {:>10} {:>10} {:>9} {:>8} {:>7}",
            "endpoint", "p50", "p99", "req/s", "p50 ×", "errors"
        );
        let mut reference = f64::NAN;
        for (name, path, key) in &endpoints {
            let (lat, errors, rate) = closed_loop(&client, path, key, secs, CONNECTIONS).await;
            let (p50, p99) = summary(lat);
            if reference.is_nan() {
                reference = p50;
            }
            println!(
                "{name:<32} {:>10} {:>10} {rate:>9.0} {:>7.1}× {errors:>7}",
                us(p50),
                us(p99),
                p50 / reference
            );
        }
        // Reads of A while B posts batches.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let client = Client {
                http: client.http.clone(),
                base: client.base.clone(),
            };
            let key_b = key_b.clone();
            let stop = stop.clone();
            tokio::spawn(async move { batch_writer(&client, &key_b, 4, stop).await })
        };
        let (h_lat, _, _) = closed_loop(&client, "/healthz", &key_a, secs, CONNECTIONS - 4).await;
        let (lat, errors, rate) = closed_loop(
            &client,
            "/api/v1/recommendations?agent_id=agent-3&limit=50",
            &key_a,
            secs,
            CONNECTIONS - 4,
        )
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (batches, shed) = writer.await.unwrap();
        let (h50, h99) = summary(h_lat);
        let (p50, p99) = summary(lat);
        println!(
            "while B posts batches of 100 on 4 connections ({batches} batches, {shed} non-2xx): A's ?agent_id p50 {} p99 {} {rate:.0} req/s ({errors} errors) | /healthz p50 {} p99 {} | ratio p50 {:.1}×",
            us(p50),
            us(p99),
            us(h50),
            us(h99),
            p50 / h50
        );
    });
}
