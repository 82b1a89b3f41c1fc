//! The tracker's writer: a tokio task that takes batches from the
//! `RecommendationTracker` actor and commits them, so that a bad row never
//! blocks the others (see the parent module for the whole protocol).
//!
//! - Transient failures (`StoreError::Unavailable`) are retried with backoff
//!   in `write_behind` mode and answered at once (503) in `durable` mode.
//! - Any other failure splits the batch in halves until the failing units
//!   stand alone; they go to the dead-letter table (`Store::insert_dead_letters`),
//!   are counted in `swarmwise_tracker_dead_letters_total` and logged, and
//!   their durable callers get `WriteRefused`.
//! - [`WriterStatus`] tells `/readyz` what the writer is doing.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::{Recommendation, WorkspaceId};
use crate::ports::{DeadLetter, Store, StoreError};

/// Why the writer did not store a durable caller's rows.
pub(super) type WriteResult = Result<(), RowError>;

/// The writer's answer to a durable caller whose unit was not stored.
#[derive(Debug, Clone)]
pub(super) enum RowError {
    /// The database was unavailable; nothing was stored, retrying may work.
    Unavailable(String),
    /// Refused for a permanent reason and dead-lettered; `data` when the
    /// store refused the data itself (`StoreError::Rejected`).
    Refused { message: String, data: bool },
}

/// What the writer isolates on a permanent failure: one row
/// (`write_behind`) or one durable `Track` message with its caller.
pub(super) struct Unit {
    pub(super) recs: Vec<Recommendation>,
    pub(super) waiter: Option<oneshot::Sender<WriteResult>>,
}

/// A batch handed to the writer.
pub(super) struct Batch {
    pub(super) units: Vec<Unit>,
    /// Rows in `units`.
    pub(super) rows: usize,
    /// Sequence number of the last row in this batch.
    pub(super) seq_end: u64,
}

/// What the writer is doing, for `/readyz` and logs; shared, lock-light.
#[derive(Debug, Default)]
pub struct WriterStatus {
    /// Unix milliseconds when the batch in hand was picked up; 0 when idle.
    busy_since_ms: AtomicI64,
    /// The last transient error of the batch in hand, cleared on commit.
    last_error: std::sync::Mutex<Option<String>>,
    /// Rows dead-lettered since start.
    dead_letters: AtomicU64,
}

/// A snapshot of [`WriterStatus`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WriterReport {
    /// The batch in hand has not committed for `tracking.stalled_after_ms`.
    pub stalled: bool,
    /// Milliseconds the batch in hand has waited, if any.
    pub busy_ms: Option<i64>,
    /// The last transient error while retrying it.
    pub last_error: Option<String>,
    /// Rows dead-lettered since start.
    pub dead_letters: u64,
}

impl WriterStatus {
    /// The status now; `stalled_after_ms` from config.
    pub fn report(&self, stalled_after_ms: u64) -> WriterReport {
        let since = self.busy_since_ms.load(Ordering::Relaxed);
        let busy_ms = (since > 0).then(|| (Utc::now().timestamp_millis() - since).max(0));
        let last_error = self.last_error.lock().map(|e| e.clone()).unwrap_or(None);
        WriterReport {
            stalled: busy_ms
                .is_some_and(|ms| ms >= i64::try_from(stalled_after_ms).unwrap_or(i64::MAX)),
            busy_ms,
            last_error,
            dead_letters: self.dead_letters.load(Ordering::Relaxed),
        }
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
}

/// Rows acknowledged but not yet committed, per workspace
/// (`tracking.max_pending_per_workspace`): the actor adds what it takes, the
/// writer takes off what it committed or dead-lettered.
#[derive(Debug, Clone, Default)]
pub(super) struct PendingByWorkspace(Arc<dashmap::DashMap<WorkspaceId, u64>>);

impl PendingByWorkspace {
    /// Rows of `ws` waiting for the store.
    pub(super) fn get(&self, ws: WorkspaceId) -> u64 {
        self.0.get(&ws).map_or(0, |n| *n)
    }

    /// Rows per workspace in `recs`, in first-seen order.
    pub(super) fn count<'a>(
        recs: impl IntoIterator<Item = &'a Recommendation>,
    ) -> Vec<(WorkspaceId, u64)> {
        let mut out: Vec<(WorkspaceId, u64)> = Vec::new();
        for r in recs {
            match out.iter_mut().find(|(ws, _)| *ws == r.workspace_id) {
                Some((_, n)) => *n += 1,
                None => out.push((r.workspace_id, 1)),
            }
        }
        out
    }

    pub(super) fn add(&self, counts: &[(WorkspaceId, u64)]) {
        for (ws, n) in counts {
            *self.0.entry(*ws).or_insert(0) += n;
        }
    }

    fn sub(&self, counts: &[(WorkspaceId, u64)]) {
        for (ws, n) in counts {
            let mut gone = false;
            if let Some(mut left) = self.0.get_mut(ws) {
                *left = left.saturating_sub(*n);
                gone = *left == 0;
            }
            if gone {
                self.0.remove_if(ws, |_, left| *left == 0);
            }
        }
    }
}

/// The writer task's fixed parts.
pub(super) struct Writer {
    pub(super) store: Arc<dyn Store>,
    /// Rows acknowledged but not yet committed (shared with the actor).
    pub(super) pending: Arc<AtomicU64>,
    /// The same per workspace (shared with the actor).
    pub(super) pending_by_workspace: PendingByWorkspace,
    pub(super) status: Arc<WriterStatus>,
    pub(super) backoff_initial: Duration,
    pub(super) backoff_max: Duration,
    /// Durable mode: nobody was acknowledged, so a transient failure is
    /// answered at once (503, retry) instead of retried here.
    pub(super) durable: bool,
}

