//! Group commit of evaluations and run writes (issue 14, item 1): many
//! evaluations in flight share one transaction, yet each is answered for
//! itself (a duplicate or a foreign workflow fails alone), trust folds every
//! committed one exactly once, and many runs in flight finish with every
//! answer tracked and judged once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{poll_until, spawn_app_with, Backend, TestApp};

async fn post_outcome(app: &TestApp, key: &str, workflow: &str) -> StatusCode {
    app.post(
        key,
        &format!("/api/v1/workflows/{workflow}/outcome"),
        &json!({"overall_quality_score": 85}),
    )
    .await
    .status()
}

/// 60 evaluations queue into one batch (batch size 60, and a wait long
/// enough that the batch closes on size, not time): 40 distinct workflows of
/// workspace A, 10 second evaluations of A's first workflows, and 10 from
/// workspace B naming A's workflow ids. Each gets its own answer.
async fn concurrent_evaluations_share_a_batch_and_answer_alone(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.tracking.evaluation_batch_size = 60;
        s.tracking.evaluation_max_wait_ms = 120_000;
    })
    .await;
    let (_, a) = app.workspace("group-a").await;
    let (_, b) = app.workspace("group-b").await;
    app.agent(&a, "x").await;
    app.agent(&b, "x").await;
    let items: Vec<Value> = (0..40)
        .map(|i| {
            json!({"agent_id": "x", "correlation_id": format!("c{i}"), "workflow_id": format!("wf-{i}"),
                   "recommendation_type": "t", "content": {"n": i}, "confidence": 0.8})
        })
        .collect();
    let res = app
        .post(
            &a,
            "/api/v1/recommendations/batch",
            &json!({"items": items}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let mut calls = Vec::new();
    for i in 0..40 {
        calls.push((i, "a", format!("wf-{i}")));
    }
    for i in 0..10 {
        calls.push((i, "a-again", format!("wf-{i}")));
        calls.push((i, "b", format!("wf-{i}")));
    }
    let answers = futures_util::future::join_all(calls.iter().map(|(_, who, wf)| {
        let key = if *who == "b" { &b } else { &a };
        post_outcome(&app, key, wf)
    }))
    .await;
    let mut per_workflow = std::collections::HashMap::<usize, Vec<StatusCode>>::new();
    for ((i, who, _), status) in calls.iter().zip(&answers) {
        if *who == "b" {
            assert_eq!(
                *status,
                StatusCode::NOT_FOUND,
                "workspace B cannot evaluate A's workflow wf-{i}"
            );
        } else {
            per_workflow.entry(*i).or_default().push(*status);
        }
    }
    for (i, statuses) in &per_workflow {
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let conflict = statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!(ok, 1, "wf-{i}: exactly one evaluation wins: {statuses:?}");
        assert_eq!(ok + conflict, statuses.len(), "wf-{i}: {statuses:?}");
    }
    // Every row of A was judged once; trust folded each exactly once.
    let page = app
        .json(&a, "/api/v1/recommendations?agent_id=x&limit=100")
        .await;
    let rows = page["items"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    assert!(rows.iter().all(|r| r["status"] == "approved"), "{page}");
    poll_until("trust of A's x folds 40 outcomes", || async {
        let t = app.json(&a, "/api/v1/learning/trust-scores").await;
        let n = t["agents"]
            .as_array()
            .and_then(|xs| xs.iter().find(|x| x["agent_id"] == "x"))
            .map(|x| x["sample_count"].clone());
        if n == Some(json!(40)) {
            Ok(())
        } else {
            Err(format!("sample_count {n:?}"))
        }
    })
    .await;
    // B's agent learned nothing from A's workflows.
    let t = app.json(&b, "/api/v1/learning/trust-scores").await;
    let n = t["agents"]
        .as_array()
        .and_then(|xs| xs.iter().find(|x| x["agent_id"] == "x"))
        .map(|x| x["sample_count"].clone());
    assert!(
        matches!(n, None | Some(Value::Null)) || n == Some(json!(0)),
        "{t}"
    );
    app.stop().await.unwrap();
}
both_backends!(concurrent_evaluations_share_a_batch_and_answer_alone);

/// 32 runs in flight with tiny batches (run writes 3, evaluations 4), so
/// batches fill, split and interleave: every run succeeds, is stored
/// finished, and every answer is tracked and evaluated exactly once.
async fn many_runs_in_flight_finish_tracked_and_judged_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fan.toml"),
        "name = \"fan\"\n[[stages]]\nname = \"all\"\nagents = [\"s1\", \"s2\", \"s3\", \"s4\"]\nrecommendation_type = \"strategy\"\ntimeout_ms = 30000\n",
    )
    .unwrap();
    let wf_dir = dir.path().display().to_string();
    let app = spawn_app_with(backend, move |s| {
        s.workflows.dir = wf_dir;
        s.workflows.write_batch_size = 3;
        s.tracking.evaluation_batch_size = 4;
    })
    .await;
    let (_, k) = app.workspace("fan").await;
    for (i, id) in ["s1", "s2", "s3", "s4"].iter().enumerate() {
        let res = app
            .post(
                &k,
                "/api/v1/agents",
                &json!({"id": id, "name": id, "kind": "simulated",
                        "config": {"skill": {"strategy": 0.8}, "seed": i, "latency_ms": {"mean": 0}}}),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
    }
    let runs = futures_util::future::join_all((0..32).map(|_| async {
        let res = app
            .post(
                &k,
                "/api/v1/workflows/runs",
                &json!({"workflow": "fan", "wait": true}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json::<Value>().await.unwrap()
    }))
    .await;
    for r in &runs {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["result"]["evaluation"]["evaluated"], 4, "{r}");
        let id = r["id"].as_str().unwrap();
        let stored = app.json(&k, &format!("/api/v1/workflows/runs/{id}")).await;
        assert_eq!(stored["status"], "succeeded");
        let recs = app
            .json(
                &k,
                &format!("/api/v1/recommendations?workflow_id={id}&limit=10"),
            )
            .await;
        let recs = recs["items"].as_array().unwrap();
        assert_eq!(recs.len(), 4);
        assert!(recs.iter().all(|x| x["status"] != "pending"));
    }
    poll_until("trust folds 32 outcomes per agent", || async {
        let t = app.json(&k, "/api/v1/learning/trust-scores").await;
        let counts: Vec<Value> = t["agents"]
            .as_array()
            .map(|xs| xs.iter().map(|x| x["sample_count"].clone()).collect())
            .unwrap_or_default();
        if counts.len() == 4 && counts.iter().all(|c| *c == json!(32)) {
            Ok(())
        } else {
            Err(format!("{counts:?}"))
        }
    })
    .await;
    let _ = Duration::ZERO;
    app.stop().await.unwrap();
}
both_backends!(many_runs_in_flight_finish_tracked_and_judged_once);
