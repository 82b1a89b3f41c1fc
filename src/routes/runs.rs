//! Workflow runs: start one (wait or not), read a run's report, approve or
//! reject a run paused at an approval stage, and list the definitions a run
//! can name (`GET /workflows`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::Priority;
use swarmwise_actors::workflow::{RunRequest, RunStatus, WorkflowDef, WorkflowRun};
use uuid::Uuid;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::Body;
use crate::state::AppState;

/// `GET /workflows` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    /// Every definition loaded from `workflows.dir`.
    pub items: Vec<WorkflowDef>,
}

/// `POST /workflows/runs` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Definition name.
    pub workflow: String,
    /// Input handed to every agent (`correlation_id` inside it is used for tracking).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// LOW, NORMAL (default), HIGH, CRITICAL.
    #[serde(default)]
    pub priority: Option<String>,
    /// true: answer with the finished run (or the run paused `awaiting_approval`
    /// at a stage with `approval = true`); false (default): 202 at once.
    #[serde(default)]
    pub wait: bool,
}

/// A run that was started and not waited for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunStarted {
    /// Poll `GET /workflows/runs/{run_id}`.
    pub run_id: Uuid,
    /// `running`.
    pub status: RunStatus,
}

/// Every definition.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", responses((status = 200, body = WorkflowList)), security(("api_key" = [])))]
pub async fn list(_ws: Workspace, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(WorkflowList {
        items: state.workflows.definitions(),
    })
}

/// Runs a workflow: 200 with the finished run when `wait`, else 202 `{run_id, status}`.
#[utoipa::path(post, path = "/api/v1/workflows/runs", tag = "workflows", request_body = RunBody,
    responses((status = 200, body = WorkflowRun), (status = 202, body = RunStarted),
              (status = 404, description = "no such workflow definition", body = ErrorBody),
              (status = 422, description = "bad priority or input", body = ErrorBody),
              (status = 429, description = "too many runs in flight for this workspace (limits.max_runs_in_flight) or requests for this key; see Retry-After", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn run(
    ws: Workspace,
    state: web::Data<AppState>,
    body: Body<RunBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let priority = b
        .priority
        .as_deref()
        .map(|p| Priority::parse("priority", p))
        .transpose()?
        .unwrap_or(Priority::Normal);
    let input = b.input.unwrap_or_else(|| serde_json::json!({}));
    swarmwise_actors::domain::storable_json("input", &input)?;
    if !input.is_object() {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "input",
            "input: must be a JSON object",
        ));
    }
    let req = RunRequest {
        workflow: b.workflow,
        input,
        priority,
    };
    // Held for the run's whole life, in the background too.
    let slot = state.limits.start_run(ws.0)?;
    let created = state.workflows.create(ws.0, &req).await?;
    let id = created.id;
    if b.wait {
        // A run paused for approval answers with its paused state.
        state.workflows.execute(created).await?;
        drop(slot);
        let run = state
            .store
            .run(ws.0, id)
            .await?
            .ok_or_else(|| not_found(id))?;
        return Ok(HttpResponse::Ok().json(run));
    }
    let wf = state.workflows.clone();
    // In the request's span: the run's logs keep its request id.
    actix::spawn(tracing::Instrument::in_current_span(async move {
        if let Err(e) = wf.execute(created).await {
            tracing::warn!(run = %id, error = %e, "workflow run failed");
        }
        drop(slot);
    }));
    Ok(HttpResponse::Accepted().json(RunStarted {
        run_id: id,
        status: RunStatus::Running,
    }))
}

fn parse_run_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidField,
            "run_id",
            format!("run_id: {raw:?} is not a UUID"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::new(
        ErrorCode::RunNotFound,
        format!("workflow run {id} was not found in this workspace"),
    )
}

/// One run with its per-stage, per-agent report.
#[utoipa::path(get, path = "/api/v1/workflows/runs/{run_id}", tag = "workflows", params(("run_id" = String, Path)),
    responses((status = 200, body = WorkflowRun), (status = 404, description = "no such run in this workspace", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_run_id(&path.into_inner())?;
    let run = state
        .store
        .run(ws.0, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(HttpResponse::Ok().json(run))
}

/// Query of `GET /workflows/runs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunListQuery {
    /// Page size (default `limits.default_page_size`, at most `limits.max_page_size`).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (a run id).
    cursor: Option<String>,
}

/// A page of runs, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunList {
    /// Runs without input and result (read one for its report).
    pub items: Vec<crate::store::RunSummary>,
    /// Pass as `cursor` for older runs; null on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Recent runs of the workspace, newest first.
#[utoipa::path(get, path = "/api/v1/workflows/runs", tag = "workflows", params(RunListQuery),
    responses((status = 200, body = RunList),
              (status = 422, description = "bad limit or cursor; `details.field` names it", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_runs(
    ws: Workspace,
    state: web::Data<AppState>,
    q: crate::extract::Query<RunListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limits = &state.settings.limits;
    let limit = q.limit.unwrap_or(limits.default_page_size);
    if limit == 0 || limit > limits.max_page_size {
        return Err(ApiError::field(
            crate::error::ErrorCode::InvalidField,
            "limit",
            format!("limit: must be between 1 and {}", limits.max_page_size),
        ));
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            Uuid::parse_str(c).map_err(|_| {
                ApiError::field(
                    crate::error::ErrorCode::InvalidField,
                    "cursor",
                    "cursor: pass the next_cursor of the previous page",
                )
            })
        })
        .transpose()?;
    let items = state.store.recent_runs(ws.0, before, limit).await?;
    let next_cursor = if items.len() == limit as usize {
        items.last().map(|r| r.id)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(RunList { items, next_cursor }))
}

/// `POST /workflows/runs/{run_id}/approve` and `/reject` body (optional:
/// an empty body is no comment).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Becomes the feedback comment on the paused stage's recommendations
    /// (at most `limits.max_text_bytes` bytes).
    #[serde(default)]
    pub comment: Option<String>,
}

/// Parses and checks a decision body (empty = no comment).
pub(crate) fn decision_comment(state: &AppState, bytes: &[u8]) -> Result<Option<String>, ApiError> {
    let body: DecisionBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        DecisionBody::default()
    } else {
        crate::extract::parse_json(bytes)?
    };
    check_comment(state, body.comment)
}

