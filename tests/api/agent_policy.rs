//! A tenant (workspace key) tries every way past the operator's agent
//! policy: programs, shell arguments, the server's environment, loopback in
//! its spellings, private and metadata addresses, redirects. Each attempt
//! gets a 403/422 naming the rule; no process is spawned (a marker file stays
//! absent) and no request reaches a loopback listener. Addresses outside
//! loopback are checked at registration only: no test sends traffic beyond it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::backends::ServiceFactory;
use swarmwise_actors::agent::backend::{AgentBackend, BackendError, Task};
use swarmwise_actors::domain::{Agent, AgentId, WorkspaceId};
use swarmwise_actors::swarm::{BackendFactory, ProgramConfig, SwarmConfig};

use crate::helpers::{assert_error, loopback_peer, spawn_app, spawn_app_with, Backend};

/// A loopback listener that counts every request it receives.
fn counting_listener(ip: &str) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let addr = loopback_peer(ip, move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { HttpResponse::Ok().json(json!({"content": "reached", "confidence": 1.0})) }
    });
    (addr.port(), hits)
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

async fn assert_refused(res: reqwest::Response, field: &str, rule: &str) {
    let body = assert_error(
        res,
        StatusCode::FORBIDDEN,
        "agent_policy_violation",
        Some(field),
    )
    .await;
    assert_eq!(body["details"]["rule"], rule, "{body}");
}

#[actix_web::test]
async fn a_tenant_cannot_run_programs_or_name_the_servers_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let marker_s = marker.display().to_string();
    // Even with `command` allowed for tenants, only declared programs run.
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allowed_kinds.push("command".into());
        s.agents.programs.insert(
            "summarise".into(),
            ProgramConfig {
                program: "cat".into(),
                args: vec![],
                env: Default::default(),
                timeout_ms: 5_000,
            },
        );
        s.agents.secret_env = vec!["SWARMWISE_TEST_LISTED_SECRET".into()];
    })
    .await;
    let (_, k) = app.workspace("tenant").await;
    let shell = format!("id > {marker_s}");
    // A path, a shell with arguments, a declared name with smuggled args or env.
    assert_refused(
        register(
            &app,
            &k,
            "move_architect",
            "command",
            json!({"program": "/bin/sh", "args": ["-c", shell]}),
        )
        .await,
        "config.program",
        "agents.programs",
    )
    .await;
    assert_refused(
        register(
            &app,
            &k,
            "strategist_b",
            "command",
            json!({"program": "sh"}),
        )
        .await,
        "config.program",
        "agents.programs",
    )
    .await;
    for smuggled in [
        json!({"program": "summarise", "args": ["-c", shell]}),
        json!({"program": "summarise", "env": {"LD_PRELOAD": "/tmp/x.so"}}),
    ] {
        assert_error(
            register(&app, &k, "strategist_c", "command", smuggled).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("config"),
        )
        .await;
    }
    // The shipped workflow that names those agent ids runs, and nothing of
    // the tenant's is executed.
    let res = app
        .post(
            &k,
            "/api/v1/workflows/runs",
            &json!({"workflow": "quick_strategy", "wait": true}),
        )
        .await;
    assert!(
        res.status().is_success() || res.status().is_client_error(),
        "{}",
        res.status()
    );
    assert!(!marker.exists(), "no process of the tenant's ran");

    // Secrets: the admin key's variable, a set variable off the list, an
    // unset one: the same refusal, naming the rule.
    let mut messages = Vec::new();
    for (n, name) in [
        "SWARMWISE__AUTH__ADMIN_KEY",
        "HOME",
        "SWARMWISE_TEST_NEVER_SET_9",
    ]
    .iter()
    .enumerate()
    {
        for (kind, config) in [
            (
                "http",
                json!({"url": "https://agents.example.com/hook", "headers_env": {"x-key": name}}),
            ),
            (
                "openai",
                json!({"base_url": "https://api.example.com/v1", "model": "m", "api_key_env": name}),
            ),
        ] {
            let res = register(&app, &k, &format!("s{n}{kind}"), kind, config).await;
            let field = if kind == "http" {
                "config.headers_env.x-key"
            } else {
                "config.api_key_env"
            };
            let body = assert_error(
                res,
                StatusCode::FORBIDDEN,
                "agent_policy_violation",
                Some(field),
            )
            .await;
            assert_eq!(body["details"]["rule"], "agents.secret_env");
            messages.push(body["message"].as_str().unwrap().replace(name, "NAME"));
        }
    }
    assert_eq!(messages[0], messages[2], "set or unset, one answer");
    assert_eq!(
        messages[2], messages[4],
        "a setting or any other name, one answer"
    );
    assert!(app.json(&k, "/api/v1/agents").await["items"]
        .as_array()
        .unwrap()
        .is_empty());
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn a_tenant_cannot_point_agents_at_loopback_private_or_metadata_addresses() {
    let (port, hits) = counting_listener("127.0.0.1");
    let app = spawn_app(Backend::Sqlite).await;
    let (_, k) = app.workspace("tenant").await;
    // Loopback in its spellings (the listener is there, and stays untouched).
    let loopback = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://LOCALHOST.:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f000001:{port}/"),
        format!("http://127.1:{port}/"),
    ];
    for (i, url) in loopback.iter().enumerate() {
        assert_refused(
            register(&app, &k, &format!("h{i}"), "http", json!({"url": url})).await,
            "config.url",
            "agents.allow_private_networks",
        )
        .await;
        assert_refused(
            register(
                &app,
                &k,
                &format!("o{i}"),
                "openai",
                json!({"base_url": url, "model": "m"}),
            )
            .await,
            "config.base_url",
            "agents.allow_private_networks",
        )
        .await;
    }
    // Private, link-local and metadata: refused at registration; nothing is sent.
    for (i, (url, rule)) in [
        ("http://10.1.2.3/", "agents.allow_private_networks"),
        ("http://192.168.0.10/", "agents.allow_private_networks"),
        ("http://172.20.0.1/", "agents.allow_private_networks"),
        ("http://100.64.0.1/", "agents.allow_private_networks"),
        ("http://[fe80::1]/", "agents.allow_private_networks"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "agents.allow_hosts",
        ),
        ("http://[fd00:ec2::254]/", "agents.allow_hosts"),
        ("http://100.100.100.200/", "agents.allow_hosts"),
    ]
    .iter()
    .enumerate()
    {
        assert_refused(
            register(&app, &k, &format!("p{i}"), "http", json!({"url": url})).await,
            "config.url",
            rule,
        )
        .await;
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request reached loopback"
    );
    assert!(app.json(&k, "/api/v1/agents").await["items"]
        .as_array()
        .unwrap()
        .is_empty());
    app.stop().await.unwrap();
}

