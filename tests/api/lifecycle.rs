//! Supervision, shutdown, the rollback switch and configuration errors.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise_actors::supervisor::ActorHealth;

use crate::both_backends;
use crate::helpers::OutputWithin;
use crate::helpers::{assert_error, fresh_database, spawn_app, spawn_app_with, Backend};

/// The trust scorer is crashed (stopped) while work arrives; its supervisor
/// restarts it, it reloads its state from the store, and nothing
/// acknowledged is lost.
async fn trust_scorer_restarts_with_state_reloaded(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = app.workspace("A").await;
    app.agent(&k, "a1").await;
    app.agent(&k, "a2").await;
    for i in 0..6 {
        app.track(&k, "a1", &format!("wf-{i}"), "strategy", 0.8)
            .await;
        app.track(&k, "a2", &format!("wf-{i}"), "strategy", 0.4)
            .await;
        app.outcome(&k, &format!("wf-{i}"), if i % 2 == 0 { 90.0 } else { 30.0 })
            .await;
    }
    app.engine.trust_settled().await.unwrap();
    let before = app.json(&k, "/api/v1/learning/trust-scores").await;

    app.engine.restart_trust_scorer("test: simulated crash");
    // Work that arrives while it restarts waits in its mailbox, which the supervisor keeps.
    app.track(&k, "a1", "wf-late", "strategy", 0.8).await;
    app.outcome(&k, "wf-late", 95.0).await;
    app.engine.trust_settled().await.unwrap();

    let health = app.engine.health().all();
    let scorer = health.iter().find(|h| h.0 == "trust_scorer").unwrap();
    assert_eq!(
        (scorer.1, scorer.2),
        (ActorHealth::Running, 1),
        "{health:?}"
    );
    let after = app.json(&k, "/api/v1/learning/trust-scores/a1").await;
    assert_eq!(
        after["sample_count"], 7,
        "reloaded 6 and folded the late one exactly once"
    );
    let a2 = before["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["agent_id"] == "a2")
        .unwrap()
        .clone();
    let a2_after = app.json(&k, "/api/v1/learning/trust-scores/a2").await;
    // a2 got nothing new: its own statistics are exactly as before the crash
    // (its accuracy moves with the workspace mean, which a1's late outcome changed).
    for field in [
        "sample_count",
        "approved_count",
        "partial_count",
        "rejected_count",
        "approval_rate",
        "avg_quality",
        "effective_samples",
    ] {
        assert_eq!(
            a2[field], a2_after[field],
            "{field}: state reloaded, not reset"
        );
    }
    assert_eq!(
        app.json(&k, "/api/v1/recommendations?limit=100").await["items"]
            .as_array()
            .unwrap()
            .len(),
        13
    );
    // Ready again after the restart (within 30 s).
    app.ready().await;
    app.stop().await.unwrap();
}
both_backends!(trust_scorer_restarts_with_state_reloaded);

/// The tracker restarts with acknowledged, unflushed rows in its buffer:
/// they survive and reach the store.
async fn tracker_restart_keeps_buffered_rows(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.tracking.flush_interval_ms = 3_600_000;
        s.tracking.batch_size = 100_000;
    })
    .await;
    let (_, k) = app.workspace("A").await;
    app.agent(&k, "a1").await;
    for i in 0..10 {
        app.track(&k, "a1", &format!("wf-{i}"), "t", 0.5).await;
    }
    assert_eq!(app.engine.pending_writes(), 10, "nothing flushed yet");
    app.engine.restart_tracker("test: simulated crash");
    let list = app.json(&k, "/api/v1/recommendations?limit=100").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 10);
    let health = app.engine.health().all();
    assert!(
        health
            .iter()
            .any(|h| h.0 == "recommendation_tracker" && h.2 == 1),
        "{health:?}"
    );
    app.stop().await.unwrap();
}
both_backends!(tracker_restart_keeps_buffered_rows);

