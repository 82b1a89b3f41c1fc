//! The `Idempotency-Key` header (docs/idempotency.md): a repeated create
//! answers with the first result and never runs twice; a key belongs to one
//! request of one workspace on one endpoint; a claim of a dead node lapses;
//! a repeat on another node (same database) replays.

use actix_web::http::Method;
use chrono::Utc;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use swarmwise::idempotency::{fingerprint, HEADER, REPLAYED_HEADER};
use swarmwise::store::{ClaimOutcome, IdempotencyClaim, IdempotencyScope, StoredResponse};
use swarmwise_actors::domain::WorkspaceId;
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{
    assert_error, postgres_available, skipped, spawn_app, spawn_app_with, spawn_beside, Backend,
    TestApp,
};

fn track_body(agent: &str, workflow: &str) -> Value {
    json!({
        "agent_id": agent, "correlation_id": "c1", "workflow_id": workflow,
        "recommendation_type": "strategy", "content": {"go": true}, "confidence": 0.8
    })
}

async fn post_with_key(app: &TestApp, key: &str, path: &str, idem: &str, body: &Value) -> Response {
    app.client
        .post(app.url(path))
        .bearer_auth(key)
        .header(HEADER, idem)
        .json(body)
        .send()
        .await
        .expect("request")
}

fn replayed(res: &Response) -> bool {
    res.headers()
        .get(REPLAYED_HEADER)
        .is_some_and(|v| v == "true")
}

/// Status, replayed?, JSON body.
async fn answer(res: Response) -> (StatusCode, bool, Value) {
    let status = res.status();
    let r = replayed(&res);
    let body = res.json().await.expect("json body");
    (status, r, body)
}

async fn count_recommendations(app: &TestApp, key: &str) -> usize {
    app.json(key, "/api/v1/recommendations?limit=500").await["items"]
        .as_array()
        .unwrap()
        .len()
}

fn ws_id(id: &str) -> WorkspaceId {
    WorkspaceId(Uuid::parse_str(id).unwrap())
}

async fn repeats_replay_the_first_answer_and_count_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = app.workspace("idem").await;
    app.agent(&k, "a1").await;
    let body = track_body("a1", "wf1");

    let (s1, r1, first) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "k-1", &body).await).await;
    let (s2, r2, second) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "k-1", &body).await).await;
    assert_eq!((s1, r1), (StatusCode::CREATED, false), "{first}");
    assert_eq!((s2, r2), (StatusCode::CREATED, true), "{second}");
    assert_eq!(first["id"], second["id"]);
    // The same JSON with its keys in another order is the same request.
    let reordered = r#"{"confidence":0.8,"content":{"go":true},"recommendation_type":"strategy","workflow_id":"wf1","correlation_id":"c1","agent_id":"a1"}"#;
    let res = app
        .client
        .post(app.url("/api/v1/recommendations"))
        .bearer_auth(&k)
        .header(HEADER, "\"k-1\"")
        .header("Content-Type", "application/json")
        .body(reordered)
        .send()
        .await
        .unwrap();
    let (s3, r3, third) = answer(res).await;
    assert_eq!((s3, r3), (StatusCode::CREATED, true), "{third}");
    assert_eq!(third["id"], first["id"]);

    // A batch: the same ids, in order.
    let batch = json!({"items": [track_body("a1", "wf1"), track_body("a1", "wf1")]});
    let (_, _, b1) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations/batch", "k-2", &batch).await).await;
    let (s, r, b2) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations/batch", "k-2", &batch).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, true));
    assert_eq!(b1["ids"], b2["ids"]);
    assert_eq!(b1["ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        count_recommendations(&app, &k).await,
        3,
        "one single, one batch of two"
    );

    // The outcome: the same counts, evaluated once; trust counts every
    // recommendation once (three samples, not six).
    let outcome = json!({"overall_quality_score": 90});
    let (s, r, o1) =
        answer(post_with_key(&app, &k, "/api/v1/workflows/wf1/outcome", "k-3", &outcome).await)
            .await;
    assert_eq!((s, r), (StatusCode::OK, false), "{o1}");
    let (s, r, o2) =
        answer(post_with_key(&app, &k, "/api/v1/workflows/wf1/outcome", "k-3", &outcome).await)
            .await;
    assert_eq!((s, r), (StatusCode::OK, true));
    assert_eq!(o1, o2);
    app.engine.trust_settled().await.unwrap();
    let card = app.json(&k, "/api/v1/learning/trust-scores/a1").await;
    assert_eq!(card["sample_count"], 3, "{card}");

    // Feedback: the same answer, applied once.
    let id = first["id"].as_str().unwrap();
    let fb = json!({"status": "rejected", "comment": "on reflection"});
    let path = format!("/api/v1/recommendations/{id}/feedback");
    let (s, r, f1) = answer(post_with_key(&app, &k, &path, "k-4", &fb).await).await;
    assert_eq!((s, r), (StatusCode::OK, false), "{f1}");
    let (s, r, f2) = answer(post_with_key(&app, &k, &path, "k-4", &fb).await).await;
    assert_eq!((s, r), (StatusCode::OK, true));
    assert_eq!(f1, f2);

    // A 4xx answer is the request's answer too: replayed, nothing created.
    let bad = json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "w",
        "recommendation_type": "t", "content": {}, "confidence": 2.0});
    let (s, r, e1) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "k-5", &bad).await).await;
    assert_eq!((s, r), (StatusCode::UNPROCESSABLE_ENTITY, false), "{e1}");
    let (s, r, e2) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "k-5", &bad).await).await;
    assert_eq!((s, r), (StatusCode::UNPROCESSABLE_ENTITY, true));
    assert_eq!(e1, e2);
    assert_eq!(count_recommendations(&app, &k).await, 3);
    app.stop().await.unwrap();
}
both_backends!(repeats_replay_the_first_answer_and_count_once);

