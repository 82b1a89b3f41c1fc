//! Soak: does resident memory stay flat under a sustained tracking load?
//!
//! Starts the built `swarmwise serve` binary as its own process (so the load
//! generator's memory is not counted), once on SQLite and once on a fresh
//! PostgreSQL database, and drives `POST /api/v1/recommendations` at a fixed
//! rate from keep-alive clients (each client one connection, requests paced
//! to `rate / clients` per second). Every few seconds it prints the server's
//! VmRSS from `/proc/<pid>/status`; at the end, the RSS after warm-up, the
//! final RSS, the growth between them (DESIGN §6: < 10% over 10 minutes), the
//! growth over the second half of the run (a cache filling to its bound shows
//! early and stops; a leak does not), the least-squares slope after warm-up,
//! and the achieved rate. The reference
//! measured in the same run is the server's idle RSS before the load.
//! `/metrics` is not scraped during the run: a deployment without a scraper
//! must stay flat too.
//!
//! Run: `cargo bench --bench soak` (10 minutes per backend, 5,000 req/s, 8
//! clients); `-- --quick` for 60 s. Environment overrides:
//! `SWARMWISE_SOAK_SECS`, `SWARMWISE_SOAK_RATE`, `SWARMWISE_SOAK_CLIENTS`,
//! `SWARMWISE_SOAK_SAMPLE_SECS` (RSS print interval),
//! `SWARMWISE_SOAK_WARMUP_SECS` (default: a quarter of the run, at most 60 s),
//! `SWARMWISE_SOAK_BACKENDS` (`sqlite,postgres`), `SWARMWISE_SOAK_BIN` (another
//! build of `swarmwise`, e.g. one from before a fix), `SWARMWISE_BENCH_PG_URL`
//! (default postgres://postgres@127.0.0.1:5432/postgres; a fresh database is
//! created and dropped). Prints figures; asserts nothing. Linux only (reads
//! `/proc`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

mod process;
use process::{binary, drop_pg_database, pg_database, Server};

const ADMIN_KEY: &str = "soak-admin-key";

struct Params {
    secs: u64,
    rate: u64,
    clients: u64,
    sample_secs: u64,
    warmup_secs: u64,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Resident memory of a process in MiB: (VmRSS, RssAnon, RssFile).
fn rss_mib(pid: u32) -> Option<(f64, f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?, field("RssFile:")?))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(x: f64) -> String {
    if x < 1e-3 {
        format!("{:.0} µs", x * 1e6)
    } else {
        format!("{:.2} ms", x * 1e3)
    }
}

/// Least-squares slope of (t, y) in y-units per minute.
fn slope_per_min(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - my)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    cov / var * 60.0
}

/// What one client saw.
struct ClientResult {
    ok: u64,
    errors: u64,
    latencies: Vec<f32>,
}

/// One keep-alive connection sending at `rate` req/s until `until`.
async fn client_loop(
    base: String,
    key: String,
    rate: f64,
    until: tokio::time::Instant,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    id: u64,
) -> ClientResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("{base}/api/v1/recommendations");
    let gap = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut result = ClientResult {
        ok: 0,
        errors: 0,
        latencies: Vec::new(),
    };
    let mut i: u64 = 0;
    loop {
        // Paced, not open-loop: a late client sends at once but never in a burst
        // larger than one request per connection.
        let at = start + gap.mul_f64(i as f64);
        if at >= until {
            break;
        }
        tokio::time::sleep_until(at).await;
        // Bounded label-free values: a handful of workflows, types and agents.
        let kind = ["strategy", "content", "risk"][(i % 3) as usize];
        let body = json!({
            "agent_id": format!("agent-{}", i % 4),
            "correlation_id": format!("c-{id}-{i}"),
            "workflow_id": format!("wf-{id}-{}", i / 8),
            "recommendation_type": kind,
            "content": {"decision": if i % 2 == 0 { "go" } else { "wait" }, "n": i},
            "confidence": 0.7,
        });
        let t = Instant::now();
        let ok = client
            .post(&url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        result.latencies.push(t.elapsed().as_secs_f32());
        if ok {
            result.ok += 1;
            done.fetch_add(1, Ordering::Relaxed);
        } else {
            result.errors += 1;
            failed.fetch_add(1, Ordering::Relaxed);
        }
        i += 1;
    }
    result
}

