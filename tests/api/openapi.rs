//! The OpenAPI document describes every route the server registers.

use reqwest::StatusCode;
use serde_json::Value;
use swarmwise::routes::API_ROUTES;

use crate::helpers::{spawn_app, Backend};

#[actix_web::test]
async fn openapi_documents_every_route() {
    let app = spawn_app(Backend::Sqlite).await;
    let res = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut missing = Vec::new();
    for (method, path) in API_ROUTES {
        if matches!(*path, "/openapi.json" | "/docs") {
            continue;
        }
        let full = format!("/api/v1{path}");
        if doc["paths"][&full][*method].is_null() {
            missing.push(format!("{method} {full}"));
        }
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        if doc["paths"][path]["get"].is_null() {
            missing.push(format!("get {path}"));
        }
    }
    assert!(missing.is_empty(), "undocumented routes: {missing:?}");
    // The card schema carries DESIGN's field names.
    let card = &doc["components"]["schemas"]["TrustCard"]["properties"];
    for field in [
        "overall_trust",
        "accuracy_score",
        "consistency_score",
        "timeliness",
        "reliability",
        "calibration",
        "trend",
        "approval_rate",
        "avg_quality",
        "sample_count",
        "strength",
    ] {
        assert!(!card[field].is_null(), "TrustCard lacks {field}");
    }
    let page = app
        .client
        .get(app.url("/api/v1/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("/api/v1/openapi.json"));
    app.stop().await.unwrap();
}
