//! A bad row never blocks the others (issue 8, item 3): text the stores
//! cannot hold is refused at the door; a row that still fails its batch is
//! isolated and dead-lettered; every wait on the writer has a deadline.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, Row};
use swarmwise::config::DatabaseSettings;
use swarmwise::error::ApiError;
use swarmwise::store::{connect, SqliteStore};
use swarmwise_actors::domain::{
    to_micros, AgentId, Recommendation, RecommendationStatus, WorkspaceId,
};
use swarmwise_actors::ports::{DeadLetter, StoreError};
use swarmwise_actors::tracker::WriteMode;
use swarmwise_actors::EngineError;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{
    assert_error, fresh_database, postgres_available, spawn_app, spawn_app_with, Backend, TestApp,
};

/// Every wait in these tests fails after this long.
const WAIT: Duration = Duration::from_secs(30);

fn good() -> Value {
    json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "wf", "recommendation_type": "strategy",
           "content": {"decision": "go"}, "confidence": 0.5, "reasoning": "because"})
}

fn with(field: &str, value: Value) -> Value {
    let mut v = good();
    v[field] = value;
    v
}

fn rec(ws: WorkspaceId, agent: &str, workflow: &str, reasoning: &str) -> Recommendation {
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: ws,
        agent_id: AgentId::parse("agent_id", agent).unwrap(),
        agent_name: format!("Agent {agent}"),
        correlation_id: "corr".into(),
        workflow_id: workflow.into(),
        recommendation_type: "strategy".into(),
        content: json!({"decision": "go"}),
        confidence: 0.5,
        reasoning: Some(reasoning.into()),
        latency_ms: Some(10),
        deadline_ms: None,
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now()),
        evaluated_at: None,
        usage: Default::default(),
    }
}

async fn workspace_with_agent(app: &TestApp) -> (WorkspaceId, String) {
    let (id, key) = app.workspace("A").await;
    app.agent(&key, "a1").await;
    (WorkspaceId(Uuid::parse_str(&id).unwrap()), key)
}

