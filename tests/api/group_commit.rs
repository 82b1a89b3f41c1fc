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

/// A tenant whose tracked rows cannot be stored (its inserts wait on a lock
/// only its rows take, so the one writer is stuck on them) does not stall
/// another tenant's evaluations or feedback: they wait only for their own
/// workspace's acknowledged rows, not for the rows queued behind the stuck
/// ones. Before, both waited for every tenant's rows and answered 503
/// `writes_pending` after `tracking.read_flush_timeout_ms`.
#[actix_web::test]
async fn postgres_a_stuck_tenant_does_not_stall_another_tenants_evaluations() {
    use sqlx::{Connection, Executor, PgConnection};
    if !crate::helpers::postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.read_flush_timeout_ms = 300;
    })
    .await;
    let (_, key_a) = app.workspace("A").await;
    let (ws_b, key_b) = app.workspace("B").await;
    app.agent(&key_a, "a1").await;
    app.agent(&key_b, "b1").await;
    let mine = app.track(&key_a, "a1", "wf-a", "strategy", 0.5).await;
    // Read-your-writes: A's row is stored before B gets stuck.
    let listed = app.json(&key_a, "/api/v1/recommendations").await;
    assert_eq!(listed["items"][0]["id"], mine.as_str(), "{listed}");

    // B's inserts take a shared advisory lock this connection holds
    // exclusively: they wait, A's updates do not.
    let mut lock = PgConnection::connect(&app.database_url).await.unwrap();
    lock.execute(
        format!(
            "CREATE FUNCTION stall_b() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.workspace_id = '{}' THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER stall_b BEFORE INSERT ON agent_recommendations \
             FOR EACH ROW EXECUTE FUNCTION stall_b(); \
             SELECT pg_advisory_lock(4242);",
            ws_b
        )
        .as_str(),
    )
    .await
    .unwrap();
    let stuck = app.track(&key_b, "b1", "wf-b", "strategy", 0.5).await;
    // C's rows queue behind B's in the one writer.
    let (_, key_c) = app.workspace("C").await;
    app.agent(&key_c, "c1").await;
    for i in 0..3 {
        app.track(&key_c, "c1", &format!("wf-c{i}"), "strategy", 0.5)
            .await;
    }

    // A's evaluation of its stored workflow answers, and so does its
    // feedback, while B's row is still waiting.
    let res = app
        .post(
            &key_a,
            "/api/v1/workflows/wf-a/outcome",
            &json!({"overall_quality_score": 85}),
        )
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "A's outcome while B is stuck: {body}"
    );
    assert_eq!(body["evaluated"], 1, "{body}");
    let res = app
        .post(
            &key_a,
            &format!("/api/v1/recommendations/{mine}/feedback"),
            &json!({"status": "rejected"}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "A's feedback while B is stuck"
    );
    // B's own evaluation still waits for B's row: bounded, 503.
    let res = app
        .post(
            &key_b,
            "/api/v1/workflows/wf-b/outcome",
            &json!({"overall_quality_score": 85}),
        )
        .await;
    assert!(res.headers().get("retry-after").is_some());
    let body =
        crate::helpers::assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "writes_pending", None)
            .await;
    // B hears of its own waiting row, not of C's three.
    assert_eq!(body["details"]["pending_writes"], 1, "{body}");

    // (A row A tracks now queues behind B's in the one writer: a known
    // limit, docs/operations.md.)
    let mine_after = app.track(&key_a, "a1", "wf-a2", "strategy", 0.5).await;
    lock.execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();
    // Nothing acknowledged was lost: B's row and A's row queued behind it
    // are stored once the lock is gone.
    for (key, id) in [(&key_b, &stuck), (&key_a, &mine_after)] {
        app.wait_stored(key, id).await;
    }
}

/// One tenant cannot fill the write buffer every tenant shares: past
/// `tracking.max_pending_per_workspace` of its own rows awaiting the
/// database, its tracking is shed (503 `overloaded`, its own count in the
/// message) while another workspace's is still taken; when the whole
/// buffer is full, the message tells no other tenant's numbers. Nothing
/// acknowledged is lost once the database takes writes again.
#[actix_web::test]
async fn postgres_one_tenant_cannot_fill_the_shared_write_buffer() {
    if !crate::helpers::postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.batch_size = 1;
        s.tracking.max_pending = 6;
        s.tracking.max_pending_per_workspace = 4;
        s.tracking.max_pending_wait_ms = 100;
        s.tracking.read_flush_timeout_ms = 30_000;
        s.limits.max_batch_items = 4;
    })
    .await;
    let (_, key_a) = app.workspace("A").await;
    let (_, key_b) = app.workspace("B").await;
    app.agent(&key_a, "a1").await;
    app.agent(&key_b, "b1").await;
    // Inserts wait while this transaction holds the table in SHARE mode.
    let lock = crate::reads::block_inserts(&app).await;
    let mut acknowledged = Vec::new();
    for i in 0..4 {
        let id = app
            .track(&key_b, "b1", &format!("wf-b{i}"), "strategy", 0.5)
            .await;
        acknowledged.push((key_b.clone(), id));
    }
    let one = |agent: &str, wf: &str| {
        json!({"agent_id": agent, "correlation_id": "c", "workflow_id": wf,
               "recommendation_type": "strategy", "content": {"decision": "go"}, "confidence": 0.5})
    };
    // B is at its share: shed, with B's own count.
    let res = app
        .post(&key_b, "/api/v1/recommendations", &one("b1", "wf-b4"))
        .await;
    assert!(res.headers().get("retry-after").is_some());
    let body =
        crate::helpers::assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "overloaded", None)
            .await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("4 recommendations of this workspace"),
        "{message}"
    );
    // A is still taken: the buffer has room beyond B's share.
    for i in 0..2 {
        let id = app
            .track(&key_a, "a1", &format!("wf-a{i}"), "strategy", 0.5)
            .await;
        acknowledged.push((key_a.clone(), id));
    }
    // Now the whole buffer is full: A is shed, told nothing of B's rows.
    let res = app
        .post(&key_a, "/api/v1/recommendations", &one("a1", "wf-a2"))
        .await;
    let body =
        crate::helpers::assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "overloaded", None)
            .await;
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.chars().any(|c| c.is_ascii_digit()) && message.contains("all workspaces"),
        "the node-wide refusal leaks counts: {message}"
    );

    drop(lock);
    for (key, id) in &acknowledged {
        app.wait_stored(key, id).await;
    }
    // The shed ones were never stored.
    for (key, wf) in [(&key_b, "wf-b4"), (&key_a, "wf-a2")] {
        let page = app
            .json(key, &format!("/api/v1/recommendations?workflow_id={wf}"))
            .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 0, "{page}");
    }
}
