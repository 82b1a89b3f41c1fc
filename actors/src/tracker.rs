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
//!   recommendation is on disk, or at its deadline with how many are not.
//!
//! The writer (`tracker/writer.rs`) is a tokio task outside the actor: a
//! restart of the actor keeps its buffer (actix's supervisor keeps the
//! instance) and the writer keeps its queue, so nothing acknowledged is lost.
//!
//! A bad row never blocks the others. A batch that fails for a transient
//! reason (`StoreError::Unavailable`: connection lost, pool timeout) is
//! retried with backoff in `write_behind` mode; in `durable` mode its callers
//! get the 503 at once (they were not acknowledged and may retry). A batch
//! that fails for any other reason is split in halves until the failing
//! units stand alone (bisection: about 2·log2(n) extra inserts per bad row);
//! the rest is written, each refused row goes to the dead-letter table with
//! its error (`swarmwise_tracker_dead_letters_total`, a log line), and in
//! `durable` mode its caller gets `WriteRefused`. A unit is one row in
//! `write_behind` mode and one `Track` message (all or none) in `durable`
//! mode.
//!
//! Waits on the writer are bounded: reads that flush first give up after
//! `tracking.read_flush_timeout_ms` (`FlushTimeout`, a 503 with
//! `Retry-After`), `Drain` takes a deadline, and [`WriterStatus`] tells
//! `/readyz` when the writer has not committed for `tracking.stalled_after_ms`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::{
    to_micros, OutcomeSample, ParseError, QualityScore, Recommendation, RecommendationStatus,
    Verdict, VerdictUpdate, WorkspaceId,
};
use crate::error::EngineError;
use crate::ports::{Store, StoreError};
use crate::supervisor::{ActorHealth, HealthRegistry, RestartPolicy, RestartTracker};
use crate::trust::{OutcomesRecorded, RecomputeAgent, Restart, TrustParams, TrustScorer};

mod writer;

use writer::{writer, Batch, RowError, Unit, Writer};
pub use writer::{WriterReport, WriterStatus};

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
    /// Reads that first wait for pending writes (list, evaluate, feedback,
    /// trust) give up after this many milliseconds with 503 + `Retry-After`.
    pub read_flush_timeout_ms: u64,
    /// `/readyz` reports the writer stalled once a batch has waited this
    /// many milliseconds without committing (retrying or hanging).
    pub stalled_after_ms: u64,
    /// First wait before retrying a batch that failed transiently, in
    /// milliseconds; doubles up to `retry_backoff_max_ms`.
    pub retry_backoff_initial_ms: u64,
    /// Longest wait between retries, in milliseconds.
    pub retry_backoff_max_ms: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            mode: WriteMode::WriteBehind,
            batch_size: 1000,
            flush_interval_ms: 50,
            max_pending: 100_000,
            read_flush_timeout_ms: 5_000,
            stalled_after_ms: 10_000,
            retry_backoff_initial_ms: 50,
            retry_backoff_max_ms: 5_000,
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

