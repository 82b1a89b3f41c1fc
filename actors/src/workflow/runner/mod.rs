//! Runs workflow definitions over the swarm. By concern: this file holds
//! the runner's types and a run's life (create, execute, settle, hand over
//! at shutdown); [`stages`] runs the stages (fan-out with retries, tracking,
//! evaluation); [`durable`] makes runs survive their node (per-stage
//! progress, leases with fencing tokens, the sweeper that takes over runs
//! and enforces approval deadlines, approve/reject); [`selection`] picks a
//! stage's agents; [`judging`] votes and assembles the result; [`records`]
//! builds what is tracked and the failures.
//!
//! Per stage: choose agents (listed, or "top N by trust" by Thompson
//! sampling from each agent's posterior, `trust/select.rs`), skip the ones that
//! are disabled, unhealthy, not run by the runtime, or below the trust
//! threshold (except for a periodic probation probe), schedule each task at
//! the class its trust boost gives it, gather replies with a
//! `FanOutBarrier`, retry failed calls (`retries`, `backoff_ms`), store the
//! stage's record, then track every answer. After the last stage the run's
//! quality comes from its review stage (`content.quality`; the reviewer's
//! own answer is tracked after that evaluation, so it never grades itself)
//! or, when every answer is from a simulated agent, from ground truth; the
//! outcome is evaluated with it and the learning-cycle port is told.
//!
//! With `learning.enabled = false` nothing is tracked, boosts are 0 and no
//! agent is skipped for trust: the runtime is a plain orchestrator (runs are
//! still durable and approvals still work).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::definition::{ApprovalAction, OnRestart, WorkflowDef};
use super::{RunLease, RunStatus, WorkflowRun};
use crate::barrier::{AgentResult, Completion};
use crate::cluster::NodeId;
use crate::domain::{to_micros, Priority, WorkspaceId};
use crate::engine::Engine;
use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::ports::Store;
use crate::swarm::Swarm;
use crate::tracker::EvaluationSummary;

pub mod durable;
mod journal;
pub mod judging;
pub mod records;
pub mod selection;
mod stages;

use super::trigger::CycleTrigger;
pub use durable::{ApprovalRecord, Decision, Progress, SweepReport};
use journal::RunJournal;
use stages::{Halt, Step};

/// Config section `[workflows]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowsConfig {
    /// Folder of `*.toml` workflow definitions.
    pub dir: String,
    /// Stage deadline when a stage sets none, in milliseconds.
    pub default_timeout_ms: u64,
    /// Seconds a node's lease on a run it executes lasts; renewed every
    /// third of it while the node lives. A run whose node died is taken over
    /// by another node (or the node itself at restart) within about this.
    pub lease_secs: u64,
    /// Cap of a stage's retry backoff, in milliseconds.
    pub max_backoff_ms: u64,
    /// Seconds a paused run waits for approve/reject before
    /// `approval_default_action` applies (a stage may override).
    pub approval_timeout_secs: u64,
    /// What the approval deadline does: `reject` or `approve`.
    pub approval_default_action: ApprovalAction,
    /// Runs one sweep claims at most (expired leases, due approvals), so
    /// several nodes share a burst of takeovers.
    pub sweep_batch: u32,
    /// Group commit of runs' writes (creation, stage checkpoints, end): at
    /// most this many share a transaction.
    pub write_batch_size: usize,
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        Self {
            dir: "config/workflows".into(),
            default_timeout_ms: 120_000,
            lease_secs: 15,
            max_backoff_ms: 30_000,
            approval_timeout_secs: 86_400,
            approval_default_action: ApprovalAction::Reject,
            sweep_batch: 16,
            write_batch_size: 512,
        }
    }
}