async fn a_key_belongs_to_one_request_of_one_workspace(backend: Backend) {
    let app = spawn_app(backend).await;
    let (x_id, x) = app.workspace("x").await;
    let (_, y) = app.workspace("y").await;
    app.agent(&x, "a1").await;
    app.agent(&y, "a1").await;
    let body = track_body("a1", "wf");

    let (_, _, from_x) =
        answer(post_with_key(&app, &x, "/api/v1/recommendations", "shared", &body).await).await;
    // Workspace Y sends the same key and the same body: its own result, never X's.
    let (s, r, from_y) =
        answer(post_with_key(&app, &y, "/api/v1/recommendations", "shared", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, false), "{from_y}");
    assert_ne!(from_x["id"], from_y["id"]);
    let y_items = app.json(&y, "/api/v1/recommendations").await;
    assert_eq!(y_items["items"].as_array().unwrap().len(), 1);
    assert_eq!(y_items["items"][0]["id"], from_y["id"]);
    let (s, r, again) =
        answer(post_with_key(&app, &y, "/api/v1/recommendations", "shared", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, true));
    assert_eq!(again["id"], from_y["id"], "Y's repeat replays Y's answer");
    assert_eq!(count_recommendations(&app, &x).await, 1);

    // The same key on another endpoint is another record.
    let batch = json!({"items": [body.clone()]});
    let (s, r, b) =
        answer(post_with_key(&app, &x, "/api/v1/recommendations/batch", "shared", &batch).await)
            .await;
    assert_eq!((s, r), (StatusCode::CREATED, false), "{b}");

    // The same key with another body, or another path of the same route: 422, nothing runs.
    let other = track_body("a1", "another-workflow");
    let res = post_with_key(&app, &x, "/api/v1/recommendations", "shared", &other).await;
    assert!(!replayed(&res));
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        Some(HEADER),
    )
    .await;
    let fb = json!({"status": "approved"});
    let id = from_x["id"].as_str().unwrap();
    let res = post_with_key(
        &app,
        &x,
        &format!("/api/v1/recommendations/{id}/feedback"),
        "fb",
        &fb,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let other_id = b["ids"][0].as_str().unwrap();
    let res = post_with_key(
        &app,
        &x,
        &format!("/api/v1/recommendations/{other_id}/feedback"),
        "fb",
        &fb,
    )
    .await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        Some(HEADER),
    )
    .await;
    assert_eq!(count_recommendations(&app, &x).await, 2);

    // The admin key has a scope of its own: its key "shared" is not X's.
    let agent = json!({"id": "ops", "name": "Ops", "kind": "external"});
    let path = format!("/api/v1/workspaces/{x_id}/agents");
    let (s, r, a1) =
        answer(post_with_key(&app, &app.admin_key, &path, "shared", &agent).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, false), "{a1}");
    let (s, r, a2) =
        answer(post_with_key(&app, &app.admin_key, &path, "shared", &agent).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, true), "{a2}");
    assert_eq!(a1, a2);

    // PostgreSQL: the new table is held to row-level security like the rest.
    if let Some(check) = app.store.rls_check().await.unwrap() {
        assert!(check.enforced(), "{check:?}");
    }
    app.stop().await.unwrap();
}
both_backends!(a_key_belongs_to_one_request_of_one_workspace);

