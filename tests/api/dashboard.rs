//! The dashboards under `/learning` over plain HTTP (the browser tests are
//! in `browser.rs`): sign-in and its cookie, every page on real data, the
//! numbers equal to the API's, CSV exports, the time-series and run-list
//! endpoints, cached static files, and a hostile tenant that tries other
//! workspaces' ids, forged or missing CSRF tokens, keys in URLs, cross-origin
//! posts and a revoked key.

use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app_with, Backend, TestApp};

/// A workflow of four simulated agents of known skill, written to a temp dir.
pub fn panel_dir() -> tempfile::TempDir {
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

/// Registers the panel's agents in the workspace of `key`.
pub async fn register_panel(app: &TestApp, key: &str) {
    for (i, (id, skill)) in [
        ("expert", 0.95),
        ("coin_a", 0.5),
        ("coin_b", 0.5),
        ("weak", 0.2),
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"id": id, "name": format!("Agent {id}"), "kind": "simulated",
            "config": {"skill": {"strategy": skill}, "seed": i}});
        let res = app.post(key, "/api/v1/agents", &body).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
}

/// Runs the panel `n` times, waiting for each → the last run's id.
pub async fn run_panel(app: &TestApp, key: &str, n: usize) -> String {
    let mut last = String::new();
    for _ in 0..n {
        let res = app
            .post(
                key,
                "/api/v1/workflows/runs",
                &json!({"workflow": "panel", "wait": true}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let v: Value = res.json().await.unwrap();
        last = v["id"].as_str().unwrap().to_owned();
    }
    last
}

/// A service with the panel workflow and explicit cycles only.
pub async fn panel_app(backend: Backend, dir: &tempfile::TempDir) -> TestApp {
    let path = dir.path().display().to_string();
    spawn_app_with(backend, move |s| {
        s.workflows.dir = path;
        s.learning.cycle_every_outcomes = 0;
        s.agents.disable_below_trust = 0.0;
    })
    .await
}

/// A client that does not follow redirects and keeps no cookies.
pub fn browserless() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in → the session cookie (`name=value`).
pub async fn sign_in(app: &TestApp, key: &str) -> String {
    let res = browserless()
        .post(app.url("/learning/login"))
        .form(&[("api_key", key)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    set.split(';').next().unwrap().to_owned()
}

pub async fn page(app: &TestApp, cookie: &str, path: &str) -> (StatusCode, String) {
    let res = browserless()
        .get(app.url(path))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

pub async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    browserless()
        .post(app.url(path))
        .header(COOKIE, cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// `(agent id, data-trust)` of every trust row, in page order.
fn trust_rows(html: &str) -> Vec<(String, String)> {
    html.split("<tr data-agent-id=\"")
        .skip(1)
        .map(|chunk| {
            let id = chunk[..chunk.find('"').unwrap()].to_owned();
            let t = chunk.split("data-trust=\"").nth(1).unwrap();
            (id, t[..t.find('"').unwrap()].to_owned())
        })
        .collect()
}

async fn pages_show_the_api_numbers(backend: Backend) {
    let dir = panel_dir();
    let app = panel_app(backend, &dir).await;
    let (_, key) = app.workspace("A").await;
    register_panel(&app, &key).await;
    let run_id = run_panel(&app, &key, 60).await;
    let res = app.post(&key, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Without a session every page sends the browser to the form.
    let res = browserless()
        .get(app.url("/learning"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/learning/login");
    let (status, form) = page(&app, "", "/learning/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains(r#"name="api_key""#), "{form}");

    // A wrong key: the form again with the reason, no cookie.
    let res = browserless()
        .post(app.url("/learning/login"))
        .form(&[("api_key", "swk_not-a-key")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get(SET_COOKIE).is_none());
    let body = res.text().await.unwrap();
    assert!(body.contains("Unknown or revoked API key"), "{body}");
    assert!(body.contains(r#"role="alert""#));

    // The admin key cannot sign in to a workspace's dashboards.
    let res = browserless()
        .post(app.url("/learning/login"))
        .form(&[("api_key", app.admin_key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get(SET_COOKIE).is_none());

    // A valid key: the cookie's flags.
    let res = browserless()
        .post(app.url("/learning/login"))
        .form(&[("api_key", key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/learning",
        "Max-Age=28800",
    ] {
        assert!(set.contains(flag), "{flag} missing in {set}");
    }
    assert!(!set.contains(&key), "the key never goes into the cookie");
    let cookie = set.split(';').next().unwrap().to_owned();

    // Overview: the insights widget with the latest cycle.
    let (status, overview) = page(&app, &cookie, "/learning").await;
    assert_eq!(status, StatusCode::OK);
    assert!(overview.contains(r#"id="insights""#));
    let latest = app.json(&key, "/api/v1/learning/cycles/latest").await;
    assert!(
        overview.contains(&format!(
            r#"data-cycle-id="{}""#,
            latest["id"].as_str().unwrap()
        )),
        "{overview}"
    );
    for link in [
        "/learning/trust-scores",
        "/learning/patterns",
        "/learning/runs",
    ] {
        assert!(overview.contains(&format!(r#"href="{link}""#)), "{link}");
    }

    // Trust: one row per agent, data-trust equal to the API's, best first.
    let api = app.json(&key, "/api/v1/learning/trust-scores").await;
    let (status, trust) = page(&app, &cookie, "/learning/trust-scores").await;
    assert_eq!(status, StatusCode::OK);
    let rows = trust_rows(&trust);
    let expected: Vec<(String, String)> = api["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agent_id"].as_str().unwrap().to_owned(),
                format!("{:.3}", a["overall_trust"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(rows, expected);
    assert_eq!(rows.len(), 4);
    // Sorted by name, ascending; the per-type view; a bad sort is a 400.
    let (_, by_name) = page(&app, &cookie, "/learning/trust-scores?sort=name").await;
    let names: Vec<String> = trust_rows(&by_name).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["coin_a", "coin_b", "expert", "weak"]);
    let (status, typed) = page(&app, &cookie, "/learning/trust-scores?type=strategy").await;
    assert_eq!(status, StatusCode::OK);
    assert!(typed.contains("Trust on strategy recommendations"));
    let (status, _) = page(&app, &cookie, "/learning/trust-scores?sort=evil").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Patterns: cards with ids and categories; the category filter.
    let api = app.json(&key, "/api/v1/learning/patterns").await;
    let (_, board) = page(&app, &cookie, "/learning/patterns").await;
    for p in api["items"].as_array().unwrap() {
        assert!(board.contains(&format!(
            r#"data-pattern-id="{}" data-category="{}""#,
            p["id"].as_str().unwrap(),
            p["category"].as_str().unwrap()
        )));
    }
    assert!(
        api["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["category"] == "expert"),
        "the expert is found: {api}"
    );
    let (_, experts) = page(&app, &cookie, "/learning/patterns?category=expert").await;
    assert!(experts.contains(r#"data-category="expert""#), "{experts}");
    for other in ["consensus", "high_confidence", "combination"] {
        assert!(!experts.contains(&format!(r#"data-category="{other}""#)));
    }
    let (status, _) = page(&app, &cookie, "/learning/patterns?category=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Runs and one run's fan-out.
    let (_, runs) = page(&app, &cookie, "/learning/runs").await;
    assert!(runs.contains(&format!(r#"data-run-id="{run_id}""#)));
    let (status, run) = page(&app, &cookie, &format!("/learning/runs/{run_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(run.contains("Stage: opinions"), "{run}");
    assert!(run.contains("barrier"));
    for agent in ["expert", "coin_a", "coin_b", "weak"] {
        assert!(run.contains(&format!(r#"href="/learning/agents/{agent}""#)));
    }

    // The agent profile and its CSVs.
    let (status, profile) = page(&app, &cookie, "/learning/agents/expert").await;
    assert_eq!(status, StatusCode::OK);
    let card = app.json(&key, "/api/v1/learning/trust-scores/expert").await;
    assert!(profile.contains(&format!(
        r#"data-trust="{:.3}""#,
        card["overall_trust"].as_f64().unwrap()
    )));
    assert!(profile.contains("Reliability diagram"));
    let (status, day) = page(&app, &cookie, "/learning/agents/expert?bucket=day").await;
    assert_eq!(status, StatusCode::OK);
    assert!(day.contains("Recommendations per day"));
    let (status, _) = page(&app, &cookie, "/learning/agents/expert?bucket=week").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, csv) = page(&app, &cookie, "/learning/agents/expert/recommendations.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.lines().count(), 61, "header + 60 recommendations");
    let (status, series) = page(
        &app,
        &cookie,
        "/learning/agents/expert/series.csv?bucket=day",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let counted: u64 = series
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 60, "{series}");
    let (status, all) = page(&app, &cookie, "/learning/export/agents.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.lines().count(), 5);

    // Sign out needs the token; afterwards the cookie is worthless.
    let res = post_form(&app, &cookie, "/learning/logout", &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let token = csrf_of(&overview);
    let res = post_form(&app, &cookie, "/learning/logout", &[("csrf", &token)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = page(&app, &cookie, "/learning").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}
both_backends!(pages_show_the_api_numbers);

async fn actions_need_the_token_and_stay_in_the_workspace(backend: Backend) {
    let dir = panel_dir();
    let app = panel_app(backend, &dir).await;
    let (_, ka) = app.workspace("A").await;
    let (wb, kb) = app.workspace("B").await;
    register_panel(&app, &ka).await;
    app.agent(&kb, "b-secret").await;
    register_panel(&app, &kb).await;
    let b_run = run_panel(&app, &kb, 1).await;
    let cookie = sign_in(&app, &ka).await;
    let (_, trust) = page(&app, &cookie, "/learning/trust-scores").await;
    let token = csrf_of(&trust);
    assert!(!trust.contains("b-secret"), "B's agent is not listed to A");

    // B's ids through A's session: 404, nothing changes.
    for path in [
        "/learning/agents/b-secret".to_string(),
        format!("/learning/runs/{b_run}"),
        "/learning/agents/b-secret/recommendations.csv".into(),
        "/learning/agents/b-secret/series.csv".into(),
    ] {
        let (status, body) = page(&app, &cookie, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let res = post_form(
        &app,
        &cookie,
        "/learning/agents/b-secret/enabled",
        &[("csrf", &token), ("enabled", "false")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let b_agent = app.json(&kb, "/api/v1/agents/b-secret").await;
    assert_eq!(b_agent["enabled"], true);
    // Same id in both workspaces: A's action changes only A's agent.
    let res = post_form(
        &app,
        &cookie,
        "/learning/agents/expert/enabled",
        &[("csrf", &token), ("enabled", "false")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.json(&ka, "/api/v1/agents/expert").await["enabled"],
        false
    );
    assert_eq!(
        app.json(&kb, "/api/v1/agents/expert").await["enabled"],
        true
    );

    // Missing, wrong and another session's token: 403, nothing changes.
    let other = sign_in(&app, &ka).await;
    let (_, other_page) = page(&app, &other, "/learning").await;
    let other_token = csrf_of(&other_page);
    assert_ne!(other_token, token);
    for form in [
        vec![("enabled", "true")],
        vec![("csrf", "0000"), ("enabled", "true")],
        vec![("csrf", other_token.as_str()), ("enabled", "true")],
    ] {
        let res = post_form(&app, &cookie, "/learning/agents/expert/enabled", &form).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    let res = post_form(&app, &cookie, "/learning/cycles", &[]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.json(&ka, "/api/v1/agents/expert").await["enabled"],
        false
    );
    assert_error(
        app.get(&ka, "/api/v1/learning/cycles/latest").await,
        StatusCode::NOT_FOUND,
        "cycle_not_found",
        None,
    )
    .await;
    // A bad value: 400, nothing changes.
    let res = post_form(
        &app,
        &cookie,
        "/learning/agents/expert/enabled",
        &[("csrf", &token), ("enabled", "maybe")],
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // A cross-origin post with a valid token: 403.
    let res = browserless()
        .post(app.url("/learning/agents/expert/enabled"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .form(&[("csrf", token.as_str()), ("enabled", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.json(&ka, "/api/v1/agents/expert").await["enabled"],
        false
    );
    // The real action with the right token runs a cycle.
    let res = post_form(&app, &cookie, "/learning/cycles", &[("csrf", &token)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.json(&ka, "/api/v1/learning/cycles/latest").await["reason"],
        "dashboard"
    );

    // Keys in URLs are refused, signed in or not.
    for path in [
        format!("/learning/login?api_key={ka}"),
        format!("/learning?key={ka}"),
        format!("/learning/trust-scores?x={ka}"),
    ] {
        let (status, body) = page(&app, &cookie, &path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(body.contains("never accepted in a URL"));
        assert!(!body.contains(&ka), "the page does not echo the key");
    }
    // A forged or huge cookie, a huge key: no session, no crash.
    let (status, _) = page(&app, "swarmwise_session=forged", "/learning").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let huge = "k".repeat(20_000);
    let res = browserless()
        .post(app.url("/learning/login"))
        .form(&[("api_key", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = browserless()
        .post(app.url("/learning/login"))
        .form(&[("api_key", &huge[..600])])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Revoking the key ends its sessions (at once on this node).
    let keys = app
        .json(&app.admin_key, &format!("/api/v1/workspaces/{wb}/api-keys"))
        .await;
    let key_id = keys["items"][0]["id"].as_str().unwrap().to_owned();
    let b_cookie = sign_in(&app, &kb).await;
    assert_eq!(page(&app, &b_cookie, "/learning").await.0, StatusCode::OK);
    let res = app
        .post(
            &app.admin_key,
            &format!("/api/v1/workspaces/{wb}/api-keys/{key_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        page(&app, &b_cookie, "/learning").await.0,
        StatusCode::SEE_OTHER
    );
    assert_eq!(page(&app, &cookie, "/learning").await.0, StatusCode::OK);
}
both_backends!(actions_need_the_token_and_stay_in_the_workspace);

async fn series_and_run_list_endpoints(backend: Backend) {
    let dir = panel_dir();
    let app = panel_app(backend, &dir).await;
    let (_, ka) = app.workspace("A").await;
    let (_, kb) = app.workspace("B").await;
    register_panel(&app, &ka).await;
    register_panel(&app, &kb).await;
    run_panel(&app, &ka, 3).await;
    run_panel(&app, &kb, 2).await;
    let v = app
        .json(&ka, "/api/v1/learning/agents/expert/series?bucket=hour")
        .await;
    assert_eq!(v["bucket"], "hour");
    let items = v["items"].as_array().unwrap();
    let total: u64 = items
        .iter()
        .map(|i| i["recommendations"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 3, "only A's three: {v}");
    let evaluated: u64 = items
        .iter()
        .map(|i| {
            i["approved"].as_u64().unwrap()
                + i["partial"].as_u64().unwrap()
                + i["rejected"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(evaluated, 3);
    // Pagination: one bucket per page, then the cursor is past the data.
    let page1 = app
        .json(
            &ka,
            "/api/v1/learning/agents/expert/series?bucket=day&limit=1",
        )
        .await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 1);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .json(
            &ka,
            &format!("/api/v1/learning/agents/expert/series?bucket=day&limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 0);
    assert!(page2["next_cursor"].is_null());
    for (q, field) in [
        ("bucket=week", "bucket"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("cursor=yesterday", "cursor"),
    ] {
        assert_error(
            app.get(&ka, &format!("/api/v1/learning/agents/expert/series?{q}"))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some(field),
        )
        .await;
    }
    assert_error(
        app.get(&ka, "/api/v1/learning/agents/nobody/series").await,
        StatusCode::NOT_FOUND,
        "agent_not_found",
        None,
    )
    .await;

    let runs = app.json(&ka, "/api/v1/workflows/runs?limit=2").await;
    let items = runs["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items[0]["id"].as_str().unwrap() > items[1]["id"].as_str().unwrap());
    let cursor = runs["next_cursor"].as_str().unwrap();
    let rest = app
        .json(
            &ka,
            &format!("/api/v1/workflows/runs?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "A has 3 runs");
    assert!(rest["next_cursor"].is_null());
    assert_error(
        app.get(&ka, "/api/v1/workflows/runs?cursor=nope").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("cursor"),
    )
    .await;
}
both_backends!(series_and_run_list_endpoints);

#[actix_web::test]
async fn static_files_are_cached_and_pages_are_not() {
    let dir = panel_dir();
    let app = panel_app(Backend::Sqlite, &dir).await;
    let (status, form) = page(&app, "", "/learning/login").await;
    assert_eq!(status, StatusCode::OK);
    let at = form.find("/learning/static/app.css?v=").unwrap();
    let url = &form[at..at + form[at..].find('"').unwrap()];
    let res = browserless().get(app.url(url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=31536000"));
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert!(url.ends_with(etag.trim_matches('"')), "{url} vs {etag}");
    let res = browserless()
        .get(app.url(url))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let res = browserless()
        .get(app.url("/learning/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let (status, _) = page(&app, "", "/learning/static/../../Cargo.toml").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The overview lists the workspace's firing alerts, and only those: not
/// another workspace's, not resolved ones, not node-level ones; a summary
/// is text, never markup.
async fn overview_lists_only_the_workspaces_firing_alerts(backend: Backend) {
    use swarmwise_actors::alerts::{AlertStatus, Severity};
    use swarmwise_actors::domain::WorkspaceId;
    let app = spawn_app_with(backend, |_| {}).await;
    let (a, ka) = app.workspace("A").await;
    let (b, kb) = app.workspace("B").await;
    let a = WorkspaceId(uuid::Uuid::parse_str(&a).unwrap());
    let b = WorkspaceId(uuid::Uuid::parse_str(&b).unwrap());
    let cookie_b = sign_in(&app, &kb).await;
    let (status, html) = page(&app, &cookie_b, "/learning").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("No alert is firing in this workspace."),
        "{html}"
    );

    let mut mine = crate::alerts::alert(Some(a), "agent_trust_low", "bad", Severity::Critical);
    mine.summary = "<script>alert(1)</script> trust 0.21 < 0.30".into();
    let mut resolved =
        crate::alerts::alert(Some(a), "agent_approval_low", "old", Severity::Warning);
    resolved.status = AlertStatus::Resolved;
    resolved.resolved_at = Some(resolved.fired_at);
    let theirs = crate::alerts::alert(Some(b), "agent_trust_low", "bad", Severity::Critical);
    let node = crate::alerts::alert(None, "database_errors", "", Severity::Critical);
    for x in [&mine, &resolved, &theirs, &node] {
        app.store.insert_alert(x).await.unwrap();
    }

    let cookie_a = sign_in(&app, &ka).await;
    let (status, html) = page(&app, &cookie_a, "/learning").await;
    assert_eq!(status, StatusCode::OK);
    let shown: Vec<&str> = html
        .split("data-alert-id=\"")
        .skip(1)
        .map(|c| &c[..c.find('"').unwrap()])
        .collect();
    assert_eq!(shown, [mine.id.to_string()], "{html}");
    assert!(html.contains(r#"data-severity="critical""#), "{html}");
    assert!(!html.contains("<script>alert(1)"), "{html}");
    // Escaped as text (askama writes numeric entities).
    assert!(
        html.contains("&#60;script&#62;alert(1)") || html.contains("&lt;script&gt;alert(1)"),
        "{html}"
    );

    let (_, html_b) = page(&app, &cookie_b, "/learning").await;
    let shown_b: Vec<&str> = html_b
        .split("data-alert-id=\"")
        .skip(1)
        .map(|c| &c[..c.find('"').unwrap()])
        .collect();
    assert_eq!(shown_b, [theirs.id.to_string()], "{html_b}");
    app.stop().await.unwrap();
}

both_backends!(overview_lists_only_the_workspaces_firing_alerts);

/// Sessions live in the database: a browser signed in through one node is
/// signed in on every node sharing the database (no sticky sessions at the
/// load balancer), signing out through another node ends it everywhere, the
/// cookie's value itself is not what is stored, the per-workspace cap holds
/// across nodes, and a forged cookie signs nobody in.
async fn sessions_are_shared_by_every_node(backend: Backend) {
    let a = spawn_app_with(backend, |s| s.dashboard.max_sessions_per_workspace = 2).await;
    let b = crate::helpers::spawn_beside(&a, |s| s.dashboard.max_sessions_per_workspace = 2).await;
    let (ws, key) = a.workspace("shared-sessions").await;
    let cookie = sign_in(&a, &key).await;
    let (status, html) = page(&b, &cookie, "/learning").await;
    assert_eq!(status, StatusCode::OK, "node B knows node A's session");
    assert!(html.contains("id=\"insights\""));

    // Only the digest of the cookie's value is stored.
    let value = cookie.split_once('=').unwrap().1.to_owned();
    let now = chrono::Utc::now();
    assert!(a.store.session(&value, now).await.unwrap().is_none());
    let stored = a
        .store
        .session(&swarmwise::auth::hash_key(&value), now)
        .await
        .unwrap()
        .expect("stored under its digest");
    assert_eq!(stored.workspace.0.to_string(), ws);

    // A forged cookie is nobody.
    let (status, _) = page(
        &b,
        &format!("swarmwise_session={}", "ab".repeat(32)),
        "/learning",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Signing out through B (with the session's CSRF token) ends it on A.
    let (_, html) = page(&b, &cookie, "/learning").await;
    let token = csrf_of(&html);
    let res = post_form(&b, &cookie, "/learning/logout", &[("csrf", &token)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, _) = page(&a, &cookie, "/learning").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "signed out everywhere");

    // The cap counts sessions started on either node: the third sign-in ends
    // the oldest, whichever node started it.
    let first = sign_in(&a, &key).await;
    let second = sign_in(&b, &key).await;
    let third = sign_in(&a, &key).await;
    assert_eq!(page(&b, &first, "/learning").await.0, StatusCode::SEE_OTHER);
    assert_eq!(page(&b, &second, "/learning").await.0, StatusCode::OK);
    assert_eq!(page(&b, &third, "/learning").await.0, StatusCode::OK);
    let ws_id = swarmwise_actors::domain::WorkspaceId(ws.parse().unwrap());
    assert_eq!(a.store.count_sessions(ws_id).await.unwrap(), 2);
    // Another workspace's sign-ins never end these.
    let (_, other) = a.workspace("neighbour").await;
    for _ in 0..3 {
        sign_in(&b, &other).await;
    }
    assert_eq!(page(&a, &third, "/learning").await.0, StatusCode::OK);
    b.stop().await.unwrap();
}
both_backends!(sessions_are_shared_by_every_node);
