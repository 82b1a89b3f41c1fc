//! Nothing stays half-done after a crash: what a dead process left
//! `running` without a lease (learning cycles, runs from before durable
//! runs) is marked `interrupted` at the next start; runs that cannot finish
//! before a shutdown are handed over and resumed; a failed trust recompute
//! keeps the last good state.

use std::sync::Arc;

use actix_web::HttpResponse;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use swarmwise_actors::domain::{Priority, WorkspaceId};
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::workflow::{RunStatus, WorkflowRun};
use tokio::sync::Semaphore;

use crate::both_backends;
use crate::helpers::{loopback_peer, postgres_available, spawn_app, spawn_app_with, Backend};

async fn leftovers_are_marked_interrupted_at_start(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ws, k) = app.workspace("crashed").await;
    let ws = WorkspaceId(ws.parse().unwrap());
    // What a process killed mid-way leaves behind (a run without an owner:
    // written before durable runs, which hold a lease instead).
    let run = WorkflowRun {
        id: uuid::Uuid::now_v7(),
        workspace_id: ws,
        workflow: "quick_strategy".into(),
        status: RunStatus::Running,
        priority: Priority::Normal,
        input: json!({}),
        result: None,
        error: None,
        created_at: Utc::now(),
        finished_at: None,
        progress: None,
        approval_deadline: None,
        lease: None,
    };
    app.store.insert_run(&run).await.unwrap();
    let cycle = CycleReport {
        id: uuid::Uuid::now_v7(),
        workspace_id: ws,
        status: "running".into(),
        reason: "api".into(),
        started_at: Utc::now(),
        finished_at: None,
        recommendations_processed: 0,
        patterns_discovered: 0,
        patterns_confirmed: 0,
        patterns_retired: 0,
        rules_updated: 0,
        model_accuracy: None,
        coverage: None,
        insights: json!({}),
        error: None,
    };
    app.store.insert_cycle(&cycle).await.unwrap();
    let before = app
        .json(&k, &format!("/api/v1/workflows/runs/{}", run.id))
        .await;
    assert_eq!(before["status"], "running");

    let app = app.restart(|_| {}).await;
    let after = app
        .json(&k, &format!("/api/v1/workflows/runs/{}", run.id))
        .await;
    assert_eq!(after["status"], "interrupted", "{after}");
    assert!(
        after["error"].as_str().unwrap().contains("stopped"),
        "{after}"
    );
    assert!(after["finished_at"].is_string());
    let cycles = app.json(&k, "/api/v1/learning/cycles").await;
    let listed = cycles
        .as_array()
        .or_else(|| cycles["items"].as_array())
        .unwrap()
        .iter()
        .find(|c| c["id"] == cycle.id.to_string())
        .cloned()
        .unwrap();
    assert_eq!(listed["status"], "interrupted", "{listed}");
    assert!(listed["error"].as_str().unwrap().contains("stopped"));
    app.stop().await.unwrap();
}
both_backends!(leftovers_are_marked_interrupted_at_start);

/// A `wait: false` run that cannot finish within the shutdown timeout is
/// handed over by the stopping process (its lease released) and resumed by
/// the restarted one, which finishes it.
#[actix_web::test]
async fn a_run_that_cannot_finish_before_shutdown_is_handed_over() {
    let gate = Arc::new(Semaphore::new(0));
    let held = Arc::clone(&gate);
    let peer = loopback_peer("127.0.0.1", move || {
        let held = Arc::clone(&held);
        async move {
            held.acquire().await.unwrap().forget();
            HttpResponse::Ok().json(json!({"content": "late", "confidence": 0.5}))
        }
    });
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.server.shutdown_timeout_secs = 2;
    })
    .await;
    let (_, k) = app.workspace("w").await;
    let res = app
        .post(&k, "/api/v1/agents", &json!({"id": "market_researcher", "name": "Held", "kind": "http", "config": {"url": format!("http://{peer}/"), "retries": 0}}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let started: Value = app
        .post(
            &k,
            "/api/v1/workflows/runs",
            &json!({"workflow": "move_creation", "wait": false}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = started["run_id"].as_str().unwrap().to_owned();
    // The run is in flight (its agent holds it) when the server stops.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.engine.pending_writes() > 0
        || app.json(&k, &format!("/api/v1/workflows/runs/{id}")).await["status"] != "running"
    {
        assert!(std::time::Instant::now() < deadline, "run never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let app = app
        .restart(|s| s.agents.allow_hosts = vec!["127.0.0.1".into()])
        .await;
    gate.add_permits(10);
    let run = crate::helpers::poll_until("the resumed run finished", || async {
        let run = app.json(&k, &format!("/api/v1/workflows/runs/{id}")).await;
        if run["status"] == "succeeded" {
            Ok(run)
        } else {
            Err(run)
        }
    })
    .await;
    assert!(run["error"].is_null(), "{run}");
    app.stop().await.unwrap();
}

/// A trust recompute that fails (the database loses the table mid-way)
/// keeps the last good trust state.
#[actix_web::test]
async fn a_failed_trust_recompute_keeps_the_last_good_state() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let (_, k) = app.workspace("w").await;
    app.agent(&k, "a").await;
    for i in 0..10 {
        let wf = format!("wf-{i}");
        app.track(&k, "a", &wf, "strategy", 0.7).await;
        app.outcome(&k, &wf, if i % 3 == 0 { 20.0 } else { 90.0 })
            .await;
    }
    let good = app.json(&k, "/api/v1/learning/trust-scores").await;
    let trust = good["agents"][0]["overall_trust"].as_f64().unwrap();
    let mut owner = sqlx::PgConnection::connect(&app.database_url)
        .await
        .unwrap();
    owner
        .execute("ALTER TABLE agent_recommendations RENAME TO agent_recommendations_away")
        .await
        .unwrap();
    let res = app
        .post(&k, "/api/v1/learning/trust/recompute", &json!({}))
        .await;
    assert!(
        !res.status().is_success(),
        "the recompute failed: {}",
        res.status()
    );
    owner
        .execute("ALTER TABLE agent_recommendations_away RENAME TO agent_recommendations")
        .await
        .unwrap();
    let after = app.json(&k, "/api/v1/learning/trust-scores").await;
    assert_eq!(after["agents"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["agents"][0]["overall_trust"].as_f64().unwrap(), trust);
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("swarmwise_trust_recompute_failures_total"));
    app.stop().await.unwrap();
}