#[actix_web::test]
async fn malformed_keys_are_refused_and_change_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, k) = app.workspace("w").await;
    app.agent(&k, "a1").await;
    let body = track_body("a1", "wf");
    let long = "k".repeat(256);
    let cases: Vec<reqwest::header::HeaderValue> = vec![
        reqwest::header::HeaderValue::from_static(""),
        reqwest::header::HeaderValue::from_static("\"\""),
        reqwest::header::HeaderValue::from_str(&long).unwrap(),
        reqwest::header::HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        reqwest::header::HeaderValue::from_static("tab\there"),
    ];
    for value in cases {
        let res = app
            .client
            .post(app.url("/api/v1/recommendations"))
            .bearer_auth(&k)
            .header(HEADER, value.clone())
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = assert_error(
            res,
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            Some(HEADER),
        )
        .await;
        assert!(
            err["message"].as_str().unwrap().contains("printable ASCII"),
            "{value:?}: {err}"
        );
    }
    // Sent twice.
    let res = app
        .client
        .post(app.url("/api/v1/recommendations"))
        .bearer_auth(&k)
        .header(HEADER, "one")
        .header(HEADER, "two")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
        Some(HEADER),
    )
    .await;
    // 255 characters is a key.
    let res = post_with_key(&app, &k, "/api/v1/recommendations", &"k".repeat(255), &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(count_recommendations(&app, &k).await, 1);
    // Without a valid credential nothing is claimed: 401, and the key is
    // still free for the real request.
    let res = post_with_key(
        &app,
        "swk_invented",
        "/api/v1/recommendations",
        "late",
        &body,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = post_with_key(&app, &k, "/api/v1/recommendations", "late", &body).await;
    assert_eq!((res.status(), replayed(&res)), (StatusCode::CREATED, false));
    app.stop().await.unwrap();
}

async fn claims_in_progress_answer_409_and_lapsed_claims_free_the_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ws, k) = app.workspace("w").await;
    app.agent(&k, "a1").await;
    let body = track_body("a1", "wf");
    let bytes = serde_json::to_vec(&body).unwrap();
    let fp = fingerprint(&Method::POST, "/api/v1/recommendations", "", &bytes);
    let now = Utc::now();
    let claim = |key: &str, lease: chrono::Duration| IdempotencyClaim {
        scope: IdempotencyScope::Workspace(ws_id(&ws)),
        endpoint: "POST /api/v1/recommendations".into(),
        key: key.into(),
        fingerprint: fp.clone(),
        token: Uuid::now_v7(),
        node: "another-node".into(),
        now: now - chrono::Duration::seconds(60),
        lease_until: now + lease,
        expires_at: now + chrono::Duration::hours(1),
    };
    // Another node holds "busy" and runs it now: 409 with Retry-After, nothing runs.
    let busy = claim("busy", chrono::Duration::minutes(10));
    assert_eq!(
        app.store.claim_idempotency_key(&busy).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let res = post_with_key(&app, &k, "/api/v1/recommendations", "busy", &body).await;
    assert_eq!(res.headers().get("retry-after").unwrap(), "1");
    assert_error(
        res,
        StatusCode::CONFLICT,
        "idempotency_in_progress",
        Some(HEADER),
    )
    .await;
    // Another body under that key: 422, even while it runs.
    let res = post_with_key(
        &app,
        &k,
        "/api/v1/recommendations",
        "busy",
        &track_body("a1", "x"),
    )
    .await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        Some(HEADER),
    )
    .await;
    assert_eq!(count_recommendations(&app, &k).await, 0);
    // The other node finishes: the repeat gets its answer.
    let stored = StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: br#"{"id":"0190f000-0000-7000-8000-000000000000"}"#.to_vec(),
    };
    assert!(app
        .store
        .complete_idempotency_key(busy.scope, busy.token, &stored, Utc::now())
        .await
        .unwrap());
    let (s, r, v) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "busy", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, true));
    assert_eq!(v["id"], "0190f000-0000-7000-8000-000000000000");

    // A node that died holding "crashed" (its lease lapsed): the retry runs.
    let crashed = claim("crashed", chrono::Duration::seconds(-1));
    assert_eq!(
        app.store.claim_idempotency_key(&crashed).await.unwrap(),
        ClaimOutcome::Claimed
    );
    let (s, r, v1) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "crashed", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, false), "{v1}");
    let (_, r, v2) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "crashed", &body).await).await;
    assert!(r);
    assert_eq!(v1["id"], v2["id"]);
    // The dead node's fencing token no longer completes anything.
    assert!(!app
        .store
        .complete_idempotency_key(crashed.scope, crashed.token, &stored, Utc::now())
        .await
        .unwrap());
    assert_eq!(count_recommendations(&app, &k).await, 1);

    // Expired records are purged; a claim still running is kept however old.
    let mut old = claim("old", chrono::Duration::seconds(-1));
    old.expires_at = now - chrono::Duration::seconds(1);
    app.store.claim_idempotency_key(&old).await.unwrap();
    app.store
        .complete_idempotency_key(old.scope, old.token, &stored, Utc::now())
        .await
        .unwrap();
    let mut running = claim("running", chrono::Duration::minutes(10));
    running.expires_at = now - chrono::Duration::seconds(1);
    app.store.claim_idempotency_key(&running).await.unwrap();
    assert_eq!(
        app.store.purge_idempotency_keys(Utc::now()).await.unwrap(),
        1
    );
    assert!(matches!(
        app.store
            .claim_idempotency_key(&claim("running", chrono::Duration::minutes(1)))
            .await
            .unwrap(),
        ClaimOutcome::InProgress {
            same_request: true,
            ..
        }
    ));
    // An expired record frees its key: a new request under it runs.
    let (s, r, _) =
        answer(post_with_key(&app, &k, "/api/v1/recommendations", "old", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, false));
    app.stop().await.unwrap();
}
both_backends!(claims_in_progress_answer_409_and_lapsed_claims_free_the_key);

