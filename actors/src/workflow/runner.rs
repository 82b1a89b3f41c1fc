//! Runs workflow definitions over the swarm.
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
use std::sync::atomic::{AtomicU64, Ordering};
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
use crate::domain::{
    to_micros, Agent, AgentFailure, AgentId, FailureKind, Priority, QualityScore, Recommendation,
    RecommendationStatus, Verdict, WorkspaceId,
};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::ports::Store;
use crate::swarm::Swarm;
use crate::tracker::{Evaluate, EvaluationSummary, ExplicitVerdict, Feedback};

/// The engine's port to the meta-learner: told how many outcomes each
/// evaluation added, it decides whether a learning cycle is due.
pub trait CycleTrigger: Send + Sync + 'static {
    /// `n` outcomes were just evaluated in `ws`.
    fn outcomes_evaluated(&self, ws: WorkspaceId, n: u64);
}

/// `should_trigger_learning_cycle`: requests a cycle every `threshold`
/// evaluated outcomes per workspace, by calling `on_due` (counted in
/// `swarmwise_learning_cycles_requested_total`).
pub struct CountingTrigger {
    threshold: u64,
    counts: DashMap<WorkspaceId, u64>,
    requested: AtomicU64,
    on_due: Box<dyn Fn(WorkspaceId) + Send + Sync>,
}

impl CountingTrigger {
    /// Requests a cycle every `threshold` outcomes (0 = never).
    pub fn new(threshold: u64, on_due: impl Fn(WorkspaceId) + Send + Sync + 'static) -> Self {
        Self {
            threshold,
            counts: DashMap::new(),
            requested: AtomicU64::new(0),
            on_due: Box::new(on_due),
        }
    }

    /// Cycles requested so far.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Relaxed)
    }
}

