//! Bad input gets a clear error (status, code, field) and changes nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app_with, Backend};

fn good() -> Value {
    json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": "wf", "recommendation_type": "strategy",
           "content": {"decision": "go"}, "confidence": 0.5})
}

fn with(field: &str, value: Value) -> Value {
    let mut v = good();
    v[field] = value;
    v
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.limits.max_content_bytes = 1024;
        s.limits.max_batch_items = 5;
    })
    .await;
    let (_, k) = app.workspace("A").await;
    app.agent(&k, "a1").await;
    let existing = app.track(&k, "a1", "wf-existing", "strategy", 0.5).await;
    let track = "/api/v1/recommendations";
    let ue = StatusCode::UNPROCESSABLE_ENTITY;

    assert_error(
        app.post(&k, track, &with("confidence", json!(1.5))).await,
        ue,
        "invalid_field",
        Some("confidence"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("confidence", json!(-0.01))).await,
        ue,
        "invalid_field",
        Some("confidence"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("confidence", json!("high")))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        Some("confidence"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("agent_id", json!("ghost"))).await,
        ue,
        "unknown_agent",
        Some("agent_id"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("agent_id", json!("bad id!")))
            .await,
        ue,
        "invalid_field",
        Some("agent_id"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("workflow_id", json!(""))).await,
        ue,
        "invalid_field",
        Some("workflow_id"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("latency_ms", json!(-5))).await,
        ue,
        "invalid_field",
        Some("latency_ms"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("content", json!("x".repeat(2000))))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "content_too_large",
        Some("content"),
    )
    .await;
    assert_error(
        app.post(&k, track, &with("surprise", json!(1))).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        None,
    )
    .await;
    let mut missing = good();
    missing.as_object_mut().unwrap().remove("confidence");
    let body = assert_error(
        app.post(&k, track, &missing).await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        None,
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("confidence"),
        "{body}"
    );
    assert_error(
        app.post_raw(&k, track, "{\"agent_id\": ").await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        None,
    )
    .await;
    let res = app
        .client
        .post(app.url(track))
        .bearer_auth(&k)
        .header("Content-Type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        None,
    )
    .await;

    // A batch is all or nothing; the error names the item.
    let batch = json!({"items": [good(), with("confidence", json!(7))]});
    assert_error(
        app.post(&k, "/api/v1/recommendations/batch", &batch).await,
        ue,
        "invalid_field",
        Some("items[1].confidence"),
    )
    .await;
    let big = json!({"items": vec![good(); 6]});
    assert_error(
        app.post(&k, "/api/v1/recommendations/batch", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "batch_too_large",
        Some("items"),
    )
    .await;
    assert_error(
        app.post(&k, "/api/v1/recommendations/batch", &json!({"items": []}))
            .await,
        ue,
        "invalid_field",
        Some("items"),
    )
    .await;

    // Outcomes and feedback.
    let outcome = "/api/v1/workflows/wf-existing/outcome";
    assert_error(
        app.post(&k, outcome, &json!({"overall_quality_score": 101}))
            .await,
        ue,
        "invalid_field",
        Some("overall_quality_score"),
    )
    .await;
    let v = json!({"overall_quality_score": 80, "verdicts": [{"recommendation_id": existing, "status": "maybe"}]});
    assert_error(
        app.post(&k, outcome, &v).await,
        ue,
        "invalid_field",
        Some("verdicts[0].status"),
    )
    .await;
    let v = json!({"overall_quality_score": 80, "verdicts": [{"recommendation_id": existing, "status": "approved", "quality": -1}]});
    assert_error(
        app.post(&k, outcome, &v).await,
        ue,
        "invalid_field",
        Some("verdicts[0].quality"),
    )
    .await;
    let v = json!({"overall_quality_score": 80, "verdicts": [{"recommendation_id": uuid::Uuid::now_v7(), "status": "approved"}]});
    assert_error(
        app.post(&k, outcome, &v).await,
        ue,
        "invalid_field",
        Some("verdicts[0].recommendation_id"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/workflows/nope/outcome",
            &json!({"overall_quality_score": 80}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "workflow_not_found",
        None,
    )
    .await;
    let fb = format!("/api/v1/recommendations/{existing}/feedback");
    assert_error(
        app.post(&k, &fb, &json!({"status": "great"})).await,
        ue,
        "invalid_field",
        Some("status"),
    )
    .await;
    assert_error(
        app.post(&k, &fb, &json!({"status": "approved", "quality": 300}))
            .await,
        ue,
        "invalid_field",
        Some("quality"),
    )
    .await;
    assert_error(
        app.post(
            &k,
            "/api/v1/recommendations/not-a-uuid/feedback",
            &json!({"status": "approved"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("id"),
    )
    .await;
    let unknown = format!("/api/v1/recommendations/{}/feedback", uuid::Uuid::now_v7());
    assert_error(
        app.post(&k, &unknown, &json!({"status": "approved"})).await,
        StatusCode::NOT_FOUND,
        "recommendation_not_found",
        None,
    )
    .await;

    // Queries and agents.
    assert_error(
        app.get(&k, "/api/v1/recommendations?limit=0").await,
        ue,
        "invalid_field",
        Some("limit"),
    )
    .await;
    assert_error(
        app.get(&k, "/api/v1/recommendations?status=weird").await,
        ue,
        "invalid_field",
        Some("status"),
    )
    .await;
    assert_error(
        app.get(&k, "/api/v1/recommendations?cursor=zzz").await,
        ue,
        "invalid_field",
        Some("cursor"),
    )
    .await;
    assert_error(
        app.get(&k, "/api/v1/recommendations?limit=abc").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
        Some("limit"),
    )
    .await;
    // Every list endpoint names a bad query parameter (they parse with
    // extract::Query, not web::Query, whose error named nothing).
    for (path, field) in [
        ("/api/v1/agents?limit=many", "limit"),
        ("/api/v1/learning/patterns?limit=-3", "limit"),
        ("/api/v1/learning/cycles?limit=x", "limit"),
        ("/api/v1/workflows/runs?limit=1.5", "limit"),
        ("/api/v1/learning/agents/a1/series?limit=x", "limit"),
    ] {
        assert_error(
            app.get(&k, path).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            Some(field),
        )
        .await;
    }
    let agents = "/api/v1/agents";
    assert_error(
        app.post(
            &k,
            agents,
            &json!({"id": "a1", "name": "dup", "kind": "external"}),
        )
        .await,
        StatusCode::CONFLICT,
        "agent_exists",
        None,
    )
    .await;
    assert_error(
        app.post(
            &k,
            agents,
            &json!({"id": "a9", "name": "x", "kind": "telepathy"}),
        )
        .await,
        ue,
        "invalid_field",
        Some("kind"),
    )
    .await;
    assert_error(
        app.patch(&k, "/api/v1/agents/a1", &json!({"enabled": "yes"}))
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
        Some("enabled"),
    )
    .await;
    assert_error(
        app.get(&k, "/api/v1/nowhere").await,
        StatusCode::NOT_FOUND,
        "route_not_found",
        None,
    )
    .await;

    // Nothing changed: one recommendation, still pending; one agent.
    let list = app.json(&k, "/api/v1/recommendations").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(
        app.json(&k, agents).await["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await.unwrap();
}
both_backends!(bad_input_is_refused_and_changes_nothing);
