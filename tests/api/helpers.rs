//! Test harness: `spawn_app` starts the real service on port 0 with a fresh
//! database (a temporary SQLite file, or a new PostgreSQL database) and
//! returns a typed client.
//!
//! PostgreSQL: `SWARMWISE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) must reach a server that
//! may create databases. Outside CI a missing server skips the PostgreSQL
//! half with a message; with `CI=true` it fails the test.

use std::sync::Arc;

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};
use swarmwise::config::Settings;
use swarmwise::startup::{AppHandle, Application};
use swarmwise::store::AdminStore;
use swarmwise_actors::Engine;
use tokio::sync::OnceCell;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The `detail` column of SQLite's `EXPLAIN QUERY PLAN` rows, joined with
/// " | ": what plan tests search for index names and scans.
pub fn plan_detail(rows: &[(i64, i64, i64, String)]) -> String {
    rows.iter()
        .map(|r| r.3.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

pub fn pg_admin_url() -> String {
    std::env::var("SWARMWISE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether PostgreSQL tests can run; panics in CI when they cannot.
pub async fn postgres_available() -> bool {
    static AVAILABLE: OnceCell<bool> = OnceCell::const_new();
    *AVAILABLE
        .get_or_init(|| async {
            match PgConnection::connect(&pg_admin_url()).await {
                Ok(mut c) => {
                    drop_stale_databases(&mut c).await;
                    true
                }
                Err(e) => {
                    if in_ci() {
                        panic!(
                            "CI=true but PostgreSQL at {} is unreachable ({e}); start it with \
                             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
                            pg_admin_url()
                        );
                    }
                    eprintln!("skipping PostgreSQL tests: {} unreachable ({e})", pg_admin_url());
                    false
                }
            }
        })
        .await
}

/// Drops test databases left by processes that are gone.
async fn drop_stale_databases(c: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'swarmwise_test_%'")
            .fetch_all(&mut *c)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name.split('_').nth(2).unwrap_or("");
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = c
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// A fresh database URL for `backend`, and the temp dir that holds it (SQLite).
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}/swarmwise.db", dir.path().display());
            (url, Some(dir))
        }
        Backend::Postgres => {
            let name = format!(
                "swarmwise_test_{}_{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            );
            let mut c = PgConnection::connect(&pg_admin_url())
                .await
                .expect("connect to PostgreSQL");
            c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
                .await
                .expect("create database");
            let base = pg_admin_url();
            let url = match base.rfind('/') {
                Some(i) => format!("{}/{name}", &base[..i]),
                None => panic!("bad SWARMWISE_TEST_PG_URL"),
            };
            (url, None)
        }
    }
}

/// Settings for tests: port 0, one worker, a known admin key.
pub fn test_settings(url: &str) -> Settings {
    let mut s = Settings::default();
    s.server.bind = "127.0.0.1:0".into();
    s.server.workers = 1;
    s.server.shutdown_timeout_secs = 5;
    s.database.url = url.into();
    s.database.max_connections = 4;
    s.auth.admin_key = "test-admin-key".into();
    s.demo.enabled = false;
    s.workflows.dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config/workflows").into();
    s
}

pub fn init_test_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        swarmwise::telemetry::init_logging("info");
    }
}

/// A running service and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub admin_key: String,
    pub engine: Engine,
    /// The workflow runner (to drive a sweep by hand).
    pub workflows: swarmwise_actors::workflow::Workflows,
    pub store: Arc<dyn AdminStore>,
    /// The alerter (`None` when `alerts.enabled = false`).
    pub alerter: Option<swarmwise_actors::alerts::Alerter>,
    pub handle: AppHandle,
    pub notifiers: swarmwise::notify::Dispatcher,
    pub database_url: String,
    join: Option<actix_web::rt::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Starts the service on a fresh database; `tweak` adjusts the settings.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_test_logging();
    let (url, dir) = fresh_database(backend).await;
    start_on(url, dir, tweak).await
}

