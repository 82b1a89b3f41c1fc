//! Tracking and trust-read benchmarks, each beside a reference measured in
//! the same run (the machines are shared and noisy: compare ratios).
//!
//! Run: `cargo bench --bench track` (add `-- --quick` for a short run).
//! PostgreSQL: `SWARMWISE_BENCH_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres); a fresh database is created
//! and dropped. Prints medians and p99s; asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;
use sqlx::{Connection, Executor, PgConnection};
use swarmwise::config::{DatabaseSettings, Settings};
use swarmwise::startup::Application;
use swarmwise_actors::domain::{
    to_micros, AgentId, Recommendation, RecommendationStatus, WorkspaceId,
};
use swarmwise_actors::tracker::WriteMode;
use swarmwise_actors::{Engine, EngineConfig};
use uuid::Uuid;

#[path = "common.rs"]
mod common;
use common::{load, summary, us};

fn rec(ws: WorkspaceId, i: usize) -> Recommendation {
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: ws,
        agent_id: AgentId::parse("a", &format!("agent-{}", i % 8)).unwrap(),
        agent_name: "Agent".into(),
        correlation_id: "bench".into(),
        workflow_id: format!("wf-{}", i / 8),
        recommendation_type: "strategy".into(),
        content: json!({"decision": "go"}),
        confidence: 0.7,
        reasoning: None,
        latency_ms: Some(100),
        deadline_ms: None,
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now()),
        evaluated_at: None,
        usage: Default::default(),
    }
}

/// The reference for in-process tracking: a request/reply round trip to a bare actix actor.
struct Echo;
impl Actor for Echo {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "u64")]
struct Hit(u64);
impl Handler<Hit> for Echo {
    type Result = u64;
    fn handle(&mut self, m: Hit, _: &mut Context<Self>) -> u64 {
        m.0
    }
}

async fn drop_pg_database(url: &str) {
    let base = std::env::var("SWARMWISE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    if let (Ok(mut c), Some(name)) = (PgConnection::connect(&base).await, url.rsplit('/').next()) {
        let _ = c
            .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await;
    }
}

