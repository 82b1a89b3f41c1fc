//! The peer-comparable workload of issue 14 (item 2), end to end: one
//! workflow of one stage that fans out to 8 agents whose backend answers at
//! once, waits for all 8 at the barrier, tracks the 8 answers as
//! recommendations and evaluates the run's outcome (the runtime's own
//! judging: every answer is from a `simulated` agent, so the outcome is
//! evaluated with their ground truth, as `POST /workflows/runs` does).
//!
//! The agents are `simulated` with `latency_ms = { mean = 0 }` and no error
//! rate: the cheapest kind that runs inside the runtime and is evaluated
//! automatically. At zero latency it does no sleeping (it takes a lock, draws
//! two random numbers and builds the answer), so the figures are the
//! runtime's and the database's.
//!
//! Rows, each measured closed-loop (every client starts its next run when
//! its last one answered) at 1 and 64 in flight, each beside bare tokio
//! spawn + join of 8 no-op futures per "workflow" at the same concurrency,
//! measured just before it in the same run:
//! - in process: `Workflows::run` on the `Application`'s handle;
//! - over HTTP: `POST /api/v1/workflows/runs` with `wait: true` against the
//!   built `swarmwise serve` in its own process, one keep-alive client
//!   (connection) per run in flight;
//! - on SQLite (a temporary file) always, on PostgreSQL (a fresh database per
//!   configuration, dropped after) when reachable; `tracking.mode`
//!   `write_behind` (the default) and `durable`;
//! - LangGraph in memory, the same workload in Python
//!   (`benches/peers/langgraph_fanout.py`), when `import langgraph` works;
//! - tracing overhead: in process and over HTTP on SQLite with
//!   OpenTelemetry export on (OTLP/HTTP to a loopback sink in this process
//!   that accepts and discards) against off, one after the other.
//!
//! Learning cycles (`learning.cycle_every_outcomes = 0`) and the scheduler
//! are off in every configuration: they are not part of the peers'
//! workload. The HTTP server has no per-key rate limit and no cap on runs
//! in flight, so the limits do not measure themselves.

use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use swarmwise::config::Settings;
use swarmwise::startup::Application;
use swarmwise_actors::agent::backend::AgentBackend;
use swarmwise_actors::domain::{Priority, WorkspaceId};
use swarmwise_actors::tracker::WriteMode;
use swarmwise_actors::workflow::{RunRequest, RunStatus};

use crate::common;
use crate::process::{drop_pg_database, pg_database, Server};

/// The workflow's name.
const WORKFLOW: &str = "fanout8";
/// Agents in the one stage.
const AGENTS: usize = 8;
const ADMIN: &str = "runtime-bench-admin";

/// When a row stops starting runs: after `runs` or `secs`, whichever first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub runs: usize,
    pub secs: f64,
}

/// One row's figures.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub runs: usize,
    /// From the first run's start until the last answer (and, in process,
    /// until the tracker flushed what it buffered).
    pub secs: f64,
    pub p50: f64,
    pub p99: f64,
    /// CPU seconds the processes doing the work used meanwhile (this one,
    /// and the server's over HTTP, or the Python process's), when measured.
    pub cpu: Option<f64>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.runs as f64 / self.secs
    }

    fn new(latencies: Vec<f64>, secs: f64) -> Self {
        let runs = latencies.len();
        let (p50, p99) = common::summary(latencies);
        Self {
            runs,
            secs,
            p50,
            p99,
            cpu: None,
        }
    }

    fn with_cpu(self, cpu: f64) -> Self {
        Self {
            cpu: Some(cpu),
            ..self
        }
    }

    /// "CPU per run (cores busy)", or a dash.
    fn cpu_cell(&self) -> String {
        match self.cpu {
            Some(cpu) => format!(
                "{} ({:.2})",
                common::us(cpu / self.runs as f64),
                cpu / self.secs
            ),
            None => "—".into(),
        }
    }
}

/// CPU seconds (user + system) process `pid` (this one when `None`) has
/// used so far, from `/proc/<pid>/stat` (utime and stime, fields 14 and 15,
/// in clock ticks of 1/100 s, Linux's USER_HZ); 0 where there is no /proc.
fn cpu_secs(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".into(),
    };
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// Which database a configuration runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

