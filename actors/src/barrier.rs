//! `FanOutBarrier`: one actor per fan-out. It completes when every expected
//! agent replied, when a quorum of successful replies is reached, or at the
//! deadline, whichever comes first, and reports every agent as ok / error /
//! timeout / skipped with its latency.
//!
//! A reply that arrives after the barrier completed is handed to the
//! `on_late` callback (the workflow runner tracks it as a late
//! recommendation, which counts against timeliness); it never changes the
//! finished result. The actor stops once every agent has answered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::agent::backend::{AgentAnswer, BackendError, Task};
use crate::agent::{AgentActor, ExecuteFor};
use crate::domain::{AgentId, FailureKind, Priority};

/// How one agent fared in a fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum AgentOutcome {
    /// Answered in time.
    Ok {
        /// The answer.
        answer: AgentAnswer,
        /// Milliseconds from the fan-out's start.
        latency_ms: u64,
    },
    /// Failed.
    Error {
        /// A backend error or an invalid answer.
        kind: FailureKind,
        /// Why.
        message: String,
        /// Milliseconds from the fan-out's start.
        latency_ms: u64,
    },
    /// No answer before the barrier completed.
    Timeout,
    /// Not asked (disabled, unhealthy, or trust below the threshold).
    Skipped {
        /// Why.
        reason: String,
    },
}

/// One agent's line in the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentResult {
    /// The agent.
    pub agent_id: AgentId,
    /// Scheduling class it was asked at.
    pub priority: Option<Priority>,
    /// What happened.
    #[serde(flatten)]
    pub outcome: AgentOutcome,
}

/// Why the barrier completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Every expected agent answered.
    All,
    /// Enough agents answered successfully.
    Quorum,
    /// The deadline passed.
    Deadline,
}

/// The barrier's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanOutResult {
    /// Why it completed.
    pub completed_by: Completion,
    /// Every agent, in the order they were listed.
    pub agents: Vec<AgentResult>,
}

/// A reply from one agent (sent by the fan-out's per-agent task).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct AgentReply {
    /// Who.
    pub agent_id: AgentId,
    /// What.
    pub result: Result<AgentAnswer, BackendError>,
}

/// Called with (agent, answer, latency in ms) for replies after completion.
pub type LateHandler = Box<dyn Fn(AgentId, AgentAnswer, u64) + Send + 'static>;

/// One agent to ask in a fan-out.
pub struct FanOutTarget {
    /// Who.
    pub agent_id: AgentId,
    /// Its actor.
    pub addr: Addr<AgentActor>,
    /// The class its task is scheduled at.
    pub priority: Priority,
}

/// A fan-out: whom to ask, whom to report as skipped, how to complete.
pub struct FanOut {
    /// Agents to ask.
    pub targets: Vec<FanOutTarget>,
    /// Agents not asked, with the reason.
    pub skipped: Vec<(AgentId, String)>,
    /// Order of the report.
    pub order: Vec<AgentId>,
    /// Complete after this many successes.
    pub quorum: Option<usize>,
    /// The barrier's deadline.
    pub timeout: Duration,
    /// How long agents may keep working (≥ timeout); later answers are late.
    pub agent_deadline: Duration,
    /// Receives late answers.
    pub on_late: Option<LateHandler>,
}