fn task() -> Task {
    Task {
        id: uuid::Uuid::now_v7(),
        workspace_id: WorkspaceId(uuid::Uuid::nil()),
        workflow_id: "run-1".into(),
        correlation_id: "c".into(),
        workflow: "wf".into(),
        stage: "s".into(),
        recommendation_type: "strategy".into(),
        input: json!({}),
        context: json!({}),
    }
}

fn http_agent(factory: &ServiceFactory, url: &str) -> Arc<dyn AgentBackend> {
    let agent = Agent {
        id: AgentId::parse("id", "r").unwrap(),
        name: "R".into(),
        kind: "http".into(),
        config: json!({"url": url, "retries": 0}),
        enabled: true,
        created_at: chrono::Utc::now(),
        quarantine: None,
        override_grace: None,
    };
    factory.build(&agent).unwrap().unwrap()
}

/// The operator opened 127.0.0.2 only. A peer there redirects to 127.0.0.1
/// (by address and by name); a name that resolves to this host is checked
/// on the address DNS gives, when connecting. None of it reaches 127.0.0.1.
#[actix_web::test]
async fn redirects_and_names_are_checked_on_the_address_connected_to() {
    let (target, hits) = counting_listener("127.0.0.1");
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let redirector = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .route(
                "/by-address",
                web::post().to(move || async move {
                    HttpResponse::TemporaryRedirect()
                        .insert_header(("location", format!("http://127.0.0.1:{target}/agent")))
                        .finish()
                }),
            )
            .route(
                "/by-name",
                web::post().to(move || async move {
                    HttpResponse::TemporaryRedirect()
                        .insert_header(("location", format!("http://localhost:{target}/agent")))
                        .finish()
                }),
            )
            .route(
                "/decimal",
                web::post().to(move || async move {
                    HttpResponse::TemporaryRedirect()
                        .insert_header(("location", format!("http://2130706433:{target}/agent")))
                        .finish()
                }),
            )
            .route(
                "/fine",
                web::post().to(|| async {
                    HttpResponse::Ok().json(json!({"content": "ok", "confidence": 0.5}))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    let factory = ServiceFactory::new(&SwarmConfig {
        allow_hosts: vec!["127.0.0.2".into()],
        ..SwarmConfig::default()
    });
    let ok = http_agent(&factory, &format!("http://{redirector}/fine"));
    assert!(
        ok.execute(&task()).await.is_ok(),
        "the opened host is reachable"
    );
    for path in ["by-address", "by-name", "decimal"] {
        let agent = http_agent(&factory, &format!("http://{redirector}/{path}"));
        match agent.execute(&task()).await {
            Err(BackendError::Failed(m)) => assert!(m.contains("could not reach"), "{path}: {m}"),
            other => panic!("{path}: {other:?}"),
        }
    }
    // This host's own name resolves (here, through /etc/hosts) to a local
    // address; the registration check cannot know that, the resolver does.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim();
    let by_name = http_agent(&factory, &format!("http://{hostname}:{target}/agent"));
    match by_name.execute(&task()).await {
        Err(BackendError::Failed(m)) => assert!(m.contains("could not reach"), "{m}"),
        other => panic!("{hostname} resolved to an address agents may reach: {other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached 127.0.0.1");
}

/// The admin key may register any kind in any workspace (still under the
/// program policy); a workspace key may not use the admin route.
#[actix_web::test]
async fn the_admin_key_registers_any_kind() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.programs.insert(
            "echo".into(),
            ProgramConfig {
                program: "cat".into(),
                args: vec![],
                env: Default::default(),
                timeout_ms: 5_000,
            },
        );
    })
    .await;
    let (ws, k) = app.workspace("tenant").await;
    assert_refused(
        register(&app, &k, "c", "command", json!({"program": "echo"})).await,
        "kind",
        "agents.allowed_kinds",
    )
    .await;
    let path = format!("/api/v1/workspaces/{ws}/agents");
    let body = json!({"id": "c", "name": "C", "kind": "command", "config": {"program": "echo"}});
    let res = app.post(&k, &path, &body).await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "a workspace key on the admin route"
    );
    let res = app.post(&app.admin_key, &path, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let agents = app.json(&k, "/api/v1/agents").await;
    assert_eq!(agents["items"][0]["kind"], "command");
    let res = app
        .post(
            &app.admin_key,
            &path,
            &json!({"id": "d", "name": "D", "kind": "command", "config": {"program": "/bin/sh"}}),
        )
        .await;
    assert_refused(res, "config.program", "agents.programs").await;
    let missing = format!("/api/v1/workspaces/{}/agents", uuid::Uuid::now_v7());
    let res = app.post(&app.admin_key, &missing, &body).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

/// A deadline ends everything the task started: the program's grandchild
/// dies with it.
#[actix_web::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let marker = dir.path().join("survived");
    let script = format!(
        "sh -c 'echo $$ > {pid}; sleep 30; touch {marker}'",
        pid = pid_file.display(),
        marker = marker.display()
    );
    let mut programs = std::collections::BTreeMap::new();
    programs.insert(
        "nested".to_owned(),
        ProgramConfig {
            program: "sh".into(),
            args: vec!["-c".into(), script],
            env: Default::default(),
            timeout_ms: 60_000,
        },
    );
    let factory = ServiceFactory::new(&SwarmConfig {
        programs,
        ..SwarmConfig::default()
    });
    let agent = Agent {
        id: AgentId::parse("id", "n").unwrap(),
        name: "N".into(),
        kind: "command".into(),
        config: json!({"program": "nested", "timeout_ms": 1_000}),
        enabled: true,
        created_at: chrono::Utc::now(),
        quarantine: None,
        override_grace: None,
    };
    let backend = factory.build(&agent).unwrap().unwrap();
    assert_eq!(backend.execute(&task()).await, Err(BackendError::Timeout));
    let pid = wait_for(|| {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|s| !s.trim().is_empty())
    })
    .await
    .trim()
    .to_owned();
    // Gone, or a zombie awaiting its reaper: either way it runs no more.
    wait_for(
        || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => Some(()),
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .filter(|state| *state == "Z" || *state == "X")
                .map(|_| ()),
        },
    )
    .await;
    assert!(!marker.exists());
}