impl WorkflowsConfig {
    /// How often a node renews its leases and sweeps: a third of the lease.
    pub fn sweep_every(&self) -> Duration {
        Duration::from_millis((self.lease_secs.max(1) * 1000) / 3)
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

fn one() -> u32 {
    1
}

/// One agent's line in a stage report (and in the stored stage record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageAgent {
    /// Outcome and latency.
    #[serde(flatten)]
    pub result: AgentResult,
    /// The tracked recommendation, if the answer was tracked.
    pub recommendation_id: Option<Uuid>,
    /// Calls made: 1, plus the retries a failed call used (`retries`).
    #[serde(default = "one")]
    pub attempts: u32,
    /// A simulated agent's ground truth (kept so a resumed run evaluates
    /// with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ground_truth: Option<bool>,
    /// A reviewer's answer that judged the run: tracked after the
    /// evaluation it drove, so it never grades itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deferred: bool,
}

/// One stage's report, stored as the stage's record when it completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<crate::trust::consensus::TrustVote>,
    /// The approval step of a stage with `approval = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// When the stage completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A finished (or paused) run.
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

impl RunReport {
    fn failed(run: &WorkflowRun, stages: Vec<StageReport>, error: String) -> Self {
        Self {
            run_id: run.id,
            workflow: run.workflow.clone(),
            status: RunStatus::Failed,
            quality: None,
            result: Value::Null,
            stages,
            evaluation: None,
            error: Some(error),
        }
    }
}

/// The end of a lease granted at `now` for `lease_secs`, in microseconds
/// (as stored).
fn lease_end(now: DateTime<Utc>, lease_secs: u64) -> DateTime<Utc> {
    to_micros(now) + chrono::TimeDelta::seconds(i64::try_from(lease_secs).unwrap_or(30))
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
    /// This node: the owner written into the lease of every run it executes.
    node: NodeId,
    /// Runs this process is executing, by id (with the lease they were
    /// claimed under): removed once their final state is stored, so
    /// whatever is left at shutdown is handed over (lease released) or
    /// failed, per its definition's `on_restart`.
    in_flight: Arc<DashMap<Uuid, WorkflowRun>>,
    /// Woken whenever a run leaves `in_flight`.
    settled: Arc<tokio::sync::Notify>,
    /// Set by [`Self::hand_over_in_flight`]: the sweeper must not renew the
    /// leases this node just released.
    handed_over: Arc<std::sync::atomic::AtomicBool>,
    /// Group commit of the hot path's run writes.
    journal: RunJournal,
    /// The earliest end of any lease this process grants (its start plus
    /// `workflows.lease_secs`): a run of this node id whose lease ends
    /// before it was leased by an earlier process (a leftover), never by
    /// this one, which is how the sweeper tells the two apart.
    first_lease_end: DateTime<Utc>,
}

impl Workflows {
    /// A runner over validated definitions, executing runs as `node`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        defs: Vec<WorkflowDef>,
        engine: Engine,
        swarm: Swarm,
        store: Arc<dyn Store>,
        events: EventBus,
        cycles: Arc<dyn CycleTrigger>,
        config: WorkflowsConfig,
        node: NodeId,
    ) -> Self {
        let journal = RunJournal::spawn(Arc::clone(&store), config.write_batch_size.max(1));
        let first_lease_end = lease_end(Utc::now(), config.lease_secs);
        Self {
            first_lease_end,
            defs: Arc::new(defs.into_iter().map(|d| (d.name.clone(), d)).collect()),
            engine,
            swarm,
            store,
            journal,
            events,
            cycles,
            config: Arc::new(config),
            node,
            in_flight: Arc::default(),
            settled: Arc::default(),
            handed_over: Arc::default(),
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

    /// The `[workflows]` settings in force.
    pub fn config(&self) -> &WorkflowsConfig {
        &self.config
    }

    /// A fresh lease of this node ending `workflows.lease_secs` from now.
    /// Never before [`Self::first_lease_end`], even if the wall clock
    /// stepped back since the start: the first sweep tells this process's
    /// runs from leftovers by it.
    fn lease_until(&self) -> DateTime<Utc> {
        lease_end(Utc::now(), self.config.lease_secs).max(self.first_lease_end)
    }

    /// The ids of the runs this process is executing.
    fn executing(&self) -> Vec<Uuid> {
        self.in_flight.iter().map(|e| *e.key()).collect()
    }

    /// Validates the request and records the run as running, leased to this
    /// node; returns the row.
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
            progress: None,
            approval_deadline: None,
            lease: Some(RunLease {
                owner: self.node.to_string(),
                fencing: 1,
                until: self.lease_until(),
            }),
        };
        crate::trace::store_call("insert_run", self.journal.insert(&run))
            .instrument(crate::trace::run_span(run.id, &run.workflow, ws))
            .await?;
        Ok(run)
    }

    /// Runs a created (or claimed) run until it ends or pauses for
    /// approval, storing its progress stage by stage and its report, in the
    /// run's span (a child of the caller's: the request that started it).
    /// A run with stored progress continues after its last completed stage.
    pub async fn execute(&self, run: WorkflowRun) -> Result<RunReport, EngineError> {
        let span = crate::trace::run_span(run.id, &run.workflow, run.workspace_id);
        self.execute_traced(run).instrument(span).await
    }

