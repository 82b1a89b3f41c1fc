//! Learning cycles through the API: patterns found on simulated agents of
//! known skill, confirmed on new outcomes, with rules, a hold-out accuracy and
//! insights in plain words; single flight per workspace.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::OutputWithin;
use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};

fn dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("panel.toml"),
        r#"
name = "panel"
[[stages]]
name = "opinions"
agents = ["expert", "coin_a", "coin_b", "weak"]
recommendation_type = "strategy"
timeout_ms = 10000
"#,
    )
    .unwrap();
    dir
}

/// The panel's agents: an expert, two coin-flippers and a weak one.
fn panel_agents() -> Vec<Value> {
    [("expert", 0.95), ("coin_a", 0.5), ("coin_b", 0.5), ("weak", 0.2)]
        .iter()
        .enumerate()
        .map(|(i, (id, skill))| {
            json!({"id": id, "name": id, "kind": "simulated", "config": {"skill": {"strategy": skill}, "seed": i}})
        })
        .collect()
}

async fn register_panel(app: &TestApp, key: &str) {
    for body in panel_agents() {
        let res = app.post(key, "/api/v1/agents", &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
}

async fn runs(app: &TestApp, key: &str, n: usize) {
    for _ in 0..n {
        let res = app
            .post(
                key,
                "/api/v1/workflows/runs",
                &json!({"workflow": "panel", "wait": true}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

async fn cycles_find_confirm_and_explain(backend: Backend) {
    let d = dir();
    let app = spawn_app_with(backend, |s| {
        s.workflows.dir = d.path().display().to_string();
        s.learning.cycle_every_outcomes = 0; // only explicit cycles here
                                             // The 0.2 agent falls below 0.3 and would be skipped: keep every
                                             // agent asked so the counts below are exact.
        s.agents.disable_below_trust = 0.0;
    })
    .await;
    let (_, k) = app.workspace("A").await;
    assert_error(
        app.get(&k, "/api/v1/learning/cycles/latest").await,
        StatusCode::NOT_FOUND,
        "cycle_not_found",
        None,
    )
    .await;
    register_panel(&app, &k).await;
    runs(&app, &k, 60).await;
    let res = app.post(&k, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["recommendations_processed"], 240);
    assert!(
        first["patterns_discovered"].as_u64().unwrap() >= 1,
        "{first}"
    );
    assert!(first["model_accuracy"].as_f64().is_some());
    let experts = app
        .json(&k, "/api/v1/learning/patterns?category=expert")
        .await;
    let items = experts["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the real expert: {experts}");
    assert_eq!(items[0]["key"], "expert:expert:strategy");
    assert_eq!(items[0]["status"], "candidate");
    let rate = items[0]["success_rate"].as_f64().unwrap();
    assert!(
        items[0]["ci_low"].as_f64().unwrap() <= rate
            && rate <= items[0]["ci_high"].as_f64().unwrap()
    );

    assert_eq!(first["insights"]["new_outcomes"], 240);
    // New outcomes confirm it; a rule follows. Only the new outcomes are read.
    runs(&app, &k, 30).await;
    let second: Value = app
        .post(&k, "/api/v1/learning/cycles", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        second["insights"]["new_outcomes"], 120,
        "incremental: {second}"
    );
    assert_eq!(second["recommendations_processed"], 360);
    assert!(
        second["patterns_confirmed"].as_u64().unwrap() >= 1,
        "{second}"
    );
    assert!(second["rules_updated"].as_u64().unwrap() >= 1);
    let confirmed = app
        .json(
            &k,
            "/api/v1/learning/patterns?status=confirmed&category=expert",
        )
        .await;
    assert_eq!(
        confirmed["items"][0]["key"], "expert:expert:strategy",
        "{confirmed}"
    );
    let latest = app.json(&k, "/api/v1/learning/cycles/latest").await;
    assert_eq!(latest["id"], second["id"]);
    assert_eq!(
        app.json(&k, "/api/v1/learning/cycles").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let insights = app.json(&k, "/api/v1/learning/insights").await;
    let text = insights["key_insights"].to_string();
    assert!(text.contains("expert"), "{insights}");
    assert!(
        insights["recommended_actions"]
            .to_string()
            .contains("Leverage expert agents for strategy"),
        "{insights}"
    );
    assert!(insights["confirmed_patterns"].as_u64().unwrap() >= 1);

    // A changed verdict makes the next cycle reload everything.
    let recs = app
        .json(&k, "/api/v1/recommendations?limit=1&agent_id=weak")
        .await;
    let rid = recs["items"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &k,
            &format!("/api/v1/recommendations/{rid}/feedback"),
            &json!({"status": "approved"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let third: Value = app
        .post(&k, "/api/v1/learning/cycles", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        third["insights"]["new_outcomes"], 360,
        "full reload after feedback: {third}"
    );

    // Pagination and bad filters.
    let page = app.json(&k, "/api/v1/learning/patterns?limit=1").await;
    if let Some(cursor) = page["next_cursor"].as_str() {
        let next = app
            .json(
                &k,
                &format!("/api/v1/learning/patterns?limit=1&cursor={cursor}"),
            )
            .await;
        assert_ne!(next["items"][0]["key"], page["items"][0]["key"]);
    }
    assert_error(
        app.get(&k, "/api/v1/learning/patterns?category=astrology")
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("category"),
    )
    .await;
    app.stop().await.unwrap();
}
both_backends!(cycles_find_confirm_and_explain);

/// Two runners on one PostgreSQL database: while one holds a workspace's
/// learning-cycle lock, the other can neither take it nor run a cycle; once
/// released, it can.
#[actix_web::test]
async fn postgres_advisory_lock_keeps_cycles_single_across_nodes() {
    if !crate::helpers::postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let d = dir();
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.workflows.dir = d.path().display().to_string()
    })
    .await;
    let (id, k) = app.workspace("A").await;
    let ws = swarmwise_actors::domain::WorkspaceId(id.parse().unwrap());
    // A second node: its own store (own pool) on the same database.
    let settings = swarmwise::config::DatabaseSettings {
        url: app.database_url.clone(),
        migrate: false,
        ..Default::default()
    };
    let other = swarmwise::store::connect(&settings).await.unwrap();
    let held = other
        .try_lock_cycle(ws)
        .await
        .unwrap()
        .expect("the other node takes the lock");
    assert!(
        app.store.try_lock_cycle(ws).await.unwrap().is_none(),
        "not while the other node holds it"
    );
    let res = app.post(&k, "/api/v1/learning/cycles", &json!({})).await;
    let body = assert_error(res, StatusCode::CONFLICT, "conflict", None).await;
    assert!(body["message"].as_str().unwrap().contains("another node"));
    held.release().await;
    let res = app.post(&k, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK, "free again");
    app.stop().await.unwrap();
}

/// With Redis configured, pattern lists are cached there and a new cycle
/// deletes the entry.
#[actix_web::test]
async fn patterns_are_cached_in_redis_and_invalidated_by_a_cycle() {
    if !crate::helpers::redis_available().await {
        return;
    }
    use redis::AsyncCommands;
    let d = dir();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.workflows.dir = d.path().display().to_string();
        s.redis.url = crate::helpers::redis_url();
        s.learning.cycle_every_outcomes = 0;
    })
    .await;
    let (id, k) = app.workspace("A").await;
    register_panel(&app, &k).await;
    runs(&app, &k, 40).await;
    let key = format!("swarmwise:patterns:{id}");
    let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(
        app.post(&k, "/api/v1/learning/cycles", &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    let first = app.json(&k, "/api/v1/learning/patterns").await;
    let cached: Option<String> = conn.get(&key).await.unwrap();
    let cached: Vec<Value> =
        serde_json::from_str(&cached.expect("patterns cached in Redis")).unwrap();
    assert_eq!(cached.len(), first["items"].as_array().unwrap().len());
    let ttl: i64 = conn.ttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    // A new cycle deletes the entry; the next read fills it again.
    assert_eq!(
        app.post(&k, "/api/v1/learning/cycles", &json!({}))
            .await
            .status(),
        StatusCode::OK
    );
    let gone: Option<String> = conn.get(&key).await.unwrap();
    assert!(gone.is_none(), "invalidated by the cycle");
    app.json(&k, "/api/v1/learning/patterns").await;
    let again: Option<String> = conn.get(&key).await.unwrap();
    assert!(again.is_some());
    let _: () = conn.del(&key).await.unwrap();
    app.stop().await.unwrap();
}

/// A cycle that cannot complete is stored as failed with its error and
/// published as a critical event.
#[actix_web::test]
async fn failed_cycle_is_recorded_and_published() {
    use sqlx::Connection;
    let d = dir();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.workflows.dir = d.path().display().to_string()
    })
    .await;
    let (_, k) = app.workspace("A").await;
    let mut events = app.engine.events().subscribe();
    // Break the patterns table under the running service.
    let mut conn = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE recommendation_patterns RENAME TO patterns_gone")
        .execute(&mut conn)
        .await
        .unwrap();
    let res = app.post(&k, "/api/v1/learning/cycles", &json!({})).await;
    assert!(res.status().is_server_error(), "{}", res.status());
    loop {
        if let swarmwise_actors::events::Event::LearningCycle { status, error, .. } =
            crate::helpers::next_event(&mut events).await
        {
            assert_eq!(status, "failed");
            assert!(error.unwrap().contains("recommendation_patterns"));
            break;
        }
    }
    let cycles = app.json(&k, "/api/v1/learning/cycles").await;
    assert_eq!(cycles["items"][0]["status"], "failed");
    assert!(cycles["items"][0]["error"]
        .as_str()
        .unwrap()
        .contains("recommendation_patterns"));
    sqlx::query("ALTER TABLE patterns_gone RENAME TO recommendation_patterns")
        .execute(&mut conn)
        .await
        .unwrap();
    app.stop().await.unwrap();
}

/// `swarmwise schedule` lists the jobs with next run times; `swarmwise
/// learn --workspace` runs one cycle against the database and prints its
/// report; an unknown workspace is refused with a clear message.
#[actix_web::test]
async fn schedule_and_learn_commands() {
    let bin = env!("CARGO_BIN_EXE_swarmwise");
    let out = std::process::Command::new(bin)
        .arg("schedule")
        .output_within()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("learning_cycle")
            && text.contains("0 0 2 * * *")
            && text.contains("next: 20"),
        "{text}"
    );
    assert!(text.contains("trust_recompute"));

    // Prepare the data with the real server in its own process, then stop it,
    // so the command has the SQLite file to itself.
    let d = dir();
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/swarmwise.db", data.path().display());
    let dir_path = d.path().display().to_string();
    let server = crate::helpers::spawn_server(&[
        ("SWARMWISE__DATABASE__URL", &url),
        ("SWARMWISE__AUTH__ADMIN_KEY", "admin-learn"),
        ("SWARMWISE__SCHEDULER__ENABLED", "false"),
        ("SWARMWISE__LEARNING__CYCLE_EVERY_OUTCOMES", "0"),
        // The 0.2 agent would be disabled (trust < 0.3); keep the counts exact.
        ("SWARMWISE__AGENTS__DISABLE_BELOW_TRUST", "0"),
        ("SWARMWISE__WORKFLOWS__DIR", &dir_path),
    ]);
    let base = server.address.clone();
    let client = reqwest::Client::new();
    let ws: Value = client
        .post(format!("{base}/api/v1/workspaces"))
        .bearer_auth("admin-learn")
        .json(&json!({"name": "cli"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = ws["id"].as_str().unwrap().to_owned();
    let k = ws["api_key"].as_str().unwrap().to_owned();
    for body in panel_agents() {
        let res = client
            .post(format!("{base}/api/v1/agents"))
            .bearer_auth(&k)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    for _ in 0..40 {
        let res = client
            .post(format!("{base}/api/v1/workflows/runs"))
            .bearer_auth(&k)
            .json(&json!({"workflow": "panel", "wait": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(server.sigterm().success());

    let learn = |ws: &str| {
        std::process::Command::new(bin)
            .args(["learn", "--workspace", ws])
            .env("SWARMWISE__DATABASE__URL", &url)
            .env("SWARMWISE__DEMO__ENABLED", "false")
            .output_within()
            .unwrap()
    };
    let out = learn(&id);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("succeeded") && text.contains("outcomes 160"),
        "{text}"
    );
    assert!(
        text.contains("key insights:") && text.contains("model accuracy"),
        "report printed: {text}"
    );
    let out = learn(&uuid::Uuid::now_v7().to_string());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// Item 8 of issue 10: outcomes reported over REST and human feedback count
/// towards `learning.cycle_every_outcomes` exactly like workflow runs.
async fn rest_outcomes_and_feedback_count_towards_cycles(backend: Backend) {
    use swarmwise_actors::events::Event;
    let app = spawn_app_with(backend, |s| {
        s.learning.cycle_every_outcomes = 5;
        s.scheduler.enabled = false;
    })
    .await;
    let (ws, k) = app.workspace("A").await;
    let (_, other) = app.workspace("B").await;
    app.agent(&k, "a1").await;
    app.agent(&k, "a2").await;
    app.agent(&other, "a1").await;
    let mut events = app.engine.events().subscribe();
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.track(
                &k,
                if i % 2 == 0 { "a1" } else { "a2" },
                "wf-1",
                "strategy",
                0.8,
            )
            .await,
        );
    }
    // Another workspace's outcomes do not count towards this one's.
    for _ in 0..4 {
        app.track(&other, "a1", "wf-x", "strategy", 0.8).await;
    }
    let summary = app.outcome(&other, "wf-x", 90.0).await;
    assert_eq!(summary["evaluated"], 4);
    let summary = app.outcome(&k, "wf-1", 90.0).await;
    assert_eq!(summary["evaluated"], 4);
    // 4 of 5: nothing requested yet (a request would show as a cycle row).
    let cycles = app.json(&k, "/api/v1/learning/cycles").await;
    assert_eq!(cycles["items"].as_array().unwrap().len(), 0, "{cycles}");
    // Feedback is the fifth outcome: a cycle is requested and runs.
    let res = app
        .post(
            &k,
            &format!("/api/v1/recommendations/{}/feedback", ids[0]),
            &json!({"status": "rejected"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    loop {
        if let Event::LearningCycle { workspace_id, .. } =
            crate::helpers::next_event(&mut events).await
        {
            if workspace_id.to_string() == ws {
                break;
            }
        }
    }
    let cycles = app.json(&k, "/api/v1/learning/cycles").await;
    let items = cycles["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{cycles}");
    assert_eq!(items[0]["reason"], "outcomes");
    // Workspace B, at 4 outcomes, had none.
    let b = app.json(&other, "/api/v1/learning/cycles").await;
    assert_eq!(b["items"].as_array().unwrap().len(), 0, "{b}");
    app.stop().await.unwrap();
}

both_backends!(rest_outcomes_and_feedback_count_towards_cycles);

/// Item 6 of issue 10: a learning cycle learns from unevaluated workflows.
/// Eight agents of known skill (0.55 … 0.95) answer a 3-way decision on 300
/// workflows, four each, erring independently; only every tenth workflow is
/// evaluated (feedback per recommendation). The cycle's insights report the
/// agreement model in use, and its accuracies are closer to the true skills
/// than the verdicts' alone. Another workspace's cycle sees none of it.
/// Seeded.
async fn cycles_learn_from_unevaluated_workflows(backend: Backend) {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let app = spawn_app_with(backend, |s| {
        s.learning.cycle_every_outcomes = 0;
        s.scheduler.enabled = false;
    })
    .await;
    let (ws, k) = app.workspace("A").await;
    let (_, other) = app.workspace("B").await;
    let skill: Vec<f64> = (0..8).map(|j| 0.55 + 0.4 * j as f64 / 7.0).collect();
    for j in 0..8 {
        app.agent(&k, &format!("s{j}")).await;
    }
    app.agent(&other, "s0").await;
    let mut rng = StdRng::seed_from_u64(21);
    let mut items = Vec::new();
    let mut right_of = Vec::new();
    for w in 0..300 {
        let truth = rng.gen_range(0..3usize);
        let mut agents: Vec<usize> = (0..8).collect();
        for _ in 0..4 {
            let j = agents.swap_remove(rng.gen_range(0..agents.len()));
            let right = rng.gen_bool(skill[j]);
            let d = if right {
                truth
            } else {
                (truth + rng.gen_range(1..3)) % 3
            };
            items.push(json!({
                "agent_id": format!("s{j}"), "correlation_id": format!("c{w}"), "workflow_id": format!("wf-{w}"),
                "recommendation_type": "triage", "content": {"decision": format!("d{d}")}, "confidence": 0.7
            }));
            right_of.push((w % 10 == 0, right));
        }
    }
    let mut ids: Vec<String> = Vec::new();
    for chunk in items.chunks(400) {
        let res = app
            .post(
                &k,
                "/api/v1/recommendations/batch",
                &json!({ "items": chunk }),
            )
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let v: Value = res.json().await.unwrap();
        ids.extend(
            v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned()),
        );
    }
    for (id, &(evaluated, right)) in ids.iter().zip(&right_of) {
        if evaluated {
            let status = if right { "approved" } else { "rejected" };
            let res = app
                .post(
                    &k,
                    &format!("/api/v1/recommendations/{id}/feedback"),
                    &json!({ "status": status }),
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
        }
    }
    let res = app.post(&k, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let latest = app.json(&k, "/api/v1/learning/cycles/latest").await;
    let a = &latest["insights"]["agreement"];
    assert_eq!(a["in_use"], true, "{a}");
    assert!(a["lambda"].as_f64().unwrap() > 0.0, "{a}");
    assert_eq!(a["evaluated_groups"], 30, "{a}");
    assert_eq!(a["unevaluated_groups"], 270, "{a}");
    // The type's full model: three decisions, eight agents, gold in the
    // evaluated workflows whose approved answers agree.
    let model = &a["model_summaries"]["triage"];
    assert_eq!(model["labels"], 3, "{a}");
    assert_eq!(model["agents"], 8, "{a}");
    assert!(model["gold_groups"].as_u64().unwrap() >= 20, "{a}");
    let err = |field: &str| {
        (0..8)
            .map(|j| {
                let cell = &a["cells"][format!("s{j}")]["triage"];
                (cell[field].as_f64().unwrap() - skill[j]).abs()
            })
            .sum::<f64>()
            / 8.0
    };
    eprintln!(
        "agreement through the API: mean |error| {:.3} (verdicts only) -> {:.3}",
        err("verdict_accuracy"),
        err("accuracy")
    );
    assert!(err("accuracy") < err("verdict_accuracy"), "{a}");
    // The engine publishes it to the trust vote.
    let ws = swarmwise_actors::domain::WorkspaceId(ws.parse().unwrap());
    let published = app.engine.agreement(ws).expect("published");
    let s7 = swarmwise_actors::domain::AgentId::parse("agent_id", "s7").unwrap();
    assert_eq!(
        published.accuracy(&s7, "triage"),
        a["cells"]["s7"]["triage"]["accuracy"].as_f64()
    );
    // Workspace B's cycle sees only B's (empty) data.
    let res = app
        .post(&other, "/api/v1/learning/cycles", &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let b = app.json(&other, "/api/v1/learning/cycles/latest").await;
    let ba = &b["insights"]["agreement"];
    assert_eq!(ba["in_use"], false, "{ba}");
    assert_eq!(ba["cells"], json!({}), "{ba}");
    // A restarted node restores the estimate from the latest cycle.
    let expected = published.accuracy(&s7, "triage");
    let app = app.restart(|_| {}).await;
    let restored = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            if let Some(e) = app.engine.agreement(ws) {
                break e;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the agreement estimate was not restored within 30 s");
    assert_eq!(restored.accuracy(&s7, "triage"), expected);
    app.stop().await.unwrap();
}

both_backends!(cycles_learn_from_unevaluated_workflows);
