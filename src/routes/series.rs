//! Time series for the agent pages: an agent's recommendations bucketed by
//! UTC hour or day, newest first, paginated by bucket start.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::AgentId;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody};
use crate::routes::agents::agent_not_found;
use crate::state::AppState;
use crate::store::{Bucket, SeriesPoint};

/// Query of the series endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SeriesQuery {
    /// `hour` (default) or `day` (UTC).
    bucket: Option<String>,
    /// Buckets per page (default `limits.default_page_size`, at most `limits.max_page_size`).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page (a bucket start, RFC 3339).
    cursor: Option<String>,
}

/// A page of an agent's time series.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SeriesPage {
    /// The agent.
    pub agent_id: String,
    /// The bucket width.
    pub bucket: Bucket,
    /// Buckets with at least one recommendation, newest first.
    pub items: Vec<SeriesPoint>,
    /// Pass as `cursor` for older buckets; null on the last page.
    pub next_cursor: Option<String>,
}

/// An agent's recommendations per hour or day: count, verdicts, approval
/// rate, mean quality and confidence.
#[utoipa::path(get, path = "/api/v1/learning/agents/{agent_id}/series", tag = "trust",
    params(("agent_id" = String, Path), SeriesQuery),
    responses((status = 200, body = SeriesPage),
              (status = 404, description = "agent not registered in this workspace", body = ErrorBody),
              (status = 422, description = "bad bucket, limit or cursor; `details.field` names it", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn agent_series(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: crate::extract::Query<SeriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let q = q.into_inner();
    let bucket = match q.bucket.as_deref() {
        None => Bucket::Hour,
        Some(b) => Bucket::parse(b).ok_or_else(|| {
            ApiError::field(
                crate::error::ErrorCode::InvalidField,
                "bucket",
                format!("bucket: unknown {b:?}; use hour or day"),
            )
        })?,
    };
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
            DateTime::parse_from_rfc3339(c)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::field(
                        crate::error::ErrorCode::InvalidField,
                        "cursor",
                        "cursor: pass the next_cursor of the previous page",
                    )
                })
        })
        .transpose()?;
    if state.agent_name(ws.0, &id).await?.is_none() {
        return Err(agent_not_found(&id));
    }
    state.engine.flush_workspace(ws.0).await?;
    let items = state
        .store
        .agent_series(ws.0, &id, bucket, before, limit)
        .await?;
    let next_cursor = if items.len() == limit as usize {
        items
            .last()
            .map(|p| p.bucket_start.to_rfc3339_opts(SecondsFormat::Secs, true))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(SeriesPage {
        agent_id: id.to_string(),
        bucket,
        items,
        next_cursor,
    }))
}