/// Checks a decision's comment (storable on both backends, at most
/// `limits.max_text_bytes`); a blank one is no comment.
pub(crate) fn check_comment(
    state: &AppState,
    comment: Option<String>,
) -> Result<Option<String>, ApiError> {
    if let Some(c) = &comment {
        swarmwise_actors::domain::storable_text("comment", c)?;
        if c.len() > state.settings.limits.max_text_bytes {
            return Err(swarmwise_actors::domain::ParseError::new(
                "comment",
                format!(
                    "longer than limits.max_text_bytes ({} bytes); shorten it",
                    state.settings.limits.max_text_bytes
                ),
            )
            .into());
        }
    }
    Ok(comment.filter(|c| !c.trim().is_empty()))
}

/// Applies a decision; maps the engine's answers to the API's codes (404
/// for another workspace's run too: ids are not probeable).
pub(crate) async fn decide(
    state: &AppState,
    ws: swarmwise_actors::domain::WorkspaceId,
    id: Uuid,
    action: swarmwise_actors::workflow::ApprovalAction,
    comment: Option<String>,
    by: &'static str,
) -> Result<WorkflowRun, ApiError> {
    use swarmwise_actors::workflow::runner::Decision;
    use swarmwise_actors::EngineError;
    match state
        .workflows
        .decide(
            ws,
            id,
            Decision {
                action,
                comment,
                by,
            },
        )
        .await
    {
        Ok(run) => Ok(run),
        Err(EngineError::NotFound { .. }) => Err(not_found(id)),
        Err(EngineError::Conflict(m)) => Err(ApiError::new(ErrorCode::RunNotAwaitingApproval, m)),
        Err(e) => Err(e.into()),
    }
}

async fn decision_route(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
    action: swarmwise_actors::workflow::ApprovalAction,
) -> Result<HttpResponse, ApiError> {
    let id = parse_run_id(&path.into_inner())?;
    let comment = decision_comment(&state, &body)?;
    let run = decide(&state, ws.0, id, action, comment, "api").await?;
    Ok(HttpResponse::Ok().json(run))
}

/// Approves a run paused `awaiting_approval`: it continues with the next
/// stage (on this node, in the background) → the run, `running` again. The
/// paused stage's recommendations get an `approved` verdict with the comment.
#[utoipa::path(post, path = "/api/v1/workflows/runs/{run_id}/approve", tag = "workflows", params(("run_id" = String, Path)),
    request_body(content = DecisionBody, description = "optional; an empty body is no comment"),
    responses((status = 200, body = WorkflowRun),
              (status = 400, description = "run_id is not a UUID, or the body is not JSON", body = ErrorBody),
              (status = 404, description = "no such run in this workspace", body = ErrorBody),
              (status = 409, description = "the run is not awaiting approval, or another decision won (`run_not_awaiting_approval`)", body = ErrorBody),
              (status = 422, description = "comment too long or not storable; `details.field` names it", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn approve(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decision_route(
        ws,
        state,
        path,
        body,
        swarmwise_actors::workflow::ApprovalAction::Approve,
    )
    .await
}

/// Rejects a run paused `awaiting_approval`: it ends `rejected` → the run.
/// The paused stage's recommendations get a `rejected` verdict with the comment.
#[utoipa::path(post, path = "/api/v1/workflows/runs/{run_id}/reject", tag = "workflows", params(("run_id" = String, Path)),
    request_body(content = DecisionBody, description = "optional; an empty body is no comment"),
    responses((status = 200, body = WorkflowRun),
              (status = 400, description = "run_id is not a UUID, or the body is not JSON", body = ErrorBody),
              (status = 404, description = "no such run in this workspace", body = ErrorBody),
              (status = 409, description = "the run is not awaiting approval, or another decision won (`run_not_awaiting_approval`)", body = ErrorBody),
              (status = 422, description = "comment too long or not storable; `details.field` names it", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn reject(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    decision_route(
        ws,
        state,
        path,
        body,
        swarmwise_actors::workflow::ApprovalAction::Reject,
    )
    .await
}