/// Sends `task` (with a fresh id each) to every target and gathers the
/// replies with a `FanOutBarrier`. Must run inside an actix system.
pub async fn fan_out(spec: FanOut, task: &Task) -> FanOutResult {
    let asked = spec
        .targets
        .iter()
        .map(|t| (t.agent_id.clone(), t.priority))
        .collect();
    let (barrier, rx) = FanOutBarrier::start_new(
        asked,
        spec.skipped,
        spec.order.clone(),
        spec.quorum,
        spec.timeout,
        spec.on_late,
    );
    let deadline = Instant::now() + spec.agent_deadline.max(spec.timeout);
    // One copy of the task for every agent of the fan-out (its id names the fan-out).
    let mut shared = task.clone();
    shared.id = uuid::Uuid::now_v7();
    let shared = std::sync::Arc::new(shared);
    for t in spec.targets {
        t.addr.do_send(ExecuteFor {
            task: std::sync::Arc::clone(&shared),
            priority: t.priority,
            deadline,
            reply_to: barrier.clone().recipient(),
            span: tracing::Span::current(),
        });
    }
    rx.await.unwrap_or_else(|_| FanOutResult {
        completed_by: Completion::Deadline,
        agents: spec
            .order
            .into_iter()
            .map(|agent_id| AgentResult {
                agent_id,
                priority: None,
                outcome: AgentOutcome::Timeout,
            })
            .collect(),
    })
}

/// The actor; start with [`FanOutBarrier::start_new`].
pub struct FanOutBarrier {
    started: Instant,
    order: Vec<AgentId>,
    priorities: BTreeMap<AgentId, Priority>,
    outcomes: BTreeMap<AgentId, AgentOutcome>,
    /// Agents still expected (asked, no reply yet).
    waiting: usize,
    quorum: Option<usize>,
    deadline: Duration,
    done: Option<oneshot::Sender<FanOutResult>>,
    on_late: Option<LateHandler>,
}

impl FanOutBarrier {
    /// Starts a barrier. `asked` are the agents sent a task (with their class),
    /// `skipped` the ones not asked and why. Returns its address and the
    /// receiver of the result.
    pub fn start_new(
        asked: Vec<(AgentId, Priority)>,
        skipped: Vec<(AgentId, String)>,
        order: Vec<AgentId>,
        quorum: Option<usize>,
        deadline: Duration,
        on_late: Option<LateHandler>,
    ) -> (Addr<Self>, oneshot::Receiver<FanOutResult>) {
        let (tx, rx) = oneshot::channel();
        let mut outcomes = BTreeMap::new();
        for (a, reason) in skipped {
            outcomes.insert(a, AgentOutcome::Skipped { reason });
        }
        let waiting = asked.len();
        let barrier = Self {
            started: Instant::now(),
            order,
            priorities: asked.into_iter().collect(),
            outcomes,
            waiting,
            quorum,
            deadline,
            done: Some(tx),
            on_late,
        };
        (barrier.start(), rx)
    }

    fn ok_count(&self) -> usize {
        self.outcomes
            .values()
            .filter(|o| matches!(o, AgentOutcome::Ok { .. }))
            .count()
    }

    fn finish(&mut self, why: Completion, ctx: &mut Context<Self>) {
        let Some(tx) = self.done.take() else { return };
        let agents = self
            .order
            .iter()
            .map(|a| AgentResult {
                agent_id: a.clone(),
                priority: self.priorities.get(a).copied(),
                outcome: self
                    .outcomes
                    .get(a)
                    .cloned()
                    .unwrap_or(AgentOutcome::Timeout),
            })
            .collect();
        let _ = tx.send(FanOutResult {
            completed_by: why,
            agents,
        });
        if self.waiting == 0 {
            ctx.stop();
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.done.is_none() {
            return;
        }
        if self.waiting == 0 {
            self.finish(Completion::All, ctx);
        } else if self.quorum.is_some_and(|q| self.ok_count() >= q) {
            self.finish(Completion::Quorum, ctx);
        }
    }
}

impl Actor for FanOutBarrier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_later(self.deadline, |act, ctx| {
            act.finish(Completion::Deadline, ctx)
        });
        self.check(ctx);
    }
}

impl Handler<AgentReply> for FanOutBarrier {
    type Result = ();