impl Db {
    fn label(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Postgres => "PostgreSQL",
        }
    }
}

/// A fresh database: a SQLite file in `dir`, or a PostgreSQL database
/// dropped by [`FreshDb::drop_db`].
struct FreshDb {
    url: String,
    pg_name: Option<String>,
    dir: tempfile::TempDir,
}

async fn fresh_db(db: Db, label: &str) -> FreshDb {
    let dir = tempfile::tempdir().unwrap();
    match db {
        Db::Sqlite => FreshDb {
            url: format!("sqlite://{}/bench.db", dir.path().display()),
            pg_name: None,
            dir,
        },
        Db::Postgres => {
            let (url, name) = pg_database(&format!("rt_{label}"))
                .await
                .expect("PostgreSQL was reachable at the start of the run");
            FreshDb {
                url,
                pg_name: Some(name),
                dir,
            }
        }
    }
}

impl FreshDb {
    async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            drop_pg_database(name).await;
        }
    }
}

/// `tracking.mode`, or `None` for `learning.enabled = false` (nothing
/// tracked or evaluated: the runtime as a plain orchestrator).
type Tracking = Option<WriteMode>;

fn tracking_label(t: Tracking) -> &'static str {
    match t {
        Some(WriteMode::WriteBehind) => "write_behind",
        Some(WriteMode::Durable) => "durable",
        None => "off (learning.enabled = false)",
    }
}

/// Writes the workflow definition into a fresh folder (`workflows.dir`).
fn workflow_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let agents: Vec<String> = (0..AGENTS).map(|i| format!("\"noop_{i}\"")).collect();
    std::fs::write(
        dir.path().join(format!("{WORKFLOW}.toml")),
        format!(
            "# Issue 14's peer workload: 8 no-op agents fanned out, one barrier,\n\
             # every answer tracked, the outcome evaluated.\n\
             name = \"{WORKFLOW}\"\n\
             description = \"8 zero-latency agents in parallel\"\n\n\
             [[stages]]\n\
             name = \"fanout\"\n\
             mode = \"parallel\"\n\
             agents = [{}]\n\
             recommendation_type = \"fanout\"\n\
             timeout_ms = 10000\n",
            agents.join(", ")
        ),
    )
    .unwrap();
    dir
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> Value {
    let r = http
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{url}: {status} {body}");
    body
}

/// A workspace with the 8 agents → (workspace id, its API key).
async fn workspace(base: &str) -> (WorkspaceId, String) {
    let http = reqwest::Client::new();
    let ws = post(
        &http,
        &format!("{base}/api/v1/workspaces"),
        ADMIN,
        &json!({"name": "runtime-bench"}),
    )
    .await;
    let key = ws["api_key"].as_str().unwrap().to_owned();
    let id = WorkspaceId(ws["id"].as_str().unwrap().parse().unwrap());
    for i in 0..AGENTS {
        post(
            &http,
            &format!("{base}/api/v1/agents"),
            &key,
            &json!({"id": format!("noop_{i}"), "name": format!("no-op {i}"), "kind": "simulated",
                    "config": {"skill": {"*": 1.0}, "latency_ms": {"mean": 0}, "seed": i}}),
        )
        .await;
    }
    (id, key)
}

