//! The `RecommendationTracker` actor: the single write path of
//! recommendations and verdicts.
//!
//! - `Track` answers with the ids at once in `write_behind` mode (rows reach
//!   the store in batches, by size or time), or after the batch holding them
//!   committed in `durable` mode (group commit).
//! - `Evaluate` and `Feedback` first wait until everything tracked before
//!   them has committed, then run one at a time (so evaluation times are
//!   monotonic and the trust fold order is the commit order), and tell the
//!   `TrustScorer` after their own commit.
//! - `Drain` (shutdown) refuses new work and returns once every acknowledged
//!   recommendation is on disk.
//!
//! The writer is a tokio task outside the actor: a restart of the actor keeps
//! its buffer (actix's supervisor keeps the instance) and the writer keeps
//! its queue, so nothing acknowledged is lost. In `write_behind` mode a
//! failed batch is retried with backoff until it commits; in `durable` mode
//! its callers get the error (they were never acknowledged).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use uuid::Uuid;

use crate::domain::{
    to_micros, OutcomeSample, ParseError, QualityScore, Recommendation, RecommendationStatus,
    Verdict, VerdictUpdate, WorkspaceId,
};
use crate::error::EngineError;
use crate::ports::{Store, StoreError};
use crate::supervisor::{ActorHealth, HealthRegistry, RestartPolicy, RestartTracker};
use crate::trust::{OutcomesRecorded, RecomputeAgent, Restart, TrustParams, TrustScorer};

const NAME: &str = "recommendation_tracker";

/// When `Track` answers (config `tracking.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Answer after the row committed.
    Durable,
    /// Answer at once; rows are written in batches and on shutdown.
    WriteBehind,
}

/// Config section `[tracking]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerConfig {
    /// `durable` or `write_behind`.
    pub mode: WriteMode,
    /// Flush when this many rows are buffered.
    pub batch_size: usize,
    /// Flush at least this often (write_behind), in milliseconds.
    pub flush_interval_ms: u64,
    /// Refuse tracking (503) while this many rows wait for the store.
    pub max_pending: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            mode: WriteMode::WriteBehind,
            batch_size: 1000,
            flush_interval_ms: 50,
            max_pending: 100_000,
        }
    }
}

/// Track recommendations (already validated, ids assigned). Replies with
/// their ids: at once (write_behind) or after commit (durable).
#[derive(Message, Debug)]
#[rtype(result = "Result<Vec<Uuid>, EngineError>")]
pub struct Track(pub Vec<Recommendation>);

/// An explicit verdict in an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplicitVerdict {
    /// Which recommendation.
    pub recommendation_id: Uuid,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its quality; the workflow's if absent.
    pub quality: Option<QualityScore>,
}

/// Evaluate a workflow's pending recommendations.
#[derive(Message, Debug)]
#[rtype(result = "Result<EvaluationSummary, EngineError>")]
pub struct Evaluate {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Workflow whose recommendations are judged.
    pub workflow_id: String,
    /// Overall quality of the workflow's result.
    pub overall_quality: QualityScore,
    /// Verdicts that override the derived ones.
    pub verdicts: Vec<ExplicitVerdict>,
    /// Feedback text stored on every evaluated recommendation.
    pub feedback: Option<String>,
}

/// Counts per status after an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvaluationSummary {
    /// The workflow.
    pub workflow_id: String,
    /// Recommendations evaluated now.
    pub evaluated: u64,
    /// Of which approved.
    pub approved: u64,
    /// Partial.
    pub partial: u64,
    /// Rejected.
    pub rejected: u64,
}

/// Human feedback on one recommendation; overrides the derived verdict.
#[derive(Message, Debug)]
#[rtype(result = "Result<Recommendation, EngineError>")]
pub struct Feedback {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Which recommendation.
    pub id: Uuid,
    /// The verdict.
    pub verdict: Verdict,
    /// Its quality; kept (or derived from the verdict) if absent.
    pub quality: Option<QualityScore>,
    /// Comment.
    pub comment: Option<String>,
}

/// Replies once everything tracked before it has committed.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Flush;

/// Shutdown: refuse new tracking, reply once everything acknowledged is on disk.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Drain;

/// A batch handed to the writer.
struct Batch {
    recs: Vec<Recommendation>,
    /// Durable mode: the callers to answer after commit.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// Sequence number of the last row in this batch.
    seq_end: u64,
}

/// State shared by evaluations: the lock that serialises them and the last
/// evaluation time handed out (monotonic).
struct EvalState {
    last_at: DateTime<Utc>,
}

