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
//! A run's stages open `stage` spans (the agent tasks of a stage are its
//! children), the hand-over of a stage's recommendations to the tracker a
//! `track` span and the run's evaluation an `evaluation` span. The
//! OpenTelemetry export (`swarmwise::otel`) exports exactly these spans
//! and the request span, renamed to the OpenTelemetry conventions.
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

/// The span of one stage of a run, with the number of agents it asks.
pub fn stage_span(stage: &str, agents: usize) -> tracing::Span {
    tracing::info_span!("stage", stage = %stage, agents)
}

/// The span of handing `recommendations` answers to the tracker.
pub fn track_span(recommendations: usize) -> tracing::Span {
    tracing::info_span!("track", recommendations)
}

/// The span of evaluating a workflow's recommendations (a run's, or an
/// outcome posted over the API); `evaluated` is recorded at the end.
pub fn evaluation_span(workspace: WorkspaceId, workflow_id: &str) -> tracing::Span {
    tracing::info_span!(
        "evaluation",
        workspace = %workspace,
        workflow_id = %workflow_id,
        evaluated = tracing::field::Empty,
    )
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