/// Runs `one(client)` closed-loop from `in_flight` clients on this thread
/// until `budget` is spent; every run's latency, and the start.
async fn closed_loop<F, Fut>(in_flight: usize, budget: Budget, one: F) -> (Vec<f64>, Instant)
where
    F: Fn(usize) -> Fut + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let started = Rc::new(Cell::new(0usize));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(budget.secs);
    let mut clients = Vec::with_capacity(in_flight);
    for c in 0..in_flight {
        let (started, one) = (Rc::clone(&started), one.clone());
        clients.push(tokio::task::spawn_local(async move {
            let mut latencies = Vec::new();
            while started.get() < budget.runs && Instant::now() < deadline {
                started.set(started.get() + 1);
                let t = Instant::now();
                one(c).await;
                latencies.push(t.elapsed().as_secs_f64());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(budget.runs.min(1 << 20));
    for c in clients {
        all.extend(c.await.unwrap());
    }
    (all, start)
}

/// Bare tokio: 8 no-op futures spawned and joined per "workflow", closed-loop
/// at `in_flight` on this thread (the runtime the in-process rows run on).
async fn tokio_reference(in_flight: usize, budget: Budget) -> Measured {
    let backend: Arc<dyn AgentBackend> = Arc::new(crate::Noop);
    let task = crate::task();
    let (lat, start) = closed_loop(in_flight, budget, move |_| {
        let (backend, task) = (Arc::clone(&backend), task.clone());
        async move {
            let handles: Vec<_> = (0..AGENTS)
                .map(|_| {
                    let (b, t) = (Arc::clone(&backend), task.clone());
                    tokio::spawn(async move { b.execute(&t).await })
                })
                .collect();
            for h in handles {
                h.await.unwrap().unwrap();
            }
        }
    })
    .await;
    Measured::new(lat, start.elapsed().as_secs_f64())
}

/// One printed row.
struct Row {
    path: String,
    database: &'static str,
    tracking: &'static str,
    in_flight: usize,
    ours: Measured,
    reference: Measured,
}

const HEADER: &str = "| path | database | tracking | in flight | runs | workflows/s | p50 | p99 | CPU per run (cores busy) | tokio spawn+join workflows/s | tokio p50 | p50 ÷ tokio p50 |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

impl Row {
    fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {} | {} |",
            self.path,
            self.database,
            self.tracking,
            self.in_flight,
            self.ours.runs,
            self.ours.rate(),
            common::us(self.ours.p50),
            common::us(self.ours.p99),
            self.ours.cpu_cell(),
            self.reference.rate(),
            common::us(self.reference.p50),
            ratio(self.ours.p50 / self.reference.p50),
        )
    }
}

/// A ratio with one decimal below 10, none above.
fn ratio(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}×")
    } else {
        format!("{x:.0}×")
    }
}

/// The figures of the whole run, printed as a table at the end (and each
/// row on stderr as soon as it is measured).
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn push(&mut self, row: Row) {
        eprintln!("  {}", row.line());
        self.rows.push(row);
    }

    fn note(&mut self, note: String) {
        eprintln!("  {note}");
        self.notes.push(note);
    }

    fn print(&self) {
        println!("{HEADER}");
        for r in &self.rows {
            println!("{}", r.line());
        }
        for n in &self.notes {
            println!("{n}");
        }
    }
}

/// The settings of an in-process application on `db`.
fn settings(db: &FreshDb, tracking: Tracking, workflows: &Path) -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.database.url = db.url.clone();
    if let Some(n) = std::env::var("SWARMWISE_BENCH_DB_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        s.database.max_connections = n;
    }
    s.auth.admin_key = ADMIN.into();
    s.demo.enabled = false;
    s.scheduler.enabled = false;
    s.learning.cycle_every_outcomes = 0;
    s.limits.key_requests_per_second = 0;
    s.limits.max_runs_in_flight = 0;
    s.telemetry.log_level = "warn".into();
    s.workflows.dir = workflows.display().to_string();
    match tracking {
        Some(mode) => s.tracking.mode = mode,
        None => s.learning.enabled = false,
    }
    s
}

/// Checks one in-process report: succeeded, 8 answers, and (tracking on)
/// the 8 tracked and evaluated.
fn check_report(r: &swarmwise_actors::workflow::RunReport, tracking: Tracking) {
    assert_eq!(r.status, RunStatus::Succeeded, "{r:?}");
    if tracking.is_some() {
        let eval = r.evaluation.as_ref().expect("the outcome was evaluated");
        assert_eq!(eval.evaluated, AGENTS as u64, "{r:?}");
    }
}

/// In process: `Workflows::run`, sequential then 64 in flight, with a row
/// each in the report.
async fn in_process(
    report: &mut Report,
    db: Db,
    tracking: Tracking,
    budget: Budget,
    ref_budget: Budget,
    workflows: &Path,
) {
    let label = format!(
        "in_{}_{}",
        db.label().to_lowercase(),
        tracking_label(tracking).split(' ').next().unwrap_or("x")
    );
    for (in_flight, ours, reference) in
        in_process_rows(db, tracking, budget, ref_budget, workflows, &label).await
    {
        report.push(Row {
            path: "in process".into(),
            database: db.label(),
            tracking: tracking_label(tracking),
            in_flight,
            ours,
            reference,
        });
    }
}

