//! One representative error body per code of `ErrorCode`, snapshotted with
//! insta (`tests/api/snapshots/`), and the metric names the binary exposes
//! at `/metrics`.
//!
//! Codes a client can provoke are triggered through real HTTP, a tenant
//! doing the wrong thing (other workspaces' ids, huge bodies, bad values);
//! codes that need a failing database, a full queue or a shutdown are built
//! from the engine error the handler converts and rendered by the same
//! `ResponseError` the server uses. The test fails when a code has no
//! snapshot, so a new code cannot ship without one.
//!
//! Volatile parts (UUIDs, timestamps) are redacted before snapshotting.

use std::collections::BTreeMap;

use actix_web::ResponseError;
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::error::{ApiError, ErrorCode};
use swarmwise_actors::ports::StoreError;
use swarmwise_actors::EngineError;
use uuid::Uuid;

use crate::helpers::{spawn_app_with, Backend, TestApp};

/// Replaces every UUID inside `s` with `[uuid]`.
fn redact_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if let Some(window) = s.get(i..i + 36) {
            if Uuid::parse_str(window).is_ok() && window.contains('-') {
                out.push_str("[uuid]");
                i += 36;
                continue;
            }
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Redacts UUIDs everywhere and timestamps (`*_at` keys).
fn redact(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(redact_str(s)),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = if k.ends_with("_at") && !v.is_null() {
                        json!("[timestamp]")
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a snapshot holds: status and body.
fn shape(status: u16, body: &Value) -> String {
    let v = json!({ "status": status, "body": redact(body) });
    serde_json::to_string_pretty(&v).unwrap()
}

async fn from_http(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("error body is JSON");
    (status, body)
}

async fn from_error(e: ApiError) -> (u16, Value) {
    let res = e.error_response();
    let status = res.status().as_u16();
    let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Records the answer under its code; a second answer for a code is a bug
/// in this test.
fn put(got: &mut BTreeMap<String, (u16, Value)>, (status, body): (u16, Value)) {
    let code = body["error"].as_str().expect("error code").to_owned();
    if let Some(before) = got.insert(code.clone(), (status, body.clone())) {
        panic!("{code} triggered twice: {before:?} and {status} {body}");
    }
}

async fn http_errors(app: &TestApp, got: &mut BTreeMap<String, (u16, Value)>) {
    let (ws, key) = app.workspace("errors").await;
    let (_, other_key) = app.workspace("other").await;
    let admin = app.admin_key.clone();
    app.agent(&key, "a1").await;
    let c = &app.client;
    let nil = Uuid::nil();

    // Authentication and authorisation.
    put(
        got,
        from_http(c.get(app.url("/api/v1/agents")).send().await.unwrap()).await,
    );
    put(
        got,
        from_http(app.get(&admin, "/api/v1/agents").await).await,
    );
    put(
        got,
        from_http(app.get(&key, "/api/v1/workspaces").await).await,
    );
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/agents",
                &json!({"id": "h1", "name": "h1", "kind": "http", "config": {"url": "http://127.0.0.1:1/"}}),
            )
            .await,
        )
        .await,
    );

    // Bodies.
    put(
        got,
        from_http(
            app.post_raw(&key, "/api/v1/recommendations", "{\"agent_id\": ")
                .await,
        )
        .await,
    );
    put(
        got,
        from_http(
            c.post(app.url("/api/v1/recommendations"))
                .bearer_auth(&key)
                .header("Content-Type", "text/plain")
                .body("hello")
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    let huge = "x".repeat(20_000);
    put(
        got,
        from_http(
            app.post(&key, "/api/v1/recommendations", &json!({ "pad": huge }))
                .await,
        )
        .await,
    );
    let item = |content: Value| {
        json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w",
               "recommendation_type": "t", "content": content, "confidence": 0.5})
    };
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/recommendations",
                &item(json!("y".repeat(300))),
            )
            .await,
        )
        .await,
    );
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/recommendations/batch",
                &json!({"items": [item(json!({})), item(json!({})), item(json!({}))]}),
            )
            .await,
        )
        .await,
    );

    // Values.
    put(
        got,
        from_http(app.get(&key, "/api/v1/recommendations?limit=lots").await).await,
    );
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/workflows/w%00/outcome",
                &json!({"overall_quality_score": 0.5}),
            )
            .await,
        )
        .await,
    );
    let mut bad = item(json!({}));
    bad["confidence"] = json!(1.5);
    put(
        got,
        from_http(app.post(&key, "/api/v1/recommendations", &bad).await).await,
    );
    let mut ghost = item(json!({}));
    ghost["agent_id"] = json!("ghost");
    put(
        got,
        from_http(app.post(&key, "/api/v1/recommendations", &ghost).await).await,
    );

    // Things that are not there (or belong to another workspace).
    put(
        got,
        from_http(app.get(&key, "/api/v1/no-such-route").await).await,
    );
    put(
        got,
        from_http(app.get(&other_key, "/api/v1/agents/a1").await).await,
    );
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/workflows/runs",
                &json!({"workflow": "ghost"}),
            )
            .await,
        )
        .await,
    );
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/workflows/ghost/outcome",
                &json!({"overall_quality_score": 0.5}),
            )
            .await,
        )
        .await,
    );
    let rec = app.track(&key, "a1", "w", "t", 0.5).await;
    put(
        got,
        from_http(
            app.get(&other_key, &format!("/api/v1/recommendations/{rec}"))
                .await,
        )
        .await,
    );
    put(
        got,
        from_http(
            app.get(&key, &format!("/api/v1/workflows/runs/{nil}"))
                .await,
        )
        .await,
    );
    // A finished run takes no approval decision.
    let done: Value = app
        .post(
            &key,
            "/api/v1/workflows/runs",
            &json!({"workflow": "quick_strategy", "wait": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    let done = done["id"].as_str().unwrap().to_owned();
    put(
        got,
        from_http(
            app.post(
                &key,
                &format!("/api/v1/workflows/runs/{done}/approve"),
                &json!({}),
            )
            .await,
        )
        .await,
    );
    put(
        got,
        from_http(app.get(&key, "/api/v1/learning/cycles/latest").await).await,
    );
    put(
        got,
        from_http(
            app.get(&admin, &format!("/api/v1/workspaces/{nil}/api-keys"))
                .await,
        )
        .await,
    );
    put(
        got,
        from_http(
            app.post(
                &admin,
                &format!("/api/v1/workspaces/{ws}/api-keys/{nil}/revoke"),
                &json!({}),
            )
            .await,
        )
        .await,
    );

    // Conflicts (the workspace may hold 2 agents).
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/agents",
                &json!({"id": "a1", "name": "again", "kind": "external"}),
            )
            .await,
        )
        .await,
    );
    app.agent(&key, "a2").await;
    put(
        got,
        from_http(
            app.post(
                &key,
                "/api/v1/agents",
                &json!({"id": "a3", "name": "a3", "kind": "external"}),
            )
            .await,
        )
        .await,
    );
    let added: Value = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key_id = added["id"].as_str().expect("key id");
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/{key_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    put(
        got,
        from_http(
            app.post(
                &admin,
                &format!("/api/v1/workspaces/{ws}/api-keys/{key_id}/rotate"),
                &json!({}),
            )
            .await,
        )
        .await,
    );
    // Alerts and silences of this workspace.
    put(
        got,
        from_http(app.get(&key, &format!("/api/v1/alerts/{nil}")).await).await,
    );
    put(
        got,
        from_http(
            c.delete(app.url(&format!("/api/v1/alerts/silences/{nil}")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    // Idempotency-Key: a malformed key; a key reused for another request.
    let track = |wf: &str| {
        json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": wf,
            "recommendation_type": "t", "content": {}, "confidence": 0.5})
    };
    put(
        got,
        from_http(
            c.post(app.url("/api/v1/recommendations"))
                .bearer_auth(&key)
                .header("Idempotency-Key", "k".repeat(256))
                .json(&track("w1"))
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    for wf in ["w1", "w2"] {
        let res = c
            .post(app.url("/api/v1/recommendations"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "reused")
            .json(&track(wf))
            .send()
            .await
            .unwrap();
        if wf == "w2" {
            put(got, from_http(res).await);
        } else {
            assert_eq!(res.status(), StatusCode::CREATED);
        }
    }
    let silence = json!({"duration_secs": 60, "comment": "maintenance"});
    let res = app.post(&key, "/api/v1/alerts/silences", &silence).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    put(
        got,
        from_http(app.post(&key, "/api/v1/alerts/silences", &silence).await).await,
    );
}

/// Errors that need a failing database, a full queue, a refused write or a
/// shutdown: the engine/store error a handler converts, rendered as sent.
async fn engine_errors(got: &mut BTreeMap<String, (u16, Value)>) {
    let errors: Vec<ApiError> = vec![
        ApiError::new(ErrorCode::BadBody, "error decoding response body"),
        StoreError::Rejected("value too long for type character varying(200)".into()).into(),
        EngineError::WriteRefused {
            message: "invalid byte sequence".into(),
            data: true,
        }
        .into(),
        EngineError::Conflict("a learning cycle is already running in this workspace".into())
            .into(),
        EngineError::Overloaded("the agent queue is full; retry later".into()).into(),
        EngineError::LearningDisabled.into(),
        EngineError::ShuttingDown.into(),
        EngineError::FlushTimeout {
            waited_ms: 5000,
            pending: 12,
        }
        .into(),
        StoreError::Unavailable("connection refused".into()).into(),
        StoreError::Unexpected(anyhow::anyhow!("boom")).into(),
        // Needs a request still running under the key (tests/api/idempotency.rs).
        swarmwise::idempotency::in_progress_error(1),
    ];
    for e in errors {
        put(got, from_error(e).await);
    }
}

#[actix_web::test]
async fn every_error_code_has_a_snapshot_of_its_body() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.max_body_bytes = 10_000;
        s.limits.max_content_bytes = 100;
        s.limits.max_batch_items = 2;
        s.limits.max_agents_per_workspace = 2;
        s.alerts.max_silences_per_workspace = 1;
    })
    .await;
    let mut got = BTreeMap::new();
    http_errors(&app, &mut got).await;
    app.stop().await.unwrap();

    // Fairness limits: a key over its rate, a workspace over its runs.
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.key_requests_per_second = 1;
        s.limits.key_burst = 1;
    })
    .await;
    let (_, key) = app.workspace("busy").await;
    let mut refused = None;
    for _ in 0..20 {
        let res = app.get(&key, "/api/v1/agents").await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(res);
            break;
        }
    }
    put(
        &mut got,
        from_http(refused.expect("a refusal within 20 requests")).await,
    );
    app.stop().await.unwrap();
    let limits = swarmwise::limits::Limits::new(&swarmwise::config::LimitSettings {
        max_runs_in_flight: 1,
        max_event_streams_per_workspace: 1,
        ..Default::default()
    });
    let ws = swarmwise_actors::domain::WorkspaceId(Uuid::nil());
    let _slot = limits.start_run(ws).unwrap();
    put(
        &mut got,
        from_error(limits.start_run(ws).unwrap_err()).await,
    );
    let _stream = limits.start_stream(ws).unwrap();
    put(
        &mut got,
        from_error(limits.start_stream(ws).unwrap_err()).await,
    );

    engine_errors(&mut got).await;

    let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let seen: Vec<&str> = got.keys().map(String::as_str).collect();
    let mut expected = all.clone();
    expected.sort_unstable();
    assert_eq!(seen, expected, "every code has exactly one representative");
    for (code, (status, body)) in &got {
        let c = ErrorCode::ALL.iter().find(|c| c.as_str() == code).unwrap();
        assert!(
            c.status().as_u16() == *status
                || c.other_statuses().iter().any(|s| s.as_u16() == *status),
            "{code} sent with undocumented status {status}"
        );
        insta::assert_snapshot!(format!("error_{code}"), shape(*status, body));
    }
}

