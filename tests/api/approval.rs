//! Human approval (issue 13, item 3): a stage with `approval = true` pauses
//! the run `awaiting_approval` showing its answers; approve resumes it with
//! the next stage, reject ends it `rejected`; the comment becomes feedback
//! on the stage's recommendations; the deadline's default action applies;
//! a paused run survives a restart. Hostile: another workspace's run (404),
//! two concurrent approvals (exactly one wins), an oversized comment (422).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::durable_runs::{durable, run_reaches, workflows_dir, Agents};
use crate::helpers::{assert_error, spawn_app_with, Backend};

async fn paused(app: &crate::helpers::TestApp, key: &str, workflow: &str) -> Value {
    let res = app
        .post(
            key,
            "/api/v1/workflows/runs",
            &json!({"workflow": workflow, "wait": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let run: Value = res.json().await.unwrap();
    assert_eq!(
        run["status"], "awaiting_approval",
        "wait: true answers with the paused run: {run}"
    );
    run
}

async fn approve_and_reject_with_comments(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("approvals").await;
    let (_, other) = app.workspace("other").await;
    agents
        .register(&app.address, &key, &["fast", "final"])
        .await;
    let mut events = app.engine.events().subscribe();

    let run = paused(&app, &key, "gated").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let draft = &run["progress"]["stages"][0];
    assert_eq!(draft["name"], "draft");
    assert_eq!(draft["approval"]["decision"], "pending");
    assert_eq!(
        draft["agents"][0]["answer"]["content"]["decision"], "fast says go",
        "{run}"
    );
    assert!(run["approval_deadline"].is_string());
    assert_eq!(agents.calls("final"), 0, "the next stage waits");
    loop {
        if let swarmwise_actors::events::Event::WorkflowProgress { run_id, status, .. } =
            crate::helpers::next_event(&mut events).await
        {
            if run_id == id && status == "awaiting_approval" {
                break;
            }
        }
    }

    // Another workspace cannot see or decide it.
    let res = app
        .post(
            &other,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "run_not_found", None).await;
    // An oversized comment is refused and changes nothing.
    let long = "x".repeat(16 * 1024 + 1);
    let res = app
        .post(
            &key,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({"comment": long}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["details"]["field"], "comment", "{body}");
    let still = app
        .json(&key, &format!("/api/v1/workflows/runs/{id}"))
        .await;
    assert_eq!(still["status"], "awaiting_approval");

    // Two approvals at once: exactly one wins.
    let path = format!("/api/v1/workflows/runs/{id}/approve");
    let body = json!({"comment": "looks good"});
    let (a, b) = tokio::join!(app.post(&key, &path, &body), app.post(&key, &path, &body));
    let mut codes = [a.status(), b.status()];
    codes.sort();
    assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT]);
    let loser = if a.status() == StatusCode::CONFLICT {
        a
    } else {
        b
    };
    assert_error(
        loser,
        StatusCode::CONFLICT,
        "run_not_awaiting_approval",
        None,
    )
    .await;

    let done = run_reaches(&app, &key, &id, "succeeded").await;
    assert_eq!(agents.calls("fast"), 1);
    assert_eq!(agents.calls("final"), 1);
    assert_eq!(
        done["progress"]["stages"][0]["approval"]["decision"],
        "approved"
    );
    assert_eq!(
        done["progress"]["stages"][0]["approval"]["comment"],
        "looks good"
    );
    let recs = app
        .json(
            &key,
            &format!("/api/v1/recommendations?workflow_id={id}&agent_id=fast"),
        )
        .await;
    assert_eq!(recs["items"][0]["status"], "approved", "{recs}");
    assert_eq!(recs["items"][0]["feedback"], "looks good", "{recs}");
    // Deciding again: 409.
    let res = app.post(&key, &path, &json!({})).await;
    assert_error(res, StatusCode::CONFLICT, "run_not_awaiting_approval", None).await;

    // Reject: the run ends rejected, its stage's answer is rejected with the comment.
    let run = paused(&app, &key, "gated").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &key,
            &format!("/api/v1/workflows/runs/{id}/reject"),
            &json!({"comment": "off brand"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let rejected: Value = res.json().await.unwrap();
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert!(rejected["error"].as_str().unwrap().contains("off brand"));
    let recs = app
        .json(
            &key,
            &format!("/api/v1/recommendations?workflow_id={id}&agent_id=fast"),
        )
        .await;
    assert_eq!(recs["items"][0]["status"], "rejected", "{recs}");
    assert_eq!(recs["items"][0]["feedback"], "off brand", "{recs}");
    assert_eq!(
        agents.calls("final"),
        1,
        "a rejected run never reaches its next stage"
    );
    app.stop().await.unwrap();
}
both_backends!(approve_and_reject_with_comments);

async fn the_deadline_applies_the_default_action(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("deadlines").await;
    agents
        .register(&app.address, &key, &["fast", "final"])
        .await;
    let rejected = paused(&app, &key, "gated_deadline").await;
    let approved = paused(&app, &key, "gated_deadline_approve").await;
    let run = run_reaches(&app, &key, rejected["id"].as_str().unwrap(), "rejected").await;
    assert_eq!(
        run["progress"]["stages"][0]["approval"]["decided_by"], "deadline",
        "{run}"
    );
    let run = run_reaches(&app, &key, approved["id"].as_str().unwrap(), "succeeded").await;
    assert_eq!(
        run["progress"]["stages"][0]["approval"]["decided_by"], "deadline",
        "{run}"
    );
    assert_eq!(agents.calls("final"), 1, "only the approved run went on");
    app.stop().await.unwrap();
}
both_backends!(the_deadline_applies_the_default_action);

async fn an_approval_survives_a_restart(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = app.workspace("restarts").await;
    agents
        .register(&app.address, &key, &["fast", "final"])
        .await;
    let run = paused(&app, &key, "gated").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let app = app.restart(durable(&dir)).await;
    let still = app
        .json(&key, &format!("/api/v1/workflows/runs/{id}"))
        .await;
    assert_eq!(still["status"], "awaiting_approval", "{still}");
    let res = app
        .post(
            &key,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    run_reaches(&app, &key, &id, "succeeded").await;
    assert_eq!(agents.calls("fast"), 1);
    assert_eq!(agents.calls("final"), 1);
    app.stop().await.unwrap();
}
both_backends!(an_approval_survives_a_restart);

async fn dashboard_decisions_need_the_token_and_stay_in_the_workspace(backend: Backend) {
    use crate::dashboard::{csrf_of, page, post_form, sign_in};
    let dir = workflows_dir();
    let agents = Agents::start();
    let app = spawn_app_with(backend, durable(&dir)).await;
    let (_, ka) = app.workspace("A").await;
    let (_, kb) = app.workspace("B").await;
    agents.register(&app.address, &ka, &["fast", "final"]).await;
    let run = paused(&app, &ka, "gated").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let path = format!("/learning/runs/{id}/decision");
    let (a_cookie, b_cookie) = (sign_in(&app, &ka).await, sign_in(&app, &kb).await);
    let (status, html) = page(&app, &a_cookie, &format!("/learning/runs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"id="approve-run""#), "the form is shown");
    let a_token = csrf_of(&html);
    let (_, b_page) = page(&app, &b_cookie, "/learning").await;
    let b_token = csrf_of(&b_page);

    // B's session, with B's own token: 404, as if the run did not exist.
    let res = post_form(
        &app,
        &b_cookie,
        &path,
        &[("csrf", &b_token), ("decision", "approve")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // A's session without its token, or with B's: 403.
    let res = post_form(&app, &a_cookie, &path, &[("decision", "approve")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post_form(
        &app,
        &a_cookie,
        &path,
        &[("csrf", &b_token), ("decision", "approve")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A decision that is neither: 400.
    let res = post_form(
        &app,
        &a_cookie,
        &path,
        &[("csrf", &a_token), ("decision", "maybe")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let still = app.json(&ka, &format!("/api/v1/workflows/runs/{id}")).await;
    assert_eq!(
        still["status"], "awaiting_approval",
        "nothing changed: {still}"
    );

    let res = post_form(
        &app,
        &a_cookie,
        &path,
        &[
            ("csrf", &a_token),
            ("decision", "reject"),
            ("comment", "not now"),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let done = app.json(&ka, &format!("/api/v1/workflows/runs/{id}")).await;
    assert_eq!(done["status"], "rejected");
    assert_eq!(
        done["progress"]["stages"][0]["approval"]["decided_by"],
        "dashboard"
    );
    assert_eq!(
        done["progress"]["stages"][0]["approval"]["comment"],
        "not now"
    );
    app.stop().await.unwrap();
}
both_backends!(dashboard_decisions_need_the_token_and_stay_in_the_workspace);

/// Two nodes on one database: a run paused by node A is approved through
/// node B, which executes the rest.
async fn a_run_paused_on_one_node_is_approved_on_another(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let a = spawn_app_with(backend, durable(&dir)).await;
    let (_, key) = a.workspace("two-nodes").await;
    agents.register(&a.address, &key, &["fast", "final"]).await;
    // B starts after the agents exist (it loads them at start; live agent
    // changes across nodes are the database change feed's part).
    let b = crate::helpers::spawn_beside(&a, durable(&dir)).await;
    let run = paused(&a, &key, "gated").await;
    let id = run["id"].as_str().unwrap().to_owned();
    let res = b
        .post(
            &key,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    run_reaches(&a, &key, &id, "succeeded").await;
    assert_eq!(agents.calls("fast"), 1);
    assert_eq!(agents.calls("final"), 1);
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}
both_backends!(a_run_paused_on_one_node_is_approved_on_another);

/// `learning.enabled = false`: runs still pause, resume and end; nothing is
/// tracked, so a decision records no feedback.
async fn approval_works_with_learning_disabled(backend: Backend) {
    let dir = workflows_dir();
    let agents = Agents::start();
    let tweak = durable(&dir);
    let app = spawn_app_with(backend, move |s| {
        tweak(s);
        s.learning.enabled = false;
    })
    .await;
    let (_, key) = app.workspace("plain").await;
    agents
        .register(&app.address, &key, &["fast", "final"])
        .await;
    let run = paused(&app, &key, "gated").await;
    let id = run["id"].as_str().unwrap().to_owned();
    assert!(run["progress"]["stages"][0]["agents"][0]["recommendation_id"].is_null());
    let res = app
        .post(
            &key,
            &format!("/api/v1/workflows/runs/{id}/approve"),
            &json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    run_reaches(&app, &key, &id, "succeeded").await;
    assert_eq!(agents.calls("final"), 1);
    app.stop().await.unwrap();
}
both_backends!(approval_works_with_learning_disabled);