/// (in flight, figures, tokio reference) at 1 and 64 in flight, on a
/// fresh application and database (`label` names a PostgreSQL database).
async fn in_process_rows(
    db: Db,
    tracking: Tracking,
    budget: Budget,
    ref_budget: Budget,
    workflows: &Path,
    label: &str,
) -> Vec<(usize, Measured, Measured)> {
    let fresh = fresh_db(db, label).await;
    let app = Application::build(settings(&fresh, tracking, workflows))
        .await
        .unwrap();
    let base = format!("http://{}", app.address());
    let wf = app.workflows().clone();
    let engine = app.engine().clone();
    let handle = app.handle();
    let join = actix_web::rt::spawn(app.run());
    let (ws, _key) = workspace(&base).await;
    let one = move |i: usize| {
        let wf = wf.clone();
        async move {
            let r = wf
                .run(
                    ws,
                    RunRequest {
                        workflow: WORKFLOW.into(),
                        input: json!({ "client": i }),
                        priority: Priority::Normal,
                    },
                )
                .await
                .unwrap();
            check_report(&r, tracking);
        }
    };
    // Warm-up: agents started, statements prepared, trust cards loaded.
    closed_loop(
        8,
        Budget {
            runs: 64,
            secs: 10.0,
        },
        one.clone(),
    )
    .await;
    engine.flush().await.unwrap();
    let mut rows = Vec::new();
    let breakdown = std::env::args().any(|a| a == "--breakdown");
    for in_flight in [1, 64] {
        let reference = tokio_reference(in_flight, ref_budget).await;
        let before = if breakdown {
            scrape(&base).await
        } else {
            Vec::new()
        };
        let cpu = cpu_secs(None);
        let (lat, start) = closed_loop(in_flight, budget, one.clone()).await;
        engine.flush().await.unwrap();
        if breakdown {
            print_breakdown(
                &before,
                &scrape(&base).await,
                lat.len(),
                in_flight,
                start.elapsed().as_secs_f64(),
            );
        }
        rows.push((
            in_flight,
            Measured::new(lat, start.elapsed().as_secs_f64()).with_cpu(cpu_secs(None) - cpu),
            reference,
        ));
    }
    handle.stop().await;
    join.await.unwrap().unwrap();
    fresh.drop_db().await;
    rows
}

/// `--breakdown`: the counters of the application's own `/metrics` that
/// say where a run's time goes: store calls per operation and their mean
/// duration (`swarmwise_store_query_duration_seconds_count` and `_sum`), group-commit
/// batches and items per queue, and on SQLite the time the write gate was
/// held per operation (`swarmwise_sqlite_write_gate_held_seconds_sum`).
/// (series, value) pairs.
async fn scrape(base: &str) -> Vec<(String, f64)> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET /metrics")
        .text()
        .await
        .expect("the /metrics body");
    text.lines()
        .filter(|l| {
            l.starts_with("swarmwise_store_query_duration_seconds_count")
                || l.starts_with("swarmwise_store_query_duration_seconds_sum")
                || l.starts_with("swarmwise_group_commit_")
                || l.starts_with("swarmwise_sqlite_write_gate_held_seconds_sum")
        })
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// Prints, per run, the store calls of each operation, each group-commit
/// queue's mean batch size and the SQLite write gate's time per operation
/// between two scrapes `secs` apart.
fn print_breakdown(
    before: &[(String, f64)],
    after: &[(String, f64)],
    runs: usize,
    in_flight: usize,
    secs: f64,
) {
    let delta = |k: &str| {
        let was = before.iter().find(|(b, _)| b == k).map_or(0.0, |b| b.1);
        after.iter().find(|(a, _)| a == k).map_or(0.0, |a| a.1) - was
    };
    eprintln!("  breakdown at {in_flight} in flight over {runs} runs:");
    for (k, _) in after {
        let d = delta(k);
        if d <= 0.0 {
            continue;
        }
        if let Some(op) = k.strip_prefix("swarmwise_store_query_duration_seconds_count") {
            let took = delta(&k.replace("_count", "_sum"));
            eprintln!(
                "    store {op}: {:.2} calls per run, {:.2} ms per call",
                d / runs as f64,
                1000.0 * took / d
            );
        } else if k.starts_with("swarmwise_group_commit_batches_total") {
            let items = delta(&k.replace("batches_total", "items_total"));
            let queue = k.trim_start_matches("swarmwise_group_commit_batches_total");
            eprintln!(
                "    group commit {queue}: {d} batches, {:.1} items per batch",
                items / d
            );
        } else if let Some(op) = k.strip_prefix("swarmwise_sqlite_write_gate_held_seconds_sum") {
            eprintln!(
                "    SQLite write gate held by {op}: {:.3} ms per run",
                1000.0 * d / runs as f64
            );
        }
    }
    let held: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("swarmwise_sqlite_write_gate_held_seconds_sum"))
        .map(|(k, _)| delta(k))
        .sum();
    if held > 0.0 {
        eprintln!(
            "    SQLite write gate held {:.3} ms per run in all, {:.0}% of the wall time",
            1000.0 * held / runs as f64,
            100.0 * held / secs
        );
    }
}

