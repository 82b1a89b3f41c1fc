//! Keys at start: the demo workspace keeps one key across restarts, and a
//! configured admin key is never printed.

use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{fresh_database, test_settings, Backend};

/// The demo workspace keeps its key across restarts (the file is 0600); a
/// revoked demo key is replaced at the next start and stays refused.
async fn demo_key_survives_restarts(backend: Backend) {
    crate::helpers::init_test_logging();
    let (url, _db_dir) = fresh_database(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("demo.key");
    let start = || async {
        let mut s = test_settings(&url);
        s.demo.enabled = true;
        s.demo.runs_per_second = 0.01;
        s.demo.key_file = key_file.display().to_string();
        s.demo.swarm_file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo/swarm.toml").into();
        let app = swarmwise::startup::Application::build(s).await.unwrap();
        let key = app.demo_key().unwrap().to_owned();
        let address = format!("http://{}", app.address());
        let handle = app.handle();
        let join = actix_web::rt::spawn(app.run());
        (key, address, handle, join)
    };
    let client = reqwest::Client::new();
    let get = |address: &str, key: &str| {
        client
            .get(format!("{address}/api/v1/agents"))
            .bearer_auth(key)
            .send()
    };

    let (k1, address, handle, join) = start().await;
    assert_eq!(get(&address, &k1).await.unwrap().status(), StatusCode::OK);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), k1);
    handle.stop().await;
    join.await.unwrap().unwrap();

    let (k2, address, handle, join) = start().await;
    assert_eq!(k2, k1, "the demo key changed across a restart");
    // Exactly one demo key exists.
    let ws = swarmwise::demo::DEMO_WORKSPACE;
    let keys: Value = client
        .get(format!("{address}/api/v1/workspaces/{ws}/api-keys"))
        .bearer_auth("test-admin-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = keys["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{keys}");
    let id = items[0]["id"].as_str().unwrap();
    let res = client
        .post(format!(
            "{address}/api/v1/workspaces/{ws}/api-keys/{id}/revoke"
        ))
        .bearer_auth("test-admin-key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    handle.stop().await;
    join.await.unwrap().unwrap();

    let (k3, address, handle, join) = start().await;
    assert_ne!(k3, k1, "a revoked demo key came back");
    assert_eq!(get(&address, &k3).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get(&address, &k1).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), k3);
    handle.stop().await;
    join.await.unwrap().unwrap();
}
both_backends!(demo_key_survives_restarts);

/// `serve` prints a configured admin key's fingerprint, never the key; a
/// generated key is printed (once, at start).
#[test]
fn configured_admin_key_is_never_printed() {
    let configured = "operator-secret-admin-key-0123456789";
    for admin_key in [Some(configured), None] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/swarmwise.db", dir.path().display());
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"));
        cmd.arg("serve")
            .env("SWARMWISE__SERVER__BIND", "127.0.0.1:0")
            .env("SWARMWISE__SERVER__WORKERS", "1")
            .env("SWARMWISE__DEMO__ENABLED", "false")
            .env("SWARMWISE__DATABASE__URL", &url)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        match admin_key {
            Some(k) => cmd.env("SWARMWISE__AUTH__ADMIN_KEY", k),
            None => cmd.env_remove("SWARMWISE__AUTH__ADMIN_KEY"),
        };
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        // stderr (the logs) is read to its end after the kill.
        let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
        let mut printed = Vec::new();
        let lines = crate::helpers::OutputLines::new(stdout);
        while let Some(line) = lines.next_line(std::time::Duration::from_secs(60)) {
            let last = line.trim_start().starts_with("try:");
            printed.push(line);
            if last {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let logs = logs.join().unwrap();
        let out = printed.join("\n");
        let admin_line = printed.iter().find(|l| l.contains("admin key")).unwrap();
        match admin_key {
            Some(k) => {
                assert!(
                    !out.contains(k) && !logs.contains(k),
                    "the admin key was printed:\n{out}\n{logs}"
                );
                assert!(
                    admin_line.contains(&swarmwise::auth::fingerprint(k)),
                    "{admin_line}"
                );
            }
            None => {
                let generated = admin_line.rsplit(' ').next().unwrap();
                assert!(generated.starts_with("swa_"), "{admin_line}");
                assert_eq!(out.matches(generated).count(), 1, "{out}");
                assert!(
                    !logs.contains(generated),
                    "the generated key is in the logs: {logs}"
                );
            }
        }
    }
}
