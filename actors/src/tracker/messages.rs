//! The messages the tracker answers: tracking, evaluation, feedback, flush
//! and drain.

use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{QualityScore, Recommendation, Verdict, WorkspaceId};
use crate::error::EngineError;

/// Track recommendations (already validated, ids assigned). Replies with
/// their ids: at once (write_behind) or after commit (durable).
#[derive(Message, Debug)]
#[rtype(result = "Result<Vec<Uuid>, EngineError>")]
pub struct Track(pub Vec<Recommendation>);

/// Track unless `tracking.max_pending` rows already wait for the store;
/// then the rows come back untouched ([`super::TrackRefusal::Full`]) so the
/// caller may wait for a commit and try again (backpressure) before it
/// sheds. Sent by `Engine::track_waiting` for the HTTP ingest endpoints.
#[derive(Message, Debug)]
#[rtype(result = "Result<Vec<Uuid>, super::TrackRefusal>")]
pub struct TryTrack(pub Vec<Recommendation>);

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
    /// The workflow's recommendations that were never tracked: judged with
    /// the stored ones and inserted, already judged, in the evaluation's own
    /// transaction (one write per row instead of a tracked insert, a read
    /// back and an update). A workflow run passes its last stage's answers
    /// here; each must be pending and of this workspace and workflow. Empty
    /// for `POST /workflows/{id}/outcome`.
    pub fresh: Vec<Recommendation>,
}

/// Counts per status after an evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
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

/// Replies once every row of one workspace tracked before it has committed
/// (read-your-writes for that workspace only; other tenants' rows in flight
/// are not waited for).
#[derive(Message, Debug)]
#[rtype(result = "Result<(), EngineError>")]
pub struct FlushWorkspace(pub WorkspaceId);

/// Shutdown: refuse new tracking, reply once everything acknowledged is on
/// disk, or with `DrainIncomplete` (how many rows are not) at the deadline.
#[derive(Message, Debug)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Drain {
    /// How long to wait for the writer.
    pub timeout: Duration,
}
