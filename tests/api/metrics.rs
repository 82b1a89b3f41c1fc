//! `/metrics` for Prometheus: clean under `promtool check metrics`, the
//! Task 8 gauges of the stats refresh, per-agent series bounded against a
//! hostile tenant, the row-level security self-check, and the shipped
//! Grafana dashboard and alert rules naming only metrics the service emits.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::telemetry::METRICS;

use crate::helpers::{spawn_app_with, Backend, TestApp};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `promtool` on the PATH; with CI=true its absence fails the test.
fn promtool() -> Option<&'static str> {
    match Command::new("promtool").arg("--version").output() {
        Ok(o) if o.status.success() => Some("promtool"),
        _ => {
            assert!(
                !in_ci(),
                "CI=true but promtool is missing; install Debian's `prometheus` package \
                 (apt-get install prometheus), as .ci/run does"
            );
            eprintln!("skipping: promtool not installed (apt-get install prometheus)");
            None
        }
    }
}

async fn scrape(app: &TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// Scrapes until `done` holds for the text (the stats refresh runs every
/// second in these tests); fails after 30 s with the last scrape.
async fn scrape_until(app: &TestApp, what: &str, done: impl Fn(&str) -> bool) -> String {
    crate::helpers::poll_until(what, || async {
        let text = scrape(app).await;
        if done(&text) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await
}

/// The samples of `name`: (labels as text, value).
fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = match series.split_once('{') {
                Some((n, rest)) if n == name => rest.strip_suffix('}')?,
                None if series == name => "",
                _ => return None,
            };
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = labels.get(start..)?;
    rest.get(..rest.find('"')?)
}

async fn stats_app(backend: Backend, cap: usize) -> TestApp {
    let app = spawn_app_with(backend, |s| {
        s.telemetry.stats_refresh_secs = 1;
        s.telemetry.max_agent_series = cap;
    })
    .await;
    app.ready().await;
    app
}

/// A workspace with traffic: 3 agents, 12 tracked recommendations, 8 of
/// them evaluated (4 workflows × 2 agents), so every Task 8 gauge has a value.
async fn traffic(app: &TestApp) -> String {
    let (ws, key) = app.workspace("metrics").await;
    for a in ["a1", "a2", "a3"] {
        app.agent(&key, a).await;
    }
    for w in 0..4 {
        for a in ["a1", "a2"] {
            app.track(&key, a, &format!("wf-{w}"), "strategy", 0.7)
                .await;
        }
        app.track(&key, "a3", &format!("open-{w}"), "strategy", 0.4)
            .await;
        app.outcome(
            &key,
            &format!("wf-{w}"),
            if w % 2 == 0 { 90.0 } else { 20.0 },
        )
        .await;
    }
    let res = app.post(&key, "/api/v1/learning/cycles", &json!({})).await;
    assert!(res.status().is_success(), "cycle: {}", res.status());
    ws
}

async fn promtool_check_metrics_is_clean(backend: Backend) {
    let Some(promtool) = promtool() else { return };
    let app = stats_app(backend, 200).await;
    let ws = traffic(&app).await;
    let text = scrape_until(&app, "this workspace's evaluated share", |t| {
        samples(t, "swarmwise_recommendations_evaluated_ratio")
            .iter()
            .any(|(l, v)| label(l, "workspace") == Some(&ws) && (*v - 8.0 / 12.0).abs() < 1e-9)
    })
    .await;
    let rows = samples(&text, "swarmwise_store_rows");
    assert!(
        rows.iter().any(|(l, v)| label(l, "workspace") == Some(&ws)
            && label(l, "table") == Some("recommendations")
            && *v == 12.0),
        "12 recommendation rows: {rows:?}"
    );
    for name in [
        "swarmwise_patterns",
        "swarmwise_trust_average_ratio",
        "swarmwise_trust_variance",
        "swarmwise_agents_declining",
        "swarmwise_agents_improving",
        "swarmwise_agent_trust_ratio",
        "swarmwise_agent_approval_ratio",
        "swarmwise_outcome_quality_average",
        "swarmwise_store_query_duration_seconds_bucket",
    ] {
        assert!(!samples(&text, name).is_empty(), "{name} missing:\n{text}");
    }
    // Approval of a1: 2 of 4 outcomes had quality 90 (approved), 2 had 20.
    let approval = samples(&text, "swarmwise_agent_approval_ratio");
    assert!(
        approval
            .iter()
            .any(|(l, v)| label(l, "agent") == Some("a1") && (*v - 0.5).abs() < 1e-9),
        "a1 approval 0.5: {approval:?}"
    );
    let rls = samples(&text, "swarmwise_store_rls_enforced");
    match backend {
        Backend::Postgres => assert_eq!(rls, vec![("", 1.0)], "RLS in force on PostgreSQL"),
        Backend::Sqlite => assert!(rls.is_empty(), "no RLS gauge on SQLite: {rls:?}"),
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n--- scraped:\n{text}"
    );
    app.stop().await.unwrap();
}
crate::both_backends!(promtool_check_metrics_is_clean);

/// Two tenants register 61 agents with the longest ids allowed (and one
/// spelled `_other`), each with an outcome; with a cap of 10 the node
/// exposes at most 10 per-agent series, every agent label is at most 64
/// characters of `[A-Za-z0-9_.:~-]`, and no raw long id reaches /metrics.
async fn hostile_tenants_cannot_explode_agent_series(backend: Backend) {
    const CAP: usize = 10;
    let app = stats_app(backend, CAP).await;
    let mut ids = Vec::new();
    for (t, n) in [("tenant-a", 31), ("tenant-b", 30)] {
        let (_, key) = app.workspace(t).await;
        let mut items = Vec::new();
        for i in 0..n {
            let id = if i == 30 {
                "_other".to_owned()
            } else {
                format!("{}-{i:03}", "x".repeat(124))
            };
            app.agent(&key, &id).await;
            items.push(json!({
                "agent_id": id, "correlation_id": "c", "workflow_id": "flood",
                "recommendation_type": "t", "content": {"decision": "go"}, "confidence": 0.9
            }));
            ids.push(id);
        }
        let res = app
            .post(
                &key,
                "/api/v1/recommendations/batch",
                &json!({ "items": items }),
            )
            .await;
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        app.outcome(&key, "flood", 80.0).await;
    }
    let text = scrape_until(&app, "all 61 agents in the agent series", |t| {
        let outcomes: f64 = samples(t, "swarmwise_agent_outcomes")
            .iter()
            .map(|(_, v)| v)
            .sum();
        outcomes == 61.0
    })
    .await;
    for name in [
        "swarmwise_agent_trust_ratio",
        "swarmwise_agent_approval_ratio",
        "swarmwise_agent_outcomes",
    ] {
        let series = samples(&text, name);
        assert!(
            series.len() <= CAP,
            "{name}: {} series over the cap of {CAP}",
            series.len()
        );
        for (labels, _) in &series {
            let agent = label(labels, "agent").unwrap();
            assert!(
                agent.len() <= 64
                    && agent
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.:~-".contains(c)),
                "unbounded agent label {agent:?}"
            );
        }
        assert!(
            series
                .iter()
                .any(|(l, _)| label(l, "agent") == Some("_other")),
            "agents past the cap are folded into _other: {series:?}"
        );
    }
    let folded = samples(&text, "swarmwise_agent_series_folded");
    let named = samples(&text, "swarmwise_agent_outcomes")
        .iter()
        .filter(|(l, _)| label(l, "agent") != Some("_other"))
        .count();
    assert_eq!(folded.len(), 1);
    assert_eq!(
        folded[0].1 as usize + named,
        61,
        "every agent is counted once"
    );
    for id in ids.iter().filter(|id| id.len() > 64) {
        assert!(!text.contains(id.as_str()), "raw id {id} exposed");
    }
    app.stop().await.unwrap();
}
crate::both_backends!(hostile_tenants_cannot_explode_agent_series);

/// The self-check notices a workspace table whose row-level security was
/// switched off behind the service's back.
#[actix_web::test]
async fn rls_gauge_drops_to_zero_when_a_table_loses_row_security() {
    if !crate::helpers::postgres_available().await {
        return;
    }
    let app = stats_app(Backend::Postgres, 200).await;
    scrape_until(&app, "swarmwise_store_rls_enforced 1", |t| {
        samples(t, "swarmwise_store_rls_enforced") == vec![("", 1.0)]
    })
    .await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url)
        .await
        .unwrap();
    sqlx::Executor::execute(
        &mut admin,
        "ALTER TABLE recommendation_patterns DISABLE ROW LEVEL SECURITY",
    )
    .await
    .unwrap();
    scrape_until(&app, "swarmwise_store_rls_enforced 0", |t| {
        samples(t, "swarmwise_store_rls_enforced") == vec![("", 0.0)]
    })
    .await;
    app.stop().await.unwrap();
}

/// Every `swarmwise_*` name in `text`, a histogram's `_bucket`, `_sum` and
/// `_count` series mapped to the histogram.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("swarmwise_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| {
                METRICS
                    .iter()
                    .any(|m| m.name == *b && m.kind == "histogram")
            })
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

