//! Running the stages of one run: resume from the stored records, fan each
//! remaining stage out (with retries of failed calls), store the stage's
//! record (fenced by the run's lease), then track its answers, pause at an
//! approval stage, and evaluate the outcome at the end.
//!
//! Order per stage, and why: the record is stored *before* its answers are
//! tracked, so a node that lost its lease (its write is refused) tracks
//! nothing, and a resumed run re-tracks exactly the recorded answers the
//! store misses (same recommendation ids), never a second copy.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use tracing::Instrument as _;
use uuid::Uuid;

use super::durable::{ApprovalRecord, Progress};
use super::judging::assemble;
use super::records::{failures_of, recommendation};
use super::{RunReport, StageAgent, StageReport, Workflows};
use crate::agent::backend::Task;
use crate::barrier::{
    fan_out, AgentOutcome, AgentResult, Completion, FanOut, FanOutTarget, LateHandler,
};
use crate::domain::{
    to_micros, Agent, AgentId, Priority, QualityScore, Recommendation, Verdict, WorkspaceId,
};
use crate::error::EngineError;
use crate::events::Event;
use crate::tracker::{Evaluate, ExplicitVerdict, Feedback};
use crate::workflow::definition::{Aggregate, StageDef, StageMode, WorkflowDef};
use crate::workflow::{RunStatus, WorkflowRun};

/// How a call of [`Workflows::run_stages`] ended.
pub(super) enum Step {
    /// Every stage ran; the report to store.
    Done(RunReport),
    /// An approval stage paused the run (stored `awaiting_approval`).
    Paused(RunReport),
}

/// Why [`Workflows::run_stages`] stopped early.
pub(super) enum Halt {
    /// Another node claimed the run: write nothing more.
    LeaseLost,
    /// The run failed.
    Failed(EngineError),
}

impl<E: Into<EngineError>> From<E> for Halt {
    fn from(e: E) -> Self {
        Self::Failed(e.into())
    }
}

/// What the stages so far add up to (rebuilt from the records on resume).
#[derive(Default)]
struct Tally {
    /// Earlier stages' answers by stage name, shown to later stages.
    context: serde_json::Map<String, Value>,
    /// Ground truth of every simulated answer, with its recommendation.
    truths: Vec<(Option<Uuid>, bool)>,
    /// Review stages' `content.quality`.
    review_scores: Vec<f64>,
    /// A recommendation (other than a reviewer's own) was tracked.
    tracked_any: bool,
    /// Every answer so far came from a simulated agent.
    not_all_simulated: bool,
    /// Reviewers' answers, tracked after the evaluation.
    deferred: Vec<Recommendation>,
}

/// The run's quality 0–100: the mean of its review stages'
/// `content.quality`, else, when every answer came from a simulated agent,
/// the share of correct ones; `None` otherwise (then nothing is evaluated).
fn quality_of(tally: &Tally) -> Option<f64> {
    if !tally.review_scores.is_empty() {
        Some(tally.review_scores.iter().sum::<f64>() / tally.review_scores.len() as f64)
    } else if !tally.not_all_simulated && !tally.truths.is_empty() {
        Some(100.0 * tally.truths.iter().filter(|t| t.1).count() as f64 / tally.truths.len() as f64)
    } else {
        None
    }
}

impl Workflows {
    /// The task every agent of `stage` gets (the sequential mode adds the
    /// stage's answers so far to its context).
    fn base_task(
        &self,
        def: &WorkflowDef,
        stage: &StageDef,
        run: &WorkflowRun,
        correlation: &str,
        tally: &Tally,
    ) -> Task {
        Task {
            id: Uuid::nil(),
            workspace_id: run.workspace_id,
            workflow_id: run.id.to_string(),
            correlation_id: correlation.to_owned(),
            workflow: def.name.clone(),
            stage: stage.name.clone(),
            recommendation_type: stage.recommendation_type.clone(),
            input: run.input.clone(),
            context: Value::Object(tally.context.clone()),
        }
    }

    fn stage_timeout(&self, stage: &StageDef) -> Duration {
        Duration::from_millis(stage.timeout_ms.unwrap_or(self.config.default_timeout_ms))
    }