async fn racing_duplicates_run_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = app.workspace("w").await;
    app.agent(&k, "a1").await;
    let body = track_body("a1", "wf");
    let sends = (0..8).map(|_| post_with_key(&app, &k, "/api/v1/recommendations", "race", &body));
    let answers = futures_util::future::join_all(sends).await;
    let mut executed = 0;
    let mut ids = std::collections::BTreeSet::new();
    for res in answers {
        match res.status() {
            StatusCode::CREATED => {
                if !replayed(&res) {
                    executed += 1;
                }
                let v: Value = res.json().await.unwrap();
                ids.insert(v["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_error(
                    res,
                    StatusCode::CONFLICT,
                    "idempotency_in_progress",
                    Some(HEADER),
                )
                .await;
            }
            other => panic!("unexpected {other}: {}", res.text().await.unwrap()),
        }
    }
    assert_eq!(executed, 1, "exactly one of the racing requests ran");
    assert_eq!(ids.len(), 1, "every 201 carries the same id: {ids:?}");
    assert_eq!(count_recommendations(&app, &k).await, 1);
    app.stop().await.unwrap();
}
both_backends!(racing_duplicates_run_once);

async fn workflow_runs_start_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("solo.toml"),
        "name = \"solo\"\n[[stages]]\nname = \"only\"\nagents = [\"s1\"]\nrecommendation_type = \"strategy\"\ntimeout_ms = 10000\n",
    )
    .unwrap();
    let app = spawn_app_with(backend, |s| {
        s.workflows.dir = dir.path().display().to_string()
    })
    .await;
    let (_, k) = app.workspace("w").await;
    let res = app
        .post(
            &k,
            "/api/v1/agents",
            &json!({"id": "s1", "name": "S1", "kind": "simulated", "config": {"seed": 1}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // wait: false → 202 {run_id}; the repeat names the same run.
    let start = json!({"workflow": "solo", "input": {"goal": "x"}});
    let (s, r, first) =
        answer(post_with_key(&app, &k, "/api/v1/workflows/runs", "run-1", &start).await).await;
    assert_eq!((s, r), (StatusCode::ACCEPTED, false), "{first}");
    let (s, r, again) =
        answer(post_with_key(&app, &k, "/api/v1/workflows/runs", "run-1", &start).await).await;
    assert_eq!((s, r), (StatusCode::ACCEPTED, true));
    assert_eq!(first["run_id"], again["run_id"]);

    // wait: true → 200 with the finished run; the repeat is that run.
    let waited = json!({"workflow": "solo", "input": {"goal": "y"}, "wait": true});
    let (s, r, run) =
        answer(post_with_key(&app, &k, "/api/v1/workflows/runs", "run-2", &waited).await).await;
    assert_eq!((s, r), (StatusCode::OK, false), "{run}");
    let (s, r, same) =
        answer(post_with_key(&app, &k, "/api/v1/workflows/runs", "run-2", &waited).await).await;
    assert_eq!((s, r), (StatusCode::OK, true));
    assert_eq!(run["id"], same["id"]);
    assert_ne!(run["id"], first["run_id"]);

    let runs = app.json(&k, "/api/v1/workflows/runs").await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 2, "{runs}");
    app.stop().await.unwrap();
}
both_backends!(workflow_runs_start_once);

/// Two nodes on one PostgreSQL database: a repeat sent to the other node
/// replays the first node's answer.
#[actix_web::test]
async fn a_repeat_on_another_node_replays() {
    if !postgres_available().await {
        skipped("idempotency::a_repeat_on_another_node_replays");
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_beside(&a, |_| {}).await;
    let (_, k) = a.workspace("w").await;
    a.agent(&k, "a1").await;
    let body = track_body("a1", "wf");
    let (s, r, first) =
        answer(post_with_key(&a, &k, "/api/v1/recommendations", "k", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, false));
    let (s, r, second) =
        answer(post_with_key(&b, &k, "/api/v1/recommendations", "k", &body).await).await;
    assert_eq!((s, r), (StatusCode::CREATED, true), "{second}");
    assert_eq!(first["id"], second["id"]);
    // Read through A: in write_behind mode B's read flushes only B's own
    // pending writes, and A's row may still be in A's buffer.
    assert_eq!(count_recommendations(&a, &k).await, 1);
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[actix_web::test]
async fn the_openapi_document_shows_the_header_on_every_covered_create() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let has_header = |path: &str| {
        doc["paths"][path]["post"]["parameters"]
            .as_array()
            .is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == HEADER && p["in"] == "header")
            })
    };
    for path in [
        "/api/v1/recommendations",
        "/api/v1/recommendations/batch",
        "/api/v1/recommendations/{id}/feedback",
        "/api/v1/workflows/{workflow_id}/outcome",
        "/api/v1/workflows/runs",
        "/api/v1/agents",
        "/api/v1/alerts/silences",
        "/api/v1/workspaces/{workspace_id}/agents",
    ] {
        assert!(has_header(path), "{path} lacks {HEADER}");
        assert!(
            !doc["paths"][path]["post"]["responses"]["409"].is_null(),
            "{path}"
        );
    }
    // Answers carrying a new API key are never stored, so never replayed.
    assert!(!has_header("/api/v1/workspaces"));
    assert!(!has_header("/api/v1/workspaces/{workspace_id}/api-keys"));
    app.stop().await.unwrap();
}
