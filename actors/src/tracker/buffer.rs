//! Buffering: `Track` fills the buffer, which is handed to the writer by
//! size or time; `Flush` and `Drain` wait for what was handed off to commit,
//! `FlushWorkspace` for one workspace's rows only ([`WorkspaceWrites`]).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::domain::{Recommendation, WorkspaceId};
use crate::error::EngineError;
use crate::ports::StoreError;

use super::writer::{Batch, PendingByWorkspace, RowError, Unit};
use super::{Drain, Flush, FlushWorkspace, RecommendationTracker, Track, TryTrack, WriteMode};

impl RecommendationTracker {
    /// Hands the buffer to the writer; returns the sequence to wait for.
    pub(super) fn hand_off(&mut self) -> u64 {
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

    /// The writer sequence a read or evaluation of `ws` must see committed:
    /// the sequence of `ws`'s last acknowledged row, whatever other
    /// workspaces have in flight (0 when it never tracked). Hands the buffer
    /// to the writer now when some of those rows are still in it, rather
    /// than at the next tick.
    pub(super) fn workspace_target(&mut self, ws: WorkspaceId) -> u64 {
        let target = self.writes.target(ws);
        if target > self.handed {
            self.hand_off();
        }
        target
    }

    /// A future that resolves once the writer committed (or dead-lettered)
    /// up to `target`, or fails with `FlushTimeout` after
    /// `tracking.read_flush_timeout_ms`. On a timeout the error counts the rows of `scope` still waiting
    /// (all workspaces' when `None`: an operator's flush).
    pub(super) fn committed_up_to(
        &self,
        target: u64,
        scope: Option<WorkspaceId>,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> {
        let barrier = self.barrier.clone();
        async move {
            barrier
                .wait(target, scope)
                .await
                .map_err(BarrierError::to_engine)
        }
    }
}

/// Waits until the writer committed (or dead-lettered) up to a sequence,
/// at most `tracking.read_flush_timeout_ms`.
#[derive(Clone)]
pub(super) struct CommitBarrier {
    pub(super) committed: watch::Receiver<u64>,
    pub(super) timeout: Duration,
    pub(super) pending: Arc<AtomicU64>,
    /// Rows waiting per workspace: what a workspace's timed-out wait
    /// reports (never the other tenants' volume).
    pub(super) by_workspace: PendingByWorkspace,
}

/// Why a [`CommitBarrier`] gave up.
#[derive(Debug, Clone, Copy)]
pub(super) enum BarrierError {
    /// The writer is gone (shutting down).
    Closed,
    /// The timeout passed with `pending` rows still unwritten.
    Timeout { waited_ms: u64, pending: u64 },
}

impl BarrierError {
    /// The same, counting `pending` rows still waiting (a workspace's own).
    pub(super) fn with_pending(self, pending: u64) -> Self {
        match self {
            Self::Timeout { waited_ms, .. } => Self::Timeout { waited_ms, pending },
            Self::Closed => Self::Closed,
        }
    }

    pub(super) fn to_engine(self) -> EngineError {
        match self {
            Self::Closed => EngineError::ShuttingDown,
            Self::Timeout { waited_ms, pending } => {
                EngineError::FlushTimeout { waited_ms, pending }
            }
        }
    }
}

impl CommitBarrier {
    /// Waits for `target`; a timeout reports the rows of `scope` still
    /// waiting (every workspace's when `None`).
    pub(super) async fn wait(
        &self,
        target: u64,
        scope: Option<WorkspaceId>,
    ) -> Result<(), BarrierError> {
        let mut rx = self.committed.clone();
        let waited = tokio::time::timeout(self.timeout, rx.wait_for(|c| *c >= target))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(BarrierError::Closed),
            Err(_) => {
                metrics::counter!("swarmwise_tracker_read_timeouts_total").increment(1);
                Err(BarrierError::Timeout {
                    waited_ms: self.timeout.as_millis() as u64,
                    pending: match scope {
                        Some(ws) => self.by_workspace.get(ws),
                        None => self.pending.load(Ordering::Relaxed),
                    },
                })
            }
        }
    }
}

/// Read-your-writes per workspace. Every acknowledged row gets a sequence
/// number (its place in the order rows reach the writer: rows handed off so
/// far plus its place in the buffer); this keeps, per workspace, the number
/// of its last row. A read of a workspace is consistent once the writer's
/// committed sequence reaches that number, whatever other tenants still have
/// in flight. Cloned into the engine: a read of a workspace with nothing in
/// flight checks two numbers and sends no message.
#[derive(Clone)]
pub struct WorkspaceWrites {
    /// Sequence of each workspace's last acknowledged row. One entry per
    /// workspace that tracked since start (bounded by the workspaces).
    last: Arc<dashmap::DashMap<WorkspaceId, u64>>,
    /// The writer's committed sequence, with the read timeout.
    barrier: CommitBarrier,
}

impl WorkspaceWrites {
    pub(super) fn new(barrier: CommitBarrier) -> Self {
        Self {
            last: Arc::default(),
            barrier,
        }
    }