    /// Adds a completed stage's record to the tally; returns the
    /// recommendations to track now: every answer's when `stored` is `None`
    /// (the stage just ran), else the recorded ones the store misses (a
    /// resumed run whose node died between storing and tracking, or in
    /// `write_behind` mode before the flush).
    fn absorb(
        &self,
        stage: &StageDef,
        report: &StageReport,
        base: &Task,
        registered: &BTreeMap<AgentId, Agent>,
        stored: Option<&HashSet<Uuid>>,
        tally: &mut Tally,
    ) -> Vec<Recommendation> {
        let timeout = self.stage_timeout(stage);
        let mut answers = Vec::new();
        let mut track = Vec::new();
        for a in &report.agents {
            let AgentOutcome::Ok { answer, latency_ms } = &a.result.outcome else {
                continue;
            };
            answers.push(json!({"agent_id": a.result.agent_id, "content": answer.content, "confidence": answer.confidence}));
            tally.not_all_simulated |= a.ground_truth.is_none();
            if a.deferred {
                if let Some(q) = answer.content.get("quality").and_then(Value::as_f64) {
                    tally.review_scores.push(q.clamp(0.0, 100.0));
                }
            }
            if let Some(id) = a.recommendation_id {
                if !a.deferred {
                    tally.tracked_any = true;
                }
                let missing = stored.is_none_or(|s| !s.contains(&id));
                if missing {
                    let name = registered
                        .get(&a.result.agent_id)
                        .map_or_else(|| a.result.agent_id.to_string(), |x| x.name.clone());
                    let mut rec = recommendation(
                        base,
                        a.result.agent_id.clone(),
                        name,
                        answer,
                        *latency_ms,
                        timeout,
                    );
                    rec.id = id;
                    if a.deferred {
                        tally.deferred.push(rec);
                    } else {
                        track.push(rec);
                    }
                }
            }
            if let Some(good) = a.ground_truth {
                tally.truths.push((a.recommendation_id, good));
            }
        }
        tally
            .context
            .insert(report.name.clone(), Value::Array(answers));
        track
    }

    /// Stores `progress` with a renewed lease; `LeaseLost` when another
    /// node claimed the run.
    async fn checkpoint(&self, run: &mut WorkflowRun, progress: &Progress) -> Result<(), Halt> {
        run.progress = Some(serde_json::to_value(progress).map_err(|e| {
            EngineError::Conflict(format!("could not serialise the run's progress: {e}"))
        })?);
        if let Some(l) = run.lease.as_mut() {
            l.until = self.lease_until();
        }
        if crate::trace::store_call("save_progress", self.journal.progress(run)).await? {
            Ok(())
        } else {
            Err(Halt::LeaseLost)
        }
    }

