//! `Engine`: the handle the service holds. Starts the supervised actors and
//! offers their operations as async methods, so callers never see actix.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::admission::controller::AdmissionPolicy;
use crate::admission::AdmissionController;
use crate::domain::{AgentFailure, AgentId, Priority, Recommendation, WorkspaceId};
use crate::error::EngineError;
use crate::events::EventBus;
use crate::learner::agreement::AgreementEstimate;
use crate::ports::Store;
use crate::supervisor::{HealthRegistry, RestartPolicy};
use crate::tracker::{
    Drain, Evaluate, EvaluationSummary, Feedback, Flush, FlushWorkspace, RecommendationTracker,
    Track, TrackRefusal, TrackerConfig, TryTrack, WorkspaceWrites, WriterReport, WriterStatus,
};
use crate::trust::{
    FailuresRecorded, Ping, Recompute, RefreshAgents, Restart, TrustParams, TrustScorer,
    TrustSnapshots, WorkspaceSnapshot,
};

/// Restart policies per actor kind (config `[supervision.*]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// The recommendation tracker.
    pub tracker: RestartPolicy,
    /// The trust scorer.
    pub trust_scorer: RestartPolicy,
    /// The meta-learner.
    pub meta_learner: RestartPolicy,
    /// The alerter.
    pub alerter: RestartPolicy,
}

/// Everything the engine is configured with.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// `learning.enabled`: false turns tracking and learning off (rollback switch).
    pub learning_enabled: bool,
    /// `[tracking]`.
    pub tracking: TrackerConfig,
    /// `[trust]`.
    pub trust: TrustParams,
    /// `[supervision]`.
    pub supervision: SupervisionConfig,
    /// `[alerts.quarantine]` with `agents.probation_every` and
    /// `agents.disable_min_samples`.
    pub admission: AdmissionPolicy,
}

/// Handle to the running engine; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    /// Where failed executions are recorded (they bypass the tracker's
    /// write-behind buffer: they are few, and trust must see them in order).
    store: Arc<dyn Store>,
    tracker: Addr<RecommendationTracker>,
    scorer: Addr<TrustScorer>,
    snapshots: TrustSnapshots,
    params: Arc<TrustParams>,
    health: HealthRegistry,
    pending: Arc<AtomicU64>,
    learning_enabled: bool,
    events: EventBus,
    revisions: Arc<dashmap::DashMap<WorkspaceId, u64>>,
    writer: Arc<WriterStatus>,
    /// Read-your-writes per workspace (`flush_workspace`).
    writes: WorkspaceWrites,
    stalled_after_ms: u64,
    agreement: Arc<dashmap::DashMap<WorkspaceId, Arc<AgreementEstimate>>>,
    admission: AdmissionController,
}

fn mailbox(e: MailboxError) -> EngineError {
    match e {
        MailboxError::Closed => EngineError::ShuttingDown,
        MailboxError::Timeout => {
            EngineError::Overloaded("the engine did not answer in time; retry shortly".into())
        }
    }
}

impl Engine {
    /// Starts the trust scorer and the tracker under supervisors. Must be
    /// called inside a running actix system (e.g. `#[actix_web::main]`).
    pub fn start(store: Arc<dyn Store>, config: EngineConfig) -> Self {
        let params = Arc::new(config.trust);
        let health = HealthRegistry::default();
        let snapshots = TrustSnapshots::new(Arc::clone(&params));
        let events = EventBus::default();
        let revisions: Arc<dashmap::DashMap<WorkspaceId, u64>> = Arc::default();
        let stalled_after_ms = config.tracking.stalled_after_ms;
        let scorer = TrustScorer::start_supervised(
            Arc::clone(&store),
            Arc::clone(&params),
            snapshots.clone(),
            config.supervision.trust_scorer,
            health.clone(),
            events.clone(),
        );
        let (tracker, pending, writer, writes) = RecommendationTracker::start_supervised(
            config.tracking,
            Arc::clone(&store),
            Arc::clone(&params),
            scorer.clone(),
            config.supervision.tracker,
            health.clone(),
            Arc::clone(&revisions),
        );
        let admission = AdmissionController::new(
            Arc::clone(&store),
            snapshots.clone(),
            events.clone(),
            config.admission,
        );
        admission.spawn();
        Self {
            store,
            tracker,
            scorer,
            snapshots,
            params,
            health,
            pending,
            learning_enabled: config.learning_enabled,
            events,
            revisions,
            writer,
            writes,
            stalled_after_ms,
            agreement: Arc::default(),
            admission,
        }
    }