impl Writer {
    /// Inserts `recs`, retrying transient failures with backoff for as long
    /// as they last (write-behind only); returns the first permanent error.
    async fn insert(&self, recs: &[Recommendation]) -> Result<(), StoreError> {
        let mut backoff = self.backoff_initial;
        loop {
            let started = Instant::now();
            match self.store.insert_recommendations(recs).await {
                Ok(()) => {
                    metrics::histogram!("swarmwise_tracker_flush_seconds")
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!("swarmwise_recommendations_persisted_total")
                        .increment(recs.len() as u64);
                    return Ok(());
                }
                Err(StoreError::Unavailable(e)) if self.durable => {
                    metrics::counter!("swarmwise_tracker_flush_failures_total").increment(1);
                    tracing::warn!(error = %e, rows = recs.len(), "durable batch failed transiently; its callers get 503");
                    return Err(StoreError::Unavailable(e));
                }
                Err(StoreError::Unavailable(e)) => {
                    metrics::counter!("swarmwise_tracker_flush_failures_total").increment(1);
                    tracing::warn!(error = %e, rows = recs.len(), retry_ms = backoff.as_millis() as u64,
                        "batch of recommendations failed transiently; retrying (rows are kept in memory)");
                    self.status.set_error(Some(e));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.backoff_max);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes a batch: all at once, or, on a permanent failure, by halves
    /// until each failing unit stands alone; those are dead-lettered.
    async fn write(&self, units: Vec<Unit>) {
        // Work stack of unit groups still to write (a group fails or
        // commits as one insert).
        let mut stack = vec![units];
        while let Some(mut group) = stack.pop() {
            let recs: Vec<Recommendation> =
                group.iter().flat_map(|u| u.recs.iter().cloned()).collect();
            match self.insert(&recs).await {
                Ok(()) => {
                    for u in group {
                        if let Some(w) = u.waiter {
                            let _ = w.send(Ok(()));
                        }
                    }
                }
                Err(StoreError::Unavailable(e)) => {
                    // Durable only: none of these callers was acknowledged.
                    for u in group {
                        if let Some(w) = u.waiter {
                            let _ = w.send(Err(RowError::Unavailable(e.clone())));
                        }
                    }
                }
                Err(e) if group.len() > 1 => {
                    tracing::debug!(error = %e, units = group.len(), "batch refused; splitting it to isolate the bad rows");
                    let second = group.split_off(group.len() / 2);
                    stack.push(second);
                    stack.push(group);
                }
                Err(e) => {
                    if let Some(u) = group.pop() {
                        self.dead_letter(u, &e).await;
                    }
                }
            }
        }
    }

    /// Records a refused unit and tells its caller.
    async fn dead_letter(&self, unit: Unit, e: &StoreError) {
        let message = e.to_string();
        let at = crate::domain::to_micros(Utc::now());
        let rows: Vec<DeadLetter> = unit
            .recs
            .iter()
            .map(|r| DeadLetter::of(r, &message, at))
            .collect();
        let n = rows.len() as u64;
        for r in &unit.recs {
            tracing::error!(recommendation_id = %r.id, workspace = %r.workspace_id, agent = %r.agent_id,
                error = %message, "recommendation refused by the store; moved to the dead-letter table");
        }
        let mut backoff = self.backoff_initial;
        loop {
            match self.store.insert_dead_letters(&rows).await {
                Ok(()) => break,
                Err(StoreError::Unavailable(err)) => {
                    self.status.set_error(Some(err));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.backoff_max);
                }
                Err(err) => {
                    // Nothing more can be done with them; the log lines above
                    // carry their ids.
                    tracing::error!(error = %err, rows = n, "could not record dead letters; the refused rows are only in the log");
                    break;
                }
            }
        }
        metrics::counter!("swarmwise_tracker_dead_letters_total").increment(n);
        self.status.dead_letters.fetch_add(n, Ordering::Relaxed);
        if let Some(w) = unit.waiter {
            let _ = w.send(Err(RowError::Refused {
                message,
                data: matches!(e, StoreError::Rejected(_)),
            }));
        }
    }
}

pub(super) async fn writer(
    w: Writer,
    mut rx: mpsc::UnboundedReceiver<Batch>,
    committed: watch::Sender<u64>,
) {
    while let Some(first) = rx.recv().await {
        w.status
            .busy_since_ms
            .store(Utc::now().timestamp_millis().max(1), Ordering::Relaxed);
        // Group commit: merge everything that is already queued.
        let mut units = first.units;
        let mut rows = first.rows;
        let mut seq_end = first.seq_end;
        while rows < 20_000 {
            match rx.try_recv() {
                Ok(more) => {
                    units.extend(more.units);
                    rows += more.rows;
                    seq_end = more.seq_end;
                }
                Err(_) => break,
            }
        }
        let by_workspace = PendingByWorkspace::count(units.iter().flat_map(|u| &u.recs));
        w.write(units).await;
        w.status.set_error(None);
        w.status.busy_since_ms.store(0, Ordering::Relaxed);
        w.pending_by_workspace.sub(&by_workspace);
        w.pending.fetch_sub(rows as u64, Ordering::Relaxed);
        let _ = committed.send(seq_end);
    }
}