impl CycleTrigger for CountingTrigger {
    fn outcomes_evaluated(&self, ws: WorkspaceId, n: u64) {
        if self.threshold == 0 {
            return;
        }
        let due = {
            let mut c = self.counts.entry(ws).or_insert(0);
            *c += n;
            let due = *c >= self.threshold;
            if due {
                *c = 0;
            }
            due
        };
        if due {
            self.requested.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("swarmwise_learning_cycles_requested_total").increment(1);
            tracing::info!(workspace = %ws, "learning cycle due (learning.cycle_every_outcomes reached)");
            (self.on_due)(ws);
        }
    }
}

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

    /// The stage's agents: listed, or the top N by trust for a type.
    fn candidates(
        &self,
        ws: WorkspaceId,
        stage: &StageDef,
        registered: &BTreeMap<AgentId, Agent>,
    ) -> Vec<AgentId> {
        let parse = |s: &String| AgentId::parse("agents", s).ok();
        match &stage.select {
            None => stage.agents.iter().filter_map(parse).collect(),
            Some(sel) => {
                let pool: Vec<AgentId> = if sel.from.is_empty() {
                    registered
                        .values()
                        .filter(|a| a.enabled && self.swarm.get(ws, &a.id).is_some())
                        .map(|a| a.id.clone())
                        .collect()
                } else {
                    sel.from.iter().filter_map(parse).collect()
                };
                let rtype = sel
                    .by_trust_for
                    .as_deref()
                    .unwrap_or(&stage.recommendation_type);
                let snap = self.engine.trust(ws);
                // Thompson sampling from each agent's posterior (docs/trust.md,
                // "Selection"); greedy when trust.selection_exploration = 0.
                let mut pool = pool;
                pool.sort();
                if !self.engine.learning_enabled() {
                    // Plain orchestrator: the first N by id, no trust, no chance.
                    pool.truncate(sel.top);
                    return pool;
                }
                crate::trust::select::select_agents(
                    &snap,
                    &pool,
                    rtype,
                    sel.top,
                    self.engine.params(),
                    &mut rand::thread_rng(),
                )
            }
        }
    }

    /// The stage's trust-weighted vote. First choice: the type's full
    /// Dawid–Skene model from the latest learning cycle (posterior over the
    /// type's decisions from each agent's confusion matrix,
    /// `learner/agreement.rs`), when it knows every decision given. Else each
    /// answer `content.<decision_key>`
    /// weighted by ln((K−1)·p/(1−p)), p = the agent's accuracy on the type
    /// (learned from verdicts and agreement by the latest learning cycle when
    /// that is in use, `learner/agreement.rs`; else its trust card's, or its
    /// overall one without outcomes of the type; the workspace mean without
    /// history), K = the number of distinct answers (at least 2).
    fn trust_vote(
        &self,
        ws: WorkspaceId,
        stage: &StageDef,
        report: &[StageAgent],
    ) -> Option<crate::trust::consensus::TrustVote> {
        let key = stage.decision_key.as_deref().unwrap_or("decision");
        let snap = self.engine.trust(ws);
        let agreement = self.engine.agreement(ws);
        if let Some(e) = &agreement {
            let answers: Vec<(AgentId, String)> = report
                .iter()
                .filter_map(|a| match &a.result.outcome {
                    AgentOutcome::Ok { answer, .. } => {
                        Some((a.result.agent_id.clone(), decision_of(&answer.content, key)))
                    }
                    _ => None,
                })
                .collect();
            if let Some(v) = e.vote(&stage.recommendation_type, &answers) {
                return Some(v);
            }
        }
        let votes: Vec<(String, f64)> = report
            .iter()
            .filter_map(|a| match &a.result.outcome {
                AgentOutcome::Ok { answer, .. } => {
                    let learned = agreement
                        .as_ref()
                        .and_then(|e| e.accuracy(&a.result.agent_id, &stage.recommendation_type));
                    let p = learned.unwrap_or_else(|| {
                        snap.agents.get(&a.result.agent_id).map_or(
                            snap.default_card.accuracy_score,
                            |c| {
                                c.per_type
                                    .get(&stage.recommendation_type)
                                    .map_or(c.overall.accuracy_score, |t| t.accuracy_score)
                            },
                        )
                    });
                    Some((decision_of(&answer.content, key), p))
                }
                _ => None,
            })
            .collect();
        let distinct = votes
            .iter()
            .map(|v| v.0.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        crate::trust::consensus::trust_vote(&votes, distinct)
    }

    /// Why an agent is not asked, if it is not.
    fn skip_reason(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        registered: &BTreeMap<AgentId, Agent>,
    ) -> Option<String> {
        let Some(a) = registered.get(agent) else {
            return Some("not registered in this workspace".into());
        };
        if !a.enabled {
            return Some("disabled".into());
        }
        let Some(running) = self.swarm.get(ws, agent) else {
            return Some(format!("kind {:?} is not run by the runtime", a.kind));
        };
        if running.health.is_unhealthy() {
            return Some(
                "unhealthy: restarted past its limit; PATCH enabled=true to re-enable".into(),
            );
        }
        if self.engine.learning_enabled() {
            let cfg = self.swarm.config();
            let snap = self.engine.trust(ws);
            if let Some(card) = snap.agents.get(agent).map(|c| &c.overall) {
                if card.observations() >= cfg.disable_min_samples
                    && card.overall_trust < cfg.disable_below_trust
                {
                    let n = running.skipped_since_probe.fetch_add(1, Ordering::Relaxed) + 1;
                    if cfg.probation_every > 0 && n >= cfg.probation_every {
                        running.skipped_since_probe.store(0, Ordering::Relaxed);
                        return None; // probation probe
                    }
                    return Some(format!(
                        "trust {:.2} below agents.disable_below_trust {:.2}",
                        card.overall_trust, cfg.disable_below_trust
                    ));
                }
            }
        }
        None
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

/// The failures of one barrier, to record against the agents' reliability:
/// every error and invalid answer, and every timeout of a barrier that
/// completed by its deadline. An agent left without an answer because the
/// quorum was reached first did not fail, so a quorum's missing answers are
/// not counted.
fn failures_of(
    result: &crate::barrier::FanOutResult,
    task: &Task,
    registered: &BTreeMap<AgentId, Agent>,
) -> Vec<AgentFailure> {
    let now = to_micros(Utc::now());
    result
        .agents
        .iter()
        .filter_map(|r| {
            let (kind, message) = match &r.outcome {
                AgentOutcome::Error { kind, message, .. } => (*kind, message.clone()),
                AgentOutcome::Timeout if result.completed_by != Completion::Quorum => (
                    FailureKind::Timeout,
                    "no answer before the stage deadline".into(),
                ),
                _ => return None,
            };
            let mut message = message;
            if message.len() > 1000 {
                let mut cut = 1000;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            Some(AgentFailure {
                id: Uuid::now_v7(),
                workspace_id: task.workspace_id,
                agent_id: r.agent_id.clone(),
                agent_name: registered
                    .get(&r.agent_id)
                    .map_or_else(|| r.agent_id.to_string(), |a| a.name.clone()),
                workflow_id: task.workflow_id.clone(),
                recommendation_type: task.recommendation_type.clone(),
                kind,
                // A backend's message may quote what it received.
                message: message.replace('\0', "\\u0000"),
                occurred_at: now,
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
/// The recommendation an answer to `task` is tracked as.
fn recommendation(
    task: &Task,
    agent_id: AgentId,
    agent_name: String,
    answer: &crate::agent::backend::AgentAnswer,
    latency_ms: u64,
    timeout: Duration,
) -> Recommendation {
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: task.workspace_id,
        agent_id,
        agent_name,
        correlation_id: task.correlation_id.clone(),
        workflow_id: task.workflow_id.clone(),
        recommendation_type: task.recommendation_type.clone(),
        content: answer.content.clone(),
        confidence: answer.confidence,
        reasoning: answer.reasoning.clone(),
        latency_ms: Some(latency_ms as i64),
        deadline_ms: Some(timeout.as_millis() as i64),
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now()),
        evaluated_at: None,
    }
}

/// `content.<key>` as text (strings as they are, other JSON as JSON), or the
/// whole content when the key is absent.
fn decision_of(content: &Value, key: &str) -> String {
    content.get(key).map_or_else(
        || content.to_string(),
        |d| d.as_str().map_or_else(|| d.to_string(), str::to_owned),
    )
}

/// The finalisation step: the last non-review stage's trust vote when it
/// asks for one, else its majority decision,
/// every stage's answers, and the quality.
fn assemble(stages: &[StageReport], def: &WorkflowDef, quality: Option<f64>) -> Value {
    let mut by_stage = serde_json::Map::new();
    for s in stages {
        let answers: Vec<Value> = s
            .agents
            .iter()
            .filter_map(|a| match &a.result.outcome {
                AgentOutcome::Ok { answer, .. } => Some(json!({"agent_id": a.result.agent_id, "content": answer.content, "confidence": answer.confidence})),
                _ => None,
            })
            .collect();
        by_stage.insert(s.name.clone(), Value::Array(answers));
    }
    let final_stage = def
        .stages
        .iter()
        .rev()
        .find(|s| !s.review)
        .map(|s| s.name.as_str());
    let final_report = stages.iter().find(|s| Some(s.name.as_str()) == final_stage);
    if let Some(vote) = final_report.and_then(|r| r.aggregate.as_ref()) {
        return json!({
            "decision": vote.decision,
            "decision_posterior": vote.posterior,
            "aggregate": vote,
            "quality": quality,
            "stages": by_stage,
        });
    }
    let mut votes: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    if let Some(report) = final_report {
        for a in &report.agents {
            if let AgentOutcome::Ok { answer, .. } = &a.result.outcome {
                let key = answer.content.get("decision").map_or_else(
                    || answer.content.to_string(),
                    |d| d.as_str().map_or_else(|| d.to_string(), str::to_owned),
                );
                let e = votes.entry(key).or_insert((0, 0.0));
                e.0 += 1;
                e.1 += answer.confidence;
            }
        }
    }
    let decision = votes
        .into_iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(a.1 .1.total_cmp(&b.1 .1)))
        .map(|(k, _)| k);
    json!({ "decision": decision, "quality": quality, "stages": by_stage })
}
