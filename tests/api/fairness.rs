//! Bounded work, fair between tenants: a workspace that floods is answered
//! 429 with Retry-After while another is served; runs in flight are capped
//! per workspace; anonymous clients cannot grow the metric series.

use std::sync::Arc;

use actix_web::HttpResponse;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::helpers::{loopback_peer, spawn_app_with, Backend};

#[actix_web::test]
async fn a_flooding_key_is_limited_and_another_workspace_is_served() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.key_requests_per_second = 1;
        s.limits.key_burst = 5;
    })
    .await;
    let (_, a) = app.workspace("flooder").await;
    let (_, b) = app.workspace("neighbour").await;
    let mut limited = 0;
    for _ in 0..40 {
        let res = app.get(&a, "/api/v1/agents").await;
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = res.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited", "{body}");
            limited += 1;
        } else {
            assert_eq!(res.status(), StatusCode::OK);
        }
        // B, interleaved with A's flood, stays within its own bucket.
        if limited > 0 && limited <= 4 {
            assert_eq!(app.get(&b, "/api/v1/agents").await.status(), StatusCode::OK);
        }
    }
    assert!(
        limited >= 20,
        "40 requests at 1/s with a burst of 5: {limited} refused"
    );
    // The admin key is not limited; invented keys are 401, never 429.
    for _ in 0..10 {
        assert_eq!(
            app.get("not-a-key", "/api/v1/agents").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("swarmwise_rate_limited_total{limit=\"api_key\"}")),
        "counted in /metrics"
    );
    app.stop().await.unwrap();
}

/// An agent that answers only when the test lets it: runs stay in flight
/// as long as needed, with no clock involved.
fn held_peer(gate: Arc<Semaphore>) -> String {
    let addr = loopback_peer("127.0.0.1", move || {
        let gate = Arc::clone(&gate);
        async move {
            gate.acquire().await.unwrap().forget();
            HttpResponse::Ok().json(json!({"content": {"decision": "go"}, "confidence": 0.5}))
        }
    });
    format!("http://{addr}/")
}

#[actix_web::test]
async fn runs_in_flight_are_capped_per_workspace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hold.toml"),
        r#"name = "hold"
description = "One agent that answers when the test lets it."
[[stages]]
name = "only"
agents = ["holder"]
recommendation_type = "strategy"
timeout_ms = 120000
"#,
    )
    .unwrap();
    let workflows = dir.path().display().to_string();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.max_runs_in_flight = 2;
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.agents.concurrency = 8;
        s.workflows.dir = workflows;
    })
    .await;
    let gate = Arc::new(Semaphore::new(0));
    let url = held_peer(Arc::clone(&gate));
    let (_, a) = app.workspace("busy").await;
    let (_, b) = app.workspace("other").await;
    for key in [&a, &b] {
        let res = app
            .post(key, "/api/v1/agents", &json!({"id": "holder", "name": "Holder", "kind": "http", "config": {"url": url, "retries": 0, "concurrency": 8}}))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let run = json!({"workflow": "hold", "wait": false});
    for _ in 0..2 {
        assert_eq!(
            app.post(&a, "/api/v1/workflows/runs", &run).await.status(),
            StatusCode::ACCEPTED
        );
    }
    let res = app.post(&a, "/api/v1/workflows/runs", &run).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "too_many_runs", "{body}");
    // The other workspace is not affected by A's runs.
    assert_eq!(
        app.post(&b, "/api/v1/workflows/runs", &run).await.status(),
        StatusCode::ACCEPTED
    );
    // Once A's runs finish, A may run again.
    gate.add_permits(3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let res = app.post(&a, "/api/v1/workflows/runs", &run).await;
        if res.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(std::time::Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gate.add_permits(100);
    app.stop().await.unwrap();
}

/// Anonymous clients cannot grow state: invented methods and paths map to
/// closed label sets.
#[actix_web::test]
async fn invented_methods_and_paths_do_not_become_metric_labels() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("FCX{i}").as_bytes()).unwrap();
        let _ = app
            .client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        let _ = app
            .client
            .get(app.url(&format!("/nope-{i}/zz{i}")))
            .header("x-forwarded-for", format!("10.0.0.{i}"))
            .send()
            .await
            .unwrap();
        let _ = app
            .client
            .get(app.url(&format!("/api/v1/recommendations/rec-{i}")))
            .send()
            .await
            .unwrap();
    }
    let metrics = app.metrics_text().await;
    for needle in ["FCX", "nope-", "rec-", "10.0.0."] {
        assert!(!metrics.contains(needle), "{needle} became a label value");
    }
    assert!(
        metrics.contains("method=\"other\""),
        "invented methods are counted as other"
    );
    app.stop().await.unwrap();
}
