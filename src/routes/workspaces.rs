//! Workspaces and their API keys (admin key only).

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use swarmwise_actors::domain::{to_micros, WorkspaceId};
use uuid::Uuid;

use crate::auth::{generate_key, Admin};
use crate::error::ApiError;
use crate::extract::Body;
use crate::startup::AppState;

/// `POST /workspaces` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// Display name, 1–200 characters.
    pub name: String,
}

/// Prefix of workspace keys, so leaked keys are recognisable.
pub const KEY_PREFIX: &str = "swk_";

/// Creates a workspace and its first key → 201 `{id, name, api_key}`; the key is shown once.
pub async fn create(
    _: Admin,
    state: web::Data<AppState>,
    body: Body<CreateWorkspace>,
) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::Created().json(json!({ "id": ws, "name": name, "api_key": key })))
}

/// Adds an API key to a workspace → 201 `{workspace_id, api_key}`.
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
    Ok(HttpResponse::Created().json(json!({ "workspace_id": ws, "api_key": key })))
}
