//! Issue 12, item 2 "Alerts that act, safely": quarantine by an alert,
//! cool-down, probation as a canary, re-admission or a return to
//! quarantine, the hold after `max_probations`, the operator's override,
//! restart survival, and a hostile tenant. Every step is checked in the
//! agent JSON, the audit log and the event bus.
//!
//! The tests call the admission controller as the `Alerter` would, with
//! the alert rules off (`alerts.enabled = false`) so that no rule
//! quarantines an agent behind a test's back; the rule's own end-to-end
//! test lives with the alerts.
//!
//! No sleeps: the cool-down stays at its default (an hour) and the tests
//! drive the check explicitly as if it were later
//! (`AdmissionController::check_all_at`), so the controller's own periodic
//! task, which uses the real time, never moves a state under a test.

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise_actors::alerts::AgentAdmission;
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::events::{AdmissionEventState, Event};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{assert_error, next_event, spawn_app_with, Backend, TestApp};

fn ws_of(id: &str) -> WorkspaceId {
    WorkspaceId(Uuid::parse_str(id).unwrap())
}

fn agent_id(id: &str) -> AgentId {
    AgentId::parse("id", id).unwrap()
}

/// Quarantines as the alerter would; the alert id it used.
async fn quarantine(app: &TestApp, ws: &str, agent: &str, reason: &str) -> (bool, Uuid) {
    let alert = Uuid::now_v7();
    let done = app
        .engine
        .admission()
        .quarantine(ws_of(ws), &agent_id(agent), reason, alert)
        .await
        .unwrap();
    (done, alert)
}

async fn agent_json(app: &TestApp, key: &str, id: &str) -> Value {
    app.json(key, &format!("/api/v1/agents/{id}")).await
}

/// Audit entries of `ws` with `action`, newest first.
async fn audit(app: &TestApp, ws: &str, action: &str) -> Vec<Value> {
    let page = app
        .json(
            &app.admin_key,
            &format!("/api/v1/audit?workspace_id={ws}&action={action}"),
        )
        .await;
    page["items"].as_array().unwrap().clone()
}

/// `n` evaluated outcomes of quality `quality` for `agent`, folded into trust.
async fn outcomes(app: &TestApp, key: &str, agent: &str, n: usize, quality: f64) {
    for _ in 0..n {
        let wf = format!("wf-{}", Uuid::now_v7().simple());
        app.track(key, agent, &wf, "strategy", 0.9).await;
        app.outcome(key, &wf, quality).await;
    }
    app.engine.trust_settled().await.unwrap();
}

/// The next admission event (other events skipped), 30 s bound.
async fn next_admission(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
) -> (String, AdmissionEventState, String) {
    loop {
        if let Event::AgentAdmission {
            agent_id,
            state,
            reason,
            ..
        } = next_event(rx).await
        {
            return (agent_id.as_str().to_owned(), state, reason);
        }
    }
}

/// As if `hours` had passed (cool-downs are an hour by default).
async fn check_after(app: &TestApp, hours: i64) -> usize {
    app.engine
        .admission()
        .check_all_at(Utc::now() + TimeDelta::hours(hours))
        .await
        .unwrap()
}

