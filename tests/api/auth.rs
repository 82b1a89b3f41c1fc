//! Authentication and isolation through the API: a key of workspace A can
//! neither read nor change B's data through any endpoint.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app, Backend};

async fn keys_and_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    // No key, a wrong key, a malformed header.
    let res = app
        .client
        .get(app.url("/api/v1/agents"))
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    assert_error(
        app.get("swk_nope", "/api/v1/agents").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    )
    .await;
    let res = app
        .client
        .get(app.url("/api/v1/agents"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized", None).await;
    // Only the admin key creates workspaces; it is not a workspace key.
    let (_, key) = app.workspace("A").await;
    let res = app
        .post(&key, "/api/v1/workspaces", &json!({"name": "B"}))
        .await;
    assert_error(res, StatusCode::FORBIDDEN, "admin_key_required", None).await;
    assert_error(
        app.get(&app.admin_key, "/api/v1/agents").await,
        StatusCode::FORBIDDEN,
        "workspace_key_required",
        None,
    )
    .await;
    // Health and metrics need no key (readiness once the scorer has loaded).
    app.ready().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    // A second key for the same workspace sees the same data.
    let (id, key_a) = app.workspace("C").await;
    app.agent(&key_a, "solo").await;
    let res = app
        .post(
            &app.admin_key,
            &format!("/api/v1/workspaces/{id}/api-keys"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v: Value = res.json().await.unwrap();
    let key_a2 = v["api_key"].as_str().unwrap();
    let agents = app.json(key_a2, "/api/v1/agents").await;
    assert_eq!(agents["items"][0]["id"], "solo");
    app.stop().await.unwrap();
}
both_backends!(keys_and_admin);

async fn workspace_isolation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, a) = app.workspace("A").await;
    let (_, b) = app.workspace("B").await;
    app.agent(&a, "alpha").await;
    let rec = app.track(&a, "alpha", "wf-a", "strategy", 0.8).await;
    let rec2 = app.track(&a, "alpha", "wf-a2", "strategy", 0.8).await;
    app.outcome(&a, "wf-a", 90.0).await;

    // Reads.
    assert_error(
        app.get(&b, &format!("/api/v1/recommendations/{rec}")).await,
        StatusCode::NOT_FOUND,
        "recommendation_not_found",
        None,
    )
    .await;
    let list = app.json(&b, "/api/v1/recommendations").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let list = app
        .json(
            &b,
            "/api/v1/recommendations?agent_id=alpha&workflow_id=wf-a",
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        app.json(&b, "/api/v1/agents").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_error(
        app.get(&b, "/api/v1/agents/alpha").await,
        StatusCode::NOT_FOUND,
        "agent_not_found",
        None,
    )
    .await;
    assert_error(
        app.get(&b, "/api/v1/learning/trust-scores/alpha").await,
        StatusCode::NOT_FOUND,
        "agent_not_found",
        None,
    )
    .await;
    assert_error(
        app.get(&b, "/api/v1/learning/agents/alpha/boost").await,
        StatusCode::NOT_FOUND,
        "agent_not_found",
        None,
    )
    .await;
    assert_error(
        app.get(&b, "/api/v1/learning/agents/alpha/metrics").await,
        StatusCode::NOT_FOUND,
        "agent_not_found",
        None,
    )
    .await;
    let trust = app.json(&b, "/api/v1/learning/trust-scores").await;
    assert_eq!(trust["agents"].as_array().unwrap().len(), 0);
    let csv = app
        .get(&b, "/api/v1/learning/agents/metrics.csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(!csv.contains("alpha"), "{csv}");

    // Writes.
    let res = app
        .post(
            &b,
            &format!("/api/v1/recommendations/{rec}/feedback"),
            &json!({"status": "rejected"}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "recommendation_not_found", None).await;
    let res = app
        .post(
            &b,
            "/api/v1/workflows/wf-a2/outcome",
            &json!({"overall_quality_score": 5}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "workflow_not_found", None).await;
    let res = app
        .patch(&b, "/api/v1/agents/alpha", &json!({"enabled": false}))
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "agent_not_found", None).await;
    let res = app
        .post(
            &b,
            "/api/v1/recommendations",
            &json!({"agent_id": "alpha", "correlation_id": "c", "workflow_id": "wf-a",
            "recommendation_type": "strategy", "content": {}, "confidence": 0.5}),
        )
        .await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_agent",
        Some("agent_id"),
    )
    .await;
    let init = app
        .post(
            &b,
            "/api/v1/learning/debug/initialize-trust-scores",
            &json!({}),
        )
        .await;
    assert_eq!(init.status(), StatusCode::OK);

    // A's data is unchanged.
    let got = app
        .json(&a, &format!("/api/v1/recommendations/{rec}"))
        .await;
    assert_eq!(got["status"], "approved");
    let got = app
        .json(&a, &format!("/api/v1/recommendations/{rec2}"))
        .await;
    assert_eq!(got["status"], "pending");
    assert_eq!(app.json(&a, "/api/v1/agents/alpha").await["enabled"], true);
    let trust = app.json(&a, "/api/v1/learning/trust-scores/alpha").await;
    assert_eq!(trust["sample_count"], 1);
    app.stop().await.unwrap();
}
both_backends!(workspace_isolation);