fn assert_all_catalogued(file: &str, names: &BTreeSet<String>) {
    assert!(!names.is_empty(), "{file} names no metric");
    for n in names {
        assert!(
            METRICS.iter().any(|m| m.name == n),
            "{file} queries {n}, which the service does not expose (telemetry::METRICS)"
        );
    }
}

/// Every panel target of every panel (rows included).
fn targets(panel: &Value, out: &mut Vec<String>) {
    for t in panel["targets"].as_array().into_iter().flatten() {
        out.push(t["expr"].as_str().unwrap_or_default().to_owned());
    }
    for p in panel["panels"].as_array().into_iter().flatten() {
        targets(p, out);
    }
}

#[test]
fn grafana_dashboard_is_valid_and_queries_exposed_metrics() {
    let path = format!("{ROOT}/config/grafana/swarmwise.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("config/grafana/swarmwise.json is valid JSON");
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"datasource") && vars.contains(&"workspace"),
        "{vars:?}"
    );
    let panels = dash["panels"].as_array().unwrap();
    let mut exprs = Vec::new();
    for p in panels {
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "panel {} uses the templated datasource",
                p["title"]
            );
            let mut own = Vec::new();
            targets(p, &mut own);
            assert!(
                own.iter().any(|e| !e.is_empty()),
                "panel {} has a query",
                p["title"]
            );
        }
        targets(p, &mut exprs);
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str() {
            exprs.push(q.to_owned());
        } else if let Some(q) = v["query"]["query"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    assert_all_catalogued("swarmwise.json", &metric_names(&exprs.join("\n")));
    // The Task 8 groups each have a panel.
    let text = exprs.join("\n");
    for needed in [
        "swarmwise_learning_cycles_total",
        "swarmwise_learning_cycle_duration_seconds_bucket",
        "swarmwise_patterns",
        "swarmwise_learning_model_accuracy_ratio",
        "swarmwise_learning_model_coverage_ratio",
        "swarmwise_trust_average_ratio",
        "swarmwise_trust_variance",
        "swarmwise_agents_declining",
        "swarmwise_agents_improving",
        "swarmwise_agent_approval_ratio",
        "swarmwise_outcome_quality_average",
        "swarmwise_recommendations_evaluated_ratio",
        "swarmwise_store_rows",
        "swarmwise_store_query_duration_seconds_bucket",
        "swarmwise_store_rls_enforced",
        "swarmwise_alerts_firing",
    ] {
        assert!(text.contains(needed), "no panel queries {needed}");
    }
}