/// The actor. Start it with [`RecommendationTracker::start_supervised`].
pub struct RecommendationTracker {
    config: TrackerConfig,
    store: Arc<dyn Store>,
    params: Arc<TrustParams>,
    scorer: Addr<TrustScorer>,
    /// Rows acknowledged (write_behind) or waiting (durable), not yet handed to the writer.
    buffer: Vec<Recommendation>,
    /// Durable callers of the rows in `buffer`.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
    /// Rows handed to the writer so far (sequence).
    handed: u64,
    /// To the writer task.
    writer: mpsc::UnboundedSender<Batch>,
    /// Sequence number of the last committed (or, durable, refused) row.
    committed: watch::Receiver<u64>,
    /// Rows acknowledged but not yet committed (backpressure).
    pending: Arc<AtomicU64>,
    /// Serialises evaluations and feedback.
    eval: Arc<Mutex<EvalState>>,
    /// Set by `Drain`.
    draining: bool,
    /// Per workspace, how many times an already evaluated verdict changed
    /// (feedback); incremental readers of outcomes reload when it moves.
    revisions: Arc<dashmap::DashMap<WorkspaceId, u64>>,
    restarts: RestartTracker,
    health: HealthRegistry,
}

impl RecommendationTracker {
    /// Starts the writer task and the actor under an actix supervisor.
    /// Must run inside an actix system.
    pub fn start_supervised(
        config: TrackerConfig,
        store: Arc<dyn Store>,
        params: Arc<TrustParams>,
        scorer: Addr<TrustScorer>,
        policy: RestartPolicy,
        health: HealthRegistry,
        revisions: Arc<dashmap::DashMap<WorkspaceId, u64>>,
    ) -> (Addr<Self>, Arc<AtomicU64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (committed_tx, committed_rx) = watch::channel(0u64);
        let pending = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(
            Arc::clone(&store),
            rx,
            committed_tx,
            Arc::clone(&pending),
        ));
        health.set(NAME, ActorHealth::Running);
        let pending_out = Arc::clone(&pending);
        let addr = Supervisor::start(move |_| Self {
            config,
            store,
            params,
            scorer,
            buffer: Vec::new(),
            waiters: Vec::new(),
            handed: 0,
            writer: tx,
            committed: committed_rx,
            pending,
            eval: Arc::new(Mutex::new(EvalState {
                last_at: to_micros(Utc::now()),
            })),
            draining: false,
            revisions,
            restarts: RestartTracker::new(policy),
            health,
        });
        (addr, pending_out)
    }

    /// Hands the buffer to the writer; returns the sequence to wait for.
    fn hand_off(&mut self) -> u64 {
        if !self.buffer.is_empty() {
            let recs = std::mem::take(&mut self.buffer);
            self.handed += recs.len() as u64;
            let batch = Batch {
                recs,
                waiters: std::mem::take(&mut self.waiters),
                seq_end: self.handed,
            };
            if let Err(mpsc::error::SendError(batch)) = self.writer.send(batch) {
                // The writer only ends when the runtime does; keep the rows.
                tracing::error!("tracker writer is gone; rows stay buffered");
                self.handed -= batch.recs.len() as u64;
                self.buffer = batch.recs;
                self.waiters = batch.waiters;
            }
        }
        self.handed
    }

    /// A future that resolves once the writer committed up to `target`.
    fn committed_up_to(
        &self,
        target: u64,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> {
        let mut rx = self.committed.clone();
        async move {
            rx.wait_for(|c| *c >= target)
                .await
                .map(|_| ())
                .map_err(|_| EngineError::ShuttingDown)
        }
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    committed: watch::Sender<u64>,
    pending: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        // Group commit: merge everything that is already queued.
        let mut recs = first.recs;
        let mut waiters = first.waiters;
        let mut seq_end = first.seq_end;
        while recs.len() < 20_000 {
            match rx.try_recv() {
                Ok(more) => {
                    recs.extend(more.recs);
                    waiters.extend(more.waiters);
                    seq_end = more.seq_end;
                }
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            let started = Instant::now();
            match store.insert_recommendations(&recs).await {
                Ok(()) => {
                    metrics::histogram!("swarmwise_tracker_flush_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("swarmwise_recommendations_persisted_total")
                        .increment(recs.len() as u64);
                    for w in waiters.drain(..) {
                        let _ = w.send(Ok(()));
                    }
                    break;
                }
                Err(e) if !waiters.is_empty() => {
                    // Durable: nobody was acknowledged; tell them.
                    tracing::error!(error = %e, rows = recs.len(), "durable batch failed");
                    for w in waiters.drain(..) {
                        let _ = w.send(Err(e.to_string()));
                    }
                    break;
                }
                Err(e) => {
                    metrics::counter!("swarmwise_tracker_flush_failures_total").increment(1);
                    tracing::warn!(error = %e, rows = recs.len(), retry_ms = backoff.as_millis() as u64,
                        "write-behind batch failed; retrying (rows are kept in memory)");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        pending.fetch_sub(recs.len() as u64, Ordering::Relaxed);
        let _ = committed.send(seq_end);
    }
}

impl Actor for RecommendationTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        let every = Duration::from_millis(self.config.flush_interval_ms.max(1));
        ctx.run_interval(every, |act, _| {
            act.hand_off();
        });
    }
}

impl Supervised for RecommendationTracker {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        // The buffer and the writer survive: nothing acknowledged is dropped.
        self.health.restarted(NAME);
        let (_, exceeded) = self.restarts.on_restart(Instant::now());
        metrics::counter!("swarmwise_actor_restarts_total", "actor" => NAME).increment(1);
        if exceeded {
            self.health.set(NAME, ActorHealth::Failed);
            tracing::error!(actor = NAME, "restart limit exceeded; readiness now fails");
        }
    }
}

impl Handler<Track> for RecommendationTracker {
    type Result = ResponseFuture<Result<Vec<Uuid>, EngineError>>;

    fn handle(&mut self, msg: Track, _ctx: &mut Context<Self>) -> Self::Result {
        if self.draining {
            return Box::pin(async { Err(EngineError::ShuttingDown) });
        }
        let n = msg.0.len() as u64;
        let pending = self.pending.load(Ordering::Relaxed);
        if pending + n > self.config.max_pending {
            metrics::counter!("swarmwise_tracker_rejected_total").increment(n);
            let max = self.config.max_pending;
            return Box::pin(async move {
                Err(EngineError::Overloaded(format!(
                    "{pending} recommendations are waiting for the store (limit tracking.max_pending = {max}); retry shortly"
                )))
            });
        }
        self.pending.fetch_add(n, Ordering::Relaxed);
        let ids: Vec<Uuid> = msg.0.iter().map(|r| r.id).collect();
        self.buffer.extend(msg.0);
        metrics::counter!("swarmwise_recommendations_tracked_total").increment(n);
        match self.config.mode {
            WriteMode::WriteBehind => {
                if self.buffer.len() >= self.config.batch_size {
                    self.hand_off();
                }
                Box::pin(async move { Ok(ids) })
            }
            WriteMode::Durable => {
                let (tx, rx) = oneshot::channel();
                self.waiters.push(tx);
                self.hand_off();
                Box::pin(async move {
                    match rx.await {
                        Ok(Ok(())) => Ok(ids),
                        Ok(Err(e)) => Err(EngineError::Store(StoreError::Unavailable(e))),
                        Err(_) => Err(EngineError::ShuttingDown),
                    }
                })
            }
        }
    }
}

impl Handler<Flush> for RecommendationTracker {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.hand_off();
        Box::pin(self.committed_up_to(target))
    }
}

impl Handler<Drain> for RecommendationTracker {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, _msg: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let target = self.hand_off();
        tracing::info!(
            rows = self.pending.load(Ordering::Relaxed),
            "draining tracked recommendations"
        );
        Box::pin(self.committed_up_to(target))
    }
}

