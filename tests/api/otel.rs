//! OpenTelemetry export (issue 14, item 3), against a loopback receiver
//! that decodes the real OTLP/HTTP protobuf: a workflow run started with a
//! `traceparent` exports request → run → stage → agent call, tracking and
//! evaluation in the caller's trace with the GenAI attributes, and the
//! loopback agents receive that trace; a malformed `traceparent` starts a
//! new trace; tenant content is not exported; a collector that never
//! answers fails no request and does not hang shutdown; with export off no
//! agent call carries trace context.

use std::sync::{Arc, Mutex};

use actix_web::{web, HttpRequest, HttpResponse};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{loopback_peer, poll_until, spawn_app_with, spawn_server_in, Backend};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// What the receiver got: every span, and each request's headers of note.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    authorization: Vec<String>,
}

fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Received>>) {
    let got: Arc<Mutex<Received>> = Arc::default();
    let g = Arc::clone(&got);
    let addr = loopback_peer("127.0.0.1", move |req: HttpRequest, body: web::Bytes| {
        let got = Arc::clone(&g);
        async move {
            assert_eq!(req.path(), "/v1/traces");
            assert_eq!(
                req.headers().get("content-type").unwrap(),
                "application/x-protobuf"
            );
            let export = ExportTraceServiceRequest::decode(body).unwrap();
            let mut got = got.lock().unwrap();
            if let Some(a) = req.headers().get("authorization") {
                got.authorization.push(a.to_str().unwrap().to_owned());
            }
            for rs in export.resource_spans {
                for ss in rs.scope_spans {
                    got.spans.extend(ss.spans);
                }
            }
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .body(Vec::<u8>::new())
        }
    });
    (addr, got)
}

/// Loopback agents: `/h1` (http agent), `/v1/chat/completions` (openai
/// agent, reports usage) and `/rev` (reviewer, quality 80). Records every
/// `traceparent` seen, by path.
/// (path, traceparent) of every agent call.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

fn agents() -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let addr = loopback_peer("127.0.0.1", move |req: HttpRequest| {
        let seen = Arc::clone(&s);
        async move {
            let parent = req
                .headers()
                .get_all("traceparent")
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(" | ");
            seen.lock().unwrap().push((req.path().to_owned(), parent));
            match req.path() {
                "/v1/chat/completions" => HttpResponse::Ok().json(json!({
                    "choices": [{"message": {"content":
                        "{\"content\": {\"decision\": \"SECRET-ANSWER-openai\"}, \"confidence\": 0.6}"}}],
                    "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49}
                })),
                "/rev" => HttpResponse::Ok().json(json!({
                    "content": {"quality": 80, "note": "SECRET-ANSWER-review"}, "confidence": 0.9
                })),
                _ => HttpResponse::Ok().json(json!({
                    "content": {"decision": "SECRET-ANSWER-http"}, "confidence": 0.7,
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3}
                })),
            }
        }
    });
    (addr, seen)
}

fn workflow_dir(extra_config: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("workflows");
    std::fs::create_dir(&wf).unwrap();
    std::fs::write(
        wf.join("traced.toml"),
        "name = \"traced\"\n\
         [[stages]]\nname = \"opinions\"\nagents = [\"h1\", \"o1\"]\nrecommendation_type = \"strategy\"\ntimeout_ms = 30000\n\
         [[stages]]\nname = \"review\"\nagents = [\"rev\"]\nrecommendation_type = \"review\"\ntimeout_ms = 30000\nreview = true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[agents]\nallow_hosts = [\"127.0.0.1\"]\n[workflows]\ndir = {:?}\n{extra_config}",
            wf.display().to_string()
        ),
    )
    .unwrap();
    let config = dir.path().join("config.toml").display().to_string();
    (dir, config)
}

