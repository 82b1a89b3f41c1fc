//! Group commit of runs' writes: a run's creation, its stage checkpoints and
//! its end go through one [`GroupCommit`] queue, so that many runs in flight
//! share a transaction (`RunStore::run_writes`) instead of paying one each.
//! A caller is answered only after its write committed, so a checkpoint is
//! as durable as before. A batch the store refuses for a permanent reason is
//! retried write by write, so one bad write fails only its own run.

use std::sync::Arc;

use async_trait::async_trait;

use crate::group_commit::{BatchProcess, Batching, GroupCommit};
use crate::ports::{RunWrite, Store, StoreError};
use crate::workflow::WorkflowRun;

/// The batch processor: one `run_writes` transaction per batch.
struct Committer {
    store: Arc<dyn Store>,
}

#[async_trait]
impl BatchProcess for Committer {
    type Item = RunWrite;
    type Answer = Result<bool, StoreError>;

    async fn process(&mut self, writes: Vec<RunWrite>) -> Vec<Self::Answer> {
        let n = writes.len();
        let store = Arc::clone(&self.store);
        let batch =
            crate::trace::store_call("run_writes", async { store.run_writes(&writes).await });
        match batch.await {
            Ok(applied) => applied.into_iter().map(Ok).collect(),
            Err(StoreError::Unavailable(m)) => (0..n)
                .map(|_| Err(StoreError::Unavailable(m.clone())))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, writes = n, "a batch of run writes was refused; writing them one by one");
                let mut out = Vec::with_capacity(n);
                for w in writes {
                    out.push(
                        self.store
                            .run_writes(std::slice::from_ref(&w))
                            .await
                            .map(|a| a.first().copied().unwrap_or(false)),
                    );
                }
                out
            }
        }
    }
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub(super) struct RunJournal {
    queue: GroupCommit<Committer>,
}

impl RunJournal {
    /// Spawns the committer (needs a tokio runtime); at most `max_batch`
    /// writes per transaction.
    pub(super) fn spawn(store: Arc<dyn Store>, max_batch: usize) -> Self {
        Self {
            queue: GroupCommit::spawn(
                "run_writes",
                Batching {
                    max_batch,
                    max_wait: std::time::Duration::ZERO,
                },
                Committer { store },
            ),
        }
    }

    async fn write(&self, w: RunWrite) -> Result<bool, StoreError> {
        self.queue.submit(w).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the run journal stopped (shutting down); retry on another node".into(),
            ))
        })
    }

    /// `RunStore::insert_run`, group-committed.
    pub(super) async fn insert(&self, run: &WorkflowRun) -> Result<(), StoreError> {
        self.write(RunWrite::Insert(Arc::new(run.clone())))
            .await
            .map(|_| ())
    }

    /// `RunStore::save_progress`, group-committed; `false`: fenced out.
    pub(super) async fn progress(&self, run: &WorkflowRun) -> Result<bool, StoreError> {
        self.write(RunWrite::Progress(Arc::new(run.clone()))).await
    }

    /// `RunStore::finish_run`, group-committed; `false`: fenced out. The
    /// run is shared with the write, not copied.
    pub(super) async fn finish(&self, run: &Arc<WorkflowRun>) -> Result<bool, StoreError> {
        self.write(RunWrite::Finish(Arc::clone(run))).await
    }
}
