//! Runs workflow definitions over the swarm. By concern: this file runs
//! (creating, executing and settling runs, stages, the fan-out, late
//! replies); [`selection`] picks a stage's agents; [`judging`] votes and
//! assembles the result; [`records`] builds what is tracked and the failures.
//! Slightly above 600 lines: `run_stages` is one sequence (stage by stage,
//! then evaluation) that reads best in one piece.
//!
//! Per stage: choose agents (listed, or "top N by trust" by Thompson
//! sampling from each agent's posterior, `trust/select.rs`), skip the ones that
//! are disabled, unhealthy, not run by the runtime, or below the trust
//! threshold (except for a periodic probation probe), schedule each task at
//! the class its trust boost gives it, gather replies with a
//! `FanOutBarrier`, and track every answer. After the last stage the run's
//! quality comes from its review stage (`content.quality`; the reviewer's
//! own answer is tracked after that evaluation, so it never grades itself)
//! or, when every
//! answer is from a simulated agent, from ground truth; the outcome is
//! evaluated with it and the learning-cycle port is told.
//!
//! With `learning.enabled = false` nothing is tracked, boosts are 0 and no
//! agent is skipped for trust: the runtime is a plain orchestrator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::Instrument;
use uuid::Uuid;

use super::definition::{Aggregate, StageDef, StageMode, WorkflowDef};
use super::{RunStatus, WorkflowRun};
use crate::agent::backend::Task;
use crate::barrier::{
    fan_out, AgentOutcome, AgentResult, Completion, FanOut, FanOutTarget, LateHandler,
};
use crate::domain::{to_micros, Agent, AgentId, Priority, QualityScore, Verdict, WorkspaceId};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::ports::Store;
use crate::swarm::Swarm;
use crate::tracker::{Evaluate, EvaluationSummary, ExplicitVerdict, Feedback};

pub mod judging;
pub mod records;
pub mod selection;

use super::trigger::CycleTrigger;
use judging::assemble;
use records::{failures_of, recommendation};

/// Config section `[workflows]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowsConfig {
    /// Folder of `*.toml` workflow definitions.
    pub dir: String,
    /// Stage deadline when a stage sets none, in milliseconds.
    pub default_timeout_ms: u64,
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        Self {
            dir: "config/workflows".into(),
            default_timeout_ms: 120_000,
        }
    }
}

/// `POST /workflows/runs` after validation.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Definition name.
    pub workflow: String,
    /// Input for the agents.
    pub input: Value,
    /// Caller's priority.
    pub priority: Priority,
}

/// One agent's line in a stage report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageAgent {
    /// Outcome and latency.
    #[serde(flatten)]
    pub result: AgentResult,
    /// The tracked recommendation, if the answer was tracked.
    pub recommendation_id: Option<Uuid>,
}

/// One stage's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// Stage name.
    pub name: String,
    /// Type of its recommendations.
    pub recommendation_type: String,
    /// Why its barrier completed (the last barrier for sequential stages).
    pub completed_by: Completion,
    /// Every agent.
    pub agents: Vec<StageAgent>,
    /// The trust-weighted vote, when the stage asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<crate::trust::consensus::TrustVote>,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// Run id (= workflow_id of its recommendations).
    pub run_id: Uuid,
    /// Definition.
    pub workflow: String,
    /// Status.
    pub status: RunStatus,
    /// Quality 0–100 if known (review stage, or simulated ground truth).
    pub quality: Option<f64>,
    /// The assembled result: the final stage's majority decision and every stage's answers.
    pub result: Value,
    /// Per stage, per agent.
    pub stages: Vec<StageReport>,
    /// Counts per verdict, if the outcome was evaluated.
    pub evaluation: Option<EvaluationSummary>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Runs workflows; cheap to clone.
#[derive(Clone)]
pub struct Workflows {
    defs: Arc<BTreeMap<String, WorkflowDef>>,
    engine: Engine,
    swarm: Swarm,
    store: Arc<dyn Store>,
    events: EventBus,
    cycles: Arc<dyn CycleTrigger>,
    config: Arc<WorkflowsConfig>,
    /// Runs this process is executing, by id: removed once their final
    /// state is stored, so whatever is left at shutdown is marked
    /// `interrupted` rather than left `running`.
    in_flight: Arc<DashMap<Uuid, WorkflowRun>>,
    /// Woken whenever a run leaves `in_flight`.
    settled: Arc<tokio::sync::Notify>,
}

impl Workflows {
    /// A runner over validated definitions.
    pub fn new(
        defs: Vec<WorkflowDef>,
        engine: Engine,
        swarm: Swarm,
        store: Arc<dyn Store>,
        events: EventBus,
        cycles: Arc<dyn CycleTrigger>,
        config: WorkflowsConfig,
    ) -> Self {
        Self {
            defs: Arc::new(defs.into_iter().map(|d| (d.name.clone(), d)).collect()),
            engine,
            swarm,
            store,
            events,
            cycles,
            config: Arc::new(config),
            in_flight: Arc::default(),
            settled: Arc::default(),
        }
    }

