//! The binary stands alone: run from an empty folder with no config file it
//! starts with the built-in workflows and demo swarm (SQLite under ./data);
//! `swarmwise init DIR` writes editable copies, and paths inside a config
//! file resolve against that file's folder.

use serde_json::{json, Value};

use crate::helpers::spawn_server_in;
use crate::helpers::OutputWithin;

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
        .output_within()
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
        .output_within()
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

/// Every kind of bad start exits non-zero with its message, no panic and no
/// backtrace.
#[test]
fn a_failed_start_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf");
    std::fs::create_dir(&wf).unwrap();
    std::fs::write(wf.join("x.toml"), "name = \"x\"\nbogus = 1\n").unwrap();
    let swarm = dir.path().join("swarm.toml");
    std::fs::write(
        &swarm,
        "[[agents]]\nid = \"x\"\nname = \"X\"\nkind = \"teleport\"\n",
    )
    .unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let (wf, swarm) = (wf.display().to_string(), swarm.display().to_string());
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a workflow with an unknown field",
            vec![("SWARMWISE__WORKFLOWS__DIR", &wf)],
            "bogus",
        ),
        (
            "a demo swarm with an unknown kind",
            vec![
                ("SWARMWISE__DEMO__ENABLED", "true"),
                ("SWARMWISE__DEMO__SWARM_FILE", &swarm),
            ],
            "teleport",
        ),
        (
            "a port in use",
            vec![("SWARMWISE__SERVER__BIND", &taken)],
            "could not listen",
        ),
        (
            "an unreachable database",
            vec![(
                "SWARMWISE__DATABASE__URL",
                "postgres://nobody@127.0.0.1:1/x",
            )],
            "could not open PostgreSQL",
        ),
        (
            "a value of the wrong type",
            vec![("SWARMWISE__TRACKING__BATCH_SIZE", "many")],
            "tracking.batch_size",
        ),
        (
            "an address that is not one",
            vec![("SWARMWISE__SERVER__BIND", "nowhere")],
            "server.bind",
        ),
    ];
    for (what, envs, expected) in cases {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"));
        cmd.arg("serve")
            .current_dir(dir.path())
            .env("SWARMWISE__SERVER__BIND", "127.0.0.1:0")
            .env("SWARMWISE__DEMO__ENABLED", "false")
            .env(
                "SWARMWISE__DATABASE__URL",
                format!("sqlite://{}/db.sqlite", dir.path().display()),
            );
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output_within().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{what}: started anyway");
        assert!(stderr.contains("error"), "{what}: {stderr}");
        assert!(
            stderr.contains(expected) || stdout.contains(expected),
            "{what}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked")
                && !stderr.contains("backtrace")
                && !stdout.contains("panicked"),
            "{what}: {stderr}"
        );
    }
}