    /// The sequence `ws` must see committed (0: it never tracked).
    fn target(&self, ws: WorkspaceId) -> u64 {
        self.last.get(&ws).map_or(0, |s| *s)
    }

    /// Whether everything `ws` had acknowledged is committed: then a read
    /// of `ws` needs no flush.
    pub fn settled(&self, ws: WorkspaceId) -> bool {
        *self.barrier.committed.borrow() >= self.target(ws)
    }

    /// The writer's committed sequence: it moves whenever a batch commits
    /// (and rows waiting for the store went down).
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.barrier.committed.clone()
    }

    /// Records the sequence of the last row of each workspace in `recs`,
    /// whose first row gets sequence `first`.
    fn record(&self, first: u64, recs: &[Recommendation]) {
        let mut current: Option<(WorkspaceId, u64)> = None;
        for (i, r) in recs.iter().enumerate() {
            let seq = first + i as u64;
            match current {
                Some((ws, _)) if ws == r.workspace_id => current = Some((ws, seq)),
                _ => {
                    if let Some((ws, s)) = current {
                        self.last.insert(ws, s);
                    }
                    current = Some((r.workspace_id, seq));
                }
            }
        }
        if let Some((ws, s)) = current {
            self.last.insert(ws, s);
        }
    }
}

/// What [`RecommendationTracker::accept`] says when the buffer has no room.
pub(super) struct Full {
    /// The rows, handed back untouched.
    recs: Vec<Recommendation>,
    /// Which limit refused them.
    limit: BufferLimit,
}

/// The limit a tracking request met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferLimit {
    /// The node's buffer, shared by every workspace, is full
    /// (`tracking.max_pending`). How full is not told: other tenants' rows.
    Node,
    /// The workspace's own share (`tracking.max_pending_per_workspace`):
    /// `pending` of its rows wait for the store.
    Workspace {
        /// Rows of the workspace waiting for the store.
        pending: u64,
        /// `tracking.max_pending_per_workspace`.
        max: u64,
    },
}

/// Why a [`TryTrack`] was not taken.
#[derive(Debug)]
pub enum TrackRefusal {
    /// `tracking.max_pending` rows already wait for the store: the rows
    /// come back untouched, nothing of them was taken. Wait for a commit
    /// and try again, or shed.
    Full {
        /// The rows sent.
        recs: Vec<Recommendation>,
        /// Which limit refused them.
        limit: BufferLimit,
    },
    /// Taken, or never taken, and failed as `Track` would (durable write
    /// refused, shutting down, a batch larger than `max_pending`).
    Failed(EngineError),
}

/// The 503 `overloaded` a shed request answers with. It never tells how
/// many rows other workspaces have in flight.
pub(crate) fn overloaded(limit: BufferLimit) -> EngineError {
    EngineError::Overloaded(match limit {
        BufferLimit::Node => "this node's write buffer is full (tracking.max_pending rows, all workspaces together, wait for the database); retry after the Retry-After delay".into(),
        BufferLimit::Workspace { pending, max } => format!(
            "{pending} recommendations of this workspace are waiting for the database (its share, tracking.max_pending_per_workspace = {max}); retry after the Retry-After delay"
        ),
    })
}

