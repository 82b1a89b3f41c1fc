//! Buffering: `Track` fills the buffer, which is handed to the writer by
//! size or time; `Flush` and `Drain` wait for what was handed off to commit.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::error::EngineError;
use crate::ports::StoreError;

use super::writer::{Batch, RowError, Unit};
use super::{Drain, Flush, RecommendationTracker, Track, WriteMode};

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

    /// A future that resolves once the writer committed (or dead-lettered)
    /// up to `target`, or fails with `FlushTimeout` after
    /// `tracking.read_flush_timeout_ms`.
    pub(super) fn committed_up_to(
        &self,
        target: u64,
    ) -> impl std::future::Future<Output = Result<(), EngineError>> {
        let barrier = self.barrier.clone();
        async move { barrier.wait(target).await.map_err(BarrierError::to_engine) }
    }
}

/// Waits until the writer committed (or dead-lettered) up to a sequence,
/// at most `tracking.read_flush_timeout_ms`.
#[derive(Clone)]
pub(super) struct CommitBarrier {
    pub(super) committed: watch::Receiver<u64>,
    pub(super) timeout: Duration,
    pub(super) pending: Arc<AtomicU64>,
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
    pub(super) async fn wait(&self, target: u64) -> Result<(), BarrierError> {
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
                    pending: self.pending.load(Ordering::Relaxed),
                })
            }
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
