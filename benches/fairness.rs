//! Fairness between tenants: workspace B tracks at a steady rate while
//! workspace A floods the same server from many connections. B's latency is
//! reported alone, under A's flood with the per-key limit in force (the
//! default config), and under the same flood with the limit off (the
//! baseline: what B would see without it), all in one run.
//!
//! Run: `cargo bench --bench fairness` (`-- --quick` for a short run).
//! SQLite in a temp dir; the server runs in this process with the client, so
//! A's flood competes with the server for the same cores, as a noisy
//! neighbour would. Prints medians and p99s; asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swarmwise::config::Settings;
use swarmwise::startup::Application;

#[path = "common.rs"]
mod common;
use common::{load, summary, us};

struct Server {
    base: String,
    a: String,
    b: String,
    _dir: tempfile::TempDir,
}

async fn server(limit_per_key: u32) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.auth.admin_key = "bench-admin".into();
    s.database.url = format!("sqlite://{}/bench.db", dir.path().display());
    s.demo.enabled = false;
    s.scheduler.enabled = false;
    s.telemetry.log_level = "error".into();
    s.limits.key_requests_per_second = limit_per_key;
    s.limits.key_burst = limit_per_key.saturating_mul(2);
    let app = Application::build(s).await.unwrap();
    let base = format!("http://{}", app.address());
    actix_web::rt::spawn(app.run());
    let client = reqwest::Client::new();
    let mut keys = Vec::new();
    for name in ["flooder", "neighbour"] {
        let ws: Value = client
            .post(format!("{base}/api/v1/workspaces"))
            .bearer_auth("bench-admin")
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = ws["api_key"].as_str().unwrap().to_owned();
        let res = client
            .post(format!("{base}/api/v1/agents"))
            .bearer_auth(&key)
            .json(&json!({"id": "a1", "name": "A1", "kind": "external"}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        keys.push(key);
    }
    let b = keys.pop().unwrap();
    let a = keys.pop().unwrap();
    Server {
        base,
        a,
        b,
        _dir: dir,
    }
}

fn body() -> Value {
    json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w", "recommendation_type": "strategy",
           "content": {"decision": "go"}, "confidence": 0.7})
}

/// A's flood: `connections` closed-loop clients tracking as fast as they can
/// until `stop`; counts accepted and refused (429) requests.
fn flood(
    url: String,
    key: String,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    for _ in 0..connections {
        let (client, url, key, stop) =
            (client.clone(), url.clone(), key.clone(), Arc::clone(&stop));
        let (ok, limited) = (Arc::clone(&ok), Arc::clone(&limited));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body())
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) if r.status().as_u16() == 429 => limited.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        });
    }
    (ok, limited)
}

async fn phase(label: &str, srv: &Server, flood_with: Option<usize>, rate: u64, secs: u64) {
    let url = format!("{}/api/v1/recommendations", srv.base);
    let stop = Arc::new(AtomicBool::new(false));
    let counters = flood_with.map(|c| flood(url.clone(), srv.a.clone(), c, Arc::clone(&stop)));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    // Warm-up, then the measured window.
    let _ = load(&client, &url, &srv.b, Some(body()), rate, 1).await;
    let began = Instant::now();
    let (lat, errors) = load(&client, &url, &srv.b, Some(body()), rate, secs).await;
    let window = began.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (p50, p99) = summary(lat);
    let flood_text = match counters {
        Some((ok, limited)) => format!(
            " | A: {:.0} accepted/s, {:.0} refused (429)/s",
            ok.load(Ordering::Relaxed) as f64 / (window + 1.0),
            limited.load(Ordering::Relaxed) as f64 / (window + 1.0)
        ),
        None => String::new(),
    };
    println!(
        "{label:<44} B at {rate} req/s: p50 {:>9} p99 {:>9} ({errors} errors){flood_text}",
        us(p50),
        us(p99)
    );
    // Let A's connections wind down before the next phase.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rate, secs, connections) = if quick { (200, 3, 16) } else { (500, 10, 32) };
    actix_web::rt::System::new().block_on(async move {
        println!(
            "fairness benchmark ({}), {} cores, SQLite, A floods with {connections} connections",
            if quick { "quick" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let limited = server(1000).await;
        phase("B alone (limit 1000/s per key)", &limited, None, rate, secs).await;
        phase(
            "B while A floods, limit 1000/s per key",
            &limited,
            Some(connections),
            rate,
            secs,
        )
        .await;
        let open = server(0).await;
        phase("B alone (no limit)", &open, None, rate, secs).await;
        phase(
            "B while A floods, no limit (baseline)",
            &open,
            Some(connections),
            rate,
            secs,
        )
        .await;
    });
}