async fn soak(label: &str, database_url: &str, p: &Params) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(database_url, dir.path(), ADMIN_KEY, &[]);
    let pid = server.child.id();
    let setup = reqwest::Client::new();
    server.wait_ready(&setup).await;
    let ws: serde_json::Value = setup
        .post(format!("{}/api/v1/workspaces", server.base))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "soak"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().expect("api_key").to_owned();
    for a in 0..4 {
        let r = setup
            .post(format!("{}/api/v1/agents", server.base))
            .bearer_auth(&key)
            .json(&json!({"id": format!("agent-{a}"), "name": format!("Agent {a}"), "kind": "external"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "register agent: {}", r.status());
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _, _) = rss_mib(pid).expect("read /proc/<pid>/status");
    println!(
        "{label}: server pid {pid}, idle RSS {idle:.1} MiB; tracking at {} req/s from {} keep-alive clients for {} s (warm-up {} s)",
        p.rate, p.clients, p.secs, p.warmup_secs
    );

    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = tokio::time::Instant::now() + Duration::from_secs(p.secs);
    let per_client = p.rate as f64 / p.clients as f64;
    let handles: Vec<_> = (0..p.clients)
        .map(|id| {
            tokio::spawn(client_loop(
                server.base.clone(),
                key.clone(),
                per_client,
                until,
                Arc::clone(&done),
                Arc::clone(&failed),
                id,
            ))
        })
        .collect();

    // (seconds since start, RSS MiB) samples.
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut last_done = 0;
    let mut last_t = 0.0;
    let mut next = Duration::from_secs(p.sample_secs);
    while next <= Duration::from_secs(p.secs) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + next)).await;
        let t = started.elapsed().as_secs_f64();
        let Some((rss, anon, file)) = rss_mib(pid) else {
            panic!("the server (pid {pid}) is gone");
        };
        let n = done.load(Ordering::Relaxed);
        let rate = (n - last_done) as f64 / (t - last_t);
        println!(
            "  [{label} {:>4.0}/{} s] RSS {rss:>6.1} MiB (anon {anon:.1}, file {file:.1}) | {n} tracked, {rate:.0}/s, {} errors",
            t,
            p.secs,
            failed.load(Ordering::Relaxed)
        );
        samples.push((t, rss));
        last_done = n;
        last_t = t;
        next += Duration::from_secs(p.sample_secs);
    }
    let mut ok = 0;
    let mut errors = 0;
    let mut lat: Vec<f64> = Vec::new();
    for h in handles {
        let r = h.await.unwrap();
        ok += r.ok;
        errors += r.errors;
        lat.extend(r.latencies.into_iter().map(f64::from));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (final_rss, _, _) = rss_mib(pid).unwrap_or((f64::NAN, 0.0, 0.0));
    server.stop();
    lat.sort_by(|a, b| a.total_cmp(b));

    let warm = samples
        .iter()
        .find(|(t, _)| *t + 0.5 >= p.warmup_secs as f64)
        .copied()
        .unwrap_or((0.0, idle));
    let after: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t + 0.5 >= warm.0)
        .collect();
    let peak = after.iter().map(|s| s.1).fold(f64::NAN, f64::max);
    let growth = (final_rss - warm.1) / warm.1 * 100.0;
    // A cache filling up to its bound grows early and then stops; a leak
    // grows in the second half as much as in the first.
    let half = samples
        .iter()
        .find(|(t, _)| *t + 0.5 >= p.secs as f64 / 2.0)
        .copied()
        .unwrap_or(warm);
    let second_half = (final_rss - half.1) / half.1 * 100.0;
    println!(
        "{label}: RSS after warm-up ({:.0} s) {:.1} MiB → final {final_rss:.1} MiB: growth {growth:+.1}% (bar < 10%), over the second half ({:.0} s → end) {second_half:+.1}%, peak {peak:.1} MiB, slope after warm-up {:+.2} MiB/min | reference idle RSS {idle:.1} MiB, final/idle {:.2}× | achieved {:.0} req/s of {} ({ok} ok, {errors} errors), latency p50 {} p99 {}",
        warm.0,
        warm.1,
        half.0,
        slope_per_min(&after),
        final_rss / idle,
        (ok + errors) as f64 / elapsed,
        p.rate,
        ms(pct(&lat, 0.5)),
        ms(pct(&lat, 0.99)),
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = env_u64("SWARMWISE_SOAK_SECS").unwrap_or(if quick { 60 } else { 600 });
    let p = Params {
        secs,
        rate: env_u64("SWARMWISE_SOAK_RATE").unwrap_or(5_000).max(1),
        clients: env_u64("SWARMWISE_SOAK_CLIENTS").unwrap_or(8).max(1),
        sample_secs: env_u64("SWARMWISE_SOAK_SAMPLE_SECS")
            .unwrap_or(if secs <= 120 { 5 } else { 10 })
            .max(1),
        warmup_secs: env_u64("SWARMWISE_SOAK_WARMUP_SECS").unwrap_or((secs / 4).min(60)),
    };
    let backends =
        std::env::var("SWARMWISE_SOAK_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!(
            "swarmwise soak ({}), {} cores, binary {}",
            if quick { "quick" } else { "full" },
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            binary()
        );
        for backend in backends.split(',').map(str::trim) {
            match backend {
                "sqlite" => {
                    let dir = tempfile::tempdir().unwrap();
                    let url = format!("sqlite://{}/soak.db", dir.path().display());
                    soak("sqlite", &url, &p).await;
                }
                "postgres" => match pg_database("soak").await {
                    Some((url, name)) => {
                        soak("postgres", &url, &p).await;
                        drop_pg_database(&name).await;
                    }
                    None => println!("postgres: skipped (PostgreSQL unreachable)"),
                },
                other => println!("{other}: unknown backend (sqlite, postgres)"),
            }
        }
    });
}
