//! Workspaces and their API keys (admin key only).

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use swarmwise_actors::domain::{to_micros, WorkspaceId};
use uuid::Uuid;

use crate::auth::{generate_key, Admin};
use crate::error::ApiError;
use crate::extract::Body;
use crate::startup::AppState;

/// `POST /workspaces` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// Display name, 1–200 characters.
    pub name: String,
}

/// A new workspace and its first key (shown once).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WorkspaceCreated {
    /// Workspace id.
    pub id: WorkspaceId,
    /// Its name.
    pub name: String,
    /// Its API key; store it, it is not shown again.
    pub api_key: String,
}

/// A new key for a workspace (shown once).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreated {
    /// Workspace id.
    pub workspace_id: WorkspaceId,
    /// The key.
    pub api_key: String,
}

/// Prefix of workspace keys, so leaked keys are recognisable.
pub const KEY_PREFIX: &str = "swk_";

/// Creates a workspace and its first key → 201 `{id, name, api_key}`; the key is shown once.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = WorkspaceCreated), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 403, description = "wrong kind of key", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn create(
    _: Admin,
    state: web::Data<AppState>,
    body: Body<CreateWorkspace>,
) -> Result<HttpResponse, ApiError> {
    swarmwise_actors::domain::storable_text("name", &body.0.name)?;
    let name = body.0.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::field(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "name",
            "name: must be 1-200 characters",
        ));
    }
    let ws = WorkspaceId(Uuid::now_v7());
    let (key, stored) = generate_key(KEY_PREFIX);
    state
        .store
        .create_workspace(ws, &name, &stored, to_micros(Utc::now()))
        .await?;
    tracing::info!(workspace = %ws, "workspace created");
    Ok(HttpResponse::Created().json(WorkspaceCreated {
        id: ws,
        name,
        api_key: key,
    }))
}

/// Adds an API key to a workspace → 201 `{workspace_id, api_key}`.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/api-keys", tag = "workspaces",
    params(("workspace_id" = String, Path, description = "workspace id")),
    responses((status = 201, body = ApiKeyCreated), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody), (status = 403, description = "wrong kind of key", body = crate::error::ErrorBody), (status = 404, description = "not found in this workspace", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn add_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::parse_str(&path.into_inner()).map_err(|_| {
        ApiError::field(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_field",
            "workspace_id",
            "workspace_id: not a UUID",
        )
    })?;
    let ws = WorkspaceId(id);
    if !state.store.workspace_ids().await?.contains(&ws) {
        return Err(ApiError::not_found(
            "workspace_not_found",
            format!("workspace {id} does not exist"),
        ));
    }
    let (key, stored) = generate_key(KEY_PREFIX);
    state
        .store
        .add_api_key(ws, &stored, to_micros(Utc::now()))
        .await?;
    Ok(HttpResponse::Created().json(ApiKeyCreated {
        workspace_id: ws,
        api_key: key,
    }))
}
