//! Learning cycles, patterns and insights.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use swarmwise_actors::learner::cycle::{PatternStatus, StoredPattern};
use swarmwise_actors::learner::patterns::Category;
use swarmwise_actors::learner::CycleReport;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;

/// A list of cycles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CycleList {
    /// Newest first.
    pub items: Vec<CycleReport>,
}

/// A page of patterns.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PatternPage {
    /// By key.
    pub items: Vec<StoredPattern>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The insights widget's data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Insights {
    /// The latest successful cycle, if any.
    pub latest_cycle: Option<CycleReport>,
    /// Findings in plain words.
    pub key_insights: Vec<String>,
    /// What to do about them.
    pub recommended_actions: Vec<String>,
    /// Patterns by status.
    pub candidate_patterns: u64,
    /// Confirmed patterns (they have rules).
    pub confirmed_patterns: u64,
}

/// Scheduled jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Schedule {
    /// Every job with its next run time (UTC).
    pub jobs: Vec<swarmwise_actors::scheduler::JobInfo>,
}

/// Every scheduled job with its next run time, like Celery Beat's listing.
#[utoipa::path(get, path = "/api/v1/learning/schedule", tag = "learning", responses((status = 200, body = Schedule)), security(("api_key" = [])))]
pub async fn schedule(_ws: Workspace, state: web::Data<AppState>) -> HttpResponse {
    let s = &state.settings;
    HttpResponse::Ok().json(Schedule {
        jobs: s.scheduler.jobs(
            chrono::Utc::now(),
            s.learning.cycle_every_outcomes,
            &s.retention,
        ),
    })
}

/// Query of `GET /learning/cycles`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CyclesQuery {
    /// At most this many (default 20, at most 200).
    limit: Option<u32>,
}

/// Runs a learning cycle now and answers with its report (409 while one runs).
#[utoipa::path(post, path = "/api/v1/learning/cycles", tag = "learning",
    responses((status = 200, body = CycleReport), (status = 409, description = "a cycle is already running", body = ErrorBody),
              (status = 503, description = "learning disabled", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn trigger(ws: Workspace, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.engine_enabled()?;
    let report = state.learner.run(ws.0, "api").await?;
    state.patterns.invalidate(ws.0).await;
    Ok(HttpResponse::Ok().json(report))
}

/// Cycles, newest first.
#[utoipa::path(get, path = "/api/v1/learning/cycles", tag = "learning", params(CyclesQuery),
    responses((status = 200, body = CycleList)), security(("api_key" = [])))]
pub async fn list(
    ws: Workspace,
    state: web::Data<AppState>,
    q: crate::extract::Query<CyclesQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > 200 {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "limit",
            "limit: must be between 1 and 200",
        ));
    }
    let items = state.store.cycles(ws.0, limit).await?;
    Ok(HttpResponse::Ok().json(CycleList { items }))
}

/// The newest cycle's report.
#[utoipa::path(get, path = "/api/v1/learning/cycles/latest", tag = "learning",
    responses((status = 200, body = CycleReport), (status = 404, description = "no cycle has run yet", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn latest(ws: Workspace, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut items = state.store.cycles(ws.0, 1).await?;
    let report = items.pop().ok_or_else(|| {
        ApiError::new(ErrorCode::CycleNotFound, "no learning cycle has run in this workspace yet; start one with POST /api/v1/learning/cycles")
    })?;
    Ok(HttpResponse::Ok().json(report))
}

/// Query of `GET /learning/patterns`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PatternsQuery {
    /// consensus, expert, high_confidence, combination.
    category: Option<String>,
    /// candidate, confirmed, retired.
    status: Option<String>,
    /// Page size (default 50, at most 500).
    limit: Option<u32>,
    /// From `next_cursor`.
    cursor: Option<String>,
}

pub(crate) async fn cached_patterns(
    state: &AppState,
    ws: swarmwise_actors::domain::WorkspaceId,
) -> Result<Arc<Vec<StoredPattern>>, ApiError> {
    Ok(state.patterns.get(state.store.as_ref(), ws).await?)
}

/// Discovered patterns, filtered and paginated by key (cached in process,
/// refreshed when a cycle finishes).
#[utoipa::path(get, path = "/api/v1/learning/patterns", tag = "learning", params(PatternsQuery),
    responses((status = 200, body = PatternPage), (status = 422, description = "unknown category or status", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn patterns(
    ws: Workspace,
    state: web::Data<AppState>,
    q: crate::extract::Query<PatternsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let category: Option<Category> = q
        .category
        .map(|c| {
            serde_json::from_value(serde_json::Value::String(c.clone())).map_err(|_| {
                ApiError::field(ErrorCode::InvalidField, "category", format!("category: unknown {c:?}; use consensus, expert, high_confidence or combination"))
            })
        })
        .transpose()?;
    let status = q
        .status
        .map(|s| {
            PatternStatus::parse(&s).ok_or_else(|| {
                ApiError::field(
                    ErrorCode::InvalidField,
                    "status",
                    format!("status: unknown {s:?}; use candidate, confirmed or retired"),
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > 500 {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "limit",
            "limit: must be between 1 and 500",
        ));
    }
    let all = cached_patterns(&state, ws.0).await?;
    let mut items: Vec<StoredPattern> = all
        .iter()
        .filter(|p| category.is_none_or(|c| p.category == c))
        .filter(|p| status.is_none_or(|s| p.status == s))
        .filter(|p| q.cursor.as_deref().is_none_or(|c| p.key.as_str() > c))
        .take(limit as usize + 1)
        .cloned()
        .collect();
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|p| p.key.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(PatternPage { items, next_cursor }))
}

/// The insights widget: the latest cycle's findings and advice.
#[utoipa::path(get, path = "/api/v1/learning/insights", tag = "learning", responses((status = 200, body = Insights)), security(("api_key" = [])))]
pub async fn insights(ws: Workspace, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(insights_of(&state, ws.0).await?))
}

/// The insights widget's data (the API and the dashboard's overview).
pub(crate) async fn insights_of(
    state: &AppState,
    ws: swarmwise_actors::domain::WorkspaceId,
) -> Result<Insights, ApiError> {
    let cycles = state.store.cycles(ws, 20).await?;
    let latest = cycles.into_iter().find(|c| c.status == "succeeded");
    let strings = |key: &str| -> Vec<String> {
        latest
            .as_ref()
            .and_then(|c| c.insights.get(key))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    };
    let all = cached_patterns(state, ws).await?;
    let count = |s: PatternStatus| all.iter().filter(|p| p.status == s).count() as u64;
    Ok(Insights {
        key_insights: strings("key_insights"),
        recommended_actions: strings("recommended_actions"),
        candidate_patterns: count(PatternStatus::Candidate),
        confirmed_patterns: count(PatternStatus::Confirmed),
        latest_cycle: latest,
    })
}
