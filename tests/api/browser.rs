//! The dashboards in a real browser: Debian's Chromium, headless, driven
//! through chromedriver (WebDriver) with fantoccini, against the real service
//! on loopback. Signs in, checks every agent's `data-trust` against the API,
//! filters patterns, follows a live update after a cycle, exports CSV, runs
//! axe-core on every page (no serious or critical violation), checks the
//! phone width (375 px) and keyboard access, fails on any console error, and
//! saves screenshots (`target/screenshots/`, or `SWARMWISE_SCREENSHOTS`).
//!
//! With `CI=true` a missing `chromium` or `chromedriver` fails the test;
//! elsewhere it prints a visible SKIPPED line (install them with
//! `apt-get install -y chromium chromium-driver`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::dashboard::{panel_app, panel_dir, register_panel, run_panel};
use crate::helpers::{Backend, TestApp};

/// axe-core 4.14.1 (MPL-2.0), vendored from the npm registry.
const AXE: &str = include_str!("../browser/axe.min.js");

const WAIT: Duration = Duration::from_secs(30);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn find_program(names: &[&str]) -> Option<String> {
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
    })
}

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver and waits (at most 30 s) for its "started" line.
fn start_driver(program: &str) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(program)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("started successfully") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(WAIT)
        .expect("chromedriver said it started within 30 s");
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, chromium: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--hide-scrollbars"]
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::env::var("SWARMWISE_SCREENSHOTS").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shoot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Runs axe-core on the current page → serious and critical violations.
async fn axe(c: &Client) -> Vec<String> {
    let loaded = c
        .execute(&format!("{AXE}\n;return typeof axe;"), vec![])
        .await
        .unwrap();
    assert_eq!(loaded, "object");
    let v = c
        .execute(
            "return axe.run(document, {resultTypes: ['violations']}).then(r => r.violations
                .filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' @ ' + v.nodes.map(n => n.target.join(' ')).join(', ')));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// The browser's console since the last call: messages at SEVERE level.
async fn console_errors(c: &Client, driver: &Driver) -> Vec<String> {
    let id = c.session_id().await.unwrap().unwrap();
    let res: Value = reqwest::Client::new()
        .post(format!("{}/session/{id}/se/log", driver.url))
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The page does not scroll sideways.
async fn fits_width(c: &Client) -> bool {
    c.execute(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
        vec![],
    )
    .await
    .unwrap()
        == true
}

async fn goto(c: &Client, app: &TestApp, path: &str) {
    c.goto(&app.url(path)).await.unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("main"))
        .await
        .unwrap();
}

/// Every page: axe clean, no console error, screenshot.
async fn audit(c: &Client, driver: &Driver, name: &str) {
    let violations = axe(c).await;
    assert!(violations.is_empty(), "{name}: {violations:#?}");
    let errors = console_errors(c, driver).await;
    assert!(errors.is_empty(), "{name}: console errors {errors:#?}");
    shoot(c, name).await;
}

