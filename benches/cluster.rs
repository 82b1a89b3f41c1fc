//! Several nodes (issue 13, Numbers): how long an evaluation committed on
//! one node takes to show in trust read from another, and workflow runs per
//! second with one, two and three nodes on one PostgreSQL database and one
//! Redis, each node the built `swarmwise serve` binary in its own process.
//!
//! - Trust propagation: two nodes; each sample tracks one recommendation on
//!   node A, evaluates it on node A, and from the moment A acknowledged the
//!   evaluation polls (every 2 ms) the agent's trust card until it shows the
//!   new sample: on node B (the figure), and, in the same run, on node A
//!   itself (the reference: what "visible at once" costs when measured by the
//!   same poll).
//! - Runs per second: `move_creation` (7 zero-latency simulated agents in
//!   three stages, every answer tracked, the outcome evaluated) started with
//!   `POST /api/v1/workflows/runs` and `wait: true` from 64 keep-alive
//!   clients spread round-robin over the nodes; one node is the reference
//!   measured in the same run.
//!
//! All nodes share this machine's 2 cores, so more nodes cannot add CPU here:
//! the figures show what several nodes cost (coordination through the
//! database and Redis), not how a real deployment on several machines
//! scales.
//!
//! Run: `cargo bench --bench cluster` (`-- --quick` for fewer samples).
//! Environment: `SWARMWISE_BENCH_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres; a fresh database per
//! configuration is created and dropped), `SWARMWISE_BENCH_REDIS_URL`
//! (default redis://127.0.0.1:6379). Prints figures; asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
mod process;
use common::summary;
use process::{drop_pg_database, pg_database, Server};

const ADMIN: &str = "cluster-bench-admin";

/// The agents of `move_creation`, with the type each answers.
const AGENTS: [(&str, &str); 7] = [
    ("market_researcher", "research"),
    ("psyche_lens", "research"),
    ("trend_scout", "research"),
    ("move_architect", "strategy"),
    ("strategist_b", "strategy"),
    ("strategist_c", "strategy"),
    ("critic", "review"),
];

struct Nodes {
    servers: Vec<Server>,
    db_name: String,
    _dir: tempfile::TempDir,
}

