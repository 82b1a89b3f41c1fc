//! The binary stands alone: run from an empty folder with no config file it
//! starts with the built-in workflows and demo swarm (SQLite under ./data);
//! `swarmwise init DIR` writes editable copies, and paths inside a config
//! file resolve against that file's folder.

use serde_json::{json, Value};

use crate::helpers::spawn_server_in;

async fn workflows(base: &str, admin: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    let ws: Value = client
        .post(format!("{base}/api/v1/workspaces"))
        .bearer_auth(admin)
        .json(&json!({"name": "user"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap();
    let list: Value = client
        .get(format!("{base}/api/v1/workflows"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list
        .as_array()
        .or_else(|| list["items"].as_array())
        .unwrap();
    let mut names: Vec<String> = items
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[actix_web::test]
async fn serve_from_an_empty_folder_uses_the_built_in_config() {
    let empty = tempfile::tempdir().unwrap();
    let server = spawn_server_in(
        Some(empty.path()),
        &[],
        &[
            ("SWARMWISE__AUTH__ADMIN_KEY", "standalone-admin"),
            ("SWARMWISE__DEMO__ENABLED", "true"),
            ("SWARMWISE__DEMO__RUNS_PER_SECOND", "1"),
        ],
    );
    assert_eq!(
        workflows(&server.address, "standalone-admin").await,
        ["move_creation", "quick_strategy"]
    );
    assert!(
        empty.path().join("data/swarmwise.db").exists(),
        "SQLite under ./data"
    );
    assert!(empty.path().join("data/demo.key").exists(), "the demo ran");
    let status = server.sigterm();
    assert!(status.success(), "{status}");
}

#[actix_web::test]
async fn init_writes_an_editable_copy_that_serve_uses() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"))
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("config");
    for f in [
        "default.toml",
        "workflows/move_creation.toml",
        "demo/swarm.toml",
    ] {
        assert!(cfg.join(f).exists(), "{f}");
    }
    // Again: refuses to overwrite, says how.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"))
        .args(["init", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    // Edit the copy: rename a workflow; serve from another folder with
    // --config finds the edited workflows beside the config file.
    let quick = cfg.join("workflows/quick_strategy.toml");
    let text = std::fs::read_to_string(&quick).unwrap();
    std::fs::write(
        &quick,
        text.replace("name = \"quick_strategy\"", "name = \"our_strategy\""),
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = cfg.join("default.toml");
    let server = spawn_server_in(
        Some(elsewhere.path()),
        &["--config", config.to_str().unwrap()],
        &[("SWARMWISE__AUTH__ADMIN_KEY", "standalone-admin")],
    );
    assert_eq!(
        workflows(&server.address, "standalone-admin").await,
        ["move_creation", "our_strategy"]
    );
    assert!(server.sigterm().success());
}