#[test]
fn alert_rules_query_exposed_metrics_and_link_runbooks() {
    let text = std::fs::read_to_string(format!("{ROOT}/config/prometheus/alerts.yml")).unwrap();
    assert_all_catalogued("alerts.yml", &metric_names(&text));
    for rule in [
        "learning_cycle_failed",
        "agent_trust_low",
        "database_errors",
        "agent_approval_low",
        "learning_cycle_slow",
        "pattern_confidence_low",
        "agents_declining",
    ] {
        assert!(
            text.contains(&format!("- alert: {rule}\n")),
            "alerts.yml lacks {rule}"
        );
        assert!(
            text.contains(&format!("docs/runbooks.md#{rule}")),
            "{rule} has no runbook_url"
        );
    }
}

/// With `telemetry.metrics_token` set, a tenant cannot read the other
/// workspaces' ids and agents from /metrics: no token, a wrong one, its own
/// API key or the admin key are 401 and carry no metric; the token is 200.
#[actix_web::test]
async fn a_metrics_token_keeps_tenants_out_of_metrics() {
    const TOKEN: &str = "metrics-token-0123456789abcdef";
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.telemetry.metrics_token = TOKEN.into();
    })
    .await;
    app.ready().await;
    let (_, key) = app.workspace("tenant").await;
    let admin = app.admin_key.clone();
    for (who, auth) in [
        ("no token", None),
        ("a wrong token", Some("metrics-token-0123456789abcdeX")),
        ("a workspace key", Some(key.as_str())),
        ("the admin key", Some(admin.as_str())),
    ] {
        let mut req = app.client.get(app.url("/metrics"));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{who}");
        let body = res.text().await.unwrap();
        assert!(!body.contains("swarmwise_"), "{who} read metrics: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "unauthorized", "{who}");
    }
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("swarmwise_"));
    app.stop().await.unwrap();
}