/// Polls `f` until it yields, failing after 10 s.
async fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn check_config_refuses_server_settings_as_agent_secrets() {
    let mut s = swarmwise::config::Settings::default();
    s.agents.secret_env = vec!["SWARMWISE__DATABASE__URL".into()];
    let e = s.validate().unwrap_err();
    assert_eq!(e.key, "agents.secret_env");
    let mut s = swarmwise::config::Settings::default();
    s.agents.allowed_kinds = vec!["teleport".into()];
    assert_eq!(s.validate().unwrap_err().key, "agents.allowed_kinds");
    let mut s = swarmwise::config::Settings::default();
    s.agents.allow_hosts = vec!["10.0.0.0/33".into()];
    assert_eq!(s.validate().unwrap_err().key, "agents.allow_hosts");
}

/// Agents never grade themselves: an `http` agent whose answer carries
/// `good: true` (in its content, or beside it as `ground_truth`) leaves its
/// recommendation pending; only an outcome, feedback, a review stage or the
/// simulator's own truth gives a verdict.
#[actix_web::test]
async fn an_answer_cannot_set_its_own_verdict() {
    let peer = loopback_peer("127.0.0.1", || async {
        HttpResponse::Ok().json(json!({
            "content": {"decision": "launch", "good": true, "verdict": "approved", "quality": 100},
            "confidence": 0.99,
            "ground_truth": true
        }))
    });
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
    })
    .await;
    let (_, k) = app.workspace("tenant").await;
    let res = register(
        &app,
        &k,
        "move_architect",
        "http",
        json!({"url": format!("http://{peer}/"), "retries": 0}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let run: Value = app
        .post(
            &k,
            "/api/v1/workflows/runs",
            // move_creation lists move_architect in its strategy stage (no
            // selection by trust, so the agent is asked on every run).
            &json!({"workflow": "move_creation", "wait": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    let recs = app
        .json(&k, "/api/v1/recommendations?agent_id=move_architect")
        .await;
    let items = recs["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{recs}");
    assert_eq!(items[0]["content"]["good"], true, "kept as content");
    assert_eq!(items[0]["status"], "pending", "but not a verdict: {recs}");
    assert!(run["result"]["evaluation"].is_null(), "{run}");
    app.stop().await.unwrap();
}

/// A workspace's agents are capped, listed in pages, and removable; a
/// removed agent cannot be tracked against, and another workspace cannot
/// remove it.
async fn agents_are_capped_paged_and_removable(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.max_agents_per_workspace = 3).await;
    let (_, k) = app.workspace("owner").await;
    let (_, other) = app.workspace("other").await;
    for id in ["a1", "a2", "a3"] {
        app.agent(&k, id).await;
    }
    let res = register(&app, &k, "a4", "external", json!({})).await;
    assert_error(res, StatusCode::CONFLICT, "too_many_agents", Some("id")).await;
    let first = app.json(&k, "/api/v1/agents?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .json(&k, &format!("/api/v1/agents?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["items"][0]["id"], "a3", "{second}");
    assert!(second["next_cursor"].is_null());
    let url = app.url("/api/v1/agents/a2");
    let res = app
        .client
        .delete(&url)
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::NOT_FOUND,
        "another workspace cannot remove it"
    );
    let res = app
        .client
        .delete(&url)
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .client
        .delete(&url)
        .bearer_auth(&k)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .post(
            &k,
            "/api/v1/recommendations",
            &json!({"agent_id": "a2", "correlation_id": "c", "workflow_id": "w", "recommendation_type": "t", "content": {}, "confidence": 0.5}),
        )
        .await;
    assert_error(res, StatusCode::UNPROCESSABLE_ENTITY, "unknown_agent", None).await;
    app.agent(&k, "a4").await;
    let audit = app
        .json(&app.admin_key, "/api/v1/audit?action=agent.delete")
        .await;
    assert_eq!(audit["items"][0]["target"], "a2", "{audit}");
    app.stop().await.unwrap();
}
crate::both_backends!(agents_are_capped_paged_and_removable);