    /// The admission controller: quarantine (the `Alerter`'s
    /// `AgentAdmission`), probation, re-admission, operator overrides.
    pub fn admission(&self) -> &AdmissionController {
        &self.admission
    }

    /// What the latest learning cycle of `ws` learned from agreement among
    /// agents (`learner/agreement.rs`), if one ran since start-up.
    pub fn agreement(&self, ws: WorkspaceId) -> Option<Arc<AgreementEstimate>> {
        self.agreement.get(&ws).map(|e| Arc::clone(e.value()))
    }

    /// Publishes a cycle's agreement estimate for `ws` (read by the trust
    /// vote of workflow runs).
    pub fn set_agreement(&self, ws: WorkspaceId, estimate: Arc<AgreementEstimate>) {
        self.agreement.insert(ws, estimate);
    }

    /// How many times an already evaluated verdict of `ws` changed since
    /// start; readers that load outcomes incrementally reload when it moves.
    pub fn verdict_revision(&self, ws: WorkspaceId) -> u64 {
        self.revisions.get(&ws).map_or(0, |r| *r)
    }

    /// The live event bus.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Whether learning (tracking, evaluation, trust) is on.
    pub fn learning_enabled(&self) -> bool {
        self.learning_enabled
    }

    fn check_enabled(&self) -> Result<(), EngineError> {
        if self.learning_enabled {
            Ok(())
        } else {
            Err(EngineError::LearningDisabled)
        }
    }

    /// Tracks validated recommendations; see [`Track`].
    pub async fn track(&self, recs: Vec<Recommendation>) -> Result<Vec<Uuid>, EngineError> {
        self.check_enabled()?;
        self.tracker.send(Track(recs)).await.map_err(mailbox)?
    }

    /// Tracks like [`Engine::track`], with backpressure: while
    /// `tracking.max_pending` rows wait for the store, waits for commits to
    /// make room, at most `wait`, then sheds with `Overloaded` (503 +
    /// `Retry-After`). All or none: a shed request left nothing behind.
    pub async fn track_waiting(
        &self,
        mut recs: Vec<Recommendation>,
        wait: std::time::Duration,
    ) -> Result<Vec<Uuid>, EngineError> {
        self.check_enabled()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut commits = self.writes.commits();
        let mut waited = false;
        loop {
            // A commit after this point wakes the wait below.
            commits.borrow_and_update();
            match self.tracker.send(TryTrack(recs)).await.map_err(mailbox)? {
                Ok(ids) => return Ok(ids),
                Err(TrackRefusal::Failed(e)) => return Err(e),
                Err(TrackRefusal::Full { recs: back, limit }) => {
                    if !waited {
                        waited = true;
                        metrics::counter!("swarmwise_tracker_backpressure_waits_total")
                            .increment(1);
                    }
                    let woke = tokio::time::timeout_at(deadline, commits.changed()).await;
                    if !matches!(woke, Ok(Ok(()))) {
                        metrics::counter!("swarmwise_tracker_rejected_total")
                            .increment(back.len() as u64);
                        return Err(crate::tracker::overloaded(limit));
                    }
                    recs = back;
                }
            }
        }
    }

    /// Evaluates a workflow; see [`Evaluate`].
    pub async fn evaluate(&self, msg: Evaluate) -> Result<EvaluationSummary, EngineError> {
        self.check_enabled()?;
        self.tracker.send(msg).await.map_err(mailbox)?
    }

    /// Human feedback; see [`Feedback`].
    pub async fn feedback(&self, msg: Feedback) -> Result<Recommendation, EngineError> {
        self.check_enabled()?;
        self.tracker.send(msg).await.map_err(mailbox)?
    }

    /// Records failed executions (errors, timeouts, invalid answers) of
    /// agents of `ws` and folds them into their reliability; replies once
    /// trust has them, so an evaluation sent afterwards is folded after them.
    pub async fn record_failures(
        &self,
        ws: WorkspaceId,
        failures: Vec<AgentFailure>,
    ) -> Result<(), EngineError> {
        self.check_enabled()?;
        if failures.is_empty() {
            return Ok(());
        }
        self.store.insert_failures(ws, &failures).await?;
        for f in &failures {
            metrics::counter!("swarmwise_agent_failures_total", "kind" => f.kind.as_str())
                .increment(1);
        }
        self.scorer
            .send(FailuresRecorded {
                workspace: ws,
                failures,
            })
            .await
            .map_err(mailbox)
    }