#[actix_web::test]
async fn dashboards_in_chromium() {
    let chromium = find_program(&["chromium", "chromium-browser"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        if in_ci() {
            panic!("CI=true but chromium or chromedriver is missing; install them with `apt-get install -y chromium chromium-driver` (.ci/run does)");
        }
        crate::helpers::skipped_because(
            "browser::dashboards_in_chromium",
            "chromium or chromedriver not installed; apt-get install -y chromium chromium-driver",
        );
        return;
    };
    let dir = panel_dir();
    let app = panel_app(Backend::Sqlite, &dir).await;
    let (_, key) = app.workspace("Demo").await;
    register_panel(&app, &key).await;
    let run_id = run_panel(&app, &key, 60).await;
    let res = app.post(&key, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    run_panel(&app, &key, 20).await;

    let driver = start_driver(&chromedriver);
    let c = browser(&driver, &chromium).await;

    // Sign in: a form error first, then the real key.
    goto(&c, &app, "/learning/login").await;
    audit(&c, &driver, "login").await;
    c.find(Locator::Css("input[name=api_key]"))
        .await
        .unwrap()
        .send_keys("swk_wrong")
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let err = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#login-error"))
        .await
        .unwrap();
    assert!(err.text().await.unwrap().contains("Unknown or revoked"));
    // The 401 of the wrong key is a console error of its own; drop it.
    let _ = console_errors(&c, &driver).await;
    c.find(Locator::Css("input[name=api_key]"))
        .await
        .unwrap()
        .send_keys(&key)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#insights"))
        .await
        .unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/learning");
    assert!(!url.as_str().contains(&key), "no key in the URL");
    assert_eq!(
        c.execute("return document.cookie;", vec![]).await.unwrap(),
        "",
        "the session cookie is HttpOnly"
    );
    // Keyboard: the first Tab reaches the skip link.
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("\u{E004}")
        .await
        .unwrap();
    let focused = c.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");
    c.execute("document.activeElement.blur();", vec![])
        .await
        .unwrap();

    // Live update: once the stream is open, a cycle started elsewhere
    // replaces the widget.
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#insights[data-live=open]"))
        .await
        .unwrap();
    audit(&c, &driver, "overview").await;
    let res = app.post(&key, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let cycle: Value = res.json().await.unwrap();
    let id = cycle["id"].as_str().unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("#insights [data-cycle-id=\"{id}\"]")))
        .await
        .unwrap();

    // Trust scores: every row's data-trust is the API's, three decimals.
    goto(&c, &app, "/learning/trust-scores").await;
    let rows = c
        .execute(
            "return Array.from(document.querySelectorAll('tr[data-agent-id]')).map(r => [r.dataset.agentId, r.dataset.trust]);",
            vec![],
        )
        .await
        .unwrap();
    let api = app.json(&key, "/api/v1/learning/trust-scores").await;
    let expected: Vec<Value> = api["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            json!([
                a["agent_id"],
                format!("{:.3}", a["overall_trust"].as_f64().unwrap())
            ])
        })
        .collect();
    assert_eq!(rows, Value::Array(expected));
    audit(&c, &driver, "trust-scores").await;
    // Sorting by name through the header link.
    c.find(Locator::LinkText("Agent"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("th[aria-sort=ascending]"))
        .await
        .unwrap();
    let first = c
        .find(Locator::Css("tr[data-agent-id]"))
        .await
        .unwrap()
        .attr("data-agent-id")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("coin_a"));
    // CSV export, fetched by the page with its session.
    let csv = c
        .execute(
            "return fetch(document.querySelector('a[href=\"/learning/export/agents.csv\"]').href).then(r => r.text());",
            vec![],
        )
        .await
        .unwrap();
    let csv = csv.as_str().unwrap();
    assert!(csv.starts_with("agent_id,agent_name,"), "{csv}");
    assert_eq!(csv.lines().count(), 5, "{csv}");

    // Pattern board: filter by category with the form.
    goto(&c, &app, "/learning/patterns").await;
    c.find(Locator::Css("#category option[value=expert]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#apply-filters"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The unfiltered board also shows expert patterns, so waiting for one
    // could see the page before the filtered one replaced it: wait until
    // every pattern shown is an expert one.
    crate::helpers::poll_until("the pattern board filtered to expert", || async {
        let shown = c
            .execute(
                "return Array.from(document.querySelectorAll('article[data-pattern-id]')).map(a => a.dataset.category);",
                vec![],
            )
            .await
            .map_err(|e| e.to_string())?;
        let categories: Vec<String> =
            serde_json::from_value(shown).map_err(|e| e.to_string())?;
        if !categories.is_empty() && categories.iter().all(|c| c == "expert") {
            Ok(())
        } else {
            Err(format!("categories shown: {categories:?}"))
        }
    })
    .await;
    audit(&c, &driver, "patterns").await;

    // Agent profile, runs, one run.
    goto(&c, &app, "/learning/agents/expert").await;
    audit(&c, &driver, "agent-profile").await;
    goto(&c, &app, "/learning/runs").await;
    audit(&c, &driver, "runs").await;
    goto(&c, &app, &format!("/learning/runs/{run_id}")).await;
    audit(&c, &driver, "run").await;

    // Phone width: nothing scrolls sideways, still no violation.
    c.set_window_size(375, 812).await.unwrap();
    for (path, name) in [
        ("/learning", "phone-overview"),
        ("/learning/trust-scores", "phone-trust-scores"),
        ("/learning/patterns", "phone-patterns"),
        ("/learning/agents/expert", "phone-agent-profile"),
        ("/learning/runs", "phone-runs"),
    ] {
        goto(&c, &app, path).await;
        assert!(fits_width(&c).await, "{path} scrolls sideways at 375 px");
        audit(&c, &driver, name).await;
    }

    // Sign out through the button.
    c.find(Locator::Css("header form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("input[name=api_key]"))
        .await
        .unwrap();
    goto(&c, &app, "/learning/trust-scores").await;
    assert_eq!(
        c.current_url().await.unwrap().path(),
        "/learning/login",
        "signed out"
    );
    c.close().await.unwrap();
}

/// A run paused at an approval stage is approved from its dashboard page:
/// the page shows the paused stage's answers and a form with the session's
/// CSRF token; a comment typed there becomes the stage's feedback.
#[actix_web::test]
async fn approve_a_paused_run_in_chromium() {
    let chromium = find_program(&["chromium", "chromium-browser"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        if in_ci() {
            panic!("CI=true but chromium or chromedriver is missing; install them with `apt-get install -y chromium chromium-driver` (.ci/run does)");
        }
        crate::helpers::skipped_because(
            "browser::approve_a_paused_run_in_chromium",
            "chromium or chromedriver not installed; apt-get install -y chromium chromium-driver",
        );
        return;
    };
    let dir = crate::durable_runs::workflows_dir();
    let agents = crate::durable_runs::Agents::start();
    let app =
        crate::helpers::spawn_app_with(Backend::Sqlite, crate::durable_runs::durable(&dir)).await;
    let (_, key) = app.workspace("Approvals").await;
    agents
        .register(&app.address, &key, &["fast", "final"])
        .await;
    let res = app
        .post(
            &key,
            "/api/v1/workflows/runs",
            &json!({"workflow": "gated", "wait": true}),
        )
        .await;
    let run: Value = res.json().await.unwrap();
    assert_eq!(run["status"], "awaiting_approval", "{run}");
    let id = run["id"].as_str().unwrap().to_owned();

    let driver = start_driver(&chromedriver);
    let c = browser(&driver, &chromium).await;
    goto(&c, &app, "/learning/login").await;
    c.find(Locator::Css("input[name=api_key]"))
        .await
        .unwrap()
        .send_keys(&key)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#insights"))
        .await
        .unwrap();
    goto(&c, &app, &format!("/learning/runs/{id}")).await;
    let section = c.find(Locator::Css("#approval")).await.unwrap();
    assert_eq!(
        section
            .attr("data-approval-stage")
            .await
            .unwrap()
            .as_deref(),
        Some("draft")
    );
    audit(&c, &driver, "run-approval").await;
    c.find(Locator::Css("#approval-comment"))
        .await
        .unwrap()
        .send_keys("ship it")
        .await
        .unwrap();
    c.find(Locator::Css("#approve-run"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let notice = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p.notice"))
        .await
        .unwrap();
    assert!(notice.text().await.unwrap().contains("Approved"));
    crate::durable_runs::run_reaches(&app, &key, &id, "succeeded").await;
    let recs = app
        .json(
            &key,
            &format!("/api/v1/recommendations?workflow_id={id}&agent_id=fast"),
        )
        .await;
    assert_eq!(recs["items"][0]["status"], "approved", "{recs}");
    assert_eq!(recs["items"][0]["feedback"], "ship it", "{recs}");
    assert_eq!(agents.calls("final"), 1);
    c.close().await.unwrap();
    app.stop().await.unwrap();
}