    /// Every definition, by name.
    pub fn definitions(&self) -> Vec<WorkflowDef> {
        self.defs.values().cloned().collect()
    }

    /// The swarm.
    pub fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// Validates the request and records the run as running; returns the row.
    pub async fn create(
        &self,
        ws: WorkspaceId,
        req: &RunRequest,
    ) -> Result<WorkflowRun, EngineError> {
        if !self.defs.contains_key(&req.workflow) {
            return Err(EngineError::NotFound {
                what: "workflow definition",
                id: req.workflow.clone(),
            });
        }
        let run = WorkflowRun {
            id: Uuid::now_v7(),
            workspace_id: ws,
            workflow: req.workflow.clone(),
            status: RunStatus::Running,
            priority: req.priority,
            input: req.input.clone(),
            result: None,
            error: None,
            created_at: to_micros(Utc::now()),
            finished_at: None,
        };
        crate::trace::store_call("insert_run", self.store.insert_run(&run))
            .instrument(crate::trace::run_span(run.id, &run.workflow, ws))
            .await?;
        Ok(run)
    }

    /// Runs a created run to the end and stores its report, in the run's
    /// span (a child of the caller's: the request that started it).
    pub async fn execute(&self, run: WorkflowRun) -> Result<RunReport, EngineError> {
        let span = crate::trace::run_span(run.id, &run.workflow, run.workspace_id);
        self.execute_traced(run).instrument(span).await
    }

    async fn execute_traced(&self, run: WorkflowRun) -> Result<RunReport, EngineError> {
        let def = self
            .defs
            .get(&run.workflow)
            .cloned()
            .ok_or_else(|| EngineError::NotFound {
                what: "workflow definition",
                id: run.workflow.clone(),
            })?;
        self.in_flight.insert(run.id, run.clone());
        let report = match self.run_stages(&def, &run).await {
            Ok(r) => r,
            Err(e) => RunReport {
                run_id: run.id,
                workflow: run.workflow.clone(),
                status: RunStatus::Failed,
                quality: None,
                result: Value::Null,
                stages: Vec::new(),
                evaluation: None,
                error: Some(e.to_string()),
            },
        };
        let mut done = run;
        done.status = report.status;
        done.result = serde_json::to_value(&report).ok();
        done.error.clone_from(&report.error);
        done.finished_at = Some(to_micros(Utc::now()));
        crate::trace::store_call("finish_run", self.store.finish_run(&done)).await?;
        self.in_flight.remove(&done.id);
        self.settled.notify_waiters();
        metrics::counter!("swarmwise_workflow_runs_total", "status" => report.status.as_str())
            .increment(1);
        self.events.publish(Event::WorkflowProgress {
            workspace_id: done.workspace_id,
            run_id: done.id.to_string(),
            stage: "finished".into(),
            status: report.status.as_str().into(),
        });
        Ok(report)
    }

