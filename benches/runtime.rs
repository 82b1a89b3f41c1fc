//! Runtime benchmarks, each beside a reference measured in the same run:
//! - fan-out of 8 no-op agents through actors and a barrier vs bare tokio
//!   spawn + join of the same 8 futures (DESIGN bar: within 3×);
//! - mailbox throughput through one agent actor with priority scheduling vs
//!   a plain FIFO actix actor calling the same backend;
//! - end-to-end move_creation runs per second with zero-latency simulated
//!   agents, tracking on vs off.
//!
//! Run: `cargo bench --bench runtime` (`-- --quick` for a short run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use serde_json::json;
use swarmwise::config::Settings;
use swarmwise::startup::Application;
use swarmwise_actors::agent::backend::{AgentAnswer, AgentBackend, BackendError, Task};
use swarmwise_actors::agent::{AgentActor, AgentHealth, AgentSpec, Execute};
use swarmwise_actors::barrier::{fan_out, FanOut, FanOutTarget};
use swarmwise_actors::domain::{AgentId, Priority, WorkspaceId};
use swarmwise_actors::events::EventBus;
use swarmwise_actors::supervisor::RestartPolicy;
use swarmwise_actors::workflow::RunRequest;

struct Noop;

#[async_trait]
impl AgentBackend for Noop {
    async fn execute(&self, _task: &Task) -> Result<AgentAnswer, BackendError> {
        Ok(AgentAnswer {
            content: serde_json::Value::Null,
            confidence: 0.5,
            reasoning: None,
            ground_truth: None,
            usage: Default::default(),
        })
    }
}

fn task() -> Task {
    Task {
        id: uuid::Uuid::nil(),
        workspace_id: WorkspaceId(uuid::Uuid::nil()),
        workflow_id: "bench".into(),
        correlation_id: "bench".into(),
        workflow: "bench".into(),
        stage: "s".into(),
        recommendation_type: "t".into(),
        input: json!({}),
        context: json!({}),
    }
}

fn agent(name: &str, backend: Arc<dyn AgentBackend>) -> Addr<AgentActor> {
    AgentActor::start_supervised(AgentSpec {
        workspace: WorkspaceId(uuid::Uuid::nil()),
        id: AgentId::parse("a", name).unwrap(),
        backend,
        concurrency: 1,
        max_queued: usize::MAX,
        aging: Duration::from_secs(30),
        pool: None,
        policy: RestartPolicy::default(),
        health: AgentHealth::default(),
        events: EventBus::default(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * 0.99) as usize]
}

fn us(x: f64) -> String {
    format!("{:.1} µs", x * 1e6)
}

async fn fan_out_bench(rounds: usize) {
    let backend: Arc<dyn AgentBackend> = Arc::new(Noop);
    let agents: Vec<(AgentId, Addr<AgentActor>)> = (0..8)
        .map(|i| {
            let name = format!("noop-{i}");
            (
                AgentId::parse("a", &name).unwrap(),
                agent(&name, Arc::clone(&backend)),
            )
        })
        .collect();
    let t = task();
    let mut ours = Vec::with_capacity(rounds);
    let mut reference = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // Reference: the same 8 backend calls as bare tokio tasks.
        let start = Instant::now();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let b = Arc::clone(&backend);
                let t = t.clone();
                tokio::spawn(async move { b.execute(&t).await })
            })
            .collect();
        for h in handles {
            h.await.unwrap().unwrap();
        }
        reference.push(start.elapsed().as_secs_f64());

        let start = Instant::now();
        let spec = FanOut {
            targets: agents
                .iter()
                .map(|(id, addr)| FanOutTarget {
                    agent_id: id.clone(),
                    addr: addr.clone(),
                    priority: Priority::Normal,
                })
                .collect(),
            skipped: Vec::new(),
            order: agents.iter().map(|a| a.0.clone()).collect(),
            quorum: None,
            timeout: Duration::from_secs(10),
            agent_deadline: Duration::from_secs(10),
            on_late: None,
        };
        let r = fan_out(spec, &t).await;
        assert_eq!(r.agents.len(), 8);
        ours.push(start.elapsed().as_secs_f64());
    }
    let (m, r) = (median(ours.clone()), median(reference.clone()));
    println!(
        "fan-out of 8 no-op agents ({rounds} rounds): actors + barrier p50 {} p99 {} | bare tokio spawn+join p50 {} p99 {} | ratio p50 {:.1}× (bar ≤ 3×)",
        us(m),
        us(p99(ours)),
        us(r),
        us(p99(reference)),
        m / r
    );
}

struct Plain(Arc<dyn AgentBackend>);
impl Actor for Plain {
    type Context = Context<Self>;
}
impl Handler<Execute> for Plain {
    type Result = ResponseFuture<Result<AgentAnswer, BackendError>>;
    fn handle(&mut self, msg: Execute, _: &mut Context<Self>) -> Self::Result {
        let b = Arc::clone(&self.0);
        Box::pin(async move { b.execute(&msg.task).await })
    }
}