async fn workspace_with_agents(address: &str, admin: &str, agents: std::net::SocketAddr) -> String {
    let c = reqwest::Client::new();
    let ws: Value = c
        .post(format!("{address}/api/v1/workspaces"))
        .bearer_auth(admin)
        .json(&json!({"name": "traced"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = ws["api_key"].as_str().unwrap().to_owned();
    for agent in [
        json!({"id": "h1", "name": "H1", "kind": "http",
               "config": {"url": format!("http://{agents}/h1"), "retries": 0,
                          "headers": {"traceparent": format!("00-{}-{}-01", "1".repeat(32), "2".repeat(16))}}}),
        json!({"id": "o1", "name": "O1", "kind": "openai",
               "config": {"base_url": format!("http://{agents}/v1"), "model": "tiny-model"}}),
        json!({"id": "rev", "name": "Rev", "kind": "http",
               "config": {"url": format!("http://{agents}/rev"), "retries": 0}}),
    ] {
        let res = c
            .post(format!("{address}/api/v1/agents"))
            .bearer_auth(&key)
            .json(&agent)
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert_eq!(status, StatusCode::CREATED, "{}", res.text().await.unwrap());
    }
    key
}

/// SIGTERM, then every line the process printed (its logs).
fn sigterm_with_output(
    mut server: crate::helpers::ServerProcess,
) -> (std::process::ExitStatus, Vec<String>) {
    let output = std::mem::replace(
        &mut server.output,
        crate::helpers::OutputLines::new(std::io::empty()),
    );
    let status = server.sigterm();
    let mut lines = Vec::new();
    while let Some(line) = output.next_line(std::time::Duration::from_secs(30)) {
        lines.push(line);
    }
    (status, lines)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<Any> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn str_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        Any::StringValue(s) => Some(s),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Any::IntValue(i) => Some(i),
        _ => None,
    }
}

#[actix_web::test]
async fn a_traced_run_exports_request_run_stage_agent_track_and_evaluation_spans() {
    let (collector, received) = receiver();
    let (agent_addr, seen) = agents();
    let (dir, config) = workflow_dir(&format!(
        "[telemetry.otlp]\nendpoint = \"http://{collector}\"\nscheduled_delay_ms = 50\n\
         [telemetry.otlp.headers]\nauthorization = \"Bearer collector-secret-123\"\n"
    ));
    let db = format!("sqlite://{}/t.db", dir.path().display());
    let server = spawn_server_in(
        None,
        &["--config", &config],
        &[
            ("SWARMWISE__DATABASE__URL", &db),
            ("SWARMWISE__AUTH__ADMIN_KEY", "admin-otel"),
        ],
    );
    let address = server.address.clone();
    let key = workspace_with_agents(&address, "admin-otel", agent_addr).await;
    let c = reqwest::Client::new();
    let res = c
        .post(format!("{address}/api/v1/workflows/runs"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .header("tracestate", "vendor=abc")
        .json(&json!({"workflow": "traced", "wait": true,
                      "input": {"brief": "SECRET-INPUT-brief"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let run: Value = res.json().await.unwrap();
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        run["result"]["evaluation"].is_object(),
        "the run was evaluated: {run}"
    );
    let run_id = run["id"].as_str().unwrap().to_owned();

    // A malformed traceparent is ignored: that request starts a new trace.
    let res = c
        .get(format!("{address}/api/v1/agents?limit=1"))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE}-0000000000000000-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let names = [
        "POST /api/v1/workflows/runs",
        "workflow traced",
        "stage opinions",
        "stage review",
        "invoke_agent h1",
        "invoke_agent o1",
        "invoke_agent rev",
        "track recommendations",
        "evaluate workflow",
        "GET /api/v1/agents",
    ];
    let spans = poll_until("every span exported", || async {
        let got = received.lock().unwrap();
        let missing: Vec<_> = names
            .iter()
            .filter(|n| !got.spans.iter().any(|s| s.name == **n))
            .collect();
        if missing.is_empty() {
            Ok(got.spans.clone())
        } else {
            Err(format!("missing {missing:?}"))
        }
    })
    .await;
    let one = |name: &str| spans.iter().find(|s| s.name == name).unwrap().clone();
    let request = one("POST /api/v1/workflows/runs");
    let opinions = one("stage opinions");
    // Two run spans: creating the run (its insert) and executing it.
    let runs: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "workflow traced")
        .collect();
    assert_eq!(runs.len(), 2);
    let run_span = (*runs
        .iter()
        .find(|s| s.span_id == opinions.parent_span_id)
        .unwrap())
    .clone();
    let h1 = one("invoke_agent h1");
    let o1 = one("invoke_agent o1");
    let track = one("track recommendations");
    let evaluation = one("evaluate workflow");

    // One trace, the caller's; the request span's parent is the caller's span.
    for s in [
        &request,
        &run_span,
        &opinions,
        &h1,
        &o1,
        &track,
        &evaluation,
    ] {
        assert_eq!(hex(&s.trace_id), TRACE, "{}", s.name);
    }
    let tree: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} {} <- {}",
                s.name,
                hex(&s.span_id),
                hex(&s.parent_span_id)
            )
        })
        .collect();
    let tree = tree.join("\n");
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN, "{tree}");
    assert_eq!(request.trace_state, "vendor=abc");
    for r in &runs {
        assert_eq!(r.parent_span_id, request.span_id, "{tree}");
    }
    assert_eq!(opinions.parent_span_id, run_span.span_id, "{tree}");
    assert_eq!(h1.parent_span_id, opinions.span_id, "{tree}");
    assert_eq!(o1.parent_span_id, opinions.span_id, "{tree}");
    assert_eq!(track.parent_span_id, opinions.span_id, "{tree}");
    assert_eq!(evaluation.parent_span_id, run_span.span_id, "{tree}");

    // HTTP server conventions.
    assert_eq!(
        str_attr(&request, "http.request.method").as_deref(),
        Some("POST")
    );
    assert_eq!(
        str_attr(&request, "http.route").as_deref(),
        Some("/api/v1/workflows/runs")
    );
    assert_eq!(int_attr(&request, "http.response.status_code"), Some(200));
    assert_eq!(
        str_attr(&run_span, "swarmwise.run_id"),
        Some(run_id.clone())
    );
    // GenAI conventions; model and tokens where the agent reports them.
    assert_eq!(
        str_attr(&h1, "gen_ai.operation.name").as_deref(),
        Some("invoke_agent")
    );
    assert_eq!(str_attr(&h1, "gen_ai.agent.name").as_deref(), Some("h1"));
    assert_eq!(
        str_attr(&o1, "gen_ai.request.model").as_deref(),
        Some("tiny-model")
    );
    assert_eq!(str_attr(&o1, "gen_ai.system").as_deref(), Some("openai"));
    assert_eq!(int_attr(&o1, "gen_ai.usage.input_tokens"), Some(42));
    assert_eq!(int_attr(&o1, "gen_ai.usage.output_tokens"), Some(7));
    assert_eq!(int_attr(&h1, "gen_ai.usage.input_tokens"), Some(5));
    assert_eq!(int_attr(&h1, "gen_ai.usage.output_tokens"), Some(3));
    assert_eq!(int_attr(&track, "swarmwise.recommendations"), Some(2));
    assert_eq!(
        int_attr(&evaluation, "swarmwise.recommendations.evaluated"),
        run["result"]["evaluation"]["evaluated"].as_i64()
    );

    // The malformed traceparent's request: a new trace, no parent.
    let listed = one("GET /api/v1/agents");
    assert_ne!(hex(&listed.trace_id), TRACE);
    assert!(listed.parent_span_id.is_empty());

    // The agents were called in the trace, each under its own agent span;
    // an agent's configured traceparent header was replaced, not doubled.
    let seen = seen.lock().unwrap().clone();
    for (path, span) in [("/h1", &h1), ("/v1/chat/completions", &o1)] {
        let (_, parent) = seen.iter().find(|(p, _)| p == path).unwrap();
        assert_eq!(
            parent,
            &format!("00-{TRACE}-{}-01", hex(&span.span_id)),
            "{path}"
        );
    }

    // Nothing of the tenant's content left the process.
    let dump = format!("{spans:?}");
    assert!(!dump.contains("SECRET-"), "tenant content exported");
    // The collector's credentials were sent, and never logged.
    assert!(received
        .lock()
        .unwrap()
        .authorization
        .iter()
        .all(|a| a == "Bearer collector-secret-123"));
    assert!(!received.lock().unwrap().authorization.is_empty());
    let (status, lines) = sigterm_with_output(server);
    assert!(status.success(), "{status:?}");
    assert!(
        !lines.iter().any(|l| l.contains("collector-secret-123")),
        "a collector header reached the logs"
    );
}

