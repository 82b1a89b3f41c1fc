//! Findings of a hostile-tenant review, each kept as a test of what must
//! hold: secrets go only to the hosts they are bound to, answers are
//! bounded, reviewers do not grade themselves, retries are bounded, IPv6
//! transition forms are judged by what they reach, secret headers never
//! follow a redirect to another origin, tenants cannot join the operator's
//! provider pools. Only loopback traffic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{HttpRequest, HttpResponse};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{loopback_peer, spawn_app_with, Backend};

/// A loopback listener answering every request with `answer` (status 200) or
/// `status`; it counts requests and keeps every header value it sees.
fn listener(
    status: u16,
    answer: Value,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    Arc<Mutex<Vec<String>>>,
) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (h, s) = (Arc::clone(&hits), Arc::clone(&seen));
    let answer = Arc::new(answer);
    let addr = loopback_peer("127.0.0.1", move |req: HttpRequest| {
        h.fetch_add(1, Ordering::SeqCst);
        let mut seen = s.lock().unwrap();
        for (_, v) in req.headers() {
            seen.push(v.to_str().unwrap_or_default().to_owned());
        }
        let answer = Arc::clone(&answer);
        async move {
            if status == 200 {
                HttpResponse::Ok().json(answer.as_ref())
            } else {
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
            }
        }
    });
    (addr, hits, seen)
}

async fn register(
    app: &crate::helpers::TestApp,
    key: &str,
    id: &str,
    kind: &str,
    config: Value,
) -> reqwest::Response {
    app.post(
        key,
        "/api/v1/agents",
        &json!({"id": id, "name": id, "kind": kind, "config": config}),
    )
    .await
}

async fn run(app: &crate::helpers::TestApp, key: &str, workflow: &str) -> Value {
    app.post(
        key,
        "/api/v1/workflows/runs",
        &json!({"workflow": workflow, "wait": true}),
    )
    .await
    .json()
    .await
    .unwrap()
}

/// Finding 1 (high). `agents.secret_env` lists variables an agent may name,
/// but not where their values may go: any tenant can bind the operator's
/// secret (e.g. OPENAI_API_KEY, the documented example) to a URL of its
/// choosing and receive it in a header. Here the "tenant's host" is a
/// loopback peer opened with allow_hosts (standing in for any public host).
/// Expected: a tenant cannot deliver an operator secret to a host the
/// operator has not bound it to (refused at registration with 403
/// agents.secret_env, or never sent).
#[actix_web::test]
async fn a_tenant_cannot_send_an_operator_secret_to_a_host_of_its_choosing() {
    std::env::set_var("SWARMWISE_REVIEW_OPERATOR_SECRET", "sk-operator-secret-42");
    let (peer, _hits, seen) = listener(200, json!({"content": "x", "confidence": 0.5}));
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.secret_env = vec!["SWARMWISE_REVIEW_OPERATOR_SECRET".into()];
        s.agents.secret_hosts.insert(
            "SWARMWISE_REVIEW_OPERATOR_SECRET".into(),
            vec!["api.openai.com".into()],
        );
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (_, k) = app.workspace("thief").await;
    let http = register(
        &app,
        &k,
        "move_architect",
        "http",
        json!({"url": format!("http://{peer}/collect"), "retries": 0,
               "headers_env": {"X-Loot": "SWARMWISE_REVIEW_OPERATOR_SECRET"}}),
    )
    .await;
    let openai = register(
        &app,
        &k,
        "strategist_b",
        "openai",
        json!({"base_url": format!("http://{peer}/v1"), "model": "m",
               "api_key_env": "SWARMWISE_REVIEW_OPERATOR_SECRET"}),
    )
    .await;
    for res in [http, openai] {
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "agent_policy_violation", "{body}");
        assert_eq!(body["details"]["rule"], "agents.secret_hosts", "{body}");
    }
    let _ = run(&app, &k, "move_creation").await;
    let leaked: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v.contains("sk-operator-secret-42"))
        .cloned()
        .collect();
    assert!(
        leaked.is_empty(),
        "the operator's secret reached a tenant-chosen host: {leaked:?}"
    );
    app.stop().await.unwrap();
}

