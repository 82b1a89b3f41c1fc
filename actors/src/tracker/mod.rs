//! The `RecommendationTracker` actor: the single write path of
//! recommendations and verdicts.
//!
//! - `Track` answers with the ids at once in `write_behind` mode (rows reach
//!   the store in batches, by size or time), or after the batch holding them
//!   committed in `durable` mode (group commit).
//! - `Evaluate` and `Feedback` first wait until everything tracked before
//!   them has committed, then run one batch at a time (so evaluation times
//!   are monotonic and the trust fold order is the commit order), and tell
//!   the `TrustScorer` after their own commit. Evaluations are
//!   group-committed: every evaluation queued while a batch commits joins
//!   the next transaction, and each is answered only after that commit.
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
//! Reads wait only for their own workspace: [`WorkspaceWrites`] keeps, per
//! workspace, the sequence number of its last acknowledged row, so a read
//! whose workspace has nothing in flight answers without a message to the
//! actor, and one that has waits for its own rows, not for every tenant's
//! (`FlushWorkspace`). `Flush` (every workspace) remains for the learner,
//! benches and shutdown paths.
//!
//! Waits on the writer are bounded: reads that flush first give up after
//! `tracking.read_flush_timeout_ms` (`FlushTimeout`, a 503 with
//! `Retry-After`), `Drain` takes a deadline, and [`WriterStatus`] tells
//! `/readyz` when the writer has not committed for `tracking.stalled_after_ms`.
//!
//! Files: `mod.rs` (the actor, its configuration, start and restart),
//! `messages.rs` (the messages it answers), `buffer.rs` (`Track`, `Flush`,
//! `Drain`: buffering and hand-off to the writer), `evaluation.rs`
//! (`Evaluate`, `Feedback`), `writer.rs` (the writer task).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Mutex};

use crate::domain::{to_micros, WorkspaceId};
use crate::group_commit::{Batching, GroupCommit};
use crate::ports::Store;
use crate::supervisor::{ActorHealth, HealthRegistry, RestartPolicy, RestartTracker};
use crate::trust::{Restart, TrustParams, TrustScorer};

mod buffer;
mod evaluation;
mod messages;
mod writer;

use buffer::CommitBarrier;
use evaluation::Evaluator;
use writer::{writer, Batch, PendingByWorkspace, Unit, Writer};
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
    /// One workspace's share of `max_pending`: its rows waiting for the
    /// store beyond this are refused (after `max_pending_wait_ms`) even
    /// when the buffer has room, so one tenant cannot fill the buffer that
    /// every tenant's tracking shares.
    pub max_pending_per_workspace: u64,
    /// Backpressure: a tracking request over HTTP that finds
    /// `max_pending` rows waiting first waits up to this many milliseconds
    /// for room (commits), then sheds with 503 `overloaded` + `Retry-After`.
    /// 0 sheds at once.
    pub max_pending_wait_ms: u64,
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
    /// Group commit of evaluations: at most this many evaluations share a
    /// transaction.
    pub evaluation_batch_size: usize,
    /// Group commit of evaluations: how long a batch waits for more
    /// evaluations, in milliseconds; 0 takes what queued while the previous
    /// batch was committing (no added latency).
    pub evaluation_max_wait_ms: u64,
}

impl TrackerConfig {
    /// One workspace's share of the buffer: `max_pending_per_workspace`,
    /// and never more than the whole buffer.
    pub fn workspace_share(&self) -> u64 {
        self.max_pending_per_workspace.min(self.max_pending)
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            mode: WriteMode::WriteBehind,
            batch_size: 1000,
            flush_interval_ms: 50,
            max_pending: 100_000,
            max_pending_per_workspace: 25_000,
            max_pending_wait_ms: 1_000,
            read_flush_timeout_ms: 5_000,
            stalled_after_ms: 10_000,
            retry_backoff_initial_ms: 50,
            retry_backoff_max_ms: 5_000,
            evaluation_batch_size: 512,
            evaluation_max_wait_ms: 0,
        }
    }
}