/// Shutdown: refuse new tracking, reply once everything acknowledged is on
/// disk, or with `DrainIncomplete` (how many rows are not) at the deadline.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Drain {
    /// How long to wait for the writer.
    pub timeout: Duration,
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
    /// Rows acknowledged (write_behind) or waiting (durable), not yet handed
    /// to the writer, with their durable callers.
    buffer: Vec<Unit>,
    /// Rows in `buffer`.
    buffered_rows: usize,
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
    /// Must run inside an actix system. Returns the address, the count of
    /// rows waiting for the store, and the writer's status.
    pub fn start_supervised(
        config: TrackerConfig,
        store: Arc<dyn Store>,
        params: Arc<TrustParams>,
        scorer: Addr<TrustScorer>,
        policy: RestartPolicy,
        health: HealthRegistry,
        revisions: Arc<dashmap::DashMap<WorkspaceId, u64>>,
    ) -> (Addr<Self>, Arc<AtomicU64>, Arc<WriterStatus>) {
        let status: Arc<WriterStatus> = Arc::default();
        let status_out = Arc::clone(&status);
        let (tx, rx) = mpsc::unbounded_channel();
        let (committed_tx, committed_rx) = watch::channel(0u64);
        let pending = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(
            Writer {
                store: Arc::clone(&store),
                pending: Arc::clone(&pending),
                status,
                backoff_initial: Duration::from_millis(config.retry_backoff_initial_ms.max(1)),
                backoff_max: Duration::from_millis(config.retry_backoff_max_ms.max(1)),
                durable: config.mode == WriteMode::Durable,
            },
            rx,
            committed_tx,
        ));
        health.set(NAME, ActorHealth::Running);
        let pending_out = Arc::clone(&pending);
        let addr = Supervisor::start(move |_| Self {
            config,
            store,
            params,
            scorer,
            buffer: Vec::new(),
            buffered_rows: 0,
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
        (addr, pending_out, status_out)
    }

    /// Hands the buffer to the writer; returns the sequence to wait for.
    fn hand_off(&mut self) -> u64 {
        if !self.buffer.is_empty() {
            let units = std::mem::take(&mut self.buffer);
            let rows = std::mem::take(&mut self.buffered_rows);
            self.handed += rows as u64;
            let batch = Batch {
                units,
                rows,
                seq_end: self.handed,
            };
            if let Err(mpsc::error::SendError(batch)) = self.writer.send(batch) {
                // The writer only ends when the runtime does; keep the rows.
                tracing::error!("tracker writer is gone; rows stay buffered");
                self.handed -= batch.rows as u64;
                self.buffered_rows = batch.rows;
                self.buffer = batch.units;
            }
        }
        self.handed
    }

    /// A future that resolves once the writer committed (or dead-lettered)
    /// up to `target`, or fails with `FlushTimeout` after
    /// `tracking.read_flush_timeout_ms`.
    fn committed_up_to(
        &self,
        target: u64,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> {
        let mut rx = self.committed.clone();
        let timeout = Duration::from_millis(self.config.read_flush_timeout_ms);
        let pending = Arc::clone(&self.pending);
        async move {
            match tokio::time::timeout(timeout, rx.wait_for(|c| *c >= target)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(EngineError::ShuttingDown),
                Err(_) => {
                    metrics::counter!("swarmwise_tracker_read_timeouts_total").increment(1);
                    Err(EngineError::FlushTimeout {
                        waited_ms: timeout.as_millis() as u64,
                        pending: pending.load(Ordering::Relaxed),
                    })
                }
            }
        }
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
        self.buffered_rows += msg.0.len();
        metrics::counter!("swarmwise_recommendations_tracked_total").increment(n);
        match self.config.mode {
            WriteMode::WriteBehind => {
                // Each row stands alone: a bad one is isolated by itself.
                self.buffer.extend(msg.0.into_iter().map(|r| Unit {
                    recs: vec![r],
                    waiter: None,
                }));
                if self.buffered_rows >= self.config.batch_size {
                    self.hand_off();
                }
                Box::pin(async move { Ok(ids) })
            }
            WriteMode::Durable => {
                // All or none of one caller's rows.
                let (tx, rx) = oneshot::channel();
                self.buffer.push(Unit {
                    recs: msg.0,
                    waiter: Some(tx),
                });
                self.hand_off();
                Box::pin(async move {
                    match rx.await {
                        Ok(Ok(())) => Ok(ids),
                        Ok(Err(RowError::Refused { message, data })) => {
                            Err(EngineError::WriteRefused { message, data })
                        }
                        Ok(Err(RowError::Unavailable(m))) => {
                            Err(EngineError::Store(StoreError::Unavailable(m)))
                        }
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

    fn handle(&mut self, msg: Drain, _ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let target = self.hand_off();
        tracing::info!(
            rows = self.pending.load(Ordering::Relaxed),
            timeout_ms = msg.timeout.as_millis() as u64,
            "draining tracked recommendations"
        );
        let mut rx = self.committed.clone();
        let pending = Arc::clone(&self.pending);
        Box::pin(async move {
            match tokio::time::timeout(msg.timeout, rx.wait_for(|c| *c >= target)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err(EngineError::ShuttingDown),
                Err(_) => {
                    let rows = pending.load(Ordering::Relaxed);
                    tracing::error!(
                        rows,
                        "shutdown deadline reached: {rows} acknowledged recommendations could not be written"
                    );
                    Err(EngineError::DrainIncomplete { rows })
                }
            }
        })
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
        // Not the sender's span (a handler runs in the actor's task): the
        // run's fields instead; a run's workflow_id is its run id.
        let span = tracing::info_span!(
            "evaluate",
            workspace = %msg.workspace,
            workflow_id = %msg.workflow_id,
        );
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
            crate::trace::store_call(
                "apply_verdicts",
                store.apply_verdicts(msg.workspace, &updates),
            )
            .await?;
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
        }.instrument(span))
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