/// A collector that accepts connections and never answers: every request
/// still succeeds, spans past the queue are dropped and counted, failed
/// exports are counted, and SIGTERM still ends the process.
#[actix_web::test]
async fn a_collector_that_never_answers_fails_no_request() {
    // Bound and never accepted: connections complete, requests hang.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = black_hole.local_addr().unwrap();
    let (_agents, _) = agents();
    let (dir, config) = workflow_dir(&format!(
        "[telemetry.otlp]\nendpoint = \"http://{collector}\"\ntimeout_ms = 1000\n\
         max_queue_size = 8\nmax_export_batch_size = 4\nscheduled_delay_ms = 10\n"
    ));
    let db = format!("sqlite://{}/t.db", dir.path().display());
    let server = spawn_server_in(
        None,
        &["--config", &config],
        &[
            ("SWARMWISE__DATABASE__URL", &db),
            ("SWARMWISE__AUTH__ADMIN_KEY", "admin-otel"),
        ],
    );
    let address = server.address.clone();
    let c = reqwest::Client::new();
    for _ in 0..200 {
        let res = c
            .get(format!("{address}/healthz"))
            .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let counter = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    poll_until("failed and dropped spans counted", || async {
        let text = c
            .get(format!("{address}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let failed = counter(&text, "swarmwise_otlp_spans_failed_total");
        let dropped = counter(&text, "swarmwise_otlp_spans_dropped_total");
        if failed > 0.0 && dropped > 0.0 {
            Ok(())
        } else {
            Err(format!("failed {failed}, dropped {dropped}"))
        }
    })
    .await;
    let (status, _) = sigterm_with_output(server);
    assert!(status.success(), "{status:?}");
    drop(black_hole);
}

/// Export off (the default): a caller's traceparent goes nowhere, and no
/// agent call carries trace context.
#[actix_web::test]
async fn with_export_off_agent_calls_carry_no_trace_context() {
    let (agent_addr, seen) = agents();
    let (dir, _) = workflow_dir("");
    let workflows = dir.path().join("workflows");
    std::fs::write(
        workflows.join("single.toml"),
        "name = \"single\"\n[[stages]]\nname = \"opinions\"\nagents = [\"h1\"]\nrecommendation_type = \"strategy\"\ntimeout_ms = 30000\n",
    )
    .unwrap();
    let app = spawn_app_with(Backend::Sqlite, move |s| {
        s.agents.allow_hosts = vec!["127.0.0.1".into()];
        s.workflows.dir = workflows.display().to_string();
    })
    .await;
    let (_, key) = app.workspace("off").await;
    let res = app
        .post(
            &key,
            "/api/v1/agents",
            &json!({"id": "h1", "name": "H1", "kind": "http",
                    "config": {"url": format!("http://{agent_addr}/h1"), "retries": 0}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/workflows/runs", app.address))
        .bearer_auth(&key)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"workflow": "single", "wait": true}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let run: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0], ("/h1".to_owned(), String::new()));
    app.stop().await.unwrap();
}