/// Rows of `table` in the app's PostgreSQL database (as the owner, who is
/// not subject to row-level security).
async fn pg_count(app: &TestApp, table: &str) -> i64 {
    let mut c = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

/// Holds `SHARE` on agent_recommendations: reads go on, inserts wait until
/// the returned connection rolls back.
async fn block_inserts(app: &TestApp) -> PgConnection {
    let mut c = PgConnection::connect(&app.database_url).await.unwrap();
    c.execute("BEGIN").await.unwrap();
    c.execute("LOCK TABLE agent_recommendations IN SHARE MODE")
        .await
        .unwrap();
    c
}

/// Polls `cond` until it holds; fails the test after [`WAIT`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

async fn nul_is_refused_in_every_text_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = workspace_with_agent(&app).await;
    let existing = app.track(&k, "a1", "wf-existing", "strategy", 0.5).await;
    let track = "/api/v1/recommendations";
    let ue = StatusCode::UNPROCESSABLE_ENTITY;

    for field in [
        "correlation_id",
        "workflow_id",
        "recommendation_type",
        "agent_name",
        "reasoning",
    ] {
        let body = assert_error(
            app.post(&k, track, &with(field, json!("bad\u{0}text")))
                .await,
            ue,
            "invalid_field",
            Some(field),
        )
        .await;
        assert!(body["message"].as_str().unwrap().contains("NUL"), "{body}");
    }
    assert_error(
        app.post(&k, track, &with("agent_id", json!("a\u{0}1")))
            .await,
        ue,
        "invalid_field",
        Some("agent_id"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("content", json!("x\u{0}"))).await,
        ue,
        "invalid_field",
        Some("content"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            track,
            &with("content", json!({"steps": ["ok", "n\u{0}"]})),
        )
        .await,
        ue,
        "invalid_field",
        Some("content.steps[1]"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("content", json!({"k\u{0}": 1})))
            .await,
        ue,
        "invalid_field",
        Some("content"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/recommendations/batch",
            &json!({"items": [good(), with("reasoning", json!("\u{0}"))]}),
        )
        .await,
        ue,
        "invalid_field",
        Some("items[1].reasoning"),
    )
    .await;
    // Lone surrogates never parse (serde_json refuses them).
    assert_error(
        app.post_raw(
            &k,
            track,
            r#"{"agent_id": "a1", "correlation_id": "\ud800", "workflow_id": "wf", "recommendation_type": "s", "content": {}, "confidence": 0.5}"#,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        None,
    )
    .await;

    // Feedback and outcomes.
    assert_error(
        app.post(
            &k,
            &format!("/api/v1/recommendations/{existing}/feedback"),
            &json!({"status": "approved", "comment": "fine\u{0}"}),
        )
        .await,
        ue,
        "invalid_field",
        Some("comment"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/workflows/wf-existing/outcome",
            &json!({"overall_quality_score": 80, "feedback": "\u{0}"}),
        )
        .await,
        ue,
        "invalid_field",
        Some("feedback"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/workflows/wf%00x/outcome",
            &json!({"overall_quality_score": 80}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
        Some("workflow_id"),
    )
    .await;

    // Agents, workspaces, runs.
    assert_error(
        app.post(
            &k,
            "/api/v1/agents",
            &json!({"id": "a2", "name": "A\u{0}", "kind": "external"}),
        )
        .await,
        ue,
        "invalid_field",
        Some("name"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/agents",
            &json!({"id": "a2", "name": "A2", "kind": "external", "config": {"note": "\u{0}"}}),
        )
        .await,
        ue,
        "invalid_field",
        Some("config.note"),
    )
    .await;
    assert_error(
        app.post(
            &app.admin_key,
            "/api/v1/workspaces",
            &json!({"name": "W\u{0}"}),
        )
        .await,
        ue,
        "invalid_field",
        Some("name"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/workflows/runs",
            &json!({"workflow": "quick_strategy", "input": {"q": "\u{0}"}}),
        )
        .await,
        ue,
        "invalid_field",
        Some("input.q"),
    )
    .await;

    // Filters: a malformed query, not a database error.
    for field in ["workflow_id", "recommendation_type", "agent_id"] {
        assert_error(
            app.get(&k, &format!("/api/v1/recommendations?{field}=%00"))
                .await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some(field),
        )
        .await;
    }

    // Nothing was tracked or registered, and the service is fine.
    let page = app.json(&k, "/api/v1/recommendations").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["id"], existing.as_str());
    let agents = app.json(&k, "/api/v1/agents").await;
    assert_eq!(
        agents["items"].as_array().map(Vec::len),
        Some(1),
        "{agents}"
    );
    app.stop().await.unwrap();
}
both_backends!(nul_is_refused_in_every_text_field);

/// Below the API (as if a row slipped through): 1,000 good rows and one with
/// a NUL in one batch. The 1,000 land, the bad one is dead-lettered, and
/// tracking goes on.
#[actix_web::test]
async fn postgres_a_bad_row_in_a_batch_is_dead_lettered_and_the_rest_land() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app(Backend::Postgres).await;
    let (ws, k) = workspace_with_agent(&app).await;
    let mut recs: Vec<Recommendation> = (0..1000)
        .map(|i| rec(ws, "a1", &format!("wf-{}", i % 10), "fine"))
        .collect();
    let bad = rec(ws, "a1", "wf-bad", "poison \u{0} here");
    let bad_id = bad.id;
    recs.insert(500, bad);
    // One `Track` of 1,001 rows: past batch_size, so one batch for the writer.
    let ids = app.engine.track(recs).await.unwrap();
    assert_eq!(ids.len(), 1001);
    tokio::time::timeout(WAIT, app.engine.flush())
        .await
        .expect("the writer makes progress")
        .unwrap();

    assert_eq!(pg_count(&app, "agent_recommendations").await, 1000);
    let mut c = PgConnection::connect(&app.database_url).await.unwrap();
    let rows = sqlx::query(
        "SELECT recommendation_id, workspace_id, agent_id, error, payload FROM tracker_dead_letters",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<Uuid, _>("recommendation_id"), bad_id);
    assert_eq!(row.get::<Uuid, _>("workspace_id"), ws.0);
    assert_eq!(row.get::<String, _>("agent_id"), "a1");
    let error: String = row.get("error");
    assert!(!error.is_empty());
    let payload: Value = serde_json::from_str(&row.get::<String, _>("payload")).unwrap();
    assert_eq!(payload["reasoning"], "poison \u{0} here");
    assert_eq!(payload["id"], bad_id.to_string());

    // The list endpoint answers; the bad row is not there.
    let page = app
        .json(&k, "/api/v1/recommendations?limit=500&workflow_id=wf-3")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 100);
    assert_error(
        app.get(&k, &format!("/api/v1/recommendations/{bad_id}"))
            .await,
        StatusCode::NOT_FOUND,
        "recommendation_not_found",
        None,
    )
    .await;

    // Tracking goes on.
    let next = app.track(&k, "a1", "wf-after", "strategy", 0.7).await;
    let page = app
        .json(&k, "/api/v1/recommendations?workflow_id=wf-after")
        .await;
    assert_eq!(page["items"][0]["id"], next.as_str());

    // Counted, and reported.
    let ready = app.json(&k, "/readyz").await;
    assert_eq!(ready["writer"]["dead_letters"], 1, "{ready}");
    assert_eq!(ready["writer"]["stalled"], false, "{ready}");
    let metrics = app.get(&k, "/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("swarmwise_tracker_dead_letters_total ")),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

/// Durable mode: the caller of the bad row gets an error; the callers whose
/// rows shared its batch get their ids.
#[actix_web::test]
async fn postgres_durable_bad_row_fails_only_its_caller() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.mode = WriteMode::Durable;
    })
    .await;
    let (ws, k) = workspace_with_agent(&app).await;

    // Hold inserts so that every caller below queues for the same batch.
    let lock = block_inserts(&app).await;
    let first = {
        let engine = app.engine.clone();
        let r = rec(ws, "a1", "wf-d", "first");
        actix_web::rt::spawn(async move { engine.track(vec![r]).await })
    };
    let mut http = Vec::new();
    for i in 0..2 {
        let req = app
            .client
            .post(app.url("/api/v1/recommendations"))
            .bearer_auth(&k)
            .json(&with("workflow_id", json!(format!("wf-d{i}"))));
        http.push(actix_web::rt::spawn(async move { req.send().await }));
    }
    let bad = {
        let engine = app.engine.clone();
        let r = rec(ws, "a1", "wf-d", "bad \u{0}");
        actix_web::rt::spawn(async move { engine.track(vec![r]).await })
    };
    let engine = app.engine.clone();
    wait_until("4 rows wait for the writer", || {
        engine.pending_writes() == 4
    })
    .await;
    drop(lock); // closes the connection: the lock's transaction rolls back

    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(first.unwrap().len(), 1);
    for h in http {
        let res = tokio::time::timeout(WAIT, h)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let err = tokio::time::timeout(WAIT, bad)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::WriteRefused { data: true, .. }),
        "{err:?}"
    );
    // Over HTTP that is a 422 with its own code, not a 503 to retry.
    let api = ApiError::from(err);
    assert_eq!(api.status.as_u16(), 422);
    assert_eq!(api.code.as_str(), "write_refused");

    assert_eq!(pg_count(&app, "agent_recommendations").await, 3);
    assert_eq!(pg_count(&app, "tracker_dead_letters").await, 1);
    assert_eq!(app.engine.pending_writes(), 0);
    app.stop().await.unwrap();
}

