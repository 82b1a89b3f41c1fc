//! `AgentActor`: one per agent. Owns a priority mailbox of pending tasks
//! ([`queue`]), a concurrency limit, an optional shared provider pool
//! ([`pool`]) and its backend ([`backend`]; [`simulated`] for demos and
//! tests).
//!
//! actix delivers messages FIFO, so `Execute` only enqueues; whenever a slot
//! is free the best task runs (class from the caller's priority and trust
//! boost, FIFO within a class, aging). A task past its deadline is answered
//! `Timeout` without running.
//!
//! A backend panic is caught: the task is answered with an error and the
//! actor stops, so its supervisor restarts it (queued tasks stay queued;
//! tasks in flight on other slots are answered with an error). Past the
//! restart limit the agent is marked unhealthy, an `AgentUnhealthy` event is
//! published, and fan-outs skip it until an operator re-enables it.
//!
//! Why one file of about 610 lines: 370 of the actor, the rest its tests.

pub mod backend;
pub mod pool;
pub mod queue;
pub mod simulated;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;

use self::backend::{AgentAnswer, AgentBackend, BackendError, Task};
use self::pool::ProviderPool;
use self::queue::PriorityQueue;
use crate::barrier::AgentReply;
use crate::domain::{AgentId, Priority, WorkspaceId};
use crate::events::{Event, EventBus};
use crate::supervisor::{RestartPolicy, RestartTracker};

/// Run a task. Replies with the answer, or why there is none.
#[derive(Message, Debug)]
#[rtype(result = "Result<AgentAnswer, BackendError>")]
pub struct Execute {
    /// The work.
    pub task: Task,
    /// Scheduling class (caller's priority adjusted by trust boost).
    pub priority: Priority,
    /// Answer `Timeout` if not done by then.
    pub deadline: Instant,
    /// The sender's span (a run's): the task's `agent_task` span is its
    /// child, so the task's logs carry the run id. `Span::none()` if none.
    pub span: tracing::Span,
}

/// Run a task and send the answer to `reply_to` (a fan-out's barrier)
/// instead of replying: no task per agent is needed to forward it.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ExecuteFor {
    /// The work.
    pub task: Arc<Task>,
    /// Scheduling class.
    pub priority: Priority,
    /// Answer `Timeout` if not done by then.
    pub deadline: Instant,
    /// Who gets the `AgentReply`.
    pub reply_to: Recipient<AgentReply>,
    /// The sender's span, as in [`Execute::span`].
    pub span: tracing::Span,
}

/// Where an answer goes. Dropped unanswered (the actor restarted mid-task),
/// it answers with an error: a task is never silently lost.
struct Reply {
    to: Option<ReplyTo>,
}

enum ReplyTo {
    Caller(oneshot::Sender<Result<AgentAnswer, BackendError>>),
    Barrier(Recipient<AgentReply>, AgentId),
}

impl Reply {
    fn send(mut self, result: Result<AgentAnswer, BackendError>) {
        match self.to.take() {
            Some(ReplyTo::Caller(tx)) => {
                let _ = tx.send(result);
            }
            Some(ReplyTo::Barrier(to, agent_id)) => to.do_send(AgentReply { agent_id, result }),
            None => {}
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if self.to.is_some() {
            let to = Reply { to: self.to.take() };
            to.send(Err(BackendError::Failed(
                "the agent restarted while running this task".into(),
            )));
        }
    }
}

struct Pending {
    task: Arc<Task>,
    deadline: Instant,
    reply: Reply,
    /// The sender's span: the parent of the task's span.
    span: tracing::Span,
}

/// Shared view of an agent's health, read by fan-outs without a message.
#[derive(Debug, Clone, Default)]
pub struct AgentHealth {
    unhealthy: Arc<AtomicBool>,
    restarts: Arc<AtomicU64>,
}

impl AgentHealth {
    /// Past its restart limit.
    pub fn is_unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Relaxed)
    }

    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Operator re-enable: clears the unhealthy mark.
    pub fn reset(&self) {
        self.unhealthy.store(false, Ordering::Relaxed);
    }
}

/// Everything an agent actor is built from.
pub struct AgentSpec {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Agent id.
    pub id: AgentId,
    /// How it works.
    pub backend: Arc<dyn AgentBackend>,
    /// Tasks at once.
    pub concurrency: usize,
    /// Tasks that may wait in the mailbox; past it a task is refused at once
    /// (config `agents.max_queued_tasks`).
    pub max_queued: usize,
    /// Aging step.
    pub aging: Duration,
    /// Shared provider slots, if any.
    pub pool: Option<ProviderPool>,
    /// Restart policy.
    pub policy: RestartPolicy,
    /// Health shared with fan-outs.
    pub health: AgentHealth,
    /// Where `AgentUnhealthy` goes.
    pub events: EventBus,
}

