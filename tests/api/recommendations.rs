//! Tracking, listing, evaluation and feedback through the API.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{spawn_app, spawn_app_with, Backend};

async fn track_list_paginate(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = app.workspace("A").await;
    app.agent(&k, "a1").await;
    app.agent(&k, "a2").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.track(
                &k,
                if i % 2 == 0 { "a1" } else { "a2" },
                "wf-1",
                "strategy",
                0.6,
            )
            .await,
        );
    }
    let res = app
        .post(&k, "/api/v1/recommendations/batch", &json!({"items": [
            {"agent_id": "a1", "correlation_id": "c", "workflow_id": "wf-2", "recommendation_type": "risk", "content": "x", "confidence": 0.2},
            {"agent_id": "a2", "agent_name": "Renamed", "correlation_id": "c", "workflow_id": "wf-2", "recommendation_type": "risk", "content": [1], "confidence": 0.9, "reasoning": "r"}
        ]}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let batch: Value = res.json().await.unwrap();
    assert_eq!(batch["ids"].as_array().unwrap().len(), 2);
    ids.extend(
        batch["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned()),
    );

    // Pages of 3 over 7 rows: 3, 3, 1, newest first, no duplicates.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/recommendations?limit=3&cursor={c}"),
            None => "/api/v1/recommendations?limit=3".to_owned(),
        };
        let page = app.json(&k, &path).await;
        pages += 1;
        assert!(pages <= 10, "the cursor never ends: {page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let filtered = app
        .json(
            &k,
            "/api/v1/recommendations?agent_id=a2&recommendation_type=risk",
        )
        .await;
    let items = filtered["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["agent_name"], "Renamed");
    assert_eq!(items[0]["content"], json!([1]));
    assert_eq!(
        app.json(
            &k,
            "/api/v1/recommendations?workflow_id=wf-1&status=pending"
        )
        .await["items"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    app.stop().await.unwrap();
}
both_backends!(track_list_paginate);

async fn evaluate_and_feedback(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = app.workspace("A").await;
    for a in ["a1", "a2", "a3"] {
        app.agent(&k, a).await;
    }
    let r1 = app.track(&k, "a1", "wf", "strategy", 0.9).await;
    let r2 = app.track(&k, "a2", "wf", "strategy", 0.5).await;
    let r3 = app.track(&k, "a3", "wf", "risk", 0.3).await;
    // Derived verdicts at 55 are partial; r2 is explicitly rejected, r3 approved with its own quality.
    let res = app
        .post(&k, "/api/v1/workflows/wf/outcome", &json!({
            "overall_quality_score": 55,
            "verdicts": [{"recommendation_id": r2, "status": "rejected"}, {"recommendation_id": r3, "status": "approved", "quality": 95}],
            "feedback": "ok-ish"
        }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let summary: Value = res.json().await.unwrap();
    assert_eq!(
        summary,
        json!({"workflow_id": "wf", "evaluated": 3, "approved": 1, "partial": 1, "rejected": 1})
    );
    let got = app.json(&k, &format!("/api/v1/recommendations/{r1}")).await;
    assert_eq!(
        (
            got["status"].as_str(),
            got["outcome_quality"].as_f64(),
            got["feedback"].as_str()
        ),
        (Some("partial"), Some(55.0), Some("ok-ish"))
    );
    assert_eq!(
        app.json(&k, &format!("/api/v1/recommendations/{r3}")).await["outcome_quality"],
        95.0
    );

    // A second outcome for the same workflow: nothing pending → 409.
    let res = app
        .post(
            &k,
            "/api/v1/workflows/wf/outcome",
            &json!({"overall_quality_score": 90}),
        )
        .await;
    crate::helpers::assert_error(res, StatusCode::CONFLICT, "conflict", None).await;

    // Human feedback overrides the derived verdict, and trust follows.
    let before = app.json(&k, "/api/v1/learning/trust-scores/a1").await;
    assert_eq!(before["partial_count"], 1);
    let res = app
        .post(
            &k,
            &format!("/api/v1/recommendations/{r1}/feedback"),
            &json!({"status": "approved", "quality": 88, "comment": "on reflection, great"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["status"], "approved");
    app.engine.trust_settled().await.unwrap();
    let after = app.json(&k, "/api/v1/learning/trust-scores/a1").await;
    assert_eq!(
        (
            after["approved_count"].as_u64(),
            after["partial_count"].as_u64()
        ),
        (Some(1), Some(0))
    );
    assert!(after["accuracy_score"].as_f64() > before["accuracy_score"].as_f64());
    let m = app.json(&k, "/api/v1/learning/agents/a1/metrics").await;
    assert_eq!(
        (
            m["approved_count"].as_u64(),
            m["total_recommendations"].as_u64()
        ),
        (Some(1), Some(1))
    );
    app.stop().await.unwrap();
}
both_backends!(evaluate_and_feedback);

/// In durable mode the row is committed when the 201 arrives. Write-behind
/// is held back (a flush interval of an hour, a batch far larger than one
/// row) so that only the durable path can have stored it; the same request
/// under write-behind with those settings finds no row, which shows the
/// check can tell the modes apart (it fails if durable is wired to
/// write-behind).
async fn durable_mode_commits_before_answering(backend: Backend) {
    use swarmwise_actors::tracker::WriteMode;
    for (mode, stored) in [(WriteMode::Durable, true), (WriteMode::WriteBehind, false)] {
        let app = spawn_app_with(backend, |s| {
            s.tracking.mode = mode;
            s.tracking.flush_interval_ms = 3_600_000;
            s.tracking.batch_size = 10_000;
        })
        .await;
        let (ws, k) = app.workspace("A").await;
        app.agent(&k, "a1").await;
        let id = app.track(&k, "a1", "wf", "t", 0.5).await;
        let ws = swarmwise_actors::domain::WorkspaceId(ws.parse().unwrap());
        // The store directly: no read-your-writes flush on the way.
        let row = app
            .store
            .recommendation(ws, id.parse().unwrap())
            .await
            .unwrap();
        assert_eq!(
            row.is_some(),
            stored,
            "{mode:?}: row stored when the 201 arrived"
        );
        app.stop().await.unwrap();
    }
}
both_backends!(durable_mode_commits_before_answering);