async fn pg_database() -> Option<String> {
    let base = std::env::var("SWARMWISE_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut c = PgConnection::connect(&base).await.ok()?;
    let name = format!("swarmwise_bench_{}", std::process::id());
    c.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
        .await
        .ok()?;
    c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .ok()?;
    let i = base.rfind('/')?;
    Some(format!("{}/{name}", &base[..i]))
}

/// Tracks `n` recommendations in process; returns the engine, the workspace
/// and the ids of agent-1's recommendations (one per workflow, in order).
async fn in_process(label: &str, url: &str, n: usize) -> (Engine, WorkspaceId, Vec<Uuid>) {
    let store = swarmwise::store::connect(&DatabaseSettings {
        url: url.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let ws = WorkspaceId(Uuid::now_v7());
    let (_, key) = swarmwise::auth::generate_key("swk_");
    store
        .create_workspace(ws, "bench", &key, Utc::now())
        .await
        .unwrap();
    let mut cfg = EngineConfig {
        learning_enabled: true,
        ..Default::default()
    };
    cfg.tracking.mode = WriteMode::WriteBehind;
    cfg.tracking.max_pending = 10_000_000;
    // One workspace takes every call: its share is the whole buffer.
    cfg.tracking.max_pending_per_workspace = 10_000_000;
    cfg.tracking.batch_size = 5_000;
    // The bench flushes millions of rows at once; let it wait for them.
    cfg.tracking.read_flush_timeout_ms = 600_000;
    let engine = Engine::start(store.clone(), cfg);
    // Reference in the same run: bare actor round trips.
    let echo = Echo.start();
    let mut refs = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let t = Instant::now();
        echo.send(Hit(i)).await.unwrap();
        refs.push(t.elapsed().as_secs_f64());
    }
    let recs: Vec<Recommendation> = (0..n).map(|i| rec(ws, i)).collect();
    let agent1: Vec<Uuid> = recs
        .iter()
        .filter(|r| r.agent_id.as_str() == "agent-1")
        .map(|r| r.id)
        .collect();
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for (i, r) in recs.into_iter().enumerate() {
        let t = Instant::now();
        engine.track(vec![r]).await.unwrap();
        lat.push(t.elapsed().as_secs_f64());
        if i % (n / 4).max(1) == 0 {
            eprint!(".");
        }
    }
    let acked = started.elapsed().as_secs_f64();
    engine.flush().await.unwrap();
    let durable = started.elapsed().as_secs_f64();
    let (p50, p99) = summary(lat);
    let (r50, r99) = summary(refs);
    eprintln!();
    println!(
        "track in process, write_behind → {label:<8} n={n}: p50 {} p99 {} | acked {:.0}/s, durable {:.0}/s | reference actor round trip p50 {} p99 {} | ratio p50 {:.1}×",
        us(p50), us(p99), n as f64 / acked, n as f64 / durable, us(r50), us(r99), p50 / r50
    );
    (engine, ws, agent1)
}

/// Gives `ws` trust state: outcomes for its first workflows (each holds
/// one `strategy` recommendation of each of 8 agents): agent-1's approved,
/// the others' rejected, so agent-1 earns a boost. Then a settled recompute.
/// Panics if agent-1 still has no cards: the hit case would silently
/// measure a miss.
async fn populate_trust(engine: &Engine, ws: WorkspaceId, agent1: &[Uuid]) {
    use swarmwise_actors::domain::{QualityScore, Verdict};
    use swarmwise_actors::tracker::{Evaluate, ExplicitVerdict};
    let workflows = agent1.len().min(200);
    for (w, id) in agent1.iter().take(workflows).enumerate() {
        engine
            .evaluate(Evaluate {
                workspace: ws,
                workflow_id: format!("wf-{w}"),
                overall_quality: QualityScore::parse("q", 20.0).unwrap(),
                verdicts: vec![ExplicitVerdict {
                    recommendation_id: *id,
                    verdict: Verdict::Approved,
                    quality: Some(QualityScore::parse("q", 95.0).unwrap()),
                }],
                feedback: None,
                fresh: Vec::new(),
            })
            .await
            .unwrap();
    }
    engine.recompute_trust(Some(ws)).await.unwrap();
    engine.trust_settled().await.unwrap();
    let agent = AgentId::parse("a", "agent-1").unwrap();
    assert!(
        engine.trust(ws).agents.contains_key(&agent),
        "agent-1 has no trust state after {workflows} outcomes"
    );
}

/// Per-call latency of `engine.boost` on a populated workspace (a hit:
/// the agent has cards) and on one with no trust state (a miss: the
/// early return), beside a DashMap get as the reference.
fn boost_reads(engine: &Engine, populated: WorkspaceId) {
    let agent = AgentId::parse("a", "agent-1").unwrap();
    let empty = WorkspaceId(Uuid::now_v7());
    let hit_value = engine.boost(populated, &agent, Some("strategy")).0;
    let map: dashmap::DashMap<u64, u64> = (0..64).map(|i| (i, i)).collect();
    let batch = 1000;
    let mut hits = Vec::new();
    let mut misses = Vec::new();
    let mut reference = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        for _ in 0..batch {
            std::hint::black_box(engine.boost(populated, &agent, Some("strategy")));
        }
        hits.push(t.elapsed().as_secs_f64() / batch as f64);
        let t = Instant::now();
        for _ in 0..batch {
            std::hint::black_box(engine.boost(empty, &agent, Some("strategy")));
        }
        misses.push(t.elapsed().as_secs_f64() / batch as f64);
        let t = Instant::now();
        for i in 0..batch {
            std::hint::black_box(map.get(&(i % 64)).map(|v| *v));
        }
        reference.push(t.elapsed().as_secs_f64() / batch as f64);
    }
    let (h50, h99) = summary(hits);
    let (m50, m99) = summary(misses);
    let (r50, r99) = summary(reference);
    println!(
        "boost read in process (per call, batches of {batch}): hit (populated workspace, boost {hit_value:.3}) p50 {} p99 {} | miss (no trust state) p50 {} p99 {} | reference DashMap get p50 {} p99 {} | ratio hit p50 {:.1}×, miss p50 {:.1}×",
        us(h50), us(h99), us(m50), us(m99), us(r50), us(r99), h50 / r50, m50 / r50
    );
}

/// Open-loop load at `rate` req/s for `secs`; latency from the scheduled send time.
async fn bare_server() -> String {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(|| {
        App::new().route(
            "/bare",
            web::post()
                .to(|_b: web::Bytes| async { HttpResponse::Created().json(json!({"id": "x"})) }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    format!("http://{addr}/bare")
}

async fn http(rate: u64, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.auth.admin_key = "bench-admin".into();
    s.database.url = format!("sqlite://{}/bench.db", dir.path().display());
    s.telemetry.log_level = "warn".into();
    // One client key at 5k req/s: the per-key limit would measure itself.
    s.limits.key_requests_per_second = 0;
    let app = Application::build(s).await.unwrap();
    let base = format!("http://{}", app.address());
    actix_web::rt::spawn(app.run());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let ws: serde_json::Value = client
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
    client
        .post(format!("{base}/api/v1/agents"))
        .bearer_auth(&key)
        .json(&json!({"id": "a1", "name": "A1", "kind": "external"}))
        .send()
        .await
        .unwrap();
    let body = json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w", "recommendation_type": "strategy",
                      "content": {"decision": "go"}, "confidence": 0.7});
    let bare = bare_server().await;
    // Warm-up of both, then the measured runs back to back.
    let _ = load(&client, &bare, &key, Some(body.clone()), rate, 1).await;
    let _ = load(
        &client,
        &format!("{base}/api/v1/recommendations"),
        &key,
        Some(body.clone()),
        rate,
        1,
    )
    .await;
    eprintln!("measuring HTTP at {rate} req/s for {secs}s each ...");
    let (refs, ref_err) = load(&client, &bare, &key, Some(body.clone()), rate, secs).await;
    let (ours, err) = load(
        &client,
        &format!("{base}/api/v1/recommendations"),
        &key,
        Some(body),
        rate,
        secs,
    )
    .await;
    let (boost, boost_err) = load(
        &client,
        &format!("{base}/api/v1/learning/agents/a1/boost?recommendation_type=strategy"),
        &key,
        None,
        rate,
        secs,
    )
    .await;
    let (r50, r99) = summary(refs);
    let (p50, p99) = summary(ours);
    let (b50, b99) = summary(boost);
    println!(
        "HTTP track at {rate} req/s over loopback: p50 {} p99 {} ({err} errors) | reference bare actix-web 201 p50 {} p99 {} ({ref_err} errors) | ratio p50 {:.1}× p99 {:.1}×",
        us(p50), us(p99), us(r50), us(r99), p50 / r50, p99 / r99
    );
    println!(
        "HTTP boost read at {rate} req/s: p50 {} p99 {} ({boost_err} errors) | ratio to reference p50 {:.1}× p99 {:.1}×",
        us(b50), us(b99), b50 / r50, b99 / r99
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 20_000 } else { 200_000 };
    let (rate, secs) = if quick { (1000, 2) } else { (5000, 5) };
    actix_web::rt::System::new().block_on(async move {
        println!(
            "swarmwise benchmark ({}), {} cores",
            if quick { "quick" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let dir = tempfile::tempdir().unwrap();
        let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
        let (engine, ws, agent1) = in_process("sqlite", &sqlite, n).await;
        populate_trust(&engine, ws, &agent1).await;
        boost_reads(&engine, ws);
        match pg_database().await {
            Some(url) => {
                let (engine, _, _) = in_process("postgres", &url, n).await;
                engine
                    .drain(std::time::Duration::from_secs(600))
                    .await
                    .unwrap();
                drop(engine);
                drop_pg_database(&url).await;
            }
            None => println!("track in process → postgres: skipped (PostgreSQL unreachable)"),
        }
        http(rate, secs).await;
    });
}