/// The actor.
pub struct AgentActor {
    spec: AgentSpec,
    queue: PriorityQueue<Pending>,
    running: usize,
    restarts: RestartTracker,
}

impl AgentActor {
    /// Starts under a supervisor.
    pub fn start_supervised(spec: AgentSpec) -> Addr<Self> {
        let restarts = RestartTracker::new(spec.policy.clone());
        let queue = PriorityQueue::new(spec.aging);
        Supervisor::start(move |_| Self {
            spec,
            queue,
            running: 0,
            restarts,
        })
    }

    /// Answers every queued task whose deadline passed (run periodically:
    /// scanning the queue on every dispatch would cost O(n) per task).
    fn expire(&mut self) {
        let now = Instant::now();
        for p in self.queue.drain_where(|p| p.deadline <= now) {
            p.reply.send(Err(BackendError::Timeout));
        }
    }

    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while self.running < self.spec.concurrency.max(1) {
            let Some((p, class)) = self.queue.pop(now) else {
                break;
            };
            if p.deadline <= now {
                p.reply.send(Err(BackendError::Timeout));
                continue;
            }
            self.running += 1;
            let backend = Arc::clone(&self.spec.backend);
            let pool = self.spec.pool.clone();
            let Pending {
                task,
                deadline,
                reply,
                span,
            } = p;
            // The gen_ai.* fields are recorded by the backend when it knows
            // them (an openai agent: model, provider, token counts); the
            // OpenTelemetry export maps the rest (docs/tracing.md).
            let task_span = tracing::info_span!(
                parent: &span,
                "agent_task",
                agent = %self.spec.id,
                stage = %task.stage,
                run_id = %task.workflow_id,
                outcome = tracing::field::Empty,
                gen_ai.request.model = tracing::field::Empty,
                gen_ai.system = tracing::field::Empty,
                gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = tracing::field::Empty,
            );
            let work = async move {
                let _permit = match pool {
                    Some(pool) => Some(pool.acquire(class).await),
                    None => None,
                };
                let left = deadline.saturating_duration_since(Instant::now());
                let res = tokio::time::timeout(
                    left,
                    AssertUnwindSafe(backend.execute(&task)).catch_unwind(),
                )
                .await;
                let outcome = match &res {
                    Ok(Ok(Ok(_))) => "ok",
                    Ok(Ok(Err(_))) => "error",
                    Ok(Err(_)) => "panic",
                    Err(_) => "timeout",
                };
                tracing::Span::current().record("outcome", outcome);
                tracing::debug!(outcome, "agent task done");
                res
            }
            .instrument(task_span);
            ctx.spawn(work.into_actor(self).map(move |res, act, ctx| {
                act.running = act.running.saturating_sub(1);
                match res {
                    Ok(Ok(answer)) => {
                        reply.send(answer);
                    }
                    Ok(Err(_panic)) => {
                        reply.send(Err(BackendError::Failed(
                            "the agent's backend panicked; the agent is restarting".into(),
                        )));
                        metrics::counter!("swarmwise_agent_panics_total").increment(1);
                        tracing::error!(agent = %act.spec.id, "agent backend panicked; restarting the agent");
                        ctx.stop();
                        return;
                    }
                    Err(_elapsed) => {
                        reply.send(Err(BackendError::Timeout));
                    }
                }
                act.dispatch(ctx);
            }));
        }
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(10_000);
        ctx.run_interval(Duration::from_millis(250), |act, _| act.expire());
        // After a restart, queued tasks are still queued: start them.
        self.dispatch(ctx);
    }
}

impl Supervised for AgentActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // Futures of the old context are dropped with their reply senders,
        // so callers of in-flight tasks get an error, never silence.
        self.running = 0;
        let (_, exceeded) = self.restarts.on_restart(Instant::now());
        let restarts = self.spec.health.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::counter!("swarmwise_actor_restarts_total", "actor" => "agent").increment(1);
        if exceeded && !self.spec.health.unhealthy.swap(true, Ordering::Relaxed) {
            tracing::error!(agent = %self.spec.id, restarts, "agent restarted past its limit; marked unhealthy, fan-outs skip it");
            self.spec.events.publish(Event::AgentUnhealthy {
                workspace_id: self.spec.workspace,
                agent_id: self.spec.id.clone(),
                restarts,
            });
        }
    }
}

impl AgentActor {
    /// Refuses a task when the mailbox holds `max_queued` already: bounded
    /// work per agent, so one caller cannot queue without limit.
    fn has_room(&self) -> Result<(), BackendError> {
        if self.queue.len() < self.spec.max_queued {
            return Ok(());
        }
        metrics::counter!("swarmwise_rate_limited_total", "limit" => "agent_queue").increment(1);
        Err(BackendError::Failed(format!(
            "queue full: {} tasks are waiting for this agent (agents.max_queued_tasks); retry later",
            self.queue.len()
        )))
    }
}