/// A writer that cannot commit: reads give up with 503 + Retry-After,
/// /readyz says so, and a stop ends within its deadline, saying how many
/// rows it could not write.
#[actix_web::test]
async fn postgres_a_stuck_writer_bounds_reads_readiness_and_shutdown() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.read_flush_timeout_ms = 200;
        s.tracking.stalled_after_ms = 0;
        s.server.shutdown_timeout_secs = 1;
    })
    .await;
    let (_, k) = workspace_with_agent(&app).await;
    let lock = block_inserts(&app).await;
    app.track(&k, "a1", "wf-stuck", "strategy", 0.5).await;

    let res = app.get(&k, "/api/v1/recommendations").await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "writes_pending", None).await;
    assert!(retry_after.is_some(), "no Retry-After: {body}");
    assert_eq!(body["details"]["pending_writes"], 1, "{body}");

    let readyz = app.url("/readyz");
    let report = tokio::time::timeout(WAIT, async {
        loop {
            let res = app.client.get(&readyz).send().await.unwrap();
            if res.status() == StatusCode::SERVICE_UNAVAILABLE {
                return res.json::<Value>().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("/readyz reports the stalled writer");
    assert_eq!(report["writer"]["stalled"], true, "{report}");
    assert_eq!(report["database"]["ok"], true, "{report}");

    let stopped = tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("shutdown ends despite the stuck writer");
    let err = stopped.expect_err("a stop that could not write says so");
    assert!(err.to_string().contains("1 acknowledged"), "{err:#}");
    drop(lock);
}

/// Both stores: dead letters are stored (NUL kept as an escape in the
/// payload), and PostgreSQL's refusal of a NUL is classified as the data's
/// fault, not a transient error.
async fn store_keeps_dead_letters(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let store = connect(&DatabaseSettings {
        url,
        ..DatabaseSettings::default()
    })
    .await
    .unwrap();
    let ws = WorkspaceId(Uuid::now_v7());
    let (_, key) = swarmwise::auth::generate_key("swk_");
    store
        .create_workspace(ws, "A", &key, to_micros(Utc::now()))
        .await
        .unwrap();
    let bad = rec(ws, "a1", "wf", "nul \u{0}");
    match store
        .insert_recommendations(std::slice::from_ref(&bad))
        .await
    {
        Err(StoreError::Rejected(m)) => assert!(!m.is_empty()),
        // SQLite stores NUL in TEXT; the API refuses it on both backends anyway.
        Ok(()) if backend == Backend::Sqlite => {}
        other => panic!("{backend:?}: {other:?}"),
    }
    let letter = DeadLetter::of(&bad, "refused: \u{0}", to_micros(Utc::now()));
    assert!(!letter.payload.contains('\u{0}'));
    assert!(!letter.error.contains('\u{0}'));
    store
        .insert_dead_letters(&[
            letter.clone(),
            DeadLetter::of(&rec(ws, "a1", "wf", "x"), "e", to_micros(Utc::now())),
        ])
        .await
        .unwrap();
    store.insert_dead_letters(&[]).await.unwrap();
}
both_backends!(store_keeps_dead_letters);

/// `durable` mode on SQLite commits with synchronous = FULL; write-behind
/// keeps NORMAL (WAL).
#[actix_web::test]
async fn sqlite_durable_mode_syncs_fully() {
    for (full, expected) in [(true, 2i64), (false, 1)] {
        let (url, _dir) = fresh_database(Backend::Sqlite).await;
        let settings = DatabaseSettings {
            url,
            ..DatabaseSettings::default()
        };
        let store = SqliteStore::connect_with(&settings, full).await.unwrap();
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(sync, expected, "full_sync = {full}");
    }
}

/// A transient failure (the writer's connection is killed mid-insert) is
/// retried, not dead-lettered: the row lands once the database is back.
#[actix_web::test]
async fn postgres_a_lost_connection_is_retried_not_dead_lettered() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.retry_backoff_initial_ms = 10;
        s.tracking.retry_backoff_max_ms = 50;
    })
    .await;
    let (_, k) = workspace_with_agent(&app).await;
    let lock = block_inserts(&app).await;
    let id = app.track(&k, "a1", "wf-retry", "strategy", 0.5).await;

    // Kill the writer's connection while it waits on the lock.
    let mut admin = PgConnection::connect(&app.database_url).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            let killed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock') t",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if killed > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the writer waits on the lock");
    let readyz = app.url("/readyz");
    let report = tokio::time::timeout(WAIT, async {
        loop {
            let v: Value = app
                .client
                .get(&readyz)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if !v["writer"]["last_error"].is_null() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the writer reports the transient error while it retries");
    assert_eq!(report["writer"]["dead_letters"], 0, "{report}");

    drop(lock);
    tokio::time::timeout(WAIT, app.engine.flush())
        .await
        .expect("the retry commits")
        .unwrap();
    let page = app.json(&k, "/api/v1/recommendations").await;
    assert_eq!(page["items"][0]["id"], id.as_str(), "{page}");
    assert_eq!(pg_count(&app, "tracker_dead_letters").await, 0);
    let ready = app.json(&k, "/readyz").await;
    assert!(ready["writer"]["last_error"].is_null(), "{ready}");
    app.stop().await.unwrap();
}

/// Durable mode: a transient failure is answered at once with 503 (the
/// caller was not acknowledged and may retry); nothing is stored or
/// dead-lettered.
#[actix_web::test]
async fn postgres_durable_transient_failure_is_a_503() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.mode = WriteMode::Durable;
    })
    .await;
    let (_, k) = workspace_with_agent(&app).await;
    let lock = block_inserts(&app).await;
    let req = app
        .client
        .post(app.url("/api/v1/recommendations"))
        .bearer_auth(&k)
        .json(&good());
    let call = actix_web::rt::spawn(async move { req.send().await });
    let mut admin = PgConnection::connect(&app.database_url).await.unwrap();
    tokio::time::timeout(WAIT, async {
        loop {
            let killed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock') t",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            if killed > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the writer waits on the lock");
    let res = tokio::time::timeout(WAIT, call)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_error(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        None,
    )
    .await;
    drop(lock);
    assert_eq!(pg_count(&app, "agent_recommendations").await, 0);
    assert_eq!(pg_count(&app, "tracker_dead_letters").await, 0);
    assert_eq!(app.engine.pending_writes(), 0);
    app.stop().await.unwrap();
}
