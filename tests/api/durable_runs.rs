//! Durable workflow runs (issue 13, item 2): a run's progress is stored per
//! stage; a run whose node stopped (gracefully, or killed with SIGKILL) is
//! taken over by another node or the restarted one and continues after its
//! last completed stage, never repeating it (calls counted at a loopback
//! agent); `on_restart = "fail"` fails it with the reason; failed agent
//! calls are retried per stage with backoff.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::config::Settings;
use tokio::sync::Semaphore;

use crate::both_backends;
use crate::helpers::{
    loopback_peer, poll_until, spawn_app_with, spawn_server_in, Backend, TestApp,
};

/// A loopback endpoint standing in for every agent of these tests: the path
/// names the agent. `/held/..` waits for a permit of `gate`; `/flaky` fails
/// (HTTP 500) its first two calls; everything else answers at once. Counts
/// calls per path.
pub struct Agents {
    pub peer: SocketAddr,
    pub gate: Arc<Semaphore>,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl Agents {
    pub fn start() -> Self {
        let gate = Arc::new(Semaphore::new(0));
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (g, c) = (Arc::clone(&gate), Arc::clone(&calls));
        let peer = loopback_peer("127.0.0.1", move |req: HttpRequest| {
            let (gate, calls) = (Arc::clone(&g), Arc::clone(&c));
            async move {
                let path = req.path().trim_start_matches('/').to_owned();
                let n = {
                    let mut calls = calls.lock().unwrap();
                    let n = calls.entry(path.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if path == "held" {
                    gate.acquire().await.unwrap().forget();
                }
                if path == "flaky" && n <= 2 {
                    return HttpResponse::InternalServerError().body("flaky: try again");
                }
                HttpResponse::Ok().json(json!({
                    "content": {"decision": format!("{path} says go"), "call": n},
                    "confidence": 0.7
                }))
            }
        });
        Self { peer, gate, calls }
    }

    pub fn calls(&self, agent: &str) -> usize {
        self.calls.lock().unwrap().get(agent).copied().unwrap_or(0)
    }

    /// Waits (`poll_until`, which fails after its timeout) until `agent`
    /// was called `n` times.
    pub async fn wait_calls(&self, what: &str, agent: &str, n: usize) {
        poll_until(what, || async {
            match self.calls(agent) {
                c if c == n => Ok(()),
                c => Err(c),
            }
        })
        .await;
    }

    /// Registers HTTP agents `ids` (each at `/<id>`) through `address`.
    pub async fn register(&self, address: &str, key: &str, ids: &[&str]) {
        let c = reqwest::Client::new();
        for id in ids {
            let res = c
                .post(format!("{address}/api/v1/agents"))
                .bearer_auth(key)
                .json(&json!({"id": id, "name": format!("Agent {id}"), "kind": "http",
                              "config": {"url": format!("http://{}/{id}", self.peer), "retries": 0}}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                StatusCode::CREATED,
                "{}",
                res.text().await.unwrap()
            );
        }
    }
}

/// The workflows of these tests, in a folder of their own.
pub fn workflows_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("workflows");
    std::fs::create_dir_all(&wf).unwrap();
    let two_step = |name: &str, extra: &str| {
        format!(
            "name = \"{name}\"\n{extra}\n\
             [[stages]]\nname = \"first\"\nagents = [\"fast\"]\nrecommendation_type = \"research\"\n\
             [[stages]]\nname = \"second\"\nagents = [\"held\"]\nrecommendation_type = \"strategy\"\ntimeout_ms = 120000\n"
        )
    };
    std::fs::write(wf.join("two_step.toml"), two_step("two_step", "")).unwrap();
    std::fs::write(
        wf.join("two_step_fail.toml"),
        two_step("two_step_fail", "on_restart = \"fail\""),
    )
    .unwrap();
    std::fs::write(
        wf.join("flaky.toml"),
        "name = \"flaky\"\n[[stages]]\nname = \"only\"\nagents = [\"flaky\"]\nrecommendation_type = \"strategy\"\nretries = 3\nbackoff_ms = 10\n",
    )
    .unwrap();
    std::fs::write(
        wf.join("gated.toml"),
        "name = \"gated\"\n\
         [[stages]]\nname = \"draft\"\nagents = [\"fast\"]\nrecommendation_type = \"content\"\napproval = true\n\
         [[stages]]\nname = \"publish\"\nagents = [\"final\"]\nrecommendation_type = \"strategy\"\n",
    )
    .unwrap();
    std::fs::write(
        wf.join("gated_deadline.toml"),
        "name = \"gated_deadline\"\n\
         [[stages]]\nname = \"draft\"\nagents = [\"fast\"]\nrecommendation_type = \"content\"\napproval = true\napproval_timeout_secs = 1\n\
         [[stages]]\nname = \"publish\"\nagents = [\"final\"]\nrecommendation_type = \"strategy\"\n",
    )
    .unwrap();
    std::fs::write(
        wf.join("gated_deadline_approve.toml"),
        "name = \"gated_deadline_approve\"\n\
         [[stages]]\nname = \"draft\"\nagents = [\"fast\"]\nrecommendation_type = \"content\"\napproval = true\napproval_timeout_secs = 1\napproval_default_action = \"approve\"\n\
         [[stages]]\nname = \"publish\"\nagents = [\"final\"]\nrecommendation_type = \"strategy\"\n",
    )
    .unwrap();
    dir
}

/// Loopback agents allowed, these tests' workflows, a one-second lease.
pub fn durable(dir: &tempfile::TempDir) -> impl Fn(&mut Settings) + Clone {
    let wf = dir.path().join("workflows").display().to_string();
    move |s: &mut Settings| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.workflows.dir = wf.clone();
        s.workflows.lease_secs = 1;
        s.server.shutdown_timeout_secs = 2;
    }
}

/// Starts `workflow` without waiting → its id.
pub async fn start(app: &TestApp, key: &str, workflow: &str) -> String {
    let res = app
        .post(
            key,
            "/api/v1/workflows/runs",
            &json!({"workflow": workflow, "wait": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let v: Value = res.json().await.unwrap();
    v["run_id"].as_str().unwrap().to_owned()
}

/// Polls the run until `status`.
pub async fn run_reaches(app: &TestApp, key: &str, id: &str, status: &str) -> Value {
    poll_until(&format!("run {id} {status}"), || async {
        let run = app.json(key, &format!("/api/v1/workflows/runs/{id}")).await;
        if run["status"] == status {
            Ok(run)
        } else {
            Err(run)
        }
    })
    .await
}

fn stages_done(run: &Value) -> usize {
    run["progress"]["stages"].as_array().map_or(0, Vec::len)
}

async fn a_run_handed_over_at_shutdown_resumes_after_its_last_stage(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("durable").await;
    agents.register(&app.address, &key, &["fast", "held"]).await;
    let id = start(&app, &key, "two_step").await;
    // Stage "first" is stored and stage "second" is waiting on its agent.
    let before = poll_until("first stage stored, second asked", || async {
        let run = app
            .json(&key, &format!("/api/v1/workflows/runs/{id}"))
            .await;
        if stages_done(&run) == 1 && agents.calls("held") == 1 {
            Ok(run)
        } else {
            Err(run)
        }
    })
    .await;
    assert_eq!(before["status"], "running");
    let first_rec = before["progress"]["stages"][0]["agents"][0]["recommendation_id"].clone();
    assert!(first_rec.is_string(), "{before}");

    // The node stops before the run can finish: its lease is released, and
    // the restarted node (a new node id) takes the run over.
    let app = app.restart(durable(&dir)).await;
    agents
        .wait_calls("second stage asked again", "held", 2)
        .await;
    agents.gate.add_permits(10);
    let run = run_reaches(&app, &key, &id, "succeeded").await;
    assert_eq!(
        agents.calls("fast"),
        1,
        "the finished stage was not run again"
    );
    assert_eq!(stages_done(&run), 2, "{run}");
    assert_eq!(
        run["progress"]["stages"][0]["agents"][0]["recommendation_id"], first_rec,
        "the first stage's record is reused: {run}"
    );
    // Its answer was tracked once, under the recorded id.
    let recs = app
        .json(
            &key,
            &format!("/api/v1/recommendations?workflow_id={id}&agent_id=fast"),
        )
        .await;
    let items = recs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{recs}");
    assert_eq!(items[0]["id"], first_rec);
    app.stop().await.unwrap();
}
both_backends!(a_run_handed_over_at_shutdown_resumes_after_its_last_stage);

/// The first sweep of a process takes back the runs its node id leased
/// before the process started (its leftovers), never a run this process
/// started: a run created before that sweep ran (a request served in the
/// first moments after start) used to be claimed by it, fenced out, and
/// answered 409 while the sweep ran its stage a second time.
async fn the_first_sweep_leaves_the_runs_of_this_process_alone(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("first-sweep").await;
    agents.register(&app.address, &key, &["fast", "held"]).await;
    let id = start(&app, &key, "two_step").await;
    agents.wait_calls("second stage asked", "held", 1).await;
    // A sweep as at start (`own`), with this process's run in flight.
    let report = app.workflows.sweep(true, true).await;
    assert_eq!(
        (report.resumed, report.failed),
        (0, 0),
        "the sweep took over a run of this process: {report:?}"
    );
    assert!(report.renewed >= 1, "its lease is renewed: {report:?}");
    agents.gate.add_permits(10);
    run_reaches(&app, &key, &id, "succeeded").await;
    assert_eq!(agents.calls("held"), 1, "no stage ran twice");
    assert_eq!(agents.calls("fast"), 1, "no stage ran twice");
    app.stop().await.unwrap();
}
both_backends!(the_first_sweep_leaves_the_runs_of_this_process_alone);

async fn on_restart_fail_ends_the_run_failed_with_the_reason(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("durable").await;
    agents.register(&app.address, &key, &["fast", "held"]).await;
    let id = start(&app, &key, "two_step_fail").await;
    agents.wait_calls("second stage asked", "held", 1).await;
    let app = app.restart(durable(&dir)).await;
    let run = run_reaches(&app, &key, &id, "failed").await;
    let error = run["error"].as_str().unwrap();
    assert!(error.contains("on_restart = \"fail\""), "{run}");
    assert!(error.contains("shut down"), "{run}");
    assert_eq!(
        stages_done(&run),
        1,
        "the stored stage stays visible: {run}"
    );
    agents.gate.add_permits(10);
    // Nobody resumes it: the second stage is never asked again.
    let again = app
        .json(&key, &format!("/api/v1/workflows/runs/{id}"))
        .await;
    assert_eq!(again["status"], "failed");
    assert_eq!(agents.calls("held"), 1);
    app.stop().await.unwrap();
}
both_backends!(on_restart_fail_ends_the_run_failed_with_the_reason);

async fn failed_agent_calls_are_retried_with_backoff(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("retries").await;
    agents.register(&app.address, &key, &["flaky"]).await;
    let res = app
        .post(
            &key,
            "/api/v1/workflows/runs",
            &json!({"workflow": "flaky", "wait": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let run: Value = res.json().await.unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let agent = &run["result"]["stages"][0]["agents"][0];
    assert_eq!(agent["status"], "ok", "{run}");
    assert_eq!(agent["attempts"], 3, "two failures, then the answer: {run}");
    assert_eq!(agents.calls("flaky"), 3);
    app.stop().await.unwrap();
}
both_backends!(failed_agent_calls_are_retried_with_backoff);

/// Real processes: the node running a two-stage run is killed with SIGKILL
/// while its second stage waits; a second `swarmwise serve` on the same
/// database takes the run over after the lease and completes it without
/// asking the first stage's agent again.
#[actix_web::test]
async fn a_sigkilled_nodes_run_completes_on_another_node_without_repeating_a_stage() {
    let dir = workflows_dir();
    std::fs::write(
        dir.path().join("config.toml"),
        "[agents]\nallow_hosts = [\"127.0.0.1\"]\n[workflows]\ndir = \"workflows\"\nlease_secs = 1\n",
    )
    .unwrap();
    let config = dir.path().join("config.toml").display().to_string();
    let db = format!("sqlite://{}/runs.db", dir.path().display());
    let envs = [
        ("SWARMWISE__DATABASE__URL", db.as_str()),
        ("SWARMWISE__AUTH__ADMIN_KEY", "admin-durable"),
    ];
    let agents = Agents::start();
    let a = spawn_server_in(None, &["--config", &config], &envs);
    let c = reqwest::Client::new();
    let ws: Value = c
        .post(format!("{}/api/v1/workspaces", a.address))
        .bearer_auth("admin-durable")
        .json(&json!({"name": "killed"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap().to_owned();
    agents.register(&a.address, &key, &["fast", "held"]).await;
    let started: Value = c
        .post(format!("{}/api/v1/workflows/runs", a.address))
        .bearer_auth(&key)
        .json(&json!({"workflow": "two_step"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = started["run_id"].as_str().unwrap().to_owned();
    let get = |address: String| {
        let (c, key, id) = (c.clone(), key.clone(), id.clone());
        async move {
            c.get(format!("{address}/api/v1/workflows/runs/{id}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    poll_until("first stage stored, second asked", || async {
        let run = get(a.address.clone()).await;
        if stages_done(&run) == 1 && agents.calls("held") == 1 {
            Ok(())
        } else {
            Err(run)
        }
    })
    .await;
    drop(a); // SIGKILL: no shutdown, no lease released.

    let b = spawn_server_in(None, &["--config", &config], &envs);
    agents
        .wait_calls("the second stage asked again by node B", "held", 2)
        .await;
    agents.gate.add_permits(10);
    let run = poll_until("the run succeeded on node B", || async {
        let run = get(b.address.clone()).await;
        if run["status"] == "succeeded" {
            Ok(run)
        } else {
            Err(run)
        }
    })
    .await;
    assert_eq!(
        agents.calls("fast"),
        1,
        "the finished stage was not repeated: {run}"
    );
    assert_eq!(stages_done(&run), 2);
    let status = b.sigterm();
    assert!(status.success(), "{status:?}");
}