impl Handler<Execute> for AgentActor {
    type Result = ResponseFuture<Result<AgentAnswer, BackendError>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.has_room() {
            return Box::pin(std::future::ready(Err(e)));
        }
        let (tx, rx) = oneshot::channel();
        self.queue.push(
            Pending {
                task: Arc::new(msg.task),
                deadline: msg.deadline,
                reply: Reply {
                    to: Some(ReplyTo::Caller(tx)),
                },
                span: msg.span,
            },
            msg.priority,
            Instant::now(),
        );
        self.dispatch(ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(BackendError::Failed(
                    "the agent restarted while running this task".into(),
                ))
            })
        })
    }
}

impl Handler<ExecuteFor> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: ExecuteFor, ctx: &mut Context<Self>) {
        let reply = Reply {
            to: Some(ReplyTo::Barrier(msg.reply_to, self.spec.id.clone())),
        };
        if let Err(e) = self.has_room() {
            reply.send(Err(e));
            return;
        }
        self.queue.push(
            Pending {
                task: msg.task,
                deadline: msg.deadline,
                reply,
                span: msg.span,
            },
            msg.priority,
            Instant::now(),
        );
        self.dispatch(ctx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use tokio::sync::Semaphore;

    /// Records the order tasks start in; each waits for a gate permit.
    struct Gated {
        order: Mutex<Vec<String>>,
        gate: Semaphore,
    }

    #[async_trait]
    impl AgentBackend for Gated {
        async fn execute(&self, task: &Task) -> Result<AgentAnswer, BackendError> {
            self.order.lock().unwrap().push(task.stage.clone());
            let permit = self
                .gate
                .acquire()
                .await
                .map_err(|e| BackendError::Failed(e.to_string()))?;
            permit.forget();
            if task.stage == "panic" {
                panic!("boom");
            }
            Ok(AgentAnswer {
                content: serde_json::json!(task.stage),
                confidence: 0.5,
                reasoning: None,
                ground_truth: None,
                usage: Default::default(),
            })
        }
    }

    fn task(stage: &str) -> Task {
        Task {
            id: uuid::Uuid::now_v7(),
            workspace_id: WorkspaceId(uuid::Uuid::nil()),
            workflow_id: "w".into(),
            correlation_id: "c".into(),
            workflow: "wf".into(),
            stage: stage.into(),
            recommendation_type: "t".into(),
            input: serde_json::json!({}),
            context: serde_json::json!({}),
        }
    }

    fn spawn(
        backend: Arc<Gated>,
        policy: RestartPolicy,
    ) -> (Addr<AgentActor>, AgentHealth, EventBus) {
        let health = AgentHealth::default();
        let events = EventBus::default();
        let addr = AgentActor::start_supervised(AgentSpec {
            workspace: WorkspaceId(uuid::Uuid::nil()),
            id: AgentId::parse("a", "gated").unwrap(),
            backend,
            concurrency: 1,
            max_queued: usize::MAX,
            aging: Duration::from_secs(3600),
            pool: None,
            policy,
            health: health.clone(),
            events: events.clone(),
        });
        (addr, health, events)
    }

    fn exec(stage: &str, priority: Priority) -> Execute {
        Execute {
            task: task(stage),
            priority,
            deadline: Instant::now() + Duration::from_secs(60),
            span: tracing::Span::none(),
        }
    }

    #[actix_rt::test]
    async fn busy_agent_runs_critical_before_waiting_low_tasks() {
        let backend = Arc::new(Gated {
            order: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
        });
        let (addr, _, _) = spawn(Arc::clone(&backend), RestartPolicy::default());
        let first = addr.send(exec("busy", Priority::Normal));
        let low1 = addr.send(exec("low-1", Priority::Low));
        let low2 = addr.send(exec("low-2", Priority::Low));
        let critical = addr.send(exec("critical", Priority::Critical));
        backend.gate.add_permits(4);
        let results = futures_util::future::join_all([first, low1, low2, critical]).await;
        assert!(results.iter().all(|r| matches!(r, Ok(Ok(_)))));
        assert_eq!(
            *backend.order.lock().unwrap(),
            ["busy", "critical", "low-1", "low-2"]
        );
    }

    #[actix_rt::test]
    async fn panic_answers_with_error_restarts_and_later_tasks_succeed() {
        let backend = Arc::new(Gated {
            order: Mutex::new(Vec::new()),
            gate: Semaphore::new(100),
        });
        let policy = RestartPolicy {
            max_restarts: 1,
            window_secs: 60,
            backoff_initial_ms: 1,
            backoff_max_ms: 1,
        };
        let (addr, health, events) = spawn(Arc::clone(&backend), policy);
        let mut rx = events.subscribe();
        let res = addr.send(exec("panic", Priority::Normal)).await.unwrap();
        assert!(
            matches!(res, Err(BackendError::Failed(ref m)) if m.contains("panicked")),
            "{res:?}"
        );
        let ok = addr.send(exec("after", Priority::Normal)).await.unwrap();
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(health.restarts(), 1);
        assert!(!health.is_unhealthy());
        // A second panic within the window exceeds max_restarts = 1.
        let _ = addr.send(exec("panic", Priority::Normal)).await.unwrap();
        let ok = addr
            .send(exec("still-serving", Priority::Normal))
            .await
            .unwrap();
        assert!(ok.is_ok());
        assert!(health.is_unhealthy());
        match rx.recv().await.unwrap() {
            Event::AgentUnhealthy { restarts, .. } => assert_eq!(restarts, 2),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Two agents behind one provider slot: the high-trust agent's task
    /// (boost +0.3 → CRITICAL) is served before the low-trust one's (−0.3 → LOW),
    /// although it arrived later.
    #[actix_rt::test]
    async fn shared_pool_serves_the_trusted_agent_first() {
        let params = crate::trust::TrustParams::default();
        let backend = Arc::new(Gated {
            order: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
        });
        let pool = ProviderPool::new("llm", 1, Duration::from_secs(3600));
        let agent = |name: &str| {
            AgentActor::start_supervised(AgentSpec {
                workspace: WorkspaceId(uuid::Uuid::nil()),
                id: AgentId::parse("a", name).unwrap(),
                backend: Arc::clone(&backend) as Arc<dyn AgentBackend>,
                concurrency: 1,
                max_queued: usize::MAX,
                aging: Duration::from_secs(3600),
                pool: Some(pool.clone()),
                policy: RestartPolicy::default(),
                health: AgentHealth::default(),
                events: EventBus::default(),
            })
        };
        let (holder, trusted, untrusted) = (agent("holder"), agent("trusted"), agent("untrusted"));
        let first = holder.send(exec("holder", Priority::Normal));
        let first = actix_rt::spawn(first);
        while backend.order.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let low = actix_rt::spawn(untrusted.send(exec(
            "untrusted",
            params.priority_for(Priority::Normal, -0.3),
        )));
        while pool.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let high = actix_rt::spawn(
            trusted.send(exec("trusted", params.priority_for(Priority::Normal, 0.3))),
        );
        while pool.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        backend.gate.add_permits(3);
        for h in [first, low, high] {
            assert!(matches!(h.await, Ok(Ok(Ok(_)))));
        }
        assert_eq!(
            *backend.order.lock().unwrap(),
            ["holder", "trusted", "untrusted"]
        );
    }

    #[actix_rt::test]
    async fn task_past_its_deadline_times_out() {
        let backend = Arc::new(Gated {
            order: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
        });
        let (addr, _, _) = spawn(Arc::clone(&backend), RestartPolicy::default());
        let mut e = exec("slow", Priority::Normal);
        e.deadline = Instant::now() + Duration::from_millis(20);
        let res = addr.send(e).await.unwrap();
        assert_eq!(res, Err(BackendError::Timeout));
    }

    #[actix_rt::test]
    async fn a_full_mailbox_refuses_at_once() {
        let backend = Arc::new(Gated {
            order: Mutex::new(Vec::new()),
            gate: Semaphore::new(0),
        });
        let addr = AgentActor::start_supervised(AgentSpec {
            workspace: WorkspaceId(uuid::Uuid::nil()),
            id: AgentId::parse("a", "small").unwrap(),
            backend: Arc::clone(&backend) as Arc<dyn AgentBackend>,
            concurrency: 1,
            max_queued: 2,
            aging: Duration::from_secs(3600),
            pool: None,
            policy: RestartPolicy::default(),
            health: AgentHealth::default(),
            events: EventBus::default(),
        });
        // One runs (held at the gate), two wait, the fourth is refused.
        let mut waiting = Vec::new();
        for stage in ["run", "q1", "q2"] {
            waiting.push(actix_rt::spawn(addr.send(exec(stage, Priority::Normal))));
        }
        let refused = tokio::time::timeout(
            Duration::from_secs(10),
            addr.send(exec("q3", Priority::Normal)),
        )
        .await
        .expect("answered at once, not queued")
        .unwrap();
        match refused {
            Err(BackendError::Failed(m)) => assert!(m.contains("queue full"), "{m}"),
            other => panic!("{other:?}"),
        }
        backend.gate.add_permits(3);
        for w in waiting {
            assert!(w.await.unwrap().unwrap().is_ok());
        }
    }
}