/// The real binary, write-behind with nothing flushed, receives SIGTERM:
/// every acknowledged recommendation is on disk when it exits.
async fn sigterm_flushes_everything_acknowledged(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let server = crate::helpers::spawn_server(&[
        ("SWARMWISE__DATABASE__URL", &url),
        ("SWARMWISE__AUTH__ADMIN_KEY", "admin-sig"),
        ("SWARMWISE__TRACKING__MODE", "write_behind"),
        ("SWARMWISE__TRACKING__FLUSH_INTERVAL_MS", "3600000"),
        ("SWARMWISE__TRACKING__BATCH_SIZE", "100000"),
    ]);
    let address = server.address.clone();
    let client = reqwest::Client::new();
    let ws: Value = client
        .post(format!("{address}/api/v1/workspaces"))
        .bearer_auth("admin-sig")
        .json(&json!({"name": "sig"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap();
    let res = client
        .post(format!("{address}/api/v1/agents"))
        .bearer_auth(key)
        .json(&json!({"id": "a1", "name": "A1", "kind": "external"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let item = json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w", "recommendation_type": "t", "content": {}, "confidence": 0.5});
    let mut acknowledged = 0;
    for _ in 0..5 {
        let res = client
            .post(format!("{address}/api/v1/recommendations/batch"))
            .bearer_auth(key)
            .json(&json!({"items": vec![item.clone(); 20]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        acknowledged += 20;
    }
    let ready: Value = client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["pending_writes"], acknowledged,
        "all still buffered: {ready}"
    );

    let exit = server.sigterm();
    assert!(exit.success(), "clean exit after SIGTERM: {exit:?}");

    let mut settings = swarmwise::config::DatabaseSettings {
        url,
        ..Default::default()
    };
    settings.migrate = false;
    let store = swarmwise::store::connect(&settings).await.unwrap();
    let wsid = swarmwise_actors::domain::WorkspaceId(ws["id"].as_str().unwrap().parse().unwrap());
    let counts = store.status_counts(wsid).await.unwrap();
    let stored: u64 = counts.iter().map(|c| c.2).sum();
    assert_eq!(stored, acknowledged);
}
both_backends!(sigterm_flushes_everything_acknowledged);

/// `learning.enabled = false`: tracking answers 503 with a clear message,
/// nothing is written, everything else keeps working.
async fn rollback_switch(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.learning.enabled = false).await;
    let (_, k) = app.workspace("A").await;
    app.agent(&k, "a1").await;
    let item = json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w", "recommendation_type": "t", "content": {}, "confidence": 0.5});
    let body = assert_error(
        app.post(&k, "/api/v1/recommendations", &item).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "learning_disabled",
        None,
    )
    .await;
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("learning.enabled"));
    assert_error(
        app.post(
            &k,
            "/api/v1/recommendations/batch",
            &json!({"items": [item]}),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "learning_disabled",
        None,
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/workflows/w/outcome",
            &json!({"overall_quality_score": 50}),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "learning_disabled",
        None,
    )
    .await;
    assert_eq!(
        app.json(&k, "/api/v1/recommendations").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let trust = app.json(&k, "/api/v1/learning/trust-scores").await;
    assert_eq!(trust["agents"][0]["sample_count"], 0);
    let b = app.json(&k, "/api/v1/learning/agents/a1/boost").await;
    assert_eq!(
        (b["boost"].as_f64(), b["priority"].as_str()),
        (Some(0.0), Some("NORMAL"))
    );
    // Ready with learning off (the switch does not stop the service).
    let ready = app.ready().await;
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["learning_enabled"].as_bool()
        ),
        (Some("ready"), Some(false))
    );
    app.stop().await.unwrap();
}
both_backends!(rollback_switch);

fn check_config(envs: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarmwise"));
    cmd.args(args).arg("check-config");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output_within().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_config_names_the_offending_key() {
    let (ok, out, _) = check_config(&[("SWARMWISE__SERVER__BIND", "0.0.0.0:9999")], &[]);
    assert!(ok);
    assert!(out.contains("server.bind = \"0.0.0.0:9999\""), "{out}");
    let (ok, _, err) = check_config(&[("SWARMWISE__TRACKING__BATCH_SIZE", "0")], &[]);
    assert!(!ok);
    assert!(err.contains("tracking.batch_size"), "{err}");
    let (ok, _, err) = check_config(&[("SWARMWISE__SERVER__WORKERS", "many")], &[]);
    assert!(!ok);
    assert!(err.contains("server.workers"), "{err}");
    let (ok, _, err) = check_config(&[("SWARMWISE__TRUST__WEIGHTS__ACCURACY", "-1")], &[]);
    assert!(!ok);
    assert!(err.contains("trust.weights"), "{err}");
    let (ok, _, err) = check_config(&[("SWARMWISE__DATABASE__URL", "mysql://x")], &[]);
    assert!(!ok);
    assert!(err.contains("database.url"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[tracking]\nbatch_sise = 10\n").unwrap();
    let (ok, _, err) = check_config(&[], &["--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("batch_sise"), "{err}");
    let (ok, _, err) = check_config(&[], &["--config", "/nonexistent.toml"]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
    // The shipped default config is valid and complete.
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
    let (ok, out, err) = check_config(&[], &["--config", shipped]);
    assert!(ok, "{err}");
    assert!(out.contains("configuration OK"));
}