    async fn execute_traced(&self, run: WorkflowRun) -> Result<RunReport, EngineError> {
        let Some(def) = self.defs.get(&run.workflow).cloned() else {
            let mut done = run;
            let error = format!(
                "workflow definition {:?} is not loaded on node {}; add it to workflows.dir on every node",
                done.workflow, self.node
            );
            let report = RunReport::failed(&done, Vec::new(), error);
            done.status = RunStatus::Failed;
            done.result = serde_json::to_value(&report).ok();
            done.error.clone_from(&report.error);
            done.finished_at = Some(to_micros(Utc::now()));
            self.store.finish_run(&done).await?;
            return Ok(report);
        };
        self.in_flight.insert(run.id, run.clone());
        let mut run = run;
        let outcome = self.run_stages(&def, &mut run).await;
        let report = match outcome {
            Ok(Step::Done(r)) => r,
            Ok(Step::Paused(r)) => {
                self.leave(run.id);
                return Ok(r);
            }
            Err(Halt::LeaseLost) => {
                self.leave(run.id);
                return Err(self.lease_lost(&run));
            }
            Err(Halt::Failed(e)) => {
                let stages = Progress::of(&run).map(|p| p.stages).unwrap_or_default();
                RunReport::failed(&run, stages, e.to_string())
            }
        };
        let mut done = run;
        done.status = report.status;
        done.result = serde_json::to_value(&report).ok();
        done.error.clone_from(&report.error);
        done.finished_at = Some(to_micros(Utc::now()));
        let done = Arc::new(done);
        let stored = crate::trace::store_call("finish_run", self.journal.finish(&done)).await;
        self.leave(done.id);
        if !stored? {
            return Err(self.lease_lost(&done));
        }
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

    /// The run left this process (finished, paused, or lost).
    fn leave(&self, id: Uuid) {
        self.in_flight.remove(&id);
        self.settled.notify_waiters();
    }

    fn lease_lost(&self, run: &WorkflowRun) -> EngineError {
        metrics::counter!("swarmwise_workflow_leases_lost_total").increment(1);
        tracing::warn!(run = %run.id, workspace = %run.workspace_id, node = %self.node, "this node lost its lease on the run (another node claimed it after the lease expired); its writes were refused and the new owner carries on");
        EngineError::Conflict(format!(
            "workflow run {} is executed by another node now (this node's lease expired); read it with GET /api/v1/workflows/runs/{}",
            run.id, run.id
        ))
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

    /// At shutdown, after [`Self::settle`]: every run still in flight is
    /// handed over. Runs whose definition says `on_restart = "resume"` have
    /// their lease ended now, so another node (or this one at restart) takes
    /// them over at once and continues after their last stored stage; the
    /// others are failed with `reason`. A store error is logged with the run
    /// id, never dropped (the lease then simply expires). Returns (released,
    /// failed).
    pub async fn hand_over_in_flight(&self, reason: &str) -> (u64, usize) {
        self.handed_over
            .store(true, std::sync::atomic::Ordering::Release);
        let runs: Vec<WorkflowRun> = self.in_flight.iter().map(|r| r.value().clone()).collect();
        let mut failed = 0;
        for mut run in runs {
            let resume = self
                .defs
                .get(&run.workflow)
                .is_some_and(|d| d.on_restart == OnRestart::Resume);
            if resume {
                continue;
            }
            run.status = RunStatus::Failed;
            run.error = Some(format!("{reason} (on_restart = \"fail\")"));
            run.finished_at = Some(to_micros(Utc::now()));
            run.progress = None;
            match self.store.finish_run(&run).await {
                Ok(_) => {
                    self.in_flight.remove(&run.id);
                    failed += 1;
                }
                Err(e) => {
                    tracing::error!(run = %run.id, workspace = %run.workspace_id, error = %e, "could not fail an unfinished run at shutdown; its lease expires and the node that claims it fails it")
                }
            }
        }
        let released = if self.in_flight.is_empty() {
            0
        } else {
            match self
                .store
                .release_leases(self.node.as_str(), to_micros(Utc::now()))
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(node = %self.node, error = %e, "could not release this node's run leases at shutdown; other nodes take the runs over when the leases expire (workflows.lease_secs)");
                    0
                }
            }
        };
        (released, failed)
    }

    /// Creates and runs to the end (or to a pause for approval).
    pub async fn run(&self, ws: WorkspaceId, req: RunRequest) -> Result<RunReport, EngineError> {
        let run = self.create(ws, &req).await?;
        self.execute(run).await
    }
}