/// Quarantine → cool-down → probation → enough good outcomes → re-admitted,
/// each step in the agent JSON, the audit log and an event.
async fn quarantine_probation_readmit(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.alerts.enabled = false;
        // Good outcomes of a fresh agent clear this at once; the maths of
        // trust is not what this test is about.
        s.agents.disable_below_trust = 0.05;
        s.alerts.quarantine.readmit_above = 0.05;
        s.alerts.quarantine.probation_outcomes = 3;
    })
    .await;
    let (ws, k) = app.workspace("A").await;
    app.agent(&k, "bad").await;
    app.agent(&k, "fine").await;
    outcomes(&app, &k, "bad", 2, 10.0).await;
    let mut rx = app.engine.events().subscribe();

    let (done, alert) = quarantine(&app, &ws, "bad", "trust 0.12 < 0.30 after 2 outcomes").await;
    assert!(done);
    let (who, state, reason) = next_admission(&mut rx).await;
    assert_eq!(
        (who.as_str(), state),
        ("bad", AdmissionEventState::Quarantined)
    );
    assert_eq!(reason, "trust 0.12 < 0.30 after 2 outcomes");
    let a = agent_json(&app, &k, "bad").await;
    let q = &a["quarantine"];
    assert_eq!(q["state"], "quarantined", "{a}");
    assert_eq!(q["reason"], "trust 0.12 < 0.30 after 2 outcomes");
    assert_eq!(q["alert_id"], alert.to_string());
    assert_eq!(q["probations"], 0);
    assert_eq!(q["outcomes_at_start"], 2);
    assert_eq!(q["hold"], false);
    assert!(q["until"].is_string() && q["since"].is_string(), "{q}");
    assert_eq!(a["enabled"], true, "enabled stays the operator's switch");
    assert_eq!(a["override_grace"], Value::Null);
    // The list shows it too, and only on that agent.
    let list = app.json(&k, "/api/v1/agents").await;
    assert_eq!(list["items"][0]["quarantine"]["state"], "quarantined");
    assert_eq!(list["items"][1]["quarantine"], Value::Null);

    // Already quarantined: nothing changes.
    assert!(!quarantine(&app, &ws, "bad", "again").await.0);
    let entries = audit(&app, &ws, "agent.quarantine").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], "alerter");
    assert_eq!(entries[0]["target"], "bad");
    assert_eq!(
        entries[0]["details"]["reason"],
        "trust 0.12 < 0.30 after 2 outcomes"
    );
    assert_eq!(entries[0]["details"]["alert_id"], alert.to_string());
    assert!(entries[0]["details"]["trust"].is_number(), "{}", entries[0]);

    // Within the cool-down nothing moves.
    check_after(&app, 0).await;
    assert_eq!(
        agent_json(&app, &k, "bad").await["quarantine"]["state"],
        "quarantined"
    );

    // Cool-down over: probation.
    check_after(&app, 2).await;
    let (_, state, reason) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Probation);
    assert!(reason.contains("cool-down over"), "{reason}");
    let q = agent_json(&app, &k, "bad").await["quarantine"].clone();
    assert_eq!(q["state"], "probation", "{q}");
    assert_eq!(q["until"], Value::Null);
    assert_eq!(q["outcomes_at_start"], 2);
    let entries = audit(&app, &ws, "agent.probation").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], "admission");

    // Two good outcomes are not enough (probation_outcomes = 3). Outcome
    // decisions are checked at the real time: the controller's own task
    // may take them first on the trust update, with the same result.
    outcomes(&app, &k, "bad", 2, 95.0).await;
    check_after(&app, 0).await;
    assert_eq!(
        agent_json(&app, &k, "bad").await["quarantine"]["state"],
        "probation"
    );
    // The third decides: re-admitted.
    outcomes(&app, &k, "bad", 1, 95.0).await;
    check_after(&app, 0).await;
    let (_, state, reason) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Readmitted);
    assert!(reason.contains("probation passed"), "{reason}");
    let a = agent_json(&app, &k, "bad").await;
    assert_eq!(a["quarantine"], Value::Null, "{a}");
    assert_eq!(a["enabled"], true);
    let entries = audit(&app, &ws, "agent.readmit").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], "admission");
    assert!(entries[0]["details"]["new_outcomes"].as_u64().unwrap() >= 3);
    assert!(entries[0]["details"]["trust"].as_f64().unwrap() >= 0.05);
    // The workspace reads its agent's history itself, newest first.
    let history = app.json(&k, "/api/v1/agents/bad/history").await;
    let actions: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "agent.readmit",
            "agent.probation",
            "agent.quarantine",
            "agent.register"
        ],
        "{history}"
    );
    let page = app.json(&k, "/api/v1/agents/bad/history?limit=2").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next_cursor"].as_str().unwrap();
    let rest = app
        .json(
            &k,
            &format!("/api/v1/agents/bad/history?limit=2&cursor={next}"),
        )
        .await;
    assert_eq!(rest["items"][0]["action"], "agent.quarantine");
    assert_eq!(rest["next_cursor"], Value::Null);
    // Re-admitted agents can be quarantined again by a later alert.
    assert!(quarantine(&app, &ws, "bad", "again").await.0);
    app.stop().await.unwrap();
}

