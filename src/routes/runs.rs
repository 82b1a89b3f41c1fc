//! Workflow runs: start one (wait or not), read a run's report, and list the
//! definitions a run can name (`GET /workflows`).

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
    /// true: answer with the finished run; false (default): 202 at once.
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
    let raw = path.into_inner();
    let id = Uuid::parse_str(&raw).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidField,
            "run_id",
            format!("run_id: {raw:?} is not a UUID"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })?;
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
