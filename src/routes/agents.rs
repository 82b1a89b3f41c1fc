//! Agents: register, list, read, enable/disable. An agent's JSON carries
//! its `quarantine` (null, or quarantined / probation by an alert) and
//! `override_grace`; enabling or disabling a quarantined agent is the
//! operator's override (`swarmwise_actors::admission`).

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use swarmwise_actors::domain::{to_micros, Agent, AgentId, WorkspaceId};
use swarmwise_actors::ports::StoreError;

use crate::auth::{Admin, Caller, Workspace};
use crate::backends::policy::Registrant;
use crate::error::{ApiError, ErrorCode};
use crate::extract::Body;
use crate::state::AppState;

/// `POST /agents` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// Unique id in the workspace.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Backend kind.
    pub kind: String,
    /// Backend settings.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// Starts enabled unless false.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /agents/{id}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    /// Enable or disable. On a quarantined or probation agent, `true`
    /// re-admits it now (with a grace of `agents.disable_min_samples`
    /// observations before quarantine may apply
    /// again) and `false` holds it out (no probation); both are audited.
    pub enabled: bool,
}

/// `GET /agents` answer: a page of agents by id.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AgentList {
    /// Agents of the workspace, ordered by id.
    pub items: Vec<Agent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /agents`: keyset pagination by agent id.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AgentListQuery {
    /// Page size (default `limits.default_page_size`, at most `limits.max_page_size`).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// 404 for an agent id this workspace has not registered.
pub fn agent_not_found(id: &AgentId) -> ApiError {
    ApiError::new(
        ErrorCode::AgentNotFound,
        format!(
            "agent {:?} is not registered in this workspace; list agents with GET /api/v1/agents",
            id.as_str()
        ),
    )
}

fn check_name(name: &str) -> Result<(), ApiError> {
    swarmwise_actors::domain::storable_text("name", name)?;
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "name",
            "name: must be 1-200 characters",
        ));
    }
    Ok(())
}

/// Registers an agent → 201 with the agent; 403 when the operator's agent
/// policy refuses it (`details.rule` names the config key); 409 if the id is
/// taken.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = RegisterAgent,
    responses((status = 201, body = Agent), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 403, description = "refused by the operator's agent policy; `details.rule` names the config key", body = crate::error::ErrorBody), (status = 409, description = "conflicts with the current state", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn register(
    ws: Workspace,
    state: web::Data<AppState>,
    body: Body<RegisterAgent>,
) -> Result<HttpResponse, ApiError> {
    register_in(&state, ws.0, Registrant::Tenant, body.0).await
}

/// The admin key registers an agent of any kind (still under the program,
/// secret and network policy) in a workspace → 201.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/agents", tag = "agents", request_body = RegisterAgent,
    params(("workspace_id" = uuid::Uuid, Path)),
    responses((status = 201, body = Agent), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 403, description = "not the admin key, or refused by the agent policy", body = crate::error::ErrorBody), (status = 404, description = "no such workspace", body = crate::error::ErrorBody), (status = 409, description = "conflicts with the current state", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn register_as_admin(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<uuid::Uuid>,
    body: Body<RegisterAgent>,
) -> Result<HttpResponse, ApiError> {
    let ws = WorkspaceId(path.into_inner());
    if !state.store.workspace_ids().await?.contains(&ws) {
        return Err(ApiError::new(
            ErrorCode::WorkspaceNotFound,
            format!(
                "workspace {} does not exist; create it with POST /api/v1/workspaces",
                ws.0
            ),
        ));
    }
    register_in(&state, ws, Registrant::Admin, body.0).await
}

async fn register_in(
    state: &AppState,
    ws: WorkspaceId,
    registrant: Registrant,
    b: RegisterAgent,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("id", &b.id)?;
    check_name(&b.name)?;
    let config = b.config.unwrap_or_else(|| json!({}));
    swarmwise_actors::domain::storable_json("config", &config)?;
    if !config.is_object() {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            "config",
            "config: must be a JSON object",
        ));
    }
    // The operator's policy first, so a refusal names its rule (403), then
    // kind and config by building the backend (422 naming the field).
    state.agent_policy.check_kind(registrant, &b.kind)?;
    state.agent_policy.check_pool(registrant, &config)?;
    state.agent_policy.check_config(&b.kind, &config)?;
    let agent = Agent {
        id,
        name: b.name.trim().to_owned(),
        kind: b.kind,
        config,
        enabled: b.enabled.unwrap_or(true),
        created_at: to_micros(Utc::now()),
        quarantine: None,
        override_grace: None,
    };
    state.workflows.swarm().validate(&agent)?;
    let cap = state.settings.limits.max_agents_per_workspace;
    if cap > 0 && state.store.agents(ws).await?.len() >= cap {
        return Err(ApiError::field(
            ErrorCode::TooManyAgents,
            "id",
            format!(
                "this workspace has {cap} agents (limits.max_agents_per_workspace); remove one with DELETE /api/v1/agents/{{agent_id}} first"
            ),
        ));
    }
    match state.store.create_agent(ws, &agent).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorCode::AgentExists,
                format!(
                    "agent {:?} is already registered; enable or disable it with PATCH /api/v1/agents/{}, or remove it with DELETE and register it again to change its kind or config",
                    agent.id.as_str(),
                    agent.id
                ),
            ))
        }
        Err(e) => return Err(e.into()),
    }
    state
        .agents
        .insert((ws, agent.id.clone()), agent.name.clone());
    state.workflows.swarm().start_agent(ws, &agent)?;
    let actor = match registrant {
        Registrant::Admin => Caller::Admin,
        Registrant::Tenant => Caller::Workspace(ws),
    };
    crate::audit::record(
        state.store.as_ref(),
        actor,
        crate::audit::actions::AGENT_REGISTER,
        Some(ws),
        agent.id.as_str(),
        json!({"kind": agent.kind, "enabled": agent.enabled}),
    )
    .await;
    Ok(HttpResponse::Created().json(&agent))
}

/// Lists agents by id → `{items, next_cursor}`.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(AgentListQuery), responses((status = 200, body = AgentList), (status = 400, description = "malformed query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    ws: Workspace,
    state: web::Data<AppState>,
    query: crate::extract::Query<AgentListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limits = &state.settings.limits;
    let limit = q.limit.unwrap_or(limits.default_page_size);
    if limit == 0 || limit > limits.max_page_size {
        return Err(swarmwise_actors::domain::ParseError::new(
            "limit",
            format!("must be between 1 and {}", limits.max_page_size),
        )
        .into());
    }
    let after = q.cursor.map(|c| AgentId::parse("cursor", &c)).transpose()?;
    // A workspace holds at most limits.max_agents_per_workspace agents, so
    // one read sorted by id is bounded; the page is cut from it.
    let mut items: Vec<Agent> = state
        .store
        .agents(ws.0)
        .await?
        .into_iter()
        .filter(|a| after.as_ref().is_none_or(|c| a.id.as_str() > c.as_str()))
        .take(limit as usize + 1)
        .collect();
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|a| a.id.as_str().to_owned())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AgentList { items, next_cursor }))
}

/// Removes an agent → 204: it stops running and cannot be tracked against;
/// its recommendations and trust history stay (registering the id again
/// continues them).
#[utoipa::path(delete, path = "/api/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)),
    responses((status = 204, description = "removed"), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    if !state.store.delete_agent(ws.0, &id).await? {
        return Err(agent_not_found(&id));
    }
    state.workflows.swarm().remove_agent(ws.0, &id);
    state.forget_agent(ws.0, &id);
    crate::audit::record(
        state.store.as_ref(),
        Caller::Workspace(ws.0),
        crate::audit::actions::AGENT_DELETE,
        Some(ws.0),
        id.as_str(),
        json!({}),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)),
    responses((status = 200, body = Agent), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn get(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let agent = state
        .store
        .agent(ws.0, &id)
        .await?
        .ok_or_else(|| agent_not_found(&id))?;
    Ok(HttpResponse::Ok().json(agent))
}

/// Enables or disables an agent; on a quarantined or probation agent this
/// is the operator's override (re-admit now, or hold out).
#[utoipa::path(patch, path = "/api/v1/agents/{agent_id}", tag = "agents", params(("agent_id" = String, Path)), request_body = UpdateAgent,
    responses((status = 200, body = Agent), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn update(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<UpdateAgent>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let agent = set_enabled_by(&state, Caller::Workspace(ws.0), ws.0, &id, body.0.enabled).await?;
    Ok(HttpResponse::Ok().json(agent))
}

/// The admin key enables or disables an agent of a workspace (the
/// operator's override of a quarantine, audited with actor `admin`).
#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/agents/{agent_id}", tag = "agents",
    params(("workspace_id" = uuid::Uuid, Path), ("agent_id" = String, Path)), request_body = UpdateAgent,
    responses((status = 200, body = Agent), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 403, description = "not the admin key", body = crate::error::ErrorBody), (status = 404, description = "no such agent in that workspace", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn update_as_admin(
    _admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<(uuid::Uuid, String)>,
    body: Body<UpdateAgent>,
) -> Result<HttpResponse, ApiError> {
    let (ws, id) = path.into_inner();
    let ws = WorkspaceId(ws);
    let id = AgentId::parse("agent_id", &id)?;
    let agent = set_enabled_by(&state, Caller::Admin, ws, &id, body.0.enabled).await?;
    Ok(HttpResponse::Ok().json(agent))
}

/// Enables or disables an agent of `ws` as its workspace key (the
/// dashboard's button); see [`set_enabled_by`].
pub(crate) async fn set_enabled(
    state: &AppState,
    ws: WorkspaceId,
    id: &AgentId,
    enabled: bool,
) -> Result<Agent, ApiError> {
    set_enabled_by(state, Caller::Workspace(ws), ws, id, enabled).await
}

/// Enables or disables an agent of `ws` for `caller` and audits it; 404 for
/// an agent the workspace has not registered. On a quarantined or probation
/// agent it is the operator's override: the switch, the admission change
/// and the audit entry (`agent.readmit` or `agent.hold`) in one transaction.
pub(crate) async fn set_enabled_by(
    state: &AppState,
    caller: Caller,
    ws: WorkspaceId,
    id: &AgentId,
    enabled: bool,
) -> Result<Agent, ApiError> {
    use swarmwise_actors::admission::controller::OverrideOutcome;
    let outcome = state
        .engine
        .admission()
        .operator_override(ws, id, enabled, &caller.actor())
        .await?;
    let agent = match outcome {
        OverrideOutcome::NotFound => return Err(agent_not_found(id)),
        OverrideOutcome::Done => state
            .store
            .agent(ws, id)
            .await?
            .ok_or_else(|| agent_not_found(id))?,
        OverrideOutcome::NotQuarantined => {
            let agent = state
                .store
                .set_agent_enabled(ws, id, enabled)
                .await?
                .ok_or_else(|| agent_not_found(id))?;
            crate::audit::record(
                state.store.as_ref(),
                caller,
                crate::audit::actions::AGENT_UPDATE,
                Some(ws),
                id.as_str(),
                json!({"enabled": agent.enabled}),
            )
            .await;
            agent
        }
    };
    if agent.enabled {
        // Re-enabling also clears an "unhealthy" mark from the supervisor.
        state.workflows.swarm().reset_health(ws, id);
    }
    Ok(agent)
}

/// Query of `GET /agents/{id}/history`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Page size (default `limits.default_page_size`).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /agents/{id}/history` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AgentHistory {
    /// Audit entries about this agent in this workspace, newest first:
    /// registration, enable/disable, and admission (`agent.quarantine`,
    /// `agent.probation`, `agent.readmit`, `agent.hold`).
    pub items: Vec<crate::store::AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// An agent's history from the audit log, newest first → `{items,
/// next_cursor}`: the workspace's own view of why the agent was
/// quarantined, put on probation, re-admitted or held (docs/admission.md).
#[utoipa::path(get, path = "/api/v1/agents/{agent_id}/history", tag = "agents", params(("agent_id" = String, Path), HistoryQuery),
    responses((status = 200, body = AgentHistory), (status = 400, description = "malformed query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("api_key" = [])))]
pub async fn history(
    ws: Workspace,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: crate::extract::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = AgentId::parse("agent_id", &path.into_inner())?;
    let q = query.into_inner();
    let limit = super::workspaces::page_limit(&state, q.limit)?;
    let before = q
        .cursor
        .map(|c| {
            uuid::Uuid::parse_str(&c).map_err(|_| {
                swarmwise_actors::domain::ParseError::new(
                    "cursor",
                    "not a cursor returned by this endpoint",
                )
            })
        })
        .transpose()?;
    if state.store.agent(ws.0, &id).await?.is_none() {
        return Err(agent_not_found(&id));
    }
    let filter = crate::store::AuditFilter {
        workspace_id: Some(ws.0),
        action: None,
        target: Some(id.as_str().to_owned()),
        before,
        limit: limit + 1,
    };
    let mut items = state.store.audit(&filter).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AgentHistory { items, next_cursor }))
}
