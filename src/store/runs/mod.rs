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

use serde_json::Value;
use swarmwise_actors::ports::{RunStore, RunWrite, StoreError};
use swarmwise_actors::workflow::WorkflowRun;

/// Columns read into a `WorkflowRun`, in this order.
pub(super) const RUN_COLUMNS: &str = "id, workspace_id, workflow, status, priority, input, result, error, created_at, finished_at, owner_node, lease_until, fencing, progress, approval_deadline";

/// The `result` a run's end stores: the run's report, whose `stages` repeat
/// `progress.stages` word for word when the run ends normally (both list
/// the completed stages). Those are kept once, in `progress`: a result
/// whose `stages` equal the progress's is stored without them, and
/// [`restore_result_stages`] puts them back on every read. A finished run
/// wrote its stages twice before (2.5 of the 5.7 KB of the runtime bench's
/// end write), and on SQLite the row no longer fits one page.
fn stored_result(run: &WorkflowRun) -> Option<Value> {
    let result = run.result.as_ref()?;
    let progress_stages = run.progress.as_ref().and_then(|p| p.get("stages"));
    match (result, progress_stages) {
        (Value::Object(report), Some(stages)) if report.get("stages") == Some(stages) => {
            Some(Value::Object(
                report
                    .iter()
                    .filter(|(k, _)| k.as_str() != "stages")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
        }
        _ => Some(result.clone()),
    }
}

/// Puts back the `stages` [`stored_result`] left out: a stored report
/// always has them otherwise (a run's report serialises `stages` even when
/// empty), so a result object without them had them taken out.
fn restore_result_stages(run: &mut WorkflowRun) {
    let Some(Value::Object(report)) = run.result.as_mut() else {
        return;
    };
    if report.contains_key("stages") {
        return;
    }
    if let Some(stages) = run.progress.as_ref().and_then(|p| p.get("stages")) {
        report.insert("stages".into(), stages.clone());
    }
}

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