/// The metric names a fresh binary exposes after a little traffic (names
/// only, sorted, so values do not churn the snapshot). Every name is in
/// `telemetry::METRICS`.
#[actix_web::test]
async fn metric_names_exposed_at_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/m.db", dir.path().display());
    let server = crate::helpers::spawn_server(&[
        ("SWARMWISE__DATABASE__URL", &url),
        ("SWARMWISE__AUTH__ADMIN_KEY", "admin-metrics"),
        ("SWARMWISE__TELEMETRY__STATS_REFRESH_SECS", "1"),
    ]);
    let address = server.address.clone();
    let c = reqwest::Client::new();
    let ws: Value = c
        .post(format!("{address}/api/v1/workspaces"))
        .bearer_auth("admin-metrics")
        .json(&json!({"name": "m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap();
    let res = c
        .post(format!("{address}/api/v1/agents"))
        .bearer_auth(key)
        .json(&json!({"id": "a1", "name": "A1", "kind": "external"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let rec: Value = c
        .post(format!("{address}/api/v1/recommendations"))
        .bearer_auth(key)
        .json(
            &json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w",
                      "recommendation_type": "t", "content": {}, "confidence": 0.5}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Reading it waits for its write: the flush metrics exist afterwards.
    let id = rec["id"].as_str().unwrap();
    let res = c
        .get(format!("{address}/api/v1/recommendations/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = c
        .post(format!("{address}/api/v1/workflows/w/outcome"))
        .bearer_auth(key)
        .json(&json!({"overall_quality_score": 0.9}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The trust scorer loads and folds the outcome on its own time (a
    // loaded machine showed the scrape before it), and the stats refresh
    // (every second here) reads the folded trust: wait for both, and for
    // the SQLite checkpointer's first tick.
    let text = crate::helpers::poll_until("the trust metrics", || async {
        let text = c
            .get(format!("{address}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("swarmwise_trust_updates_total")
            && text.contains("swarmwise_trust_reload_seconds")
            && text.contains("swarmwise_sqlite_checkpoint_seconds")
            && text.contains("swarmwise_agent_trust_ratio{")
        {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    let mut names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(!names.is_empty(), "no metrics in {text}");
    for n in &names {
        assert!(
            swarmwise::telemetry::METRICS.iter().any(|m| m.name == *n),
            "{n} is exposed but not described in telemetry::METRICS"
        );
    }
    insta::assert_snapshot!("metric_names", names.join("\n"));
    drop(server);
}