    fn handle(&mut self, msg: AgentReply, ctx: &mut Context<Self>) {
        self.waiting = self.waiting.saturating_sub(1);
        let latency_ms = self.started.elapsed().as_millis() as u64;
        if self.done.is_none() {
            // Late: the result is final; hand the answer on, then maybe stop.
            if let (Ok(answer), Some(on_late)) = (msg.result, &self.on_late) {
                on_late(msg.agent_id, answer, latency_ms);
            }
            if self.waiting == 0 {
                ctx.stop();
            }
            return;
        }
        let outcome = match msg.result {
            Ok(answer) => AgentOutcome::Ok { answer, latency_ms },
            Err(BackendError::Timeout) => AgentOutcome::Timeout,
            Err(e) => AgentOutcome::Error {
                kind: match e {
                    BackendError::InvalidAnswer(_) => FailureKind::Invalid,
                    BackendError::Timeout | BackendError::Failed(_) => FailureKind::Error,
                },
                message: e.to_string(),
                latency_ms,
            },
        };
        self.outcomes.insert(msg.agent_id, outcome);
        self.check(ctx);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::sync::{Arc, Mutex};

    fn id(s: &str) -> AgentId {
        AgentId::parse("a", s).unwrap()
    }

    fn answer() -> AgentAnswer {
        AgentAnswer {
            content: serde_json::json!({}),
            confidence: 0.5,
            reasoning: None,
            ground_truth: None,
            usage: Default::default(),
        }
    }

    #[actix_rt::test]
    async fn completes_when_all_replied_and_lists_skipped() {
        let order = vec![id("a"), id("b"), id("c")];
        let (addr, rx) = FanOutBarrier::start_new(
            vec![(id("a"), Priority::Normal), (id("b"), Priority::Critical)],
            vec![(id("c"), "disabled".into())],
            order,
            None,
            Duration::from_secs(60),
            None,
        );
        addr.do_send(AgentReply {
            agent_id: id("b"),
            result: Err(BackendError::Failed("x".into())),
        });
        addr.do_send(AgentReply {
            agent_id: id("a"),
            result: Ok(answer()),
        });
        let r = rx.await.unwrap();
        assert_eq!(r.completed_by, Completion::All);
        assert!(matches!(r.agents[0].outcome, AgentOutcome::Ok { .. }));
        assert!(matches!(r.agents[1].outcome, AgentOutcome::Error { .. }));
        assert_eq!(r.agents[1].priority, Some(Priority::Critical));
        assert!(matches!(r.agents[2].outcome, AgentOutcome::Skipped { .. }));
    }

    #[actix_rt::test]
    async fn quorum_completes_early_and_late_replies_do_not_change_it() {
        let late = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&late);
        let (addr, rx) = FanOutBarrier::start_new(
            vec![
                (id("a"), Priority::Normal),
                (id("b"), Priority::Normal),
                (id("c"), Priority::Normal),
            ],
            vec![],
            vec![id("a"), id("b"), id("c")],
            Some(2),
            Duration::from_secs(60),
            Some(Box::new(move |a, _, _| sink.lock().unwrap().push(a))),
        );
        addr.do_send(AgentReply {
            agent_id: id("a"),
            result: Ok(answer()),
        });
        addr.do_send(AgentReply {
            agent_id: id("c"),
            result: Ok(answer()),
        });
        let r = rx.await.unwrap();
        assert_eq!(r.completed_by, Completion::Quorum);
        assert!(matches!(r.agents[1].outcome, AgentOutcome::Timeout));
        addr.send(AgentReply {
            agent_id: id("b"),
            result: Ok(answer()),
        })
        .await
        .ok();
        assert_eq!(*late.lock().unwrap(), vec![id("b")]);
    }

    #[actix_rt::test]
    async fn deadline_completes_with_timeouts() {
        let (_addr, rx) = FanOutBarrier::start_new(
            vec![(id("a"), Priority::Normal)],
            vec![],
            vec![id("a")],
            None,
            Duration::from_millis(10),
            None,
        );
        let r = rx.await.unwrap();
        assert_eq!(r.completed_by, Completion::Deadline);
        assert_eq!(r.agents[0].outcome, AgentOutcome::Timeout);
    }
}
