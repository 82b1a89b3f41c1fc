//! Tokens and cost per agent (issue 14, item 4): usage reported by a real
//! OpenAI-compatible peer and a webhook agent on loopback, priced from the
//! `[costs.models]` table, recorded per recommendation, summed per agent and
//! workspace (API, CSV, metrics); tenants cannot set a cost, absurd usage is
//! dropped, and one workspace never sees another's totals.

use std::collections::BTreeMap;

use actix_web::{web, HttpRequest, HttpResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::costs::{CostSettings, ModelPrice};

use crate::both_backends;
use crate::helpers::{assert_error, loopback_peer, poll_until, spawn_app_with, Backend};

/// gpt-4o-mini at 0.15 / 0.60 USD per million tokens.
fn prices() -> CostSettings {
    let mut models = BTreeMap::new();
    models.insert(
        "gpt-4o-mini".to_owned(),
        ModelPrice {
            prompt_per_million: 0.15,
            completion_per_million: 0.60,
        },
    );
    CostSettings { models }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// A loopback peer: `/v1/chat/completions` answers like OpenAI (a dated
/// model name for `gpt-4o-mini`, 1200 + 300 tokens; 50 + 5 for any other
/// model), `/hook` like a webhook agent reporting usage, a cost of its own
/// (ignored) and a model name that is a spreadsheet formula; `/absurd`
/// reports usage no real call has.
fn peer() -> std::net::SocketAddr {
    loopback_peer(
        "127.0.0.1",
        |req: HttpRequest, body: web::Json<Value>| async move {
            let answer =
                json!({"content": {"decision": "launch"}, "confidence": 0.8, "reasoning": "model"});
            match req.path() {
                "/v1/chat/completions" => {
                    let (model, p, c) = if body["model"] == "gpt-4o-mini" {
                        ("gpt-4o-mini-2024-07-18", 1200, 300)
                    } else {
                        ("llama3.1:8b", 50, 5)
                    };
                    HttpResponse::Ok().json(json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer.to_string()}}],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
                    }))
                }
                "/hook" => HttpResponse::Ok().json(json!({
                    "content": {"decision": "wait"}, "confidence": 0.6,
                    "model": "gpt-4o-mini", "cost_usd": 0.0,
                    "usage": {"input_tokens": 2000, "output_tokens": 1000}
                })),
                _ => HttpResponse::Ok().json(json!({
                    "id": "chatcmpl-2", "model": "=HYPERLINK(\"http://evil\")",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.to_string()}}],
                    "usage": {"prompt_tokens": -5, "completion_tokens": 1e30, "total_tokens": "many"}
                })),
            }
        },
    )
}