both_backends!(quarantine_probation_readmit);

/// A probation that ends below `readmit_above` quarantines again with a new
/// cool-down; the `max_probations`-th failure holds the agent until an
/// operator acts, however much time passes.
async fn failed_probations_hold_until_an_operator_acts(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.alerts.enabled = false;
        s.alerts.quarantine.readmit_above = 0.99;
        s.alerts.quarantine.probation_outcomes = 2;
        s.alerts.quarantine.max_probations = 2;
    })
    .await;
    let (ws, k) = app.workspace("A").await;
    app.agent(&k, "bad").await;
    let mut rx = app.engine.events().subscribe();
    assert!(quarantine(&app, &ws, "bad", "trust low").await.0);
    next_admission(&mut rx).await;

    check_after(&app, 2).await;
    assert_eq!(
        next_admission(&mut rx).await.1,
        AdmissionEventState::Probation
    );
    // Outcome decisions are checked at the real time: the controller's own
    // task may take them first on the trust update, with the same result.
    outcomes(&app, &k, "bad", 2, 5.0).await;
    check_after(&app, 0).await;
    let (_, state, reason) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Quarantined);
    assert!(reason.contains("probation 1 failed"), "{reason}");
    let q = agent_json(&app, &k, "bad").await["quarantine"].clone();
    assert_eq!(q["state"], "quarantined", "{q}");
    assert_eq!(q["probations"], 1);
    assert_eq!(q["hold"], false);
    assert!(q["until"].is_string(), "a new cool-down: {q}");
    assert_eq!(q["reason"], "trust low", "the alert's reason stays");
    let entries = audit(&app, &ws, "agent.quarantine").await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["actor"], "admission");
    assert_eq!(entries[0]["details"]["failed_probations"], 1);

    // A new cool-down from the failure: over an hour later.
    check_after(&app, 0).await;
    assert_eq!(
        agent_json(&app, &k, "bad").await["quarantine"]["state"],
        "quarantined"
    );
    check_after(&app, 2).await;
    assert_eq!(
        next_admission(&mut rx).await.1,
        AdmissionEventState::Probation
    );
    outcomes(&app, &k, "bad", 2, 5.0).await;
    check_after(&app, 0).await;
    let (_, state, reason) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Held);
    assert!(reason.contains("max_probations"), "{reason}");
    let q = agent_json(&app, &k, "bad").await["quarantine"].clone();
    assert_eq!(q["state"], "quarantined", "{q}");
    assert_eq!(q["hold"], true);
    assert_eq!(q["probations"], 2);
    assert_eq!(q["until"], Value::Null);
    let entries = audit(&app, &ws, "agent.hold").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], "admission");

    // Held: nothing moves it, a year on.
    assert_eq!(check_after(&app, 24 * 365).await, 0);
    assert_eq!(
        agent_json(&app, &k, "bad").await["quarantine"]["hold"],
        true
    );

    // The operator re-admits it.
    let res = app
        .patch(&k, "/api/v1/agents/bad", &json!({"enabled": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["quarantine"], Value::Null, "{a}");
    assert_eq!(a["override_grace"]["by"], format!("workspace:{ws}"));
    app.stop().await.unwrap();
}

both_backends!(failed_probations_hold_until_an_operator_acts);

/// The operator's override: `enabled: true` re-admits now with a grace
/// (no quarantine until `agents.disable_min_samples` new observations),
/// `enabled: false` holds out (no probation, no quarantine), the admin key
/// may do it for any workspace; each is audited under its actor.
async fn operator_override(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.alerts.enabled = false;
        s.agents.disable_min_samples = 2;
    })
    .await;
    let (ws, k) = app.workspace("A").await;
    for id in ["a", "b", "c"] {
        app.agent(&k, id).await;
    }
    outcomes(&app, &k, "a", 3, 10.0).await;
    let mut rx = app.engine.events().subscribe();

    // Re-enable a quarantined agent: re-admitted with a grace of 2.
    assert!(quarantine(&app, &ws, "a", "trust low").await.0);
    next_admission(&mut rx).await;
    let res = app
        .patch(&k, "/api/v1/agents/a", &json!({"enabled": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let a: Value = res.json().await.unwrap();
    assert_eq!(a["enabled"], true);
    assert_eq!(a["quarantine"], Value::Null, "{a}");
    let g = &a["override_grace"];
    assert_eq!(g["by"], format!("workspace:{ws}"), "{a}");
    assert_eq!(g["outcomes_at_start"], 3);
    assert_eq!(g["until_outcomes"], 5);
    let (_, state, _) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Readmitted);
    let entries = audit(&app, &ws, "agent.readmit").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], format!("workspace:{ws}"));
    assert_eq!(entries[0]["details"]["operator"], true);
    assert_eq!(entries[0]["details"]["was"], "quarantined");
    // In its grace, an alert cannot quarantine it again.
    assert!(!quarantine(&app, &ws, "a", "trust low").await.0);
    assert_eq!(agent_json(&app, &k, "a").await["quarantine"], Value::Null);
    // After 2 more observations the grace is over (the check clears it)
    // and quarantine applies again.
    outcomes(&app, &k, "a", 2, 10.0).await;
    check_after(&app, 0).await;
    assert_eq!(
        agent_json(&app, &k, "a").await["override_grace"],
        Value::Null
    );
    assert!(quarantine(&app, &ws, "a", "trust low").await.0);

    // Disable a quarantined agent: held out by the operator.
    assert!(quarantine(&app, &ws, "b", "trust low").await.0);
    let res = app
        .patch(&k, "/api/v1/agents/b", &json!({"enabled": false}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["enabled"], false);
    assert_eq!(
        b["quarantine"],
        Value::Null,
        "the operator's switch governs now: {b}"
    );
    let entries = audit(&app, &ws, "agent.hold").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], format!("workspace:{ws}"));
    assert_eq!(entries[0]["target"], "b");
    // An operator-disabled agent is not quarantined, and no probation starts.
    assert!(!quarantine(&app, &ws, "b", "trust low").await.0);
    check_after(&app, 24).await;
    let b = agent_json(&app, &k, "b").await;
    assert_eq!(
        (b["enabled"].clone(), b["quarantine"].clone()),
        (json!(false), Value::Null)
    );

    // The admin key overrides in any workspace; audited as admin.
    assert!(quarantine(&app, &ws, "c", "trust low").await.0);
    let res = app
        .patch(
            &app.admin_key,
            &format!("/api/v1/workspaces/{ws}/agents/c"),
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let c: Value = res.json().await.unwrap();
    assert_eq!(c["quarantine"], Value::Null, "{c}");
    assert_eq!(c["override_grace"]["by"], "admin");
    let entries = audit(&app, &ws, "agent.readmit").await;
    assert_eq!(entries[0]["actor"], "admin");
    assert_eq!(entries[0]["target"], "c");
    // Unknown agent, unknown workspace: 404, nothing written.
    let res = app
        .patch(
            &app.admin_key,
            &format!("/api/v1/workspaces/{ws}/agents/nobody"),
            &json!({"enabled": true}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "agent_not_found", None).await;
    let res = app
        .patch(
            &app.admin_key,
            &format!("/api/v1/workspaces/{}/agents/c", Uuid::now_v7()),
            &json!({"enabled": true}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "agent_not_found", None).await;
    // A body that is not a switch changes nothing.
    let res = app
        .patch(&k, "/api/v1/agents/a", &json!({"enabled": "yes"}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let a = agent_json(&app, &k, "a").await;
    assert!(a["quarantine"].is_object(), "still quarantined: {a}");
    assert_eq!(a["enabled"], true);
    app.stop().await.unwrap();
}

both_backends!(operator_override);

/// A tenant cannot read, lift or hold another workspace's quarantine, even
/// with an agent of the same id; nor use the admin override.
async fn hostile_tenant_cannot_touch_another_workspaces_quarantine(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.alerts.enabled = false).await;
    let (ws_a, key_a) = app.workspace("A").await;
    let (ws_b, key_b) = app.workspace("B").await;
    app.agent(&key_a, "shared").await;
    assert!(quarantine(&app, &ws_a, "shared", "trust low").await.0);

    // B has no such agent: 404 for read and override, nothing changed.
    let res = app.get(&key_b, "/api/v1/agents/shared").await;
    assert_error(res, StatusCode::NOT_FOUND, "agent_not_found", None).await;
    for enabled in [true, false] {
        let res = app
            .patch(
                &key_b,
                "/api/v1/agents/shared",
                &json!({"enabled": enabled}),
            )
            .await;
        assert_error(res, StatusCode::NOT_FOUND, "agent_not_found", None).await;
    }
    let res = app.get(&key_b, "/api/v1/agents/shared/history").await;
    assert_error(res, StatusCode::NOT_FOUND, "agent_not_found", None).await;
    // B's own agent of the same id: its switch and its history are B's alone.
    app.agent(&key_b, "shared").await;
    let history = app.json(&key_b, "/api/v1/agents/shared/history").await;
    assert_eq!(history["items"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history["items"][0]["action"], "agent.register");
    assert_eq!(history["items"][0]["workspace_id"], ws_b.as_str());
    assert_eq!(
        agent_json(&app, &key_b, "shared").await["quarantine"],
        Value::Null
    );
    let res = app
        .patch(&key_b, "/api/v1/agents/shared", &json!({"enabled": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .patch(&key_b, "/api/v1/agents/shared", &json!({"enabled": false}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The admin override and the audit log need the admin key.
    let res = app
        .patch(
            &key_b,
            &format!("/api/v1/workspaces/{ws_a}/agents/shared"),
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app.get(&key_b, "/api/v1/audit").await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A's agent is exactly as it was.
    let a = agent_json(&app, &key_a, "shared").await;
    assert_eq!(a["enabled"], true);
    assert_eq!(a["quarantine"]["state"], "quarantined", "{a}");
    assert!(audit(&app, &ws_a, "agent.readmit").await.is_empty());
    assert!(audit(&app, &ws_a, "agent.hold").await.is_empty());
    // Quarantining an agent B never registered changes nothing.
    assert!(!quarantine(&app, &ws_b, "ghost", "trust low").await.0);
    assert!(app
        .store
        .admission(ws_of(&ws_b), &agent_id("ghost"))
        .await
        .unwrap()
        .is_none());
    app.stop().await.unwrap();
}

both_backends!(hostile_tenant_cannot_touch_another_workspaces_quarantine);

fn pair_workflow() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pair.toml"),
        r#"
name = "pair"
[[stages]]
name = "opinions"
agents = ["steady", "canary"]
recommendation_type = "strategy"
timeout_ms = 10000
"#,
    )
    .unwrap();
    dir
}

async fn run_pair(app: &TestApp, key: &str) -> Value {
    let res = app
        .post(
            key,
            "/api/v1/workflows/runs",
            &json!({"workflow": "pair", "wait": true}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let run: Value = res.json().await.unwrap();
    run["result"]["stages"][0]["agents"][1].clone()
}

/// Fan-outs skip a quarantined agent with its reason; the state survives a
/// restart; on probation the agent is asked in one of every
/// `agents.probation_every` fan-outs, and that survives a restart too.
async fn fan_outs_skip_quarantined_agents_across_restarts(backend: Backend) {
    let dir = pair_workflow();
    let path = dir.path().display().to_string();
    let tweak = |p: String| {
        move |s: &mut swarmwise::config::Settings| {
            s.workflows.dir = p;
            s.alerts.enabled = false;
            s.agents.probation_every = 2;
        }
    };
    let app = spawn_app_with(backend, tweak(path.clone())).await;
    let (ws, k) = app.workspace("A").await;
    for (id, seed) in [("steady", 1), ("canary", 2)] {
        let res = app
            .post(
                &k,
                "/api/v1/agents",
                &json!({"id": id, "name": id, "kind": "simulated",
                        "config": {"skill": {"strategy": 0.9}, "seed": seed}}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    assert_eq!(run_pair(&app, &k).await["status"], "ok");
    let (_, alert) = quarantine(&app, &ws, "canary", "trust 0.10 < 0.30").await;
    let canary = run_pair(&app, &k).await;
    assert_eq!(canary["status"], "skipped", "{canary}");
    assert_eq!(canary["reason"], "quarantined: trust 0.10 < 0.30");
    let before = agent_json(&app, &k, "canary").await["quarantine"].clone();

    // Restart: the quarantine is in the store.
    let app = app.restart(tweak(path.clone())).await;
    app.ready().await;
    let after = agent_json(&app, &k, "canary").await["quarantine"].clone();
    assert_eq!(after, before);
    assert_eq!(after["alert_id"], alert.to_string());
    assert_eq!(run_pair(&app, &k).await["status"], "skipped");

    // Probation: one fan-out in two asks it.
    check_after(&app, 2).await;
    let first = run_pair(&app, &k).await;
    assert_eq!(first["status"], "skipped", "{first}");
    assert!(
        first["reason"].as_str().unwrap().starts_with("probation:"),
        "{first}"
    );
    let second = run_pair(&app, &k).await;
    assert_eq!(second["status"], "ok", "the canary's turn: {second}");
    assert_eq!(run_pair(&app, &k).await["status"], "skipped");

    let app = app.restart(tweak(path)).await;
    app.ready().await;
    assert_eq!(
        agent_json(&app, &k, "canary").await["quarantine"]["state"],
        "probation"
    );
    app.stop().await.unwrap();
}

both_backends!(fan_outs_skip_quarantined_agents_across_restarts);

/// The dashboard shows the quarantine as a badge with its reason on the
/// agent page and the trust page, and its "Re-admit now" form is the
/// operator's override.
async fn dashboard_shows_the_quarantine_and_readmits(backend: Backend) {
    use crate::dashboard::{browserless, sign_in};
    let app = spawn_app_with(backend, |s| s.alerts.enabled = false).await;
    let (ws, k) = app.workspace("A").await;
    app.agent(&k, "bad").await;
    outcomes(&app, &k, "bad", 1, 10.0).await;
    assert!(
        quarantine(&app, &ws, "bad", "trust 0.10 < 0.30 <b>")
            .await
            .0
    );
    let cookie = sign_in(&app, &k).await;
    let get = |path: &'static str| {
        let (app, cookie) = (&app, cookie.clone());
        async move {
            let res = browserless()
                .get(app.url(path))
                .header(reqwest::header::COOKIE, cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            res.text().await.unwrap()
        }
    };
    let html = get("/learning/agents/bad").await;
    assert!(html.contains(r#"data-quarantine="quarantined""#), "{html}");
    assert!(
        html.contains("trust 0.10 &#60; 0.30 &#60;b&#62;"),
        "the reason, escaped: {html}"
    );
    assert!(html.contains(r#"id="readmit-agent""#));
    let trust = get("/learning/trust-scores").await;
    assert!(
        trust.contains(r#"data-quarantine="quarantined""#),
        "{trust}"
    );

    let at = html.find(r#"name="csrf" value=""#).unwrap() + r#"name="csrf" value=""#.len();
    let csrf = &html[at..at + html[at..].find('"').unwrap()];
    let res = browserless()
        .post(app.url("/learning/agents/bad/enabled"))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[("csrf", csrf), ("enabled", "true"), ("back", "agent")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let a = agent_json(&app, &k, "bad").await;
    assert_eq!(a["quarantine"], Value::Null, "{a}");
    assert_eq!(a["override_grace"]["by"], format!("workspace:{ws}"));
    assert!(!get("/learning/agents/bad")
        .await
        .contains("data-quarantine"));
    app.stop().await.unwrap();
}

both_backends!(dashboard_shows_the_quarantine_and_readmits);

/// Low trust alone skips nobody (the `agent_trust_low` rule is the only
/// trigger, switched off here): an agent below `agents.disable_below_trust`
/// is still asked until something quarantines it; an operator's re-enable
/// then brings it back at once, whatever its trust.
async fn low_trust_alone_skips_nobody_and_override_readmits(backend: Backend) {
    let dir = pair_workflow();
    let path = dir.path().display().to_string();
    let app = spawn_app_with(backend, move |s| {
        s.workflows.dir = path;
        s.alerts.enabled = false;
        s.agents.probation_every = 0;
    })
    .await;
    let (ws, k) = app.workspace("A").await;
    for (id, config) in [
        ("steady", json!({"skill": {"strategy": 0.9}, "seed": 1})),
        (
            "canary",
            json!({"skill": {"strategy": 0.9}, "seed": 2, "error_rate": 1.0}),
        ),
    ] {
        let res = app
            .post(
                &k,
                "/api/v1/agents",
                &json!({"id": id, "name": id, "kind": "simulated", "config": config}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    // 20 failed calls (agents.disable_min_samples): trust falls below 0.3.
    for _ in 0..20 {
        assert_eq!(run_pair(&app, &k).await["status"], "error");
    }
    app.engine.trust_settled().await.unwrap();
    let card = app.json(&k, "/api/v1/learning/trust-scores/canary").await;
    assert!(card["overall_trust"].as_f64().unwrap() < 0.3, "{card}");
    let asked = run_pair(&app, &k).await;
    assert_eq!(asked["status"], "error", "no rule, no skip: {asked}");
    // Quarantined, then re-enabled by the operator: asked again despite its
    // trust.
    assert!(quarantine(&app, &ws, "canary", "trust low").await.0);
    assert_eq!(run_pair(&app, &k).await["status"], "skipped");
    let res = app
        .patch(&k, "/api/v1/agents/canary", &json!({"enabled": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let asked = run_pair(&app, &k).await;
    assert_eq!(asked["status"], "error", "asked in its grace: {asked}");
    app.stop().await.unwrap();
}

both_backends!(low_trust_alone_skips_nobody_and_override_readmits);

/// Review of issue 12: an operator's re-enable is a grace, not an amnesty.
/// With the alert rule on, an agent whose every call fails is quarantined
/// by `agent_trust_low`; the workspace key re-enables it (grace of
/// `agents.disable_min_samples` = 20 observations); it keeps failing, its
/// alert stays firing throughout, and once the grace is used up the still
/// breaching alert quarantines it again. Before the fix the rule acted only
/// when an alert was raised, so one re-enable kept a failing agent in every
/// fan-out until its trust climbed back above `clear` (never, for this one).
async fn re_enable_does_not_dodge_quarantine_for_good(backend: Backend) {
    let dir = pair_workflow();
    let path = dir.path().display().to_string();
    let app = spawn_app_with(backend, move |s| {
        s.workflows.dir = path;
        s.agents.probation_every = 0;
    })
    .await;
    let (_ws, k) = app.workspace("A").await;
    for (id, config) in [
        ("steady", json!({"skill": {"strategy": 0.9}, "seed": 1})),
        (
            "canary",
            json!({"skill": {"strategy": 0.9}, "seed": 2, "error_rate": 1.0}),
        ),
    ] {
        let res = app
            .post(
                &k,
                "/api/v1/agents",
                &json!({"id": id, "name": id, "kind": "simulated", "config": config}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut rx = app.engine.events().subscribe();
    for _ in 0..20 {
        assert_eq!(run_pair(&app, &k).await["status"], "error");
    }
    let (agent, state, _) = next_admission(&mut rx).await;
    assert_eq!(
        (agent.as_str(), state),
        ("canary", AdmissionEventState::Quarantined)
    );
    assert_eq!(run_pair(&app, &k).await["status"], "skipped");
    let firing = app
        .json(&k, "/api/v1/alerts?rule=agent_trust_low&status=firing")
        .await;
    assert_eq!(firing["items"].as_array().unwrap().len(), 1, "{firing}");

    // The tenant re-enables it: asked again during its grace.
    let res = app
        .patch(&k, "/api/v1/agents/canary", &json!({"enabled": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, state, _) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Readmitted);
    for i in 0..19 {
        assert_eq!(run_pair(&app, &k).await["status"], "error", "grace run {i}");
    }
    // The grace's last observations: the alert, still firing and still
    // breaching, quarantines it again.
    for _ in 0..2 {
        run_pair(&app, &k).await;
    }
    let (agent, state, _) = next_admission(&mut rx).await;
    assert_eq!(
        (agent.as_str(), state),
        ("canary", AdmissionEventState::Quarantined)
    );
    assert_eq!(run_pair(&app, &k).await["status"], "skipped");
    // Still the one alert: acting again raised no second one.
    let firing = app
        .json(&k, "/api/v1/alerts?rule=agent_trust_low&status=firing")
        .await;
    assert_eq!(firing["items"].as_array().unwrap().len(), 1, "{firing}");
    app.stop().await.unwrap();
}

both_backends!(re_enable_does_not_dodge_quarantine_for_good);

/// Review of issue 12: deleting a quarantined agent and registering it
/// again under the same id (its trust history stays) does not shed the
/// quarantine: the row goes with the agent, but the still-firing alert
/// quarantines it again at its next observation.
async fn delete_and_reregister_does_not_dodge_quarantine(backend: Backend) {
    let dir = pair_workflow();
    let path = dir.path().display().to_string();
    let app = spawn_app_with(backend, move |s| {
        s.workflows.dir = path;
        s.agents.probation_every = 0;
    })
    .await;
    let (_ws, k) = app.workspace("A").await;
    let canary = json!({"id": "canary", "name": "canary", "kind": "simulated",
        "config": {"skill": {"strategy": 0.9}, "seed": 2, "error_rate": 1.0}});
    let steady = json!({"id": "steady", "name": "steady", "kind": "simulated",
        "config": {"skill": {"strategy": 0.9}, "seed": 1}});
    for a in [&steady, &canary] {
        let res = app.post(&k, "/api/v1/agents", a).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mut rx = app.engine.events().subscribe();
    for _ in 0..20 {
        assert_eq!(run_pair(&app, &k).await["status"], "error");
    }
    let (_, state, _) = next_admission(&mut rx).await;
    assert_eq!(state, AdmissionEventState::Quarantined);

    let res = app
        .client
        .delete(app.url("/api/v1/agents/canary"))
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.post(&k, "/api/v1/agents", &canary).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Asked once (no quarantine row any more); that failure's trust update
    // finds the alert still breaching and quarantines it again.
    assert_eq!(run_pair(&app, &k).await["status"], "error");
    let (agent, state, _) = next_admission(&mut rx).await;
    assert_eq!(
        (agent.as_str(), state),
        ("canary", AdmissionEventState::Quarantined)
    );
    assert_eq!(run_pair(&app, &k).await["status"], "skipped");
    app.stop().await.unwrap();
}

both_backends!(delete_and_reregister_does_not_dodge_quarantine);
