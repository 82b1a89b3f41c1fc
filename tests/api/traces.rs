//! Traces follow a request: the built binary logs with
//! `RUST_LOG=info,swarmwise_actors=debug`; a workflow run started over HTTP
//! is found in the logs by its run id alone, from the request (its id
//! echoed in `x-request-id`) through the agent task to the store call that
//! finishes the run. A tenant's `x-request-id` that could forge log lines
//! is replaced.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::spawn_server_in;

fn workflow_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("workflows")).unwrap();
    std::fs::write(
        dir.path().join("workflows/traced.toml"),
        r#"name = "traced"
[[stages]]
name = "opinions"
agents = ["s1"]
recommendation_type = "strategy"
timeout_ms = 30000
"#,
    )
    .unwrap();
    dir
}

#[actix_web::test]
async fn one_run_id_follows_the_run_from_request_to_store() {
    let dir = workflow_dir();
    let db = format!("sqlite://{}/t.db", dir.path().display());
    let workflows = dir.path().join("workflows").display().to_string();
    let server = spawn_server_in(
        None,
        &[],
        &[
            ("SWARMWISE__DATABASE__URL", &db),
            ("SWARMWISE__AUTH__ADMIN_KEY", "admin-traces"),
            ("SWARMWISE__WORKFLOWS__DIR", &workflows),
            ("RUST_LOG", "info,swarmwise_actors=debug"),
        ],
    );
    let address = server.address.clone();
    let c = reqwest::Client::new();
    let ws: Value = c
        .post(format!("{address}/api/v1/workspaces"))
        .bearer_auth("admin-traces")
        .json(&json!({"name": "traced"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap();
    let workspace = ws["id"].as_str().unwrap();
    let res = c
        .post(format!("{address}/api/v1/agents"))
        .bearer_auth(key)
        .json(&json!({"id": "s1", "name": "S1", "kind": "simulated",
                      "config": {"skill": {"strategy": 0.9}, "seed": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);

    let res = c
        .post(format!("{address}/api/v1/workflows/runs"))
        .bearer_auth(key)
        .header("x-request-id", "req-traced-1")
        .json(&json!({"workflow": "traced", "wait": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-request-id"], "req-traced-1");
    let run: Value = res.json().await.unwrap();
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["status"], "succeeded", "{run}");

    // A tenant's id that would forge a log line (or flood one) is replaced.
    let forged = c
        .get(format!("{address}/api/v1/agents"))
        .bearer_auth(key)
        .header(
            "x-request-id",
            format!("x run_id={run_id} {}", "y".repeat(100)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::OK);
    let replaced = forged.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&replaced).is_ok(), "{replaced}");

    // The store call that finished the run: in the run's span (its id),
    // inside the request's span (the request id and workspace).
    let needle = format!("run_id={run_id}");
    let mut store_line = None;
    let mut agent_line = None;
    let mut seen = Vec::new();
    while store_line.is_none() || agent_line.is_none() {
        let line = server
            .output
            .next_line(std::time::Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the server's output ended; saw:\n{}", seen.join("\n")));
        if line.contains(&needle) && line.contains("store{op=") && line.contains("finish_run") {
            store_line = Some(line.clone());
        } else if line.contains(&needle) && line.contains("agent_task{") {
            agent_line = Some(line.clone());
        }
        seen.push(line);
    }
    let store_line = store_line.unwrap();
    assert!(
        store_line.contains("request_id=req-traced-1"),
        "{store_line}"
    );
    assert!(
        store_line.contains(&format!("workspace={workspace}")),
        "{store_line}"
    );
    assert!(store_line.contains("workflow=traced"), "{store_line}");
    assert!(store_line.contains("store call done"), "{store_line}");
    let agent_line = agent_line.unwrap();
    assert!(agent_line.contains("agent=s1"), "{agent_line}");
    assert!(
        agent_line.contains("request_id=req-traced-1"),
        "{agent_line}"
    );
    // No line names the forged id.
    assert!(
        !seen.iter().any(|l| l.contains("x run_id=")),
        "a forged request id reached the logs"
    );
    drop(server);
}