async fn register(app: &crate::helpers::TestApp, key: &str, id: &str, kind: &str, config: Value) {
    let res = app
        .post(
            key,
            "/api/v1/agents",
            &json!({"id": id, "name": format!("Agent {id}"), "kind": kind, "config": config}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        res.text().await.unwrap()
    );
}

/// A real workflow run against the loopback peer: every recommendation
/// carries its tokens and cost, and the totals (API, per-agent metrics, CSV,
/// Prometheus series) add up to the recorded rows.
async fn usage_is_recorded_priced_and_totalled(backend: Backend) {
    let addr = peer();
    let app = spawn_app_with(backend, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.costs = prices();
        s.telemetry.stats_refresh_secs = 1;
    })
    .await;
    app.ready().await;
    let (_, k) = app.workspace("costs").await;
    let base = format!("http://{addr}/v1");
    register(
        &app,
        &k,
        "market_researcher",
        "openai",
        json!({"base_url": base, "model": "gpt-4o-mini"}),
    )
    .await;
    register(
        &app,
        &k,
        "psyche_lens",
        "openai",
        json!({"base_url": base, "model": "llama3.1:8b"}),
    )
    .await;
    register(
        &app,
        &k,
        "trend_scout",
        "http",
        json!({"url": format!("http://{addr}/hook"), "retries": 0}),
    )
    .await;
    let res = app
        .post(
            &k,
            "/api/v1/workflows/runs",
            &json!({"workflow": "move_creation", "wait": true}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());

    let recs = app.json(&k, "/api/v1/recommendations?limit=50").await;
    let by_agent: BTreeMap<String, Value> = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agent_id"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    // Priced by the requested model's row, stored under the answering name.
    let m = &by_agent["market_researcher"];
    assert_eq!(m["model"], "gpt-4o-mini-2024-07-18", "{m}");
    assert_eq!(
        (m["prompt_tokens"].as_u64(), m["completion_tokens"].as_u64()),
        (Some(1200), Some(300))
    );
    let m_cost = 1200.0 * 0.15 / 1e6 + 300.0 * 0.60 / 1e6;
    assert!(close(m["cost_usd"].as_f64().unwrap(), m_cost), "{m}");
    // A model without a price row: tokens recorded, cost unknown.
    let p = &by_agent["psyche_lens"];
    assert_eq!(
        (p["prompt_tokens"].as_u64(), p["completion_tokens"].as_u64()),
        (Some(50), Some(5))
    );
    assert!(p["cost_usd"].is_null(), "{p}");
    // A webhook's own cost_usd is ignored: the service prices its usage.
    let t = &by_agent["trend_scout"];
    assert_eq!(
        (t["prompt_tokens"].as_u64(), t["completion_tokens"].as_u64()),
        (Some(2000), Some(1000))
    );
    let t_cost = 2000.0 * 0.15 / 1e6 + 1000.0 * 0.60 / 1e6;
    assert!(close(t["cost_usd"].as_f64().unwrap(), t_cost), "{t}");

    // Workspace totals and per agent.
    let costs = app.json(&k, "/api/v1/learning/costs").await;
    assert_eq!(costs["currency"], "USD");
    assert_eq!(costs["total"]["prompt_tokens"], 1200 + 50 + 2000, "{costs}");
    assert_eq!(costs["total"]["completion_tokens"], 300 + 5 + 1000);
    assert_eq!(costs["total"]["recommendations"], 3);
    assert_eq!(costs["total"]["unpriced_recommendations"], 1);
    assert!(close(
        costs["total"]["cost_usd"].as_f64().unwrap(),
        m_cost + t_cost
    ));
    assert_eq!(costs["agents"].as_array().unwrap().len(), 3);
    let one = app
        .json(&k, "/api/v1/learning/costs?agent_id=trend_scout")
        .await;
    assert_eq!(one["agents"][0]["agent_name"], "Agent trend_scout");
    assert_eq!(one["total"]["prompt_tokens"], 2000);
    let later = app
        .json(&k, "/api/v1/learning/costs?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(later["total"]["recommendations"], 0, "{later}");
    let metrics = app
        .json(&k, "/api/v1/learning/agents/market_researcher/metrics")
        .await;
    assert_eq!(metrics["prompt_tokens"], 1200);
    assert_eq!(metrics["completion_tokens"], 300);
    assert!(close(metrics["cost_usd"].as_f64().unwrap(), m_cost));

    // CSV: the three new columns, at the end.
    let csv = app
        .get(&k, "/api/v1/learning/agents/metrics.csv")
        .await
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[header.len() - 3..],
        ["prompt_tokens", "completion_tokens", "cost_usd"]
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with("trend_scout,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!(row[row.len() - 3..row.len() - 1], ["2000", "1000"]);
    assert!(close(row[row.len() - 1].parse().unwrap(), t_cost), "{csv}");

    // Prometheus: per-agent series from the stored rows, and the node's
    // per-model counter labelled only with price-table keys.
    let text = poll_until("the per-agent token series", || async {
        let text = app.metrics_text().await;
        if text.contains("swarmwise_agent_tokens_total{")
            && text.contains("agent=\"trend_scout\",kind=\"prompt\"} 2000")
        {
            Ok(text)
        } else {
            Err(text
                .lines()
                .filter(|l| l.contains("tokens"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    })
    .await;
    assert!(text.contains("swarmwise_agent_cost_usd_total{"), "{text}");
    let models: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("swarmwise_model_tokens_total{"))
        .collect();
    assert!(!models.is_empty(), "{text}");
    assert!(
        models
            .iter()
            .all(|l| l.contains("model=\"gpt-4o-mini\"") || l.contains("model=\"_other\"")),
        "a model label only from the price table: {models:?}"
    );
    app.stop().await.unwrap();
}
both_backends!(usage_is_recorded_priced_and_totalled);

/// Usage no real call has (negative, 1e30, a string, a formula as model) is
/// dropped: the answer is tracked, its counts and cost are unknown, and the
/// model falls back to the one the config asked for.
#[actix_web::test]
async fn absurd_usage_from_an_agent_is_recorded_as_unknown() {
    let addr = peer();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.costs = prices();
    })
    .await;
    let (_, k) = app.workspace("absurd").await;
    register(
        &app,
        &k,
        "market_researcher",
        "openai",
        json!({"base_url": format!("http://{addr}/absurd"), "model": "gpt-4o-mini"}),
    )
    .await;
    let res = app
        .post(
            &k,
            "/api/v1/workflows/runs",
            &json!({"workflow": "move_creation", "wait": true}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let recs = app
        .json(&k, "/api/v1/recommendations?agent_id=market_researcher")
        .await;
    let r = &recs["items"][0];
    assert_eq!(
        r["content"],
        json!({"decision": "launch"}),
        "the answer itself is kept: {r}"
    );
    assert!(
        r["prompt_tokens"].is_null() && r["completion_tokens"].is_null() && r["cost_usd"].is_null(),
        "{r}"
    );
    assert_eq!(r["model"], "gpt-4o-mini", "{r}");
    let costs = app.json(&k, "/api/v1/learning/costs").await;
    assert_eq!(costs["total"]["recommendations"], 0, "{costs}");
    app.stop().await.unwrap();
}

/// Over the API a client may report tokens and a model (which only selects
/// a price row); the service computes the cost, refuses a `cost_usd`, and
/// refuses out-of-range counts and malformed models, changing nothing.
/// Another workspace's totals never show.
async fn tenants_report_tokens_but_never_set_a_cost(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.costs = prices()).await;
    let (_, a) = app.workspace("A").await;
    let (_, b) = app.workspace("B").await;
    let res = app
        .post(
            &a,
            "/api/v1/agents",
            &json!({"id": "writer", "name": "=HYPERLINK(\"http://evil\")", "kind": "external"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.agent(&b, "writer").await;
    let item = |extra: Value| {
        let mut v = json!({"agent_id": "writer", "correlation_id": "c", "workflow_id": "wf", "recommendation_type": "content", "content": {"x": 1}, "confidence": 0.5});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let res = app
        .post(
            &a,
            "/api/v1/recommendations",
            &item(
                json!({"model": "gpt-4o-mini", "prompt_tokens": 4000, "completion_tokens": 1000}),
            ),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rec = app.json(&a, &format!("/api/v1/recommendations/{id}")).await;
    let cost = 4000.0 * 0.15 / 1e6 + 1000.0 * 0.60 / 1e6;
    assert!(close(rec["cost_usd"].as_f64().unwrap(), cost), "{rec}");
    assert_eq!(rec["model"], "gpt-4o-mini");

    // Refused, naming the field, and nothing tracked.
    for (extra, status, code, field) in [
        (
            json!({"cost_usd": 0.0, "prompt_tokens": 1}),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
        (
            json!({"prompt_tokens": -1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("prompt_tokens"),
        ),
        (
            json!({"completion_tokens": 1_000_000_001u64}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("completion_tokens"),
        ),
        (
            json!({"prompt_tokens": 1e30}),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("prompt_tokens"),
        ),
        (
            json!({"prompt_tokens": "12"}),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            Some("prompt_tokens"),
        ),
        (
            json!({"model": "=1+1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("model"),
        ),
        (
            json!({"model": "m".repeat(129)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("model"),
        ),
    ] {
        let res = app
            .post(&a, "/api/v1/recommendations", &item(extra.clone()))
            .await;
        assert_error(res, status, code, field).await;
    }
    let res = app
        .post(&a, "/api/v1/recommendations/batch", &json!({"items": [item(json!({"prompt_tokens": 1})), item(json!({"prompt_tokens": -1}))]}))
        .await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("items[1].prompt_tokens"),
    )
    .await;
    let costs = app.json(&a, "/api/v1/learning/costs").await;
    assert_eq!(
        costs["total"]["recommendations"], 1,
        "only the valid one: {costs}"
    );
    assert!(close(costs["total"]["cost_usd"].as_f64().unwrap(), cost));

    // Workspace B: same agent id, its own usage; neither sees the other's.
    let res = app
        .post(
            &b,
            "/api/v1/recommendations",
            &item(json!({"model": "gpt-4o-mini", "prompt_tokens": 7, "completion_tokens": 3})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let theirs = app.json(&b, "/api/v1/learning/costs").await;
    assert_eq!(theirs["total"]["prompt_tokens"], 7, "{theirs}");
    assert_eq!(theirs["agents"][0]["agent_name"], "Agent writer");
    let ours = app.json(&a, "/api/v1/learning/costs?agent_id=writer").await;
    assert_eq!(ours["total"]["prompt_tokens"], 4000, "{ours}");
    assert_eq!(
        app.json(&b, "/api/v1/learning/agents/writer/metrics").await["prompt_tokens"],
        7
    );

    // Bad queries.
    for (q, field) in [
        ("since=yesterday", "since"),
        (
            "since=2026-12-02T00:00:00Z&until=2026-12-01T00:00:00Z",
            "until",
        ),
        ("agent_id=a%20b", "agent_id"),
        ("bogus=1", ""),
    ] {
        let res = app.get(&a, &format!("/api/v1/learning/costs?{q}")).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        if !field.is_empty() {
            assert_error(res, StatusCode::BAD_REQUEST, "invalid_query", Some(field)).await;
        }
    }

    // CSV: the tenant-chosen name cannot become a formula.
    let csv = app
        .get(&a, "/api/v1/learning/agents/metrics.csv")
        .await
        .text()
        .await
        .unwrap();
    let row = csv.lines().find(|l| l.starts_with("writer,")).unwrap();
    assert!(row.starts_with("writer,\"'=HYPERLINK("), "{row}");
    let cols: Vec<&str> = row.rsplitn(4, ',').collect();
    assert_eq!((cols[2], cols[1]), ("4000", "1000"), "{row}");
    assert!(close(cols[0].parse().unwrap(), cost), "{row}");
    app.stop().await.unwrap();
}
both_backends!(tenants_report_tokens_but_never_set_a_cost);