async fn mailbox_bench(n: usize) {
    let backend: Arc<dyn AgentBackend> = Arc::new(Noop);
    let ours = agent("mailbox", Arc::clone(&backend));
    let plain = Plain(Arc::clone(&backend)).start();
    let classes = [
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Critical,
    ];
    let mut rates = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let start = Instant::now();
        let futs: Vec<_> = (0..n)
            .map(|i| {
                plain.send(Execute {
                    task: task(),
                    priority: classes[i % 4],
                    deadline: Instant::now() + Duration::from_secs(60),
                    span: tracing::Span::none(),
                })
            })
            .collect();
        for f in futures_util::future::join_all(futs).await {
            f.unwrap().unwrap();
        }
        rates.1.push(n as f64 / start.elapsed().as_secs_f64());
        let start = Instant::now();
        let futs: Vec<_> = (0..n)
            .map(|i| {
                ours.send(Execute {
                    task: task(),
                    priority: classes[i % 4],
                    deadline: Instant::now() + Duration::from_secs(60),
                    span: tracing::Span::none(),
                })
            })
            .collect();
        for f in futures_util::future::join_all(futs).await {
            f.unwrap().unwrap();
        }
        rates.0.push(n as f64 / start.elapsed().as_secs_f64());
    }
    let (o, p) = (median(rates.0), median(rates.1));
    println!(
        "mailbox throughput, {n} tasks of mixed priority, concurrency 1: priority agent actor {o:.0} tasks/s | plain FIFO actor {p:.0} tasks/s | ratio {:.2}×",
        o / p
    );
}

async fn workflows_bench(runs: usize) {
    let mut results = Vec::new();
    for tracking in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::default();
        s.server.bind = "127.0.0.1:0".into();
        s.server.workers = 1;
        s.database.url = format!("sqlite://{}/bench.db", dir.path().display());
        s.learning.enabled = tracking;
        s.demo.runs_per_second = 0.001; // the demo swarm is registered; the loop stays idle
        let swarm_file = dir.path().join("swarm.toml");
        // The demo swarm with zero latency and no errors.
        let text = std::fs::read_to_string("config/demo/swarm.toml").unwrap();
        let zero: String = text
            .lines()
            .map(|l| {
                l.replace(
                    "latency_ms = { mean = 150, jitter = 100 }",
                    "latency_ms = { mean = 0 }",
                )
                .replace(
                    "latency_ms = { mean = 200, jitter = 100 }",
                    "latency_ms = { mean = 0 }",
                )
                .replace(
                    "latency_ms = { mean = 100, jitter = 50 }",
                    "latency_ms = { mean = 0 }",
                )
                .replace(
                    "latency_ms = { mean = 250, jitter = 100 }",
                    "latency_ms = { mean = 0 }",
                )
                .replace("error_rate = 0.05, ", "")
                    + "\n"
            })
            .collect();
        std::fs::write(&swarm_file, zero).unwrap();
        s.demo.swarm_file = swarm_file.display().to_string();
        let app = Application::build(s).await.unwrap();
        let wf = app.workflows().clone();
        let ws = WorkspaceId(swarmwise::demo::DEMO_WORKSPACE);
        let start = Instant::now();
        let mut pending = Vec::new();
        for i in 0..runs {
            let wf = wf.clone();
            pending.push(actix::spawn(async move {
                wf.run(
                    ws,
                    RunRequest {
                        workflow: "move_creation".into(),
                        input: json!({"goal": i}),
                        priority: Priority::Normal,
                    },
                )
                .await
                .unwrap()
            }));
            if pending.len() >= 16 {
                for p in pending.drain(..) {
                    p.await.unwrap();
                }
            }
        }
        for p in pending {
            p.await.unwrap();
        }
        app.engine().flush().await.unwrap();
        results.push(runs as f64 / start.elapsed().as_secs_f64());
        eprintln!("  tracking {}: done", if tracking { "on" } else { "off" });
    }
    println!(
        "move_creation end to end, {runs} runs (7 zero-latency simulated agents, SQLite, 16 in flight): tracking on {:.0} runs/s | tracking off {:.0} runs/s | ratio {:.2}×",
        results[0],
        results[1],
        results[0] / results[1]
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    actix_web::rt::System::new().block_on(async move {
        println!(
            "swarmwise runtime benchmark ({})",
            if quick { "quick" } else { "full" }
        );
        fan_out_bench(if quick { 2_000 } else { 20_000 }).await;
        mailbox_bench(if quick { 20_000 } else { 100_000 }).await;
        workflows_bench(if quick { 200 } else { 2_000 }).await;
    });
}