impl RecommendationTracker {
    /// Takes `recs` into the buffer, or hands them back when it has no
    /// room for all of them (all or none).
    fn accept(
        &mut self,
        recs: Vec<Recommendation>,
    ) -> Result<ResponseFuture<Result<Vec<Uuid>, EngineError>>, Full> {
        if self.draining {
            return Ok(Box::pin(async { Err(EngineError::ShuttingDown) }));
        }
        let n = recs.len() as u64;
        let pending = self.pending.load(Ordering::Relaxed);
        if pending + n > self.config.max_pending {
            return Err(Full {
                recs,
                limit: BufferLimit::Node,
            });
        }
        let by_workspace = PendingByWorkspace::count(&recs);
        let cap = self.config.workspace_share();
        if let Some(&(ws, _)) = by_workspace
            .iter()
            .find(|(ws, k)| self.pending_by_workspace.get(*ws) + k > cap)
        {
            let pending = self.pending_by_workspace.get(ws);
            return Err(Full {
                recs,
                limit: BufferLimit::Workspace { pending, max: cap },
            });
        }
        self.pending_by_workspace.add(&by_workspace);
        self.pending.fetch_add(n, Ordering::Relaxed);
        // Rows reach the writer in buffer order: the first of these is
        // number handed + buffered + 1.
        self.writes
            .record(self.handed + self.buffered_rows as u64 + 1, &recs);
        let ids: Vec<Uuid> = recs.iter().map(|r| r.id).collect();
        self.buffered_rows += recs.len();
        metrics::counter!("swarmwise_recommendations_tracked_total").increment(n);
        match self.config.mode {
            WriteMode::WriteBehind => {
                // Each row stands alone: a bad one is isolated by itself.
                self.buffer.extend(recs.into_iter().map(|r| Unit {
                    recs: vec![r],
                    waiter: None,
                }));
                if self.buffered_rows >= self.config.batch_size {
                    self.hand_off();
                }
                Ok(Box::pin(async move { Ok(ids) }))
            }
            WriteMode::Durable => {
                // All or none of one caller's rows.
                let (tx, rx) = oneshot::channel();
                self.buffer.push(Unit {
                    recs,
                    waiter: Some(tx),
                });
                self.hand_off();
                Ok(Box::pin(async move {
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
                }))
            }
        }
    }
}

impl Handler<Track> for RecommendationTracker {
    type Result = ResponseFuture<Result<Vec<Uuid>, EngineError>>;

    fn handle(&mut self, msg: Track, _ctx: &mut Context<Self>) -> Self::Result {
        match self.accept(msg.0) {
            Ok(answer) => answer,
            Err(Full { recs, limit }) => {
                metrics::counter!("swarmwise_tracker_rejected_total").increment(recs.len() as u64);
                Box::pin(async move { Err(overloaded(limit)) })
            }
        }
    }
}

impl Handler<TryTrack> for RecommendationTracker {
    type Result = ResponseFuture<Result<Vec<Uuid>, TrackRefusal>>;

    fn handle(&mut self, msg: TryTrack, _ctx: &mut Context<Self>) -> Self::Result {
        let fits = self.config.workspace_share();
        if msg.0.len() as u64 > fits {
            // Never fits: waiting would not help. (Configuration keeps the
            // limits at least `limits.max_batch_items`.)
            let n = msg.0.len();
            metrics::counter!("swarmwise_tracker_rejected_total").increment(n as u64);
            let e = EngineError::Overloaded(format!(
                "a batch of {n} recommendations can never be taken: the write buffer holds at most {fits} \
                 (tracking.max_pending, tracking.max_pending_per_workspace); send smaller batches"
            ));
            return Box::pin(async move { Err(TrackRefusal::Failed(e)) });
        }
        match self.accept(msg.0) {
            Ok(answer) => Box::pin(async move { answer.await.map_err(TrackRefusal::Failed) }),
            Err(Full { recs, limit }) => {
                Box::pin(async move { Err(TrackRefusal::Full { recs, limit }) })
            }
        }
    }
}

impl Handler<Flush> for RecommendationTracker {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, _msg: Flush, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.hand_off();
        Box::pin(self.committed_up_to(target, None))
    }
}

impl Handler<FlushWorkspace> for RecommendationTracker {
    type Result = ResponseFuture<Result<(), EngineError>>;

    fn handle(&mut self, msg: FlushWorkspace, _ctx: &mut Context<Self>) -> Self::Result {
        let target = self.workspace_target(msg.0);
        Box::pin(self.committed_up_to(target, Some(msg.0)))
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