    /// Waits until everything tracked so far is committed.
    pub async fn flush(&self) -> Result<(), EngineError> {
        self.tracker.send(Flush).await.map_err(mailbox)?
    }

    /// Waits until everything `ws` tracked so far is committed; rows of
    /// other workspaces still in flight are not waited for. Reads of a
    /// workspace with nothing in flight return at once, without a message
    /// to the tracker. Bounded by `tracking.read_flush_timeout_ms`.
    pub async fn flush_workspace(&self, ws: WorkspaceId) -> Result<(), EngineError> {
        if self.writes.settled(ws) {
            return Ok(());
        }
        self.tracker
            .send(FlushWorkspace(ws))
            .await
            .map_err(mailbox)?
    }

    /// Shutdown: refuse new tracking, wait until everything acknowledged is
    /// committed, at most `timeout`; past it, `DrainIncomplete` says how many
    /// rows were not written (they are logged).
    pub async fn drain(&self, timeout: std::time::Duration) -> Result<(), EngineError> {
        self.tracker
            .send(Drain { timeout })
            .await
            .map_err(mailbox)?
    }

    /// What the write-behind writer is doing (for `/readyz`).
    pub fn writer(&self) -> WriterReport {
        self.writer.report(self.stalled_after_ms)
    }

    /// Recomputes trust from the store (one workspace or all) and publishes it.
    pub async fn recompute_trust(&self, workspace: Option<WorkspaceId>) -> Result<(), EngineError> {
        self.scorer
            .send(Recompute { workspace })
            .await
            .map_err(mailbox)?
    }

    /// Rebuilds the trust of `agents` of `ws` from the store and publishes
    /// it, without persisting cards or publishing events: for changes
    /// another process committed (the change feed). Replies once published.
    pub async fn refresh_trust(
        &self,
        ws: WorkspaceId,
        agents: Vec<AgentId>,
    ) -> Result<(), EngineError> {
        self.scorer
            .send(RefreshAgents {
                workspace: ws,
                agents,
            })
            .await
            .map_err(mailbox)?
    }

    /// Another process overrode an already evaluated verdict of `ws`:
    /// moves [`Self::verdict_revision`], so readers that cache outcomes
    /// (the learner) reload them.
    pub fn note_verdicts_revised(&self, ws: WorkspaceId) {
        *self.revisions.entry(ws).or_insert(0) += 1;
    }

    /// Stops the trust scorer so that its supervisor restarts it.
    pub fn restart_trust_scorer(&self, reason: &str) {
        self.scorer.do_send(Restart {
            reason: reason.into(),
        });
    }

    /// Waits until the trust scorer handled everything sent before (and
    /// finished reloading if it was restarting).
    pub async fn trust_settled(&self) -> Result<(), EngineError> {
        self.scorer.send(Ping).await.map_err(mailbox)
    }

    /// Stops the tracker so that its supervisor restarts it.
    pub fn restart_tracker(&self, reason: &str) {
        self.tracker.do_send(Restart {
            reason: reason.into(),
        });
    }

    /// The current trust snapshot of a workspace; never waits on an actor.
    pub fn trust(&self, ws: WorkspaceId) -> Arc<WorkspaceSnapshot> {
        self.snapshots.get(ws)
    }

    /// Every workspace with a trust snapshot (the alerter's tick walks them).
    pub fn trust_workspaces(&self) -> Vec<WorkspaceId> {
        self.snapshots.workspaces()
    }

    /// Boost of an agent on a type and the priority it gives a NORMAL task.
    pub fn boost(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        recommendation_type: Option<&str>,
    ) -> (f64, Priority) {
        let boost = if self.learning_enabled {
            self.snapshots.boost(ws, agent, recommendation_type)
        } else {
            0.0
        };
        (boost, self.params.priority_for(Priority::Normal, boost))
    }

    /// The trust maths' parameters.
    pub fn params(&self) -> &TrustParams {
        &self.params
    }

    /// Health of the supervised actors.
    pub fn health(&self) -> &HealthRegistry {
        &self.health
    }

    /// Recommendations acknowledged but not yet committed.
    pub fn pending_writes(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}