/// A `swarmwise serve` process on a fresh database with the workspace and
/// agents registered.
struct HttpTarget {
    server: Server,
    fresh: FreshDb,
    key: String,
}

async fn start_server(
    db: Db,
    tracking: WriteMode,
    workflows: &Path,
    otlp: Option<&str>,
    label: &str,
) -> HttpTarget {
    let fresh = fresh_db(db, label).await;
    let mode = match tracking {
        WriteMode::WriteBehind => "write_behind",
        WriteMode::Durable => "durable",
    };
    let dir = workflows.display().to_string();
    let mut envs = vec![
        ("SWARMWISE__WORKFLOWS__DIR", dir.as_str()),
        ("SWARMWISE__TRACKING__MODE", mode),
        ("SWARMWISE__SCHEDULER__ENABLED", "false"),
        ("SWARMWISE__LEARNING__CYCLE_EVERY_OUTCOMES", "0"),
        ("SWARMWISE__LIMITS__MAX_RUNS_IN_FLIGHT", "0"),
    ];
    if let Some(endpoint) = otlp {
        envs.push(("SWARMWISE__TELEMETRY__OTLP__ENDPOINT", endpoint));
    }
    let mut server = Server::start(&fresh.url, fresh.dir.path(), ADMIN, &envs);
    server.wait_ready(&reqwest::Client::new()).await;
    let (_, key) = workspace(&server.base).await;
    HttpTarget { server, fresh, key }
}