/// Finding 2 (high). An agent's answer is read whole, with no size limit,
/// and tracked as a recommendation although it is far above
/// `limits.max_content_bytes` (64 KiB), which `POST /recommendations`
/// enforces. A tenant's upstream can answer with hundreds of MB (memory) and
/// fill the database. Expected: an answer larger than the limit makes that
/// agent's answer an error and nothing of that size is stored.
#[actix_web::test]
async fn an_agent_answer_is_bounded_like_a_tracked_recommendation() {
    let big = "A".repeat(1024 * 1024);
    let (peer, _hits, _) = listener(200, json!({"content": {"blob": big}, "confidence": 0.5}));
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (_, k) = app.workspace("bloat").await;
    let res = register(
        &app,
        &k,
        "move_architect",
        "http",
        json!({"url": format!("http://{peer}/"), "retries": 0}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let report = run(&app, &k, "move_creation").await;
    let recs = app
        .json(&k, "/api/v1/recommendations?agent_id=move_architect")
        .await;
    let stored = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].to_string().len())
        .max()
        .unwrap_or(0);
    assert!(
        stored <= 65536,
        "a {stored}-byte answer was tracked, past limits.max_content_bytes; run status {}",
        report["status"]
    );
    app.stop().await.unwrap();
}

/// Finding 3 (medium). In a review stage the reviewer's own answer is
/// tracked and then evaluated with the quality it stated itself: an `http`
/// critic answering `{"quality": 100}` gets its own recommendation
/// approved. Expected: the review stage judges the other stages' answers;
/// the reviewer's own recommendation stays pending (or is judged by
/// someone else).
#[actix_web::test]
async fn a_reviewer_does_not_approve_its_own_answer() {
    let (peer, _hits, _) = listener(
        200,
        json!({"content": {"quality": 100}, "confidence": 0.99}),
    );
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (_, k) = app.workspace("selfgrade").await;
    let res = register(
        &app,
        &k,
        "critic",
        "http",
        json!({"url": format!("http://{peer}/"), "retries": 0}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let report = run(&app, &k, "move_creation").await;
    let recs = app
        .json(&k, "/api/v1/recommendations?agent_id=critic")
        .await;
    let items = recs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{recs}");
    assert_ne!(
        items[0]["status"], "approved",
        "the critic approved its own answer: {recs}; evaluation {}",
        report["result"]["evaluation"]
    );
    app.stop().await.unwrap();
}

/// Finding 4 (medium). `retries`, `backoff_ms` and `timeout_ms` of an `http`
/// agent are unbounded: `retries: 4e9, backoff_ms: 0` makes one run send
/// thousands of requests to a URL of the tenant's choosing (and they go on
/// after the run has ended). Expected: refused (422 naming config.retries /
/// config.backoff_ms) or capped so one task makes a handful of attempts.
#[actix_web::test]
async fn one_task_makes_a_bounded_number_of_attempts() {
    let (peer, hits, _) = listener(503, Value::Null);
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (_, k) = app.workspace("hammer").await;
    let res = register(
        &app,
        &k,
        "move_architect",
        "http",
        json!({"url": format!("http://{peer}/"), "retries": 4_000_000_000u64, "backoff_ms": 0}),
    )
    .await;
    let body = crate::helpers::assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("config.retries"),
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("at most 10"),
        "{body}"
    );
    let res = register(
        &app,
        &k,
        "move_architect",
        "http",
        json!({"url": format!("http://{peer}/"), "retries": 3, "backoff_ms": 1}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let _ = run(&app, &k, "move_creation").await;
    assert_eq!(
        hits.load(Ordering::SeqCst),
        4,
        "one attempt and three retries"
    );
    app.stop().await.unwrap();
}

/// Finding 8 (low). IPv6 forms that carry an IPv4 address are judged by it
/// for ::ffff:0:0/96-mapped and 64:ff9b::/96, but not for 6to4
/// (2002::/16), SIIT (::ffff:0:0:0/96) or the local-use NAT64 prefix
/// 64:ff9b:1::/48, nor are the Teredo/ORCHID/discard blocks closed. On hosts
/// with a 6to4 relay or a local NAT64 these reach loopback or private IPv4.
#[actix_web::test]
async fn ipv6_transition_forms_of_closed_addresses_are_refused() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let (_, k) = app.workspace("v6").await;
    let mut accepted = Vec::new();
    for (i, url) in [
        "http://[2002:7f00:1::]/",        // 6to4 of 127.0.0.1
        "http://[2002:a00:1::]/",         // 6to4 of 10.0.0.1
        "http://[::ffff:0:7f00:1]/",      // SIIT ::ffff:0:127.0.0.1
        "http://[64:ff9b:1::a00:1]/",     // local-use NAT64 of 10.0.0.1
        "http://[64:ff9b:1::a9fe:a9fe]/", // local-use NAT64 of 169.254.169.254
    ]
    .iter()
    .enumerate()
    {
        let res = register(&app, &k, &format!("v6-{i}"), "http", json!({"url": url})).await;
        if res.status() != StatusCode::FORBIDDEN {
            accepted.push(format!("{url} → {}", res.status()));
        }
    }
    assert!(accepted.is_empty(), "accepted: {accepted:?}");
    app.stop().await.unwrap();
}

/// Finding 1b (high). A secret header follows a redirect to another origin:
/// an agent the *operator* registered with `headers_env` for one upstream
/// sends the secret wherever that upstream redirects (reqwest strips only
/// Authorization/Cookie on cross-origin redirects, not configured headers).
#[actix_web::test]
async fn a_secret_header_does_not_follow_a_redirect_to_another_origin() {
    std::env::set_var("SWARMWISE_REVIEW_REDIRECT_SECRET", "sk-redirect-secret-7");
    let (elsewhere, _hits, seen) = listener(200, json!({"content": "x", "confidence": 0.5}));
    let target = format!("http://{elsewhere}/elsewhere");
    let upstream = loopback_peer("127.0.0.1", move || {
        let target = target.clone();
        async move {
            HttpResponse::TemporaryRedirect()
                .insert_header(("Location", target))
                .finish()
        }
    });
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.secret_env = vec!["SWARMWISE_REVIEW_REDIRECT_SECRET".into()];
        // Bound to the upstream's host; the redirect goes to another port
        // (another origin) of the same host.
        s.agents.secret_hosts.insert(
            "SWARMWISE_REVIEW_REDIRECT_SECRET".into(),
            vec!["127.0.0.1".into()],
        );
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (ws, k) = app.workspace("redirected").await;
    let admin = app.admin_key.clone();
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/agents"),
            &json!({"id": "move_architect", "name": "m", "kind": "http",
                    "config": {"url": format!("http://{upstream}/"), "retries": 0,
                               "headers_env": {"X-Api-Key": "SWARMWISE_REVIEW_REDIRECT_SECRET"}}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let _ = run(&app, &k, "move_creation").await;
    let leaked = seen
        .lock()
        .unwrap()
        .iter()
        .any(|v| v.contains("sk-redirect-secret-7"));
    assert!(
        !leaked,
        "the secret header followed the redirect to another origin"
    );
    app.stop().await.unwrap();
}

/// Finding 5 (medium). A tenant whose agents joined a shared provider pool
/// could hold every slot with a slow upstream and starve the other tenants'
/// agents. Pools are the operator's: a workspace key cannot join one that is
/// not opened to tenants, and the admin key can.
#[actix_web::test]
async fn a_tenant_cannot_starve_a_shared_pool() {
    let (fast, _, _) = listener(200, json!({"content": "ok", "confidence": 0.5}));
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.agents.pools.insert(
            "shared".into(),
            serde_json::from_value(json!({"slots": 1})).unwrap(),
        );
    })
    .await;
    let (ws_a, ka) = app.workspace("hog").await;
    let (_, kb) = app.workspace("victim").await;
    for key in [&ka, &kb] {
        let res = register(
            &app,
            key,
            "move_architect",
            "http",
            json!({"url": format!("http://{fast}/"), "retries": 0, "pool": "shared", "concurrency": 8}),
        )
        .await;
        let body = crate::helpers::assert_error(
            res,
            StatusCode::FORBIDDEN,
            "agent_policy_violation",
            Some("config.pool"),
        )
        .await;
        assert_eq!(body["details"]["rule"], "agents.pools.open_to_tenants");
    }
    // The operator may put its own agents in the pool.
    let res = app
        .post(
            &app.admin_key,
            &format!("/api/v1/workspaces/{ws_a}/agents"),
            &json!({"id": "pooled", "name": "Pooled", "kind": "http",
                    "config": {"url": format!("http://{fast}/"), "retries": 0, "pool": "shared"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.stop().await.unwrap();
}

/// A tenant-chosen agent name cannot become a formula in the operator's
/// spreadsheet; a NUL in any list filter is 400 naming it.
#[actix_web::test]
async fn csv_export_neutralises_formulas_and_filters_refuse_nul() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let (_, k) = app.workspace("csv").await;
    let res = app
        .post(
            &k,
            "/api/v1/agents",
            &json!({"id": "f", "name": "=HYPERLINK(\"http://x\",\"y\")", "kind": "external"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let csv = app
        .get(&k, "/api/v1/learning/agents/metrics.csv")
        .await
        .text()
        .await
        .unwrap();
    let row = csv.lines().find(|l| l.starts_with("f,")).unwrap();
    assert!(row.contains("\"'=HYPERLINK("), "{row}");
    for filter in ["status", "agent_id", "workflow_id", "recommendation_type"] {
        let res = app
            .get(&k, &format!("/api/v1/recommendations?{filter}=a%00b"))
            .await;
        let body =
            crate::helpers::assert_error(res, StatusCode::BAD_REQUEST, "invalid_query", None).await;
        assert!(body["message"].as_str().unwrap().contains(filter), "{body}");
    }
    app.stop().await.unwrap();
}