/// `n` nodes on a fresh database and a fresh Redis key prefix.
async fn start_nodes(n: usize, label: &str, http: &reqwest::Client) -> Nodes {
    let (url, db_name) = pg_database(&format!("cluster_{label}"))
        .await
        .expect("PostgreSQL reachable (SWARMWISE_BENCH_PG_URL)");
    let redis = std::env::var("SWARMWISE_BENCH_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("swarmwise-bench-{}:", uuid::Uuid::now_v7().simple());
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for i in 0..n {
        let node_id = format!("node-{i}");
        let mut server = Server::start(
            &url,
            dir.path(),
            ADMIN,
            &[
                ("SWARMWISE__REDIS__URL", &redis),
                ("SWARMWISE__REDIS__KEY_PREFIX", &prefix),
                ("SWARMWISE__CLUSTER__NODE_ID", &node_id),
                ("SWARMWISE__SCHEDULER__ENABLED", "false"),
                ("SWARMWISE__LEARNING__CYCLE_EVERY_OUTCOMES", "0"),
                ("SWARMWISE__LIMITS__MAX_RUNS_IN_FLIGHT", "0"),
                ("SWARMWISE__DATABASE__MAX_CONNECTIONS", "8"),
            ],
        );
        server.wait_ready(http).await;
        servers.push(server);
    }
    Nodes {
        servers,
        db_name,
        _dir: dir,
    }
}

impl Nodes {
    fn at(&self, i: usize) -> &str {
        &self.servers[i % self.servers.len()].base
    }

    async fn stop(self) {
        for s in self.servers {
            s.stop();
        }
        drop_pg_database(&self.db_name).await;
    }
}

async fn post(http: &reqwest::Client, url: String, key: &str, body: Value) -> Value {
    let r = http
        .post(&url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

async fn workspace(http: &reqwest::Client, base: &str) -> String {
    let ws = post(
        http,
        format!("{base}/api/v1/workspaces"),
        ADMIN,
        json!({"name": "bench"}),
    )
    .await;
    ws["api_key"].as_str().unwrap().to_owned()
}

/// Polls `agent`'s trust card on `base` until its sample count reaches
/// `count`; the seconds since `since` (fails after 30 s).
async fn seen_after(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    agent: &str,
    count: u64,
    since: Instant,
) -> f64 {
    let url = format!("{base}/api/v1/learning/trust-scores/{agent}");
    loop {
        let r = http.get(&url).bearer_auth(key).send().await.unwrap();
        if r.status().is_success() {
            let card: Value = r.json().await.unwrap();
            if card["sample_count"].as_u64() >= Some(count) {
                return since.elapsed().as_secs_f64();
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{agent} did not reach {count} samples on {base} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn propagation(samples: u64, http: &reqwest::Client) {
    let nodes = start_nodes(2, "propagation", http).await;
    let key = workspace(http, nodes.at(0)).await;
    let (a, b) = (nodes.at(0).to_owned(), nodes.at(1).to_owned());
    let mut remote = Vec::new();
    let mut local = Vec::new();
    for (agent, sink) in [("local", &mut local), ("remote", &mut remote)] {
        post(
            http,
            format!("{a}/api/v1/agents"),
            &key,
            json!({"id": agent, "name": agent, "kind": "external"}),
        )
        .await;
        let reader = if agent == "local" { &a } else { &b };
        for i in 1..=samples {
            let wf = format!("{agent}-{i}");
            post(
                http,
                format!("{a}/api/v1/recommendations"),
                &key,
                json!({"agent_id": agent, "correlation_id": wf, "workflow_id": wf,
                       "recommendation_type": "strategy", "content": {"i": i}, "confidence": 0.7}),
            )
            .await;
            post(
                http,
                format!("{a}/api/v1/workflows/{wf}/outcome"),
                &key,
                json!({"overall_quality_score": 80}),
            )
            .await;
            let since = Instant::now();
            sink.push(seen_after(http, reader, &key, agent, i, since).await);
        }
        eprintln!("  propagation: {agent} done");
    }
    let (rp50, rp99) = summary(remote);
    let (lp50, lp99) = summary(local);
    println!(
        "trust propagation, {samples} evaluations on node A: read on node B p50 {} p99 {} | read on node A itself p50 {} p99 {} (the reference, same 2 ms poll)",
        common::us(rp50),
        common::us(rp99),
        common::us(lp50),
        common::us(lp99),
    );
    nodes.stop().await;
}

/// Runs per second, p50 and p99 of one run's latency, on `n` nodes.
async fn runs_per_second(n: usize, runs: usize, http: &reqwest::Client) -> (f64, f64, f64) {
    let nodes = start_nodes(n, &format!("runs{n}"), http).await;
    let key = workspace(http, nodes.at(0)).await;
    for (i, (id, kind)) in AGENTS.iter().enumerate() {
        post(
            http,
            format!("{}/api/v1/agents", nodes.at(0)),
            &key,
            json!({"id": id, "name": id, "kind": "simulated",
                   "config": {"skill": {*kind: 0.8}, "latency_ms": {"mean": 0}, "seed": i}}),
        )
        .await;
    }
    // Every node runs the agents registered through node A once it has
    // seen them: warm up until a run on each node has no skipped agent.
    for node in 0..n {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = post(
                http,
                format!("{}/api/v1/workflows/runs", nodes.at(node)),
                &key,
                json!({"workflow": "move_creation", "input": {"warm": node}, "wait": true}),
            )
            .await;
            if !run.to_string().contains("\"skipped\"") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never ran the agents: {run}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let in_flight = 64;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut clients = Vec::new();
    for c in 0..in_flight {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let url = format!("{}/api/v1/workflows/runs", nodes.at(c));
        let key = key.clone();
        let next = next.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < runs {
                let t = Instant::now();
                let run = post(
                    &http,
                    url.clone(),
                    &key,
                    json!({"workflow": "move_creation", "input": {"c": c}, "wait": true}),
                )
                .await;
                assert_eq!(run["status"], "succeeded", "{run}");
                latencies.push(t.elapsed().as_secs_f64());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let rate = runs as f64 / start.elapsed().as_secs_f64();
    let (p50, p99) = summary(all);
    nodes.stop().await;
    (rate, p50, p99)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!(
            "swarmwise cluster benchmark ({})",
            if quick { "quick" } else { "full" }
        );
        let http = reqwest::Client::new();
        propagation(if quick { 50 } else { 200 }, &http).await;
        let runs = if quick { 500 } else { 3_000 };
        let mut rows = Vec::new();
        for n in 1..=3 {
            let row = runs_per_second(n, runs, &http).await;
            eprintln!("  {n} node(s): done");
            rows.push(row);
        }
        let single = rows[0].0;
        for (n, (rate, p50, p99)) in rows.iter().enumerate() {
            println!(
                "move_creation over HTTP (wait: true, 64 clients round-robin), {runs} runs, {} node(s) on one PostgreSQL + Redis: {rate:.0} runs/s (p50 {} p99 {}) | ratio to one node {:.2}×",
                n + 1,
                common::us(*p50),
                common::us(*p99),
                rate / single
            );
        }
    });
}