pub(crate) use buffer::overloaded;
pub use buffer::{BufferLimit, TrackRefusal, WorkspaceWrites};
pub use messages::{
    Drain, Evaluate, EvaluationSummary, ExplicitVerdict, Feedback, Flush, FlushWorkspace, Track,
    TryTrack,
};

/// State shared by evaluations: the lock that serialises them and the last
/// evaluation time handed out (monotonic).
pub(super) struct EvalState {
    last_at: DateTime<Utc>,
}

/// The actor. Start it with [`RecommendationTracker::start_supervised`].
pub struct RecommendationTracker {
    config: TrackerConfig,
    store: Arc<dyn Store>,
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
    /// Waits on `committed`, bounded by `tracking.read_flush_timeout_ms`.
    barrier: CommitBarrier,
    /// Per workspace, the sequence of its last acknowledged row (shared with
    /// the engine, which answers reads of idle workspaces without a message).
    writes: WorkspaceWrites,
    /// Group commit of evaluations.
    evaluator: GroupCommit<Evaluator>,
    /// Rows acknowledged but not yet committed (backpressure).
    pending: Arc<AtomicU64>,
    /// The same, per workspace (`tracking.max_pending_per_workspace`);
    /// shared with the writer, which takes committed rows off. Entries at
    /// zero are removed.
    pending_by_workspace: PendingByWorkspace,
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
    /// rows waiting for the store, the writer's status and the per-workspace
    /// read barrier.
    pub fn start_supervised(
        config: TrackerConfig,
        store: Arc<dyn Store>,
        params: Arc<TrustParams>,
        scorer: Addr<TrustScorer>,
        policy: RestartPolicy,
        health: HealthRegistry,
        revisions: Arc<dashmap::DashMap<WorkspaceId, u64>>,
    ) -> (
        Addr<Self>,
        Arc<AtomicU64>,
        Arc<WriterStatus>,
        WorkspaceWrites,
    ) {
        let status: Arc<WriterStatus> = Arc::default();
        let status_out = Arc::clone(&status);
        let (tx, rx) = mpsc::unbounded_channel();
        let (committed_tx, committed_rx) = watch::channel(0u64);
        let pending = Arc::new(AtomicU64::new(0));
        let pending_by_workspace = PendingByWorkspace::default();
        tokio::spawn(writer(
            Writer {
                store: Arc::clone(&store),
                pending: Arc::clone(&pending),
                pending_by_workspace: pending_by_workspace.clone(),
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
        let barrier = CommitBarrier {
            committed: committed_rx.clone(),
            timeout: Duration::from_millis(config.read_flush_timeout_ms),
            pending: Arc::clone(&pending),
            by_workspace: pending_by_workspace.clone(),
        };
        let writes = WorkspaceWrites::new(barrier.clone());
        let writes_out = writes.clone();
        let eval = Arc::new(Mutex::new(EvalState {
            last_at: to_micros(Utc::now()),
        }));
        let evaluator = GroupCommit::spawn(
            "evaluations",
            Batching {
                max_batch: config.evaluation_batch_size.max(1),
                max_wait: Duration::from_millis(config.evaluation_max_wait_ms),
            },
            Evaluator {
                store: Arc::clone(&store),
                params: Arc::clone(&params),
                scorer: scorer.clone(),
                eval: Arc::clone(&eval),
                barrier: barrier.clone(),
            },
        );
        let addr = Supervisor::start(move |_| Self {
            config,
            store,
            scorer,
            buffer: Vec::new(),
            buffered_rows: 0,
            handed: 0,
            writer: tx,
            committed: committed_rx,
            barrier,
            writes,
            evaluator,
            pending,
            pending_by_workspace,
            eval,
            draining: false,
            revisions,
            restarts: RestartTracker::new(policy),
            health,
        });
        (addr, pending_out, status_out, writes_out)
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

impl Handler<Restart> for RecommendationTracker {
    type Result = ();

    fn handle(&mut self, msg: Restart, ctx: &mut Context<Self>) {
        tracing::warn!(reason = %msg.reason, "tracker restart requested");
        ctx.stop();
    }
}