    /// Runs `run` from after its last stored stage to the end or to a pause.
    pub(super) async fn run_stages(
        &self,
        def: &WorkflowDef,
        run: &mut WorkflowRun,
    ) -> Result<Step, Halt> {
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
        let mut progress = Progress::of(run)?;
        if progress.stages.len() > def.stages.len() {
            return Err(EngineError::Conflict(format!(
                "the run recorded {} stages but workflow {:?} now has {}; its definition changed under it",
                progress.stages.len(),
                def.name,
                def.stages.len()
            ))
            .into());
        }
        let mut tally = Tally::default();
        if !progress.stages.is_empty() {
            // Resumed: rebuild the tally from the records, and re-track what
            // the store misses.
            let stored: HashSet<Uuid> = if learning {
                self.store
                    .workflow_recommendations(ws, &run.id.to_string())
                    .await?
                    .into_iter()
                    .map(|r| r.id)
                    .collect()
            } else {
                HashSet::new()
            };
            let mut missing = Vec::new();
            for (stage, report) in def.stages.iter().zip(&progress.stages) {
                let base = self.base_task(def, stage, run, &correlation, &tally);
                missing.extend(self.absorb(
                    stage,
                    report,
                    &base,
                    &registered,
                    Some(&stored),
                    &mut tally,
                ));
            }
            if !missing.is_empty() && learning {
                self.engine.track(missing).await?;
            }
            metrics::counter!("swarmwise_workflow_runs_resumed_total").increment(1);
            tracing::info!(run = %run.id, stages_done = progress.stages.len(), "resuming the run after its last stored stage");
            // Its node stored the approval stage but died before pausing.
            if progress
                .stages
                .last()
                .and_then(|s| s.approval.as_ref())
                .is_some_and(ApprovalRecord::is_pending)
            {
                return self.pause(def, run, &progress).await;
            }
        }
        let done = progress.stages.len();
        let last = def.stages.len().saturating_sub(1);
        // The last stage's answers when the evaluation follows at once: they
        // are not tracked but recorded, already judged, by the evaluation's
        // own transaction (one write per row instead of three operations).
        let mut fresh: Vec<Recommendation> = Vec::new();
        for (i, stage) in def.stages.iter().enumerate().skip(done) {
            let timeout = self.stage_timeout(stage);
            let candidates = self.candidates(ws, stage, &registered);
            let base = self.base_task(def, stage, run, &correlation, &tally);
            let stage_span = crate::trace::stage_span(&stage.name, candidates.len());
            let (completed_by, results) = match stage.mode {
                StageMode::Parallel => {
                    self.ask(
                        ws,
                        stage,
                        &candidates,
                        &registered,
                        &base,
                        run.priority,
                        timeout,
                    )
                    .instrument(stage_span.clone())
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
                            .ask(
                                ws,
                                stage,
                                std::slice::from_ref(agent),
                                &registered,
                                &task,
                                run.priority,
                                timeout,
                            )
                            .instrument(stage_span.clone())
                            .await;
                        last = c;
                        for (x, _) in &r {
                            if let AgentOutcome::Ok { answer, .. } = &x.outcome {
                                so_far.push(json!({"agent_id": x.agent_id, "content": answer.content, "confidence": answer.confidence}));
                            }
                        }
                        all.append(&mut r);
                    }
                    (last, all)
                }
            };
            let agents: Vec<StageAgent> = results
                .into_iter()
                .map(|(result, attempts)| {
                    let (recommendation_id, ground_truth, deferred) = match &result.outcome {
                        AgentOutcome::Ok { answer, .. } => (
                            learning.then(Uuid::now_v7),
                            answer.ground_truth,
                            stage.review
                                && answer
                                    .content
                                    .get("quality")
                                    .and_then(Value::as_f64)
                                    .is_some(),
                        ),
                        _ => (None, None, false),
                    };
                    StageAgent {
                        result,
                        recommendation_id,
                        attempts,
                        ground_truth,
                        deferred,
                    }
                })
                .collect();
            let mut report = StageReport {
                name: stage.name.clone(),
                recommendation_type: stage.recommendation_type.clone(),
                completed_by,
                agents,
                aggregate: None,
                approval: None,
                completed_at: Some(to_micros(Utc::now())),
            };
            report.aggregate = match stage.aggregate {
                Some(Aggregate::TrustVote) => self.trust_vote(ws, stage, &report.agents),
                None => None,
            };
            if stage.approval {
                let secs = stage
                    .approval_timeout_secs
                    .unwrap_or(self.config.approval_timeout_secs);
                report.approval = Some(ApprovalRecord::pending(
                    to_micros(Utc::now())
                        + chrono::TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 2)),
                ));
            }
            let track = self.absorb(stage, &report, &base, &registered, None, &mut tally);
            progress.stages.push(report);
            self.checkpoint(run, &progress).await?;
            let evaluated_next = i == last
                && !stage.approval
                && !progress.evaluated
                && tally.tracked_any
                && quality_of(&tally).is_some();
            if learning && evaluated_next {
                fresh = track;
            } else if learning && !track.is_empty() {
                let span = stage_span.in_scope(|| crate::trace::track_span(track.len()));
                self.engine.track(track).instrument(span).await?;
            }
            drop(stage_span);
            self.events.publish(Event::WorkflowProgress {
                workspace_id: ws,
                run_id: run.id.to_string(),
                stage: stage.name.clone(),
                status: "running".into(),
            });
            if stage.approval {
                return self.pause(def, run, &progress).await;
            }
        }
        let quality = quality_of(&tally);
        if !progress.evaluated {
            if let (true, true, Some(q)) = (learning, tally.tracked_any, quality) {
                let verdicts = tally
                    .truths
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
                let span = crate::trace::evaluation_span(ws, &run.id.to_string());
                let evaluated = self
                    .engine
                    .evaluate(Evaluate {
                        workspace: ws,
                        workflow_id: run.id.to_string(),
                        overall_quality: QualityScore::parse("quality", q)?,
                        verdicts,
                        feedback: None,
                        fresh: fresh.clone(),
                    })
                    .instrument(span.clone())
                    .await;
                if let Ok(summary) = &evaluated {
                    span.record("evaluated", summary.evaluated);
                }
                drop(span);
                match evaluated {
                    Ok(summary) => {
                        self.cycles.outcomes_evaluated(ws, summary.evaluated);
                        progress.evaluation = Some(summary);
                    }
                    // Nothing pending: every answer got a person's verdict at
                    // an approval step, or a resumed run's evaluation had
                    // happened before its node died.
                    Err(EngineError::Conflict(_)) => self.track_unjudged(fresh).await?,
                    Err(e) => {
                        // The answers are tracked all the same (a bad row
                        // goes to the dead letters), then the run fails.
                        self.track_unjudged(fresh).await?;
                        return Err(e.into());
                    }
                }
            } else if learning && !fresh.is_empty() {
                self.track_unjudged(fresh).await?;
            }
            progress.evaluated = true;
            if !tally.deferred.is_empty() {
                // Stored before the reviewers' answers are tracked, so a
                // resumed run never evaluates them.
                self.checkpoint(run, &progress).await?;
            }
        }
        if learning && !tally.deferred.is_empty() {
            self.engine
                .track(std::mem::take(&mut tally.deferred))
                .await?;
        }
        let result = assemble(&progress.stages, def, quality);
        run.progress = serde_json::to_value(&progress).ok();
        Ok(Step::Done(RunReport {
            run_id: run.id,
            workflow: def.name.clone(),
            status: RunStatus::Succeeded,
            quality,
            result,
            stages: progress.stages,
            evaluation: progress.evaluation,
            error: None,
        }))
    }

    /// Tracks a last stage's answers whose evaluation did not record them.
    async fn track_unjudged(&self, fresh: Vec<Recommendation>) -> Result<(), EngineError> {
        if fresh.is_empty() {
            return Ok(());
        }
        self.engine.track(fresh).await.map(|_| ())
    }

    /// Stores the run `awaiting_approval` (its last stage's answers shown,
    /// the lease dropped) and tells the workspace's event stream.
    async fn pause(
        &self,
        def: &WorkflowDef,
        run: &mut WorkflowRun,
        progress: &Progress,
    ) -> Result<Step, Halt> {
        let Some(stage) = progress.stages.last() else {
            return Err(EngineError::Conflict("nothing to approve".into()).into());
        };
        run.approval_deadline = stage.approval.as_ref().map(|a| a.deadline);
        run.progress = Some(serde_json::to_value(progress).map_err(|e| {
            EngineError::Conflict(format!("could not serialise the run's progress: {e}"))
        })?);
        if !crate::trace::store_call("pause_run", self.store.pause_run(run)).await? {
            return Err(Halt::LeaseLost);
        }
        run.status = RunStatus::AwaitingApproval;
        metrics::counter!("swarmwise_workflow_approvals_total", "decision" => "requested", "by" => "runner")
            .increment(1);
        self.events.publish(Event::WorkflowProgress {
            workspace_id: run.workspace_id,
            run_id: run.id.to_string(),
            stage: stage.name.clone(),
            status: RunStatus::AwaitingApproval.as_str().into(),
        });
        Ok(Step::Paused(RunReport {
            run_id: run.id,
            workflow: def.name.clone(),
            status: RunStatus::AwaitingApproval,
            quality: None,
            result: Value::Null,
            stages: progress.stages.clone(),
            evaluation: None,
            error: None,
        }))
    }

    /// One barrier over `agents`, then up to `stage.retries` more over the
    /// agents whose call failed (an error or an invalid answer), each after
    /// its backoff. A stage completed by its quorum is not retried (it has
    /// what it needs); timeouts and skips are not retried. Returns the
    /// completion of the first barrier and every agent's last result with
    /// its number of calls.
    #[allow(clippy::too_many_arguments)]
    async fn ask(
        &self,
        ws: WorkspaceId,
        stage: &StageDef,
        agents: &[AgentId],
        registered: &BTreeMap<AgentId, Agent>,
        base: &Task,
        requested: Priority,
        timeout: Duration,
    ) -> (Completion, Vec<(AgentResult, u32)>) {
        let (completed_by, first) = self
            .fan_out(ws, stage, agents, registered, base, requested, timeout)
            .await;
        let mut results: Vec<(AgentResult, u32)> = first
            .into_iter()
            .map(|r| {
                let calls = u32::from(matches!(
                    r.outcome,
                    AgentOutcome::Ok { .. } | AgentOutcome::Error { .. } | AgentOutcome::Timeout
                ));
                (r, calls)
            })
            .collect();
        if completed_by == Completion::Quorum {
            return (completed_by, results);
        }
        for n in 1..=stage.retries {
            let failed: Vec<AgentId> = results
                .iter()
                .filter(|(r, _)| matches!(r.outcome, AgentOutcome::Error { .. }))
                .map(|(r, _)| r.agent_id.clone())
                .collect();
            if failed.is_empty() {
                break;
            }
            let wait = stage.backoff(n, self.config.max_backoff_ms);
            tracing::info!(stage = %stage.name, retry = n, agents = failed.len(), wait_ms = wait.as_millis() as u64, "retrying failed agent calls of the stage");
            metrics::counter!("swarmwise_workflow_stage_retries_total")
                .increment(failed.len() as u64);
            tokio::time::sleep(wait).await;
            let (_, again) = self
                .fan_out(ws, stage, &failed, registered, base, requested, timeout)
                .await;
            for r in again {
                if let Some(slot) = results.iter_mut().find(|(x, _)| x.agent_id == r.agent_id) {
                    slot.1 += u32::from(!matches!(r.outcome, AgentOutcome::Skipped { .. }));
                    slot.0 = r;
                }
            }
        }
        (completed_by, results)
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
