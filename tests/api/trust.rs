//! Trust end to end: simulated agents of known skill reported through the
//! API; the ranking, boosts and the incremental = recompute invariant.

use rand::{rngs::StdRng, Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise_actors::trust::maths::spearman;

use crate::both_backends;
use crate::helpers::{poll_until, spawn_app, spawn_app_with, Backend, TestApp};

const SKILLS: [(&str, f64); 4] = [
    ("expert", 0.9),
    ("good", 0.7),
    ("coin", 0.5),
    ("poor", 0.15),
];

/// 60 workflows; each agent recommends once per workflow and its verdict is
/// drawn from its skill (fixed seed).
async fn simulate(app: &TestApp, key: &str, workflows: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for w in 0..workflows {
        let wf = format!("wf-{seed}-{w}");
        let items: Vec<Value> = SKILLS
            .iter()
            .map(|(a, _)| json!({"agent_id": a, "correlation_id": wf, "workflow_id": wf, "recommendation_type": "strategy",
                                  "content": {"decision": "go"}, "confidence": 0.7, "latency_ms": 900}))
            .collect();
        let res = app
            .post(
                key,
                "/api/v1/recommendations/batch",
                &json!({"items": items}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let ids: Value = res.json().await.unwrap();
        let verdicts: Vec<Value> = SKILLS
            .iter()
            .zip(ids["ids"].as_array().unwrap())
            .map(|((_, skill), id)| {
                let status = if rng.gen_bool(*skill) {
                    "approved"
                } else {
                    "rejected"
                };
                json!({"recommendation_id": id, "status": status})
            })
            .collect();
        let res = app
            .post(
                key,
                &format!("/api/v1/workflows/{wf}/outcome"),
                &json!({"overall_quality_score": 60, "verdicts": verdicts}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
}

async fn trust_ranks_agents_and_recompute_matches(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, k) = app.workspace("A").await;
    for (a, _) in SKILLS {
        app.agent(&k, a).await;
    }
    app.agent(&k, "newcomer").await;
    simulate(&app, &k, 60, 7).await;
    app.engine.trust_settled().await.unwrap();

    let scores = app.json(&k, "/api/v1/learning/trust-scores").await;
    let card = |id: &str| {
        scores["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["agent_id"] == id)
            .cloned()
            .unwrap()
    };
    let truth: Vec<f64> = SKILLS.iter().map(|s| s.1).collect();
    let learned: Vec<f64> = SKILLS
        .iter()
        .map(|s| card(s.0)["accuracy_score"].as_f64().unwrap())
        .collect();
    let rho = spearman(&truth, &learned);
    assert!(rho >= 0.9, "spearman {rho}: {learned:?}");
    assert_eq!(card("expert")["sample_count"], 60);
    assert_eq!(card("newcomer")["sample_count"], 0);

    // Boosts: the expert is promoted, the poor agent demoted, the newcomer neutral.
    let boost = |id: &'static str| {
        let app = &app;
        let k = k.clone();
        async move {
            app.json(
                &k,
                &format!("/api/v1/learning/agents/{id}/boost?recommendation_type=strategy"),
            )
            .await
        }
    };
    let e = boost("expert").await;
    assert!(e["boost"].as_f64().unwrap() > 0.2, "{e}");
    assert_eq!(e["priority"], "CRITICAL");
    let p = boost("poor").await;
    assert!(p["boost"].as_f64().unwrap() < -0.2, "{p}");
    assert_eq!(p["priority"], "LOW");
    let n = boost("newcomer").await;
    assert_eq!(n["boost"].as_f64(), Some(0.0));
    assert_eq!(n["priority"], "NORMAL");

    // The per-agent card has per-type cards and history.
    let one = app.json(&k, "/api/v1/learning/trust-scores/expert").await;
    assert_eq!(one["per_type"][0]["recommendation_type"], "strategy");
    assert!(!one["history"].as_array().unwrap().is_empty());

    // A full recompute from the store gives the same numbers.
    let res = app
        .post(&k, "/api/v1/learning/trust/recompute", &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let again = app.json(&k, "/api/v1/learning/trust-scores").await;
    assert_eq!(scores, again);

    // CSV export lists every agent with a header.
    let res = app.get(&k, "/api/v1/learning/agents/metrics.csv").await;
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("agent_id,agent_name,total_recommendations"));
    assert_eq!(lines.len(), 6);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("expert,Agent expert,60,0,")),
        "{csv}"
    );

    // Initialising trust rows is idempotent.
    let first: Value = app
        .post(
            &k,
            "/api/v1/learning/debug/initialize-trust-scores",
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        first["initialized"], 1,
        "only the newcomer had no row: {first}"
    );
    let second: Value = app
        .post(
            &k,
            "/api/v1/learning/debug/initialize-trust-scores",
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (second["initialized"].as_u64(), second["existing"].as_u64()),
        (Some(0), Some(5))
    );
    app.stop().await.unwrap();
}
both_backends!(trust_ranks_agents_and_recompute_matches);

/// The expert's card as the API serves it (in memory) and the number of
/// its stored trust history points (one per save of its card).
async fn expert_card_and_saves(app: &TestApp, key: &str) -> (Value, usize) {
    let one = app.json(key, "/api/v1/learning/trust-scores/expert").await;
    let saves = one["history"].as_array().map_or(0, Vec::len);
    (one, saves)
}

/// `trust.persist_interval_ms`: saves of the changed cards are at least
/// that far apart, so a burst of evaluations is saved once, not once each,
/// while the API serves the current cards all along; with 0 every settled
/// evaluation is saved (one history point each), and settling saves what
/// waits at once. Could fail: a save per evaluation regardless of the
/// interval, a waiting save that settling does not start, or one that
/// saves stale cards.
async fn trust_saves_are_spaced_by_the_persist_interval(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.trust.persist_interval_ms = 0).await;
    let (_, k) = app.workspace("A").await;
    for (a, _) in SKILLS {
        app.agent(&k, a).await;
    }
    for seed in 0..3 {
        simulate(&app, &k, 1, seed).await;
        app.engine.trust_settled().await.unwrap();
    }
    let (card, saves) = expert_card_and_saves(&app, &k).await;
    assert_eq!(card["sample_count"], 3, "{card}");
    assert_eq!(saves, 3, "interval 0: one save per settled evaluation");
    app.stop().await.unwrap();

    // A minute apart: the first save goes at once, the next waits.
    let app = spawn_app_with(backend, |s| s.trust.persist_interval_ms = 60_000).await;
    let (_, k) = app.workspace("B").await;
    for (a, _) in SKILLS {
        app.agent(&k, a).await;
    }
    simulate(&app, &k, 1, 10).await;
    poll_until("the first save of the cards", || async {
        match expert_card_and_saves(&app, &k).await {
            (_, 1) => Ok(()),
            (_, n) => Err(format!("{n} saves")),
        }
    })
    .await;
    simulate(&app, &k, 4, 11).await;
    poll_until("the API to serve all five outcomes", || async {
        let (card, _) = expert_card_and_saves(&app, &k).await;
        if card["sample_count"] == 5 {
            Ok(())
        } else {
            Err(card["sample_count"].to_string())
        }
    })
    .await;
    let (_, saves) = expert_card_and_saves(&app, &k).await;
    assert_eq!(
        saves, 1,
        "four more evaluations within the interval are not saved yet"
    );
    // Settling (as a shutdown does) saves the waiting cards at once, as
    // they are now: one more point, with all five outcomes. (Waiting out
    // the minute instead would trip the timeout.)
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        app.engine.trust_settled(),
    )
    .await
    .expect("settling starts the waiting save instead of waiting out the interval")
    .unwrap();
    let (card, saves) = expert_card_and_saves(&app, &k).await;
    assert_eq!(saves, 2, "settling saved the waiting cards");
    let newest = card["history"]
        .as_array()
        .and_then(|h| h.first())
        .cloned()
        .unwrap_or_default();
    assert_eq!(newest["sample_count"], 5, "{card}");
    app.stop().await.unwrap();
}

both_backends!(trust_saves_are_spaced_by_the_persist_interval);
