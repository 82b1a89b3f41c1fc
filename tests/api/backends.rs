//! Agent backends against real peers on loopback: a webhook agent (with a
//! flaky endpoint to exercise retries), a small server speaking the OpenAI
//! chat-completions protocol, and local programs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise::backends::ServiceFactory;
use swarmwise_actors::agent::backend::{AgentBackend, BackendError, Task};
use swarmwise_actors::domain::{Agent, AgentId, WorkspaceId};
use swarmwise_actors::swarm::{BackendFactory, ProgramConfig, SwarmConfig};

use crate::helpers::{assert_error, spawn_app, Backend};

fn task() -> Task {
    Task {
        id: uuid::Uuid::now_v7(),
        workspace_id: WorkspaceId(uuid::Uuid::nil()),
        workflow_id: "run-1".into(),
        correlation_id: "c".into(),
        workflow: "wf".into(),
        stage: "strategy".into(),
        recommendation_type: "strategy".into(),
        input: json!({"goal": "launch"}),
        context: json!({}),
    }
}

fn backend(kind: &str, config: Value) -> Result<Arc<dyn AgentBackend>, String> {
    let agent = Agent {
        id: AgentId::parse("id", "a").unwrap(),
        name: "A".into(),
        kind: kind.into(),
        config,
        enabled: true,
        created_at: Utc::now(),
        quarantine: None,
        override_grace: None,
    };
    match test_factory().build(&agent) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err("no backend".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The policy these tests run under: the loopback peers opened, the test
/// secrets listed, and the programs the tests run declared.
fn test_factory() -> ServiceFactory {
    let sh = |script: &str, timeout_ms: u64| ProgramConfig {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Default::default(),
        timeout_ms,
    };
    let mut programs = std::collections::BTreeMap::new();
    programs.insert(
        "echo_len".to_owned(),
        sh(
            "read -r line; printf '{\"content\": {\"bytes\": %s}, \"confidence\": 0.6}' \"${#line}\"",
            60_000,
        ),
    );
    programs.insert("sleepy".to_owned(), sh("sleep 30", 100));
    programs.insert("chatty".to_owned(), sh("echo hello", 60_000));
    programs.insert("failing".to_owned(), sh("echo oops >&2; exit 3", 60_000));
    ServiceFactory::new(&SwarmConfig {
        allow_hosts: vec!["127.0.0.1".into()],
        secret_env: vec![
            "SWARMWISE_TEST_AGENT_KEY".into(),
            "SWARMWISE_TEST_OPENAI_KEY".into(),
            "SWARMWISE_TEST_OPENAI_BADKEY".into(),
            "SWARMWISE_TEST_UNSET_VAR".into(),
        ],
        secret_hosts: [
            "SWARMWISE_TEST_AGENT_KEY",
            "SWARMWISE_TEST_OPENAI_KEY",
            "SWARMWISE_TEST_OPENAI_BADKEY",
            "SWARMWISE_TEST_UNSET_VAR",
        ]
        .iter()
        .map(|v| ((*v).to_owned(), vec!["127.0.0.1".to_owned()]))
        .collect(),
        programs,
        ..SwarmConfig::default()
    })
}

/// A peer on loopback: a webhook agent, a flaky one, and chat completions.
async fn peer() -> (String, Arc<AtomicUsize>) {
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&flaky_calls);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let calls = Arc::clone(&calls);
        App::new()
            .route(
                "/agent",
                web::post().to(|req: HttpRequest, task: web::Json<Task>| async move {
                    let key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    HttpResponse::Ok().json(json!({
                        "content": {"decision": "go", "echo": task.input["goal"], "key": key},
                        "confidence": 0.7,
                        "reasoning": "webhook"
                    }))
                }),
            )
            .route(
                "/flaky",
                web::post().to(move || {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 2 {
                            HttpResponse::ServiceUnavailable().body("busy")
                        } else {
                            HttpResponse::Ok().json(json!({"content": "ok", "confidence": 0.5}))
                        }
                    }
                }),
            )
            .route("/bad-request", web::post().to(|| async { HttpResponse::BadRequest().body("upstream-secret-detail") }))
            .route(
                "/v1/chat/completions",
                web::post().to(|req: HttpRequest, body: web::Json<Value>| async move {
                    // The real protocol: model, messages; answer in choices[0].message.content.
                    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if auth != "Bearer sk-test" {
                        return HttpResponse::Unauthorized().json(json!({"error": {"message": "bad key"}}));
                    }
                    let user = body["messages"][1]["content"].as_str().unwrap_or("");
                    let task: Value = serde_json::from_str(user).unwrap_or(Value::Null);
                    let content = if body["model"] == "chatty" {
                        "I think you should launch it.".to_owned()
                    } else {
                        format!(
                            "```json\n{}\n```",
                            json!({"content": {"decision": "launch", "stage": task["stage"]}, "confidence": 0.8, "reasoning": "model"})
                        )
                    };
                    HttpResponse::Ok().json(json!({
                        "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                    }))
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), flaky_calls)
}

#[actix_web::test]
async fn http_agent_posts_the_task_and_retries_transient_failures() {
    let (base, flaky_calls) = peer().await;
    std::env::set_var("SWARMWISE_TEST_AGENT_KEY", "k-123");
    let b = backend("http", json!({"url": format!("{base}/agent"), "headers_env": {"x-api-key": "SWARMWISE_TEST_AGENT_KEY"}})).unwrap();
    let answer = b.execute(&task()).await.unwrap();
    assert_eq!(
        answer.content,
        json!({"decision": "go", "echo": "launch", "key": "k-123"})
    );
    assert_eq!(answer.confidence, 0.7);

    let flaky = backend(
        "http",
        json!({"url": format!("{base}/flaky"), "retries": 2, "backoff_ms": 1}),
    )
    .unwrap();
    assert!(
        flaky.execute(&task()).await.is_ok(),
        "two 503s, then success on the third attempt"
    );
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);

    let no_retry = backend(
        "http",
        json!({"url": format!("{base}/bad-request"), "retries": 3, "backoff_ms": 1}),
    )
    .unwrap();
    match no_retry.execute(&task()).await {
        Err(BackendError::Failed(m)) => {
            assert!(
                m.contains("400") && !m.contains("upstream-secret-detail"),
                "status, not body: {m}"
            )
        }
        other => panic!("{other:?}"),
    }
    let unreachable = backend(
        "http",
        json!({"url": "http://127.0.0.1:9/none", "retries": 0}),
    )
    .unwrap();
    assert!(matches!(
        unreachable.execute(&task()).await,
        Err(BackendError::Failed(_))
    ));
    assert!(backend("http", json!({"url": "ftp://x"}))
        .err()
        .unwrap()
        .contains("config.url"));
    assert!(backend(
        "http",
        json!({"url": "http://x", "headers_env": {"a": "SWARMWISE_TEST_UNSET_VAR"}})
    )
    .err()
    .unwrap()
    .contains("SWARMWISE_TEST_UNSET_VAR"));
}

#[actix_web::test]
async fn openai_agent_speaks_chat_completions() {
    let (base, _) = peer().await;
    std::env::set_var("SWARMWISE_TEST_OPENAI_KEY", "sk-test");
    let cfg = |model: &str| json!({"base_url": format!("{base}/v1"), "model": model, "api_key_env": "SWARMWISE_TEST_OPENAI_KEY", "temperature": 0.2});
    let b = backend("openai", cfg("gpt-test")).unwrap();
    let answer = b.execute(&task()).await.unwrap();
    assert_eq!(
        answer.content,
        json!({"decision": "launch", "stage": "strategy"})
    );
    assert_eq!(answer.reasoning.as_deref(), Some("model"));

    let chatty = backend("openai", cfg("chatty")).unwrap();
    match chatty.execute(&task()).await {
        Err(BackendError::InvalidAnswer(m)) => {
            assert!(m.contains("not JSON") && m.contains("I think"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    std::env::set_var("SWARMWISE_TEST_OPENAI_BADKEY", "sk-wrong");
    let wrong = backend("openai", json!({"base_url": format!("{base}/v1"), "model": "m", "api_key_env": "SWARMWISE_TEST_OPENAI_BADKEY"})).unwrap();
    match wrong.execute(&task()).await {
        Err(BackendError::Failed(m)) => assert!(
            m.contains("401") && !m.contains("bad key"),
            "the status, not the upstream body: {m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(backend(
        "openai",
        json!({"base_url": base, "model": "m", "api_key_env": "SWARMWISE_TEST_UNSET_VAR"})
    )
    .err()
    .unwrap()
    .contains("config.api_key_env"));
}

#[actix_web::test]
async fn command_agent_reads_stdin_writes_stdout_and_is_killed_on_timeout() {
    let echo = backend("command", json!({"program": "echo_len"})).unwrap();
    let answer = echo.execute(&task()).await.unwrap();
    assert!(
        answer.content["bytes"].as_u64().unwrap() > 50,
        "the task arrived on stdin: {answer:?}"
    );
    let slow = backend("command", json!({"program": "sleepy"})).unwrap();
    assert_eq!(slow.execute(&task()).await, Err(BackendError::Timeout));
    let chatty = backend("command", json!({"program": "chatty"})).unwrap();
    assert!(matches!(
        chatty.execute(&task()).await,
        Err(BackendError::InvalidAnswer(_))
    ));
    let failing = backend("command", json!({"program": "failing"})).unwrap();
    match failing.execute(&task()).await {
        Err(BackendError::Failed(m)) => assert!(m.contains("oops"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// Registering through the API validates kind and config by building the backend.
#[actix_web::test]
async fn registration_validates_backend_config() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, k) = app.workspace("A").await;
    let res = app
        .post(
            &k,
            "/api/v1/agents",
            &json!({"id": "h", "name": "H", "kind": "http", "config": {"url": "not a url"}}),
        )
        .await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("config.url"),
    )
    .await;
    let res = app.post(&k, "/api/v1/agents", &json!({"id": "o", "name": "O", "kind": "openai", "config": {"base_url": "http://x/v1"}})).await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("config"),
    )
    .await;
    let res = app
        .post(
            &k,
            "/api/v1/agents",
            &json!({"id": "p", "name": "P", "kind": "simulated", "config": {"pool": "nope"}}),
        )
        .await;
    assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("config.pool"),
    )
    .await;
    let res = app
        .post(
            &k,
            "/api/v1/agents",
            &json!({"id": "s", "name": "S", "kind": "simulated", "config": {"skill": {"strategy": 0.7}}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        app.json(&k, "/api/v1/agents").await["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the valid one"
    );
    app.stop().await.unwrap();
}