impl Handler<Restart> for RecommendationTracker {
    type Result = ();

    fn handle(&mut self, msg: Restart, ctx: &mut Context<Self>) {
        tracing::warn!(reason = %msg.reason, "tracker restart requested");
        ctx.stop();
    }
}

impl Handler<Evaluate> for RecommendationTracker {
    type Result = ResponseFuture<Result<EvaluationSummary, EngineError>>;

    fn handle(&mut self, msg: Evaluate, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.hand_off();
        let flushed = self.committed_up_to(target);
        let store = Arc::clone(&self.store);
        let params = Arc::clone(&self.params);
        let scorer = self.scorer.clone();
        let eval = Arc::clone(&self.eval);
        Box::pin(async move {
            flushed.await?;
            let mut state = eval.lock().await;
            let recs = store
                .workflow_recommendations(msg.workspace, &msg.workflow_id)
                .await?;
            if recs.is_empty() {
                return Err(EngineError::NotFound {
                    what: "workflow",
                    id: msg.workflow_id,
                });
            }
            let by_id: HashMap<Uuid, &Recommendation> = recs.iter().map(|r| (r.id, r)).collect();
            for (i, v) in msg.verdicts.iter().enumerate() {
                if !by_id.contains_key(&v.recommendation_id) {
                    return Err(ParseError::new(
                        format!("verdicts[{i}].recommendation_id"),
                        format!(
                            "{} is not a recommendation of workflow {:?}",
                            v.recommendation_id, msg.workflow_id
                        ),
                    )
                    .into());
                }
            }
            let explicit: HashMap<Uuid, &ExplicitVerdict> = msg
                .verdicts
                .iter()
                .map(|v| (v.recommendation_id, v))
                .collect();
            let pending: Vec<&Recommendation> = recs
                .iter()
                .filter(|r| r.status == RecommendationStatus::Pending)
                .collect();
            if pending.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "workflow {:?} has no pending recommendations: it was evaluated already; use POST /api/v1/recommendations/{{id}}/feedback to change a verdict",
                    msg.workflow_id
                )));
            }
            let at = next_time(&mut state);
            let overall = msg.overall_quality.get();
            let mut updates: Vec<VerdictUpdate> = pending
                .iter()
                .map(|r| {
                    let (verdict, quality) = match explicit.get(&r.id) {
                        Some(v) => (v.verdict, v.quality.map_or(overall, QualityScore::get)),
                        None => (params.derive_verdict(overall), overall),
                    };
                    VerdictUpdate {
                        id: r.id,
                        verdict,
                        quality,
                        feedback: msg.feedback.clone(),
                        evaluated_at: at,
                    }
                })
                .collect();
            updates.sort_by_key(|u| u.id);
            store.apply_verdicts(msg.workspace, &updates).await?;
            let mut summary = EvaluationSummary {
                workflow_id: msg.workflow_id.clone(),
                ..EvaluationSummary::default()
            };
            let mut samples = Vec::with_capacity(updates.len());
            for u in &updates {
                match u.verdict {
                    Verdict::Approved => summary.approved += 1,
                    Verdict::Partial => summary.partial += 1,
                    Verdict::Rejected => summary.rejected += 1,
                }
                if let Some(r) = by_id.get(&u.id) {
                    samples.push(sample_of(r, u));
                }
            }
            summary.evaluated = updates.len() as u64;
            metrics::counter!("swarmwise_recommendations_evaluated_total")
                .increment(summary.evaluated);
            // Sent while holding the lock: the scorer sees evaluations in commit order.
            scorer.do_send(OutcomesRecorded {
                workspace: msg.workspace,
                samples,
            });
            drop(state);
            Ok(summary)
        })
    }
}

