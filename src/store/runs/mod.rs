//! Workflow runs ([`RunStore`]): start, progress per stage, finish, read;
//! the leases that make runs durable across nodes (claim, renew, release,
//! each write fenced by the run's fencing token); approval decisions; and
//! marking what a process from before durable runs left running as
//! interrupted.
//!
//! The PostgreSQL (`postgres.rs`) and SQLite (`sqlite.rs`) implementations
//! sit side by side; what both dialects share (column lists) lives here.
//!
//! [`RunStore`]: swarmwise_actors::ports::RunStore

mod postgres;
mod sqlite;

use swarmwise_actors::ports::{RunStore, RunWrite, StoreError};

/// Columns read into a `WorkflowRun`, in this order.
pub(super) const RUN_COLUMNS: &str = "id, workspace_id, workflow, status, priority, input, result, error, created_at, finished_at, owner_node, lease_until, fencing, progress, approval_deadline";

/// Sets whether write `i` of a group commit was applied (an index past the
/// answers is ignored: it cannot happen, the answers are sized to the writes).
fn mark(applied: &mut [bool], i: usize, done: bool) {
    if let Some(a) = applied.get_mut(i) {
        *a = done;
    }
}

/// Whether a run appears twice in `writes` (then they are applied one by
/// one, in order, instead of grouped by kind).
fn has_repeated_run(writes: &[RunWrite]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    !writes.iter().all(|w| seen.insert(w.run().id))
}

/// One write outside a group commit (`finish_run`, `save_progress`): a batch
/// of one, so each write's SQL exists once per backend. Whether it applied.
async fn one_write(store: &dyn RunStore, write: RunWrite) -> Result<bool, StoreError> {
    Ok(store
        .run_writes(std::slice::from_ref(&write))
        .await?
        .first()
        .copied()
        .unwrap_or(false))
}