    /// Runs this process is executing now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits until no run is in flight, or `timeout`; returns how many are
    /// still running.
    pub async fn settle(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.is_empty() {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight.len();
            }
        }
    }

    /// Marks every run still in flight `interrupted` with `reason` (at
    /// shutdown, after [`Self::settle`]); a store error is logged with the
    /// run id, never dropped. Returns how many were marked.
    pub async fn interrupt_in_flight(&self, reason: &str) -> usize {
        let runs: Vec<WorkflowRun> = self.in_flight.iter().map(|r| r.value().clone()).collect();
        let mut marked = 0;
        for mut run in runs {
            run.status = RunStatus::Interrupted;
            run.error = Some(reason.to_owned());
            run.finished_at = Some(to_micros(Utc::now()));
            match self.store.finish_run(&run).await {
                Ok(()) => {
                    self.in_flight.remove(&run.id);
                    marked += 1;
                }
                Err(e) => {
                    tracing::error!(run = %run.id, workspace = %run.workspace_id, error = %e, "could not mark an unfinished run interrupted; it stays `running` until the next start marks it")
                }
            }
        }
        marked
    }

    /// Creates and runs to the end.
    pub async fn run(&self, ws: WorkspaceId, req: RunRequest) -> Result<RunReport, EngineError> {
        let run = self.create(ws, &req).await?;
        self.execute(run).await
    }

    async fn run_stages(
        &self,
        def: &WorkflowDef,
        run: &WorkflowRun,
    ) -> Result<RunReport, EngineError> {
        let ws = run.workspace_id;
        let learning = self.engine.learning_enabled();
        let registered: BTreeMap<AgentId, Agent> = self
            .store
            .agents(ws)
            .await?
            .into_iter()
            .map(|a| (a.id.clone(), a))
            .collect();
        let correlation = run
            .input
            .get("correlation_id")
            .and_then(Value::as_str)
            .map_or_else(|| run.id.to_string(), str::to_owned);
        let mut context = json!({});
        let mut stages = Vec::with_capacity(def.stages.len());
        // Ground truth of every simulated answer, with its recommendation if tracked.
        let mut truths: Vec<(Option<Uuid>, bool)> = Vec::new();
        let mut review_scores = Vec::new();
        let mut tracked_any = false;
        let mut deferred = Vec::new();
        let mut all_simulated = true;
        for stage in &def.stages {
            let timeout =
                Duration::from_millis(stage.timeout_ms.unwrap_or(self.config.default_timeout_ms));
            let candidates = self.candidates(ws, stage, &registered);
            let base = Task {
                id: Uuid::nil(),
                workspace_id: ws,
                workflow_id: run.id.to_string(),
                correlation_id: correlation.clone(),
                workflow: def.name.clone(),
                stage: stage.name.clone(),
                recommendation_type: stage.recommendation_type.clone(),
                input: run.input.clone(),
                context: context.clone(),
            };
            let (completed_by, results) = match stage.mode {
                StageMode::Parallel => {
                    self.fan_out(
                        ws,
                        stage,
                        &candidates,
                        &registered,
                        &base,
                        run.priority,
                        timeout,
                    )
                    .await
                }
                StageMode::Sequential => {
                    let mut all = Vec::new();
                    let mut last = Completion::All;
                    let mut so_far = Vec::new();
                    for agent in &candidates {
                        let mut task = base.clone();
                        if let Some(o) = task.context.as_object_mut() {
                            o.insert(stage.name.clone(), Value::Array(so_far.clone()));
                        }
                        let (c, mut r) = self
                            .fan_out(
                                ws,
                                stage,
                                std::slice::from_ref(agent),
                                &registered,
                                &task,
                                run.priority,
                                timeout,
                            )
                            .await;
                        last = c;
                        for x in &r {
                            if let AgentOutcome::Ok { answer, .. } = &x.outcome {
                                so_far.push(json!({"agent_id": x.agent_id, "content": answer.content, "confidence": answer.confidence}));
                            }
                        }
                        all.append(&mut r);
                    }
                    (last, all)
                }
            };
            let mut answers = Vec::new();
            let mut report = Vec::with_capacity(results.len());
            for r in results {
                let mut recommendation_id = None;
                if let AgentOutcome::Ok { answer, latency_ms } = &r.outcome {
                    answers.push(json!({"agent_id": r.agent_id, "content": answer.content, "confidence": answer.confidence}));
                    let truth = answer.ground_truth;
                    all_simulated &= truth.is_some();
                    let mut judged_the_run = false;
                    if stage.review {
                        if let Some(q) = answer.content.get("quality").and_then(Value::as_f64) {
                            review_scores.push(q.clamp(0.0, 100.0));
                            judged_the_run = true;
                        }
                    }
                    if learning {
                        let name = registered
                            .get(&r.agent_id)
                            .map_or_else(|| r.agent_id.to_string(), |a| a.name.clone());
                        let rec = recommendation(
                            &base,
                            r.agent_id.clone(),
                            name,
                            answer,
                            *latency_ms,
                            timeout,
                        );
                        let id = rec.id;
                        if judged_the_run {
                            // A reviewer does not grade its own answer: it is
                            // tracked after the evaluation its quality drove,
                            // and stays pending until feedback judges it.
                            deferred.push(rec);
                        } else {
                            self.engine.track(vec![rec]).await?;
                            tracked_any = true;
                        }
                        recommendation_id = Some(id);
                    }
                    if let Some(good) = truth {
                        truths.push((recommendation_id, good));
                    }
                }
                report.push(StageAgent {
                    result: r,
                    recommendation_id,
                });
            }
            if let Some(o) = context.as_object_mut() {
                o.insert(stage.name.clone(), Value::Array(answers));
            }
            self.events.publish(Event::WorkflowProgress {
                workspace_id: ws,
                run_id: run.id.to_string(),
                stage: stage.name.clone(),
                status: "running".into(),
            });
            let aggregate = match stage.aggregate {
                Some(Aggregate::TrustVote) => self.trust_vote(ws, stage, &report),
                None => None,
            };
            stages.push(StageReport {
                name: stage.name.clone(),
                recommendation_type: stage.recommendation_type.clone(),
                completed_by,
                agents: report,
                aggregate,
            });
        }
        let quality = if !review_scores.is_empty() {
            Some(review_scores.iter().sum::<f64>() / review_scores.len() as f64)
        } else if all_simulated && !truths.is_empty() {
            Some(100.0 * truths.iter().filter(|t| t.1).count() as f64 / truths.len() as f64)
        } else {
            None
        };
        let mut evaluation = None;
        if let (true, true, Some(q)) = (learning, tracked_any, quality) {
            let verdicts = truths
                .iter()
                .filter_map(|(id, good)| id.map(|id| (id, *good)))
                .map(|(id, good)| ExplicitVerdict {
                    recommendation_id: id,
                    verdict: if good {
                        Verdict::Approved
                    } else {
                        Verdict::Rejected
                    },
                    quality: None,
                })
                .collect();
            let summary = self
                .engine
                .evaluate(Evaluate {
                    workspace: ws,
                    workflow_id: run.id.to_string(),
                    overall_quality: QualityScore::parse("quality", q)?,
                    verdicts,
                    feedback: None,
                })
                .await?;
            self.cycles.outcomes_evaluated(ws, summary.evaluated);
            evaluation = Some(summary);
        }
        if !deferred.is_empty() {
            self.engine.track(deferred).await?;
        }
        let result = assemble(&stages, def, quality);
        Ok(RunReport {
            run_id: run.id,
            workflow: def.name.clone(),
            status: RunStatus::Succeeded,
            quality,
            result,
            stages,
            evaluation,
            error: None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn fan_out(
        &self,
        ws: WorkspaceId,
        stage: &StageDef,
        agents: &[AgentId],
        registered: &BTreeMap<AgentId, Agent>,
        base: &Task,
        requested: Priority,
        timeout: Duration,
    ) -> (Completion, Vec<AgentResult>) {
        let mut asked = Vec::new();
        let mut skipped = Vec::new();
        for a in agents {
            match self.skip_reason(ws, a, registered) {
                Some(reason) => skipped.push((a.clone(), reason)),
                None => {
                    let (boost, _) = self.engine.boost(ws, a, Some(&stage.recommendation_type));
                    asked.push((
                        a.clone(),
                        self.engine.params().priority_for(requested, boost),
                    ));
                }
            }
        }
        let targets = asked
            .into_iter()
            .filter_map(|(agent_id, priority)| {
                let running = self.swarm.get(ws, &agent_id)?;
                Some(FanOutTarget {
                    agent_id,
                    addr: running.addr.clone(),
                    priority,
                })
            })
            .collect();
        let spec = FanOut {
            targets,
            skipped,
            order: agents.to_vec(),
            quorum: stage.quorum,
            timeout,
            agent_deadline: timeout.mul_f64(self.swarm.config().late_grace_factor.max(1.0)),
            on_late: Some(self.late_handler(ws, base, registered, timeout)),
        };
        let result = fan_out(spec, base).await;
        if self.engine.learning_enabled() {
            let failures = failures_of(&result, base, registered);
            let n = failures.len();
            if let Err(e) = self.engine.record_failures(ws, failures).await {
                // The run goes on: its answers are still worth tracking.
                tracing::warn!(error = %e, failures = n, "could not record agent failures; reliability misses them");
            }
        }
        (result.completed_by, result.agents)
    }

    /// Tracks answers that arrive after their barrier completed; simulated
    /// ones are evaluated at once from ground truth, so the lateness reaches
    /// timeliness.
    fn late_handler(
        &self,
        ws: WorkspaceId,
        base: &Task,
        registered: &BTreeMap<AgentId, Agent>,
        timeout: Duration,
    ) -> LateHandler {
        let engine = self.engine.clone();
        let names: BTreeMap<AgentId, String> = registered
            .iter()
            .map(|(k, v)| (k.clone(), v.name.clone()))
            .collect();
        let base = base.clone();
        Box::new(move |agent, answer, latency_ms| {
            if !engine.learning_enabled() {
                return;
            }
            metrics::counter!("swarmwise_late_replies_total").increment(1);
            let name = names
                .get(&agent)
                .cloned()
                .unwrap_or_else(|| agent.to_string());
            let rec = recommendation(&base, agent, name, &answer, latency_ms, timeout);
            let engine = engine.clone();
            let truth = answer.ground_truth;
            actix::spawn(async move {
                let id = rec.id;
                if let Err(e) = engine.track(vec![rec]).await {
                    tracing::warn!(error = %e, "could not track a late reply");
                    return;
                }
                if let Some(good) = truth {
                    let verdict = if good {
                        Verdict::Approved
                    } else {
                        Verdict::Rejected
                    };
                    let _ = engine
                        .feedback(Feedback {
                            workspace: ws,
                            id,
                            verdict,
                            quality: None,
                            comment: Some("late reply (after the stage deadline)".into()),
                        })
                        .await;
                }
            });
        })
    }
}
