//! Tokens and cost of the workspace's agents over a time range
//! (`GET /api/v1/learning/costs`): sums of what was recorded with each
//! recommendation (see `crate::costs` for where the numbers come from and
//! how they are bounded). Reads the store after a flush of pending writes,
//! scoped to the caller's workspace only.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::AgentId;

use crate::auth::Workspace;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::state::AppState;

/// Query of `GET /learning/costs`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CostsQuery {
    /// Only recommendations created at or after this time (RFC 3339).
    since: Option<String>,
    /// Only recommendations created before this time (RFC 3339).
    until: Option<String>,
    /// Only this agent.
    agent_id: Option<String>,
}

/// Token and cost totals of a set of recommendations.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct UsageTotals {
    /// Recommendations with at least one known token count.
    pub recommendations: u64,
    /// Prompt (input) tokens.
    pub prompt_tokens: u64,
    /// Completion (output) tokens.
    pub completion_tokens: u64,
    /// Cost of the priced ones, USD.
    pub cost_usd: f64,
    /// Recommendations with tokens but no cost (no price row for their
    /// model, or a count unknown): when not 0, `cost_usd` is a lower bound.
    pub unpriced_recommendations: u64,
}

/// One agent's totals.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentCost {
    /// The agent.
    pub agent_id: String,
    /// Its registered name (its id when it is no longer registered).
    pub agent_name: String,
    /// Its totals.
    #[serde(flatten)]
    pub totals: UsageTotals,
}

/// `GET /learning/costs` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Costs {
    /// The lower bound asked for, if any.
    pub since: Option<DateTime<Utc>>,
    /// The upper bound asked for, if any.
    pub until: Option<DateTime<Utc>>,
    /// Currency of every `cost_usd`: always `USD`.
    pub currency: &'static str,
    /// The workspace's totals (over `agents`).
    pub total: UsageTotals,
    /// Per agent with any recorded tokens, by agent id.
    pub agents: Vec<AgentCost>,
}

fn time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::field(
                    ErrorCode::InvalidQuery,
                    field,
                    format!("query parameter {field}: not an RFC 3339 time ({e}); e.g. 2026-12-01T00:00:00Z"),
                )
            })
    })
    .transpose()
}

/// Tokens and cost per agent and for the workspace, over `[since, until)`
/// of the recommendations' creation times.
#[utoipa::path(get, path = "/api/v1/learning/costs", tag = "trust", params(CostsQuery),
    responses((status = 200, body = Costs),
              (status = 400, description = "a bad time or agent id; `details.field` names it", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn totals(
    ws: Workspace,
    state: web::Data<AppState>,
    q: crate::extract::Query<CostsQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let since = time("since", q.since.as_deref())?;
    let until = time("until", q.until.as_deref())?;
    if let (Some(s), Some(u)) = (since, until) {
        if s > u {
            return Err(ApiError::field(
                ErrorCode::InvalidQuery,
                "until",
                "query parameter until: must not be before since",
            ));
        }
    }
    let agent = q
        .agent_id
        .as_deref()
        .map(|a| {
            AgentId::parse("agent_id", a).map_err(|e| {
                ApiError::field(
                    ErrorCode::InvalidQuery,
                    "agent_id",
                    format!("query parameter agent_id: {}", e.message),
                )
            })
        })
        .transpose()?;
    state.engine.flush_workspace(ws.0).await?;
    let rows = state.store.usage_totals(ws.0, since, until).await?;
    let names: std::collections::BTreeMap<AgentId, String> = state
        .store
        .agents(ws.0)
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let mut total = UsageTotals::default();
    let mut agents = Vec::new();
    for u in rows {
        if agent.as_ref().is_some_and(|a| *a != u.agent_id) {
            continue;
        }
        total.recommendations += u.recommendations;
        total.prompt_tokens += u.prompt_tokens;
        total.completion_tokens += u.completion_tokens;
        total.cost_usd += u.cost_usd;
        total.unpriced_recommendations += u.unpriced;
        agents.push(AgentCost {
            agent_name: names
                .get(&u.agent_id)
                .cloned()
                .unwrap_or_else(|| u.agent_id.to_string()),
            agent_id: u.agent_id.to_string(),
            totals: UsageTotals {
                recommendations: u.recommendations,
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cost_usd: u.cost_usd,
                unpriced_recommendations: u.unpriced,
            },
        });
    }
    Ok(HttpResponse::Ok().json(Costs {
        since,
        until,
        currency: "USD",
        total,
        agents,
    }))
}