/// Over HTTP: `in_flight` keep-alive clients, each `POST /workflows/runs`
/// with `wait: true` in a loop.
async fn http_rows(
    target: &HttpTarget,
    in_flights: &[usize],
    budget: Budget,
    ref_budget: Budget,
) -> Vec<(usize, Measured, Measured)> {
    let url = format!("{}/api/v1/workflows/runs", target.server.base);
    let server = target.server.child.id();
    let clients: Rc<Vec<reqwest::Client>> = Rc::new(
        (0..64)
            .map(|_| {
                reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .unwrap()
            })
            .collect(),
    );
    let key: Rc<str> = target.key.as_str().into();
    let one = move |c: usize| {
        let (clients, url, key) = (Rc::clone(&clients), url.clone(), Rc::clone(&key));
        async move {
            let r = clients[c]
                .post(&url)
                .bearer_auth(&*key)
                .json(&json!({"workflow": WORKFLOW, "input": {"client": c}, "wait": true}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body = r.bytes().await.unwrap();
            let run: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            assert!(
                status.is_success() && run["status"] == "succeeded",
                "{status} {run}"
            );
        }
    };
    // Warm-up on every connection, and one run checked in full: 8 answers
    // tracked, the outcome evaluated.
    closed_loop(
        64,
        Budget {
            runs: 128,
            secs: 10.0,
        },
        one.clone(),
    )
    .await;
    let run = post(
        &reqwest::Client::new(),
        &format!("{}/api/v1/workflows/runs", target.server.base),
        &target.key,
        &json!({"workflow": WORKFLOW, "input": {}, "wait": true}),
    )
    .await;
    let agents = run["result"]["stages"][0]["agents"].as_array().unwrap();
    assert_eq!(agents.len(), AGENTS, "{run}");
    assert!(
        agents.iter().all(|a| a["recommendation_id"].is_string()),
        "{run}"
    );
    assert_eq!(
        run["result"]["evaluation"]["evaluated"], AGENTS as u64,
        "{run}"
    );
    let mut rows = Vec::new();
    for &in_flight in in_flights {
        let reference = tokio_reference(in_flight, ref_budget).await;
        let cpu = || cpu_secs(None) + cpu_secs(Some(server));
        let before = cpu();
        let (lat, start) = closed_loop(in_flight, budget, one.clone()).await;
        rows.push((
            in_flight,
            Measured::new(lat, start.elapsed().as_secs_f64()).with_cpu(cpu() - before),
            reference,
        ));
    }
    rows
}

async fn over_http(
    report: &mut Report,
    db: Db,
    tracking: WriteMode,
    budget: Budget,
    ref_budget: Budget,
    workflows: &Path,
) {
    let label = format!(
        "http_{}_{}",
        db.label().to_lowercase(),
        tracking_label(Some(tracking))
    );
    let target = start_server(db, tracking, workflows, None, &label).await;
    for (in_flight, ours, reference) in http_rows(&target, &[1, 64], budget, ref_budget).await {
        report.push(Row {
            path: "HTTP `wait: true`".into(),
            database: db.label(),
            tracking: tracking_label(Some(tracking)),
            in_flight,
            ours,
            reference,
        });
    }
    target.server.stop();
    target.fresh.drop_db().await;
}

/// An OTLP/HTTP collector on loopback that accepts every export and
/// discards it; counts requests and bytes.
struct Sink {
    endpoint: String,
    requests: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    handle: actix_web::dev::ServerHandle,
}

fn otlp_sink() -> Sink {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let (requests, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, b) = (Arc::clone(&requests), Arc::clone(&bytes));
    let server = HttpServer::new(move || {
        let (r, b) = (Arc::clone(&r), Arc::clone(&b));
        App::new()
            .app_data(web::PayloadConfig::new(64 << 20))
            .default_service(web::to(move |body: web::Bytes| {
                r.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(body.len() as u64, Ordering::Relaxed);
                async {
                    HttpResponse::Ok()
                        .content_type("application/x-protobuf")
                        .finish()
                }
            }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Sink {
        endpoint: format!("http://{addr}"),
        requests,
        bytes,
        handle,
    }
}

/// The value of an unlabelled counter in a Prometheus text page (0 when absent).
fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The subscriber `swarmwise serve` installs (`telemetry::init`): the log
/// at `warn` (written to nowhere here), plus, with `exporting`, the
/// OpenTelemetry layer filtered to the exported spans, built as there.
fn subscriber(exporting: Option<&swarmwise::otel::Exporting>) -> tracing::Dispatch {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::Layer as _;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::sink)
        .with_filter(tracing_subscriber::EnvFilter::new("warn"));
    let otel = exporting.map(|e| {
        tracing_opentelemetry::layer()
            .with_tracer(e.tracer())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(
                swarmwise::otel::export::exported,
            ))
    });
    tracing::Dispatch::new(tracing_subscriber::registry().with(fmt).with(otel))
}

/// One figure of a pair: (path, export on, in flight, figures).
type Pair = (&'static str, bool, usize, Measured);

/// Tracing overhead, OpenTelemetry export off then on, each on a fresh
/// application (or server) and SQLite database, `write_behind`: in process
/// (the serve subscriber set on this thread, without and with the
/// OpenTelemetry layer) and over HTTP (`swarmwise serve` without and with
/// `telemetry.otlp.endpoint`); both export over OTLP/HTTP to the same
/// loopback sink.
async fn tracing_overhead(
    report: &mut Report,
    budget: Budget,
    ref_budget: Budget,
    workflows: &Path,
) {
    let sink = otlp_sink();
    let mut figures: Vec<Pair> = Vec::new();
    let path = |p: &str, on: bool| {
        format!(
            "{p}, OpenTelemetry export {}",
            if on { "on" } else { "off" }
        )
    };
    for on in [false, true] {
        let mut otlp = Settings::default().telemetry.otlp;
        otlp.endpoint.clone_from(&sink.endpoint);
        // Built off the runtime, as `swarmwise serve` does (the exporter's
        // HTTP client is a blocking one).
        let exporting = on.then(|| {
            std::thread::spawn(move || swarmwise::otel::Exporting::start(&otlp).unwrap())
                .join()
                .unwrap()
        });
        let dispatch = subscriber(exporting.as_ref());
        let rows = {
            let _guard = tracing::dispatcher::set_default(&dispatch);
            let label = if on { "in_otel_on" } else { "in_otel_off" };
            let tracking = Some(WriteMode::WriteBehind);
            in_process_rows(Db::Sqlite, tracking, budget, ref_budget, workflows, label).await
        };
        if let Some(e) = exporting {
            // Blocks until the queued spans are sent.
            e.shutdown();
            let page = swarmwise::telemetry::prometheus().unwrap().render();
            report.note(format!(
                "OpenTelemetry export on, in process: {:.0} spans exported, {:.0} dropped (queue full), {:.0} failed",
                counter(&page, "swarmwise_otlp_spans_exported_total"),
                counter(&page, "swarmwise_otlp_spans_dropped_total"),
                counter(&page, "swarmwise_otlp_spans_failed_total"),
            ));
        }
        for (in_flight, ours, reference) in rows {
            report.push(Row {
                path: path("in process", on),
                database: Db::Sqlite.label(),
                tracking: "write_behind",
                in_flight,
                ours,
                reference,
            });
            figures.push(("in process", on, in_flight, ours));
        }
    }
    for on in [false, true] {
        let endpoint = on.then_some(sink.endpoint.as_str());
        let label = if on { "otel_on" } else { "otel_off" };
        let target = start_server(
            Db::Sqlite,
            WriteMode::WriteBehind,
            workflows,
            endpoint,
            label,
        )
        .await;
        let rows = http_rows(&target, &[1, 64], budget, ref_budget).await;
        let page = reqwest::Client::new()
            .get(format!("{}/metrics", target.server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        target.server.stop();
        target.fresh.drop_db().await;
        for (in_flight, ours, reference) in rows {
            report.push(Row {
                path: path("HTTP `wait: true`", on),
                database: Db::Sqlite.label(),
                tracking: "write_behind",
                in_flight,
                ours,
                reference,
            });
            figures.push(("HTTP", on, in_flight, ours));
        }
        if on {
            report.note(format!(
                "OpenTelemetry export on, HTTP: {:.0} spans exported, {:.0} dropped (queue full), {:.0} failed",
                counter(&page, "swarmwise_otlp_spans_exported_total"),
                counter(&page, "swarmwise_otlp_spans_dropped_total"),
                counter(&page, "swarmwise_otlp_spans_failed_total"),
            ));
        }
    }
    report.note(format!(
        "the loopback OTLP sink took {} export requests, {:.1} MB",
        sink.requests.load(Ordering::Relaxed),
        sink.bytes.load(Ordering::Relaxed) as f64 / 1e6,
    ));
    for p in ["in process", "HTTP"] {
        for in_flight in [1, 64] {
            let pick = |on: bool| {
                figures
                    .iter()
                    .find(|f| f.0 == p && f.1 == on && f.2 == in_flight)
                    .map(|f| f.3)
                    .unwrap()
            };
            let (off, on) = (pick(false), pick(true));
            report.note(format!(
                "tracing overhead, {p}, SQLite, {in_flight} in flight: export on {:.0} workflows/s vs off {:.0} (ratio {:.2}×), p50 {} vs {} (ratio {:.2}×)",
                on.rate(),
                off.rate(),
                on.rate() / off.rate(),
                common::us(on.p50),
                common::us(off.p50),
                on.p50 / off.p50,
            ));
        }
    }
    sink.handle.stop(true).await;
}

/// LangGraph's figures from `benches/peers/langgraph_fanout.py`, or why not.
async fn langgraph(report: &mut Report, budget: Budget, ref_budget: Budget) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/langgraph_fanout.py");
    let probe = std::process::Command::new("python3")
        .args(["-c", "import langgraph"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        report.note(
            "LangGraph: not measured (`python3 -c 'import langgraph'` failed); install it with `pip install langgraph` and run again".into(),
        );
        return;
    }
    for in_flight in [1, 64] {
        let reference = tokio_reference(in_flight, ref_budget).await;
        // Blocking is fine: nothing else runs on this thread meanwhile.
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args([
                "--in-flight",
                &in_flight.to_string(),
                "--runs",
                &budget.runs.to_string(),
                "--seconds",
                &budget.secs.to_string(),
            ])
            .stderr(std::process::Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "{script:?} failed: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(text.lines().last().unwrap_or("")).unwrap();
        let ours = Measured {
            runs: v["runs"].as_u64().unwrap() as usize,
            secs: v["seconds"].as_f64().unwrap(),
            p50: v["p50"].as_f64().unwrap(),
            p99: v["p99"].as_f64().unwrap(),
            cpu: v["cpu_seconds"].as_f64(),
        };
        if in_flight == 1 {
            report.note(format!(
                "LangGraph {} on Python {}: {}",
                v["langgraph"].as_str().unwrap_or("?"),
                v["python"].as_str().unwrap_or("?"),
                v["concurrency"].as_str().unwrap_or("?"),
            ));
        }
        report.push(Row {
            path: format!(
                "LangGraph {} in memory",
                v["langgraph"].as_str().unwrap_or("?")
            ),
            database: "none",
            tracking: "in memory",
            in_flight,
            ours,
            reference,
        });
    }
}

/// The rows `only` selects (every row by default); prints the table.
pub async fn bench(quick: bool, only: &crate::Only) {
    // `SWARMWISE_BENCH_SECS=N`: every row runs N seconds, whatever its
    // count of runs (for comparing builds, where 2 s rows are too noisy).
    let secs = std::env::var("SWARMWISE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok());
    let budget = if let Some(secs) = secs {
        Budget {
            runs: usize::MAX,
            secs,
        }
    } else if quick {
        Budget {
            runs: 2_000,
            secs: 2.0,
        }
    } else {
        Budget {
            runs: 100_000,
            secs: 12.0,
        }
    };
    let ref_budget = Budget {
        runs: if quick { 20_000 } else { 200_000 },
        secs: if quick { 0.3 } else { 1.0 },
    };
    let postgres = !only.has("sqlite")
        && match pg_database("rt_probe").await {
            Some((_, name)) => {
                drop_pg_database(&name).await;
                true
            }
            None => false,
        };
    let mut report = Report {
        rows: Vec::new(),
        notes: Vec::new(),
    };
    report.note(format!(
        "workload: one stage fanning out to {AGENTS} `simulated` agents with latency 0 (no sleep), a barrier, the {AGENTS} answers tracked, the outcome evaluated with their ground truth; closed loop, each row stops after {} runs or {} s; learning cycles and the scheduler off",
        budget.runs, budget.secs
    ));
    if !postgres && !only.has("sqlite") {
        report.note("PostgreSQL: not reachable (SWARMWISE_BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres); its rows are skipped".into());
    }
    let workflows = workflow_dir();
    let dbs: &[Db] = if postgres {
        &[Db::Sqlite, Db::Postgres]
    } else {
        &[Db::Sqlite]
    };
    if only.runs("in-process") {
        for &db in dbs {
            for mode in [WriteMode::WriteBehind, WriteMode::Durable] {
                eprintln!(
                    "fanout8 in process, {}, {}",
                    db.label(),
                    tracking_label(Some(mode))
                );
                let path = workflows.path();
                in_process(&mut report, db, Some(mode), budget, ref_budget, path).await;
            }
        }
        eprintln!("fanout8 in process, SQLite, tracking off");
        let path = workflows.path();
        in_process(&mut report, Db::Sqlite, None, budget, ref_budget, path).await;
    }
    if only.runs("http") {
        for &db in dbs {
            for mode in [WriteMode::WriteBehind, WriteMode::Durable] {
                eprintln!(
                    "fanout8 over HTTP, {}, {}",
                    db.label(),
                    tracking_label(Some(mode))
                );
                over_http(&mut report, db, mode, budget, ref_budget, workflows.path()).await;
            }
        }
    }
    if only.runs("langgraph") {
        eprintln!("LangGraph, the same workload in memory");
        langgraph(&mut report, budget, ref_budget).await;
    }
    if only.runs("tracing") {
        eprintln!("tracing overhead: OpenTelemetry export off, then on");
        tracing_overhead(&mut report, budget, ref_budget, workflows.path()).await;
    }
    report.print();
}
