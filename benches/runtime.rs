//! Runtime benchmarks, each beside a reference measured in the same run:
//! - fan-out of 8 no-op agents through actors and a barrier vs bare tokio
//!   spawn + join of the same 8 futures (DESIGN bar: within 3×);
//! - mailbox throughput through one agent actor with priority scheduling vs
//!   a plain FIFO actix actor calling the same backend;
//! - the peer-comparable workload of issue 14 end to end (`fanout.rs`): a
//!   workflow fanning out to 8 no-op agents, a barrier, the 8 answers
//!   tracked, the outcome evaluated; in process and over HTTP, SQLite and
//!   PostgreSQL, `write_behind` and `durable`, 1 and 64 in flight, each row
//!   beside bare tokio spawn + join; LangGraph's figures for the same
//!   workload when it is installed; OpenTelemetry export on vs off.
//!
//! Run: `cargo bench --bench runtime` (about 8 minutes; `-- --breakdown` adds
//! store calls per run and group-commit batch sizes per in-process row; `-- --quick` for a
//! short run of about 2; words after `--` pick sections, see [`Only`]). Environment: `SWARMWISE_BENCH_PG_URL` (default
//! postgres://postgres@127.0.0.1:5432/postgres; a fresh database per
//! configuration is created and dropped; the PostgreSQL rows are skipped
//! when it is unreachable), `SWARMWISE_BENCH_SECS=N` (every workload row runs N
//! seconds: steadier figures when comparing builds), `SWARMWISE_BENCH_DB_CONNECTIONS=N`
//! (the pool size). Progress on stderr; prints figures, asserts only
//! that every run succeeded and was evaluated.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use async_trait::async_trait;
use serde_json::json;
use swarmwise_actors::agent::backend::{AgentAnswer, AgentBackend, BackendError, Task};
use swarmwise_actors::agent::{AgentActor, AgentHealth, AgentSpec, Execute};
use swarmwise_actors::barrier::{fan_out, FanOut, FanOutTarget};
use swarmwise_actors::domain::{AgentId, Priority, WorkspaceId};
use swarmwise_actors::events::EventBus;
use swarmwise_actors::supervisor::RestartPolicy;

mod common;
#[path = "runtime/fanout.rs"]
mod fanout;
mod process;

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

/// Sections the command line selects: every word that is not a flag is a
/// filter, and a section runs when no filter is given or one is part of its
/// name (`fan-out`, `mailbox`, `in-process`, `http`, `langgraph`, `tracing`,
/// and `sqlite` to skip PostgreSQL), e.g. `-- --quick in-process`.
pub struct Only(Vec<String>);

impl Only {
    fn from_args() -> Self {
        Self(
            std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with("--"))
                .collect(),
        )
    }

    /// Whether the section `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        let mut sections = self.0.iter().filter(|f| *f != "sqlite").peekable();
        sections.peek().is_none() || sections.any(|f| name.contains(f.as_str()))
    }

    /// Whether `word` was given.
    pub fn has(&self, word: &str) -> bool {
        self.0.iter().any(|f| f == word)
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let only = Only::from_args();
    actix_web::rt::System::new().block_on(async move {
        println!(
            "swarmwise runtime benchmark ({})",
            if quick { "quick" } else { "full" }
        );
        if only.runs("fan-out") {
            fan_out_bench(if quick { 2_000 } else { 20_000 }).await;
        }
        if only.runs("mailbox") {
            mailbox_bench(if quick { 20_000 } else { 100_000 }).await;
        }
        fanout::bench(quick, &only).await;
    });
}