impl Handler<Feedback> for RecommendationTracker {
    type Result = ResponseFuture<Result<Recommendation, EngineError>>;

    fn handle(&mut self, msg: Feedback, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.hand_off();
        let flushed = self.committed_up_to(target);
        let store = Arc::clone(&self.store);
        let scorer = self.scorer.clone();
        let eval = Arc::clone(&self.eval);
        let revisions = Arc::clone(&self.revisions);
        Box::pin(async move {
            flushed.await?;
            let mut state = eval.lock().await;
            let Some(mut rec) = store.recommendation(msg.workspace, msg.id).await? else {
                return Err(EngineError::NotFound {
                    what: "recommendation",
                    id: msg.id.to_string(),
                });
            };
            let was_evaluated = rec.evaluated_at;
            let quality = match (msg.quality, rec.outcome_quality) {
                (Some(q), _) => q.get(),
                (None, Some(q)) if Verdict::of_status(rec.status) == Some(msg.verdict) => q,
                _ => msg.verdict.score() * 100.0,
            };
            let at = match was_evaluated {
                Some(at) => at,
                None => next_time(&mut state),
            };
            let update = VerdictUpdate {
                id: rec.id,
                verdict: msg.verdict,
                quality,
                feedback: msg.comment.clone(),
                evaluated_at: at,
            };
            store
                .apply_verdicts(msg.workspace, std::slice::from_ref(&update))
                .await?;
            rec.status = msg.verdict.status();
            rec.outcome_quality = Some(quality);
            rec.evaluated_at = Some(at);
            if msg.comment.is_some() {
                rec.feedback = msg.comment;
            }
            metrics::counter!("swarmwise_feedback_total").increment(1);
            if was_evaluated.is_some() {
                *revisions.entry(msg.workspace).or_insert(0) += 1;
                scorer.do_send(RecomputeAgent {
                    workspace: msg.workspace,
                    agent: rec.agent_id.clone(),
                });
            } else {
                metrics::counter!("swarmwise_recommendations_evaluated_total").increment(1);
                scorer.do_send(OutcomesRecorded {
                    workspace: msg.workspace,
                    samples: vec![sample_of(&rec, &update)],
                });
            }
            drop(state);
            Ok(rec)
        })
    }
}

/// The next evaluation time: now, but strictly after the previous one.
fn next_time(state: &mut EvalState) -> DateTime<Utc> {
    let now = to_micros(Utc::now());
    let at = if now > state.last_at {
        now
    } else {
        state.last_at + TimeDelta::microseconds(1)
    };
    state.last_at = at;
    at
}

fn sample_of(r: &Recommendation, u: &VerdictUpdate) -> OutcomeSample {
    OutcomeSample {
        id: r.id,
        agent_id: r.agent_id.clone(),
        agent_name: r.agent_name.clone(),
        recommendation_type: r.recommendation_type.clone(),
        confidence: r.confidence,
        verdict: u.verdict,
        quality: u.quality,
        latency_ms: r.latency_ms,
        deadline_ms: r.deadline_ms,
        evaluated_at: u.evaluated_at,
    }
}