async fn start_on(
    url: String,
    dir: Option<tempfile::TempDir>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(&url);
    tweak(&mut settings);
    let app = Application::build(settings.clone())
        .await
        .expect("build app");
    let address = format!("http://{}", app.address());
    let engine = app.engine().clone();
    let workflows = app.workflows().clone();
    let store = app.store();
    let alerter = app.alerter().cloned();
    let handle = app.handle();
    let admin_key = app.admin_key().to_owned();
    let notifiers = app.notifiers().clone();
    let join = actix_web::rt::spawn(app.run());
    TestApp {
        address,
        client: Client::new(),
        admin_key,
        engine,
        workflows,
        store,
        alerter,
        handle,
        notifiers,
        database_url: url,
        join: Some(join),
        _dir: dir,
    }
}

/// A second node on `app`'s database (the same SQLite file or PostgreSQL
/// database), as several `swarmwise serve` processes share one; `tweak`
/// adjusts its settings (give it its own `cluster.node_id` if the test
/// tells nodes apart).
pub async fn spawn_beside(app: &TestApp, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    start_on(app.database_url.clone(), None, tweak).await
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Waits until `/readyz` answers 200 (the trust scorer loads its state
    /// after start-up, which takes longer on a loaded machine) and returns
    /// its body; fails after 30 s with the last body.
    pub async fn ready(&self) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let res = self.client.get(self.url("/readyz")).send().await.unwrap();
            let ok = res.status() == StatusCode::OK;
            let body: Value = res.json().await.unwrap();
            if ok {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not ready within 30 s: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Graceful stop and drain; returns what `run` returned.
    /// Stops gracefully and starts again on the same database.
    pub async fn restart(mut self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let dir = self._dir.take();
        let url = self.database_url.clone();
        self.stop().await.expect("graceful stop");
        start_on(url, dir, tweak).await
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.handle.stop().await;
        match self.join.take() {
            Some(j) => j.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub async fn get(&self, key: &str, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn patch(&self, key: &str, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// POST with a raw body.
    pub async fn post_raw(&self, key: &str, path: &str, body: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request")
    }

    /// Creates a workspace → (id, api key).
    pub async fn workspace(&self, name: &str) -> (String, String) {
        let res = self
            .post(
                &self.admin_key,
                "/api/v1/workspaces",
                &json!({ "name": name }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let v: Value = res.json().await.expect("json");
        (
            v["id"].as_str().expect("id").to_owned(),
            v["api_key"].as_str().expect("key").to_owned(),
        )
    }

    pub async fn agent(&self, key: &str, id: &str) {
        let res = self
            .post(
                key,
                "/api/v1/agents",
                &json!({ "id": id, "name": format!("Agent {id}"), "kind": "external" }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }

    /// Tracks one recommendation → its id.
    pub async fn track(
        &self,
        key: &str,
        agent: &str,
        workflow: &str,
        rtype: &str,
        confidence: f64,
    ) -> String {
        let res = self
            .post(
                key,
                "/api/v1/recommendations",
                &json!({
                    "agent_id": agent, "correlation_id": format!("corr-{workflow}"), "workflow_id": workflow,
                    "recommendation_type": rtype, "content": {"decision": "go"}, "confidence": confidence,
                    "latency_ms": 250
                }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let v: Value = res.json().await.expect("json");
        v["id"].as_str().expect("id").to_owned()
    }

    pub async fn outcome(&self, key: &str, workflow: &str, quality: f64) -> Value {
        let res = self
            .post(
                key,
                &format!("/api/v1/workflows/{workflow}/outcome"),
                &json!({ "overall_quality_score": quality }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{}",
            res.text().await.unwrap_or_default()
        );
        res.json().await.expect("json")
    }

    pub async fn json(&self, key: &str, path: &str) -> Value {
        let res = self.get(key, path).await;
        assert_eq!(res.status(), StatusCode::OK, "GET {path}");
        res.json().await.expect("json")
    }

    /// The `/metrics` text (Prometheus exposition; no token configured).
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits (bounded, failing) until `GET /recommendations/{id}` with
    /// `key` answers 200: the acknowledged row is stored.
    pub async fn wait_stored(&self, key: &str, id: &str) {
        poll_until("the acknowledged recommendation stored", || async {
            let res = self
                .get(key, &format!("/api/v1/recommendations/{id}"))
                .await;
            if res.status() == StatusCode::OK {
                Ok(())
            } else {
                Err(res.status())
            }
        })
        .await;
    }
}

/// Asserts an error response: status, code and (if given) field.
pub async fn assert_error(
    res: Response,
    status: StatusCode,
    code: &str,
    field: Option<&str>,
) -> Value {
    let got = res.status();
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(got, status, "body: {body}");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message missing: {body}"
    );
    if let Some(f) = field {
        assert_eq!(body["details"]["field"], f, "body: {body}");
    }
    body
}

/// Runs an async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }

            #[actix_web::test]
            async fn postgres() {
                if $crate::helpers::postgres_available().await {
                    super::$name($crate::helpers::Backend::Postgres).await
                } else {
                    $crate::helpers::skipped(concat!(module_path!(), "::postgres"));
                }
            }
        }
    };
}

pub fn redis_url() -> String {
    std::env::var("SWARMWISE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether Redis tests can run; panics in CI when they cannot.
pub async fn redis_available() -> bool {
    static AVAILABLE: OnceCell<bool> = OnceCell::const_new();
    *AVAILABLE
        .get_or_init(|| async {
            let ok = match redis::Client::open(redis_url()) {
                Ok(c) => match c.get_multiplexed_async_connection().await {
                    Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if !ok {
                if in_ci() {
                    panic!(
                        "CI=true but Redis at {} is unreachable; start it with \
                         `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no`",
                        redis_url()
                    );
                }
                eprintln!("skipping Redis tests: {} unreachable", redis_url());
            }
            ok
        })
        .await
}

/// The real binary serving on loopback in its own process (killed if the
/// test fails before stopping it).
pub struct ServerProcess {
    child: Option<std::process::Child>,
    /// `http://127.0.0.1:port`.
    pub address: String,
    /// What it prints on stdout after its address (its logs included).
    pub output: OutputLines,
}

/// Starts `swarmwise serve` on a free port with one worker and no demo, plus
/// `envs`; returns once it printed its address.
pub fn spawn_server(envs: &[(&str, &str)]) -> ServerProcess {
    spawn_server_in(None, &[], envs)
}

/// [`spawn_server`] run in folder `cwd` (the test's own folder otherwise)
/// with extra arguments after `serve`.
pub fn spawn_server_in(
    cwd: Option<&std::path::Path>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> ServerProcess {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"));
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.arg("serve")
        .args(args)
        .env("SWARMWISE__SERVER__BIND", "127.0.0.1:0")
        .env("SWARMWISE__SERVER__WORKERS", "1")
        .env("SWARMWISE__DEMO__ENABLED", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the binary");
    let stdout = child.stdout.take().expect("piped stdout");
    // Keeps reading after the address: a closed pipe would fail the
    // server's later prints.
    let lines = OutputLines::new(stdout);
    let address = loop {
        let line = lines
            .next_line(std::time::Duration::from_secs(60))
            .expect("server printed its address");
        if let Some(rest) = line.strip_prefix("swarmwise listening on ") {
            break rest.trim().to_owned();
        }
    };
    ServerProcess {
        child: Some(child),
        address,
        output: lines,
    }
}

impl ServerProcess {
    /// Sends SIGTERM and waits for the process to exit.
    pub fn sigterm(mut self) -> std::process::ExitStatus {
        let child = self.child.take().expect("running");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success());
        wait_for_exit(child, std::time::Duration::from_secs(60))
    }
}

/// Waits for `child` to exit, failing the test (and killing it) after
/// `within`.
pub fn wait_for_exit(
    mut child: std::process::Child,
    within: std::time::Duration,
) -> std::process::ExitStatus {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(within) {
        Ok(status) => status.expect("wait for the process"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("process {pid} did not exit within {within:?}");
        }
    }
}

/// The lines a child process prints, read on a thread of their own so
/// that every wait for one is bounded.
pub struct OutputLines {
    rx: std::sync::mpsc::Receiver<String>,
}

impl OutputLines {
    /// Starts reading `from` (to its end, whether or not lines are asked for).
    pub fn new(from: impl std::io::Read + Send + 'static) -> Self {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                // Nobody listening any more: keep draining the pipe.
                let _ = tx.send(line);
            }
        });
        Self { rx }
    }

    /// The next line; `None` at the end of the output; fails the test when
    /// none comes within `within`.
    pub fn next_line(&self, within: std::time::Duration) -> Option<String> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.rx.recv_timeout(within) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!("no output line within {within:?}"),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Serves `handler` for every request on `ip`, port 0: a loopback peer
/// standing in for an agent's endpoint. Returns its address.
pub fn loopback_peer<F, Args>(ip: &str, handler: F) -> std::net::SocketAddr
where
    F: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().default_service(actix_web::web::to(handler.clone()))
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    addr
}

/// Polls `probe` every 20 ms until it answers `Ok`, and returns that value;
/// fails the test after 30 s with `what` and the last `Err` (the state it
/// saw), so a condition that never comes fails instead of hanging.
pub async fn poll_until<T, S, F, Fut>(what: &str, mut probe: F) -> T
where
    S: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) => assert!(
                std::time::Instant::now() < deadline,
                "{what} not seen within 30 s; last seen:\n{last}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The next engine event, failing the test when none arrives within 30 s
/// (a missed event must fail, not hang). Lagged receivers skip ahead.
pub async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<swarmwise_actors::events::Event>,
) -> swarmwise_actors::events::Event {
    use tokio::sync::broadcast::error::RecvError;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) => return event,
            Ok(Err(RecvError::Lagged(_))) => continue,
            Ok(Err(RecvError::Closed)) => panic!("the event bus closed"),
            Err(_) => panic!("no event within 30 s"),
        }
    }
}

/// Says, visibly, that a PostgreSQL half was skipped (outside CI only: with
/// `CI=true` an unreachable PostgreSQL fails instead), with a running count.
pub fn skipped(test: &str) {
    static SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let line = format!(
        "SKIPPED {test} (PostgreSQL unreachable; {n} skipped so far; CI=true makes this a failure)\n"
    );
    // Through a handle of its own: libtest captures what a passing test
    // writes with `eprintln!`.
    match std::fs::OpenOptions::new().append(true).open("/dev/stderr") {
        Ok(mut err) => {
            let _ = std::io::Write::write_all(&mut err, line.as_bytes());
        }
        Err(_) => eprint!("{line}"),
    }
}

/// `Command::output` with a bound: fails the test (killing the process)
/// when it has not exited within 60 s, instead of hanging.
pub trait OutputWithin {
    /// Runs to completion, capturing stdout and stderr.
    fn output_within(&mut self) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for std::process::Command {
    fn output_within(&mut self) -> std::io::Result<std::process::Output> {
        use std::process::Stdio;
        self.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn()?;
        let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = read(child.stdout.take().map(|p| Box::new(p) as _));
        let err = read(child.stderr.take().map(|p| Box::new(p) as _));
        let status = wait_for_exit(child, std::time::Duration::from_secs(60));
        Ok(std::process::Output {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        })
    }
}

/// Says, visibly, that a test did not run and why (outside CI only; in CI
/// the caller fails instead).
pub fn skipped_because(test: &str, reason: &str) {
    let line = format!("SKIPPED {test} ({reason}; CI=true makes this a failure)\n");
    match std::fs::OpenOptions::new().append(true).open("/dev/stderr") {
        Ok(mut err) => {
            let _ = std::io::Write::write_all(&mut err, line.as_bytes());
        }
        Err(_) => eprint!("{line}"),
    }
}

/// One workspace's figures per agent as the rollup and as a fresh count
/// agree they must be: `(workspace, agent, status) → rows` and
/// `(workspace, agent) → (rows with usage, prompt, completion, cost, unpriced)`.
type CountMap = std::collections::BTreeMap<(uuid::Uuid, String, String), i64>;
type UsageMap = std::collections::BTreeMap<(uuid::Uuid, String), (i64, i64, i64, f64, i64)>;

/// Asserts the rollup invariant on the database at `url` (every workspace):
/// `recommendation_rollup` and `recommendation_usage_rollup` equal a fresh
/// `GROUP BY` over `agent_recommendations`, groups whose count is 0 hold
/// nothing, and costs agree to rounding. Reads as the connecting user
/// (on PostgreSQL the test superuser, which row-level security does not
/// restrict).
pub async fn assert_rollup_matches(url: &str) {
    const FRESH_COUNTS: &str = "SELECT workspace_id, agent_id, outcome_status, count(*) \
         FROM agent_recommendations GROUP BY workspace_id, agent_id, outcome_status";
    const ROLLUP_COUNTS: &str =
        "SELECT workspace_id, agent_id, outcome_status, n FROM recommendation_rollup";
    const ROLLUP_USAGE: &str =
        "SELECT workspace_id, agent_id, n, prompt_tokens, completion_tokens, cost_usd, unpriced \
         FROM recommendation_usage_rollup";
    type CountRow = (uuid::Uuid, String, String, i64);
    type UsageRow = (uuid::Uuid, String, i64, i64, i64, f64, i64);
    let (fresh, rolled, fresh_usage, rolled_usage): (
        Vec<CountRow>,
        Vec<CountRow>,
        Vec<UsageRow>,
        Vec<UsageRow>,
    ) =
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            (
                sqlx::query_as(FRESH_COUNTS)
                    .fetch_all(&mut c)
                    .await
                    .unwrap(),
                sqlx::query_as(ROLLUP_COUNTS)
                    .fetch_all(&mut c)
                    .await
                    .unwrap(),
                sqlx::query_as(
                    "SELECT workspace_id, agent_id, count(*), COALESCE(SUM(prompt_tokens), 0), \
                 COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost_usd), 0.0), \
                 SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) FROM agent_recommendations \
                 WHERE prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL \
                 GROUP BY workspace_id, agent_id",
                )
                .fetch_all(&mut c)
                .await
                .unwrap(),
                sqlx::query_as(ROLLUP_USAGE)
                    .fetch_all(&mut c)
                    .await
                    .unwrap(),
            )
        } else {
            let mut c = PgConnection::connect(url).await.unwrap();
            (
            sqlx::query_as(FRESH_COUNTS).fetch_all(&mut c).await.unwrap(),
            sqlx::query_as(ROLLUP_COUNTS).fetch_all(&mut c).await.unwrap(),
            sqlx::query_as(
                "SELECT workspace_id, agent_id, count(*), COALESCE(SUM(prompt_tokens), 0)::int8, \
                 COALESCE(SUM(completion_tokens), 0)::int8, COALESCE(SUM(cost_usd), 0)::float8, \
                 count(*) FILTER (WHERE cost_usd IS NULL) FROM agent_recommendations \
                 WHERE prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL \
                 GROUP BY workspace_id, agent_id",
            )
            .fetch_all(&mut c)
            .await
            .unwrap(),
            sqlx::query_as(ROLLUP_USAGE).fetch_all(&mut c).await.unwrap(),
        )
        };
    let counts = |rows: Vec<CountRow>| -> CountMap {
        rows.into_iter()
            .filter(|r| r.3 != 0)
            .map(|(w, a, s, n)| ((w, a, s), n))
            .collect()
    };
    assert_eq!(
        counts(rolled),
        counts(fresh),
        "recommendation_rollup differs from a fresh count"
    );
    for r in &rolled_usage {
        if r.2 == 0 {
            assert_eq!(
                (r.3, r.4, r.5, r.6),
                (0, 0, 0.0, 0),
                "an empty usage group holds nothing: {r:?}"
            );
        }
    }
    let usage = |rows: Vec<UsageRow>| -> UsageMap {
        rows.into_iter()
            .filter(|r| r.2 != 0)
            .map(|(w, a, n, p, c, cost, u)| ((w, a), (n, p, c, cost, u)))
            .collect()
    };
    let (rolled_usage, fresh_usage) = (usage(rolled_usage), usage(fresh_usage));
    assert_eq!(
        rolled_usage.keys().collect::<Vec<_>>(),
        fresh_usage.keys().collect::<Vec<_>>(),
        "recommendation_usage_rollup has other groups than a fresh sum"
    );
    for (key, r) in &rolled_usage {
        let f = &fresh_usage[key];
        assert_eq!(
            (r.0, r.1, r.2, r.4),
            (f.0, f.1, f.2, f.4),
            "usage of {key:?} differs from a fresh sum"
        );
        assert!(
            (r.3 - f.3).abs() <= 1e-9 * f.3.abs().max(1.0),
            "cost of {key:?}: rollup {} vs fresh {}",
            r.3,
            f.3
        );
    }
}
