//! Spans that follow one request or run across actors and into the store.
//!
//! The HTTP layer opens a `request` span (request id, method, path,
//! workspace); a workflow run opens a `run` span (run id, workflow,
//! workspace) as its child; every agent task of the run opens an
//! `agent_task` span (agent, stage) as a child of the run's span, carried
//! in the actor message because an actor's handler does not run in the
//! sender's span; every store call of a run runs in a `store` span (`op`)
//! and logs its end at `debug`. The fmt logger prints a line's whole span
//! path, so one filter on a run id follows the run from its request to the
//! store (`docs/operations.md`, "Following one run").
//!
//! Ids are fields, never metric labels.

use std::fmt::Display;
use std::future::Future;
use std::time::Instant;

use tracing::Instrument;
use uuid::Uuid;

use crate::domain::WorkspaceId;

/// The span of one workflow run (a child of the current span).
pub fn run_span(run_id: Uuid, workflow: &str, workspace: WorkspaceId) -> tracing::Span {
    tracing::info_span!("run", run_id = %run_id, workflow = %workflow, workspace = %workspace)
}

/// Runs one store call in a `store{op}` span, a child of the current one,
/// and logs its end at `debug` (duration in µs) or its failure at `warn`.
pub async fn store_call<T, E: Display>(
    op: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let span = tracing::debug_span!("store", op);
    async move {
        let started = Instant::now();
        let res = call.await;
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        match &res {
            Ok(_) => tracing::debug!(elapsed_us, "store call done"),
            Err(e) => tracing::warn!(elapsed_us, error = %e, "store call failed"),
        }
        res
    }
    .instrument(span)
    .await
}
