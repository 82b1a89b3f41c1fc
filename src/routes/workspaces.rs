//! Workspaces and their API keys (admin key only): create and list
//! workspaces; create, list, revoke and rotate a workspace's keys. Every
//! change is written to the audit log. A key is shown once, when created;
//! listings show its prefix, creation and revocation times, never the key or
//! its hash. Revoking empties this node's key cache for the workspace at
//! once (other nodes follow within `auth.cache_ttl_secs`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use swarmwise_actors::domain::{to_micros, ParseError, WorkspaceId};
use uuid::Uuid;

use crate::audit::{self, actions};
use crate::auth::{generate_key, Admin, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::extract::Body;
use crate::state::AppState;
use crate::store::{ApiKeyInfo, KeyChange, WorkspaceInfo};

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
    /// The key's id (to revoke or rotate it).
    pub api_key_id: Uuid,
}

/// A new key for a workspace (shown once).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreated {
    /// Workspace id.
    pub workspace_id: WorkspaceId,
    /// The key; store it, it is not shown again.
    pub api_key: String,
    /// The key's id (to revoke or rotate it).
    pub id: Uuid,
    /// The key's first characters, as listings show them.
    pub prefix: String,
}

/// A rotated key: the new one (shown once) and the revoked one.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeyRotated {
    /// Workspace id.
    pub workspace_id: WorkspaceId,
    /// The new key; store it, it is not shown again.
    pub api_key: String,
    /// The new key's id.
    pub id: Uuid,
    /// The new key's first characters.
    pub prefix: String,
    /// The old key, now revoked.
    pub revoked: ApiKeyInfo,
}

/// `GET /workspaces/{id}/api-keys` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ApiKeyList {
    /// Every key of the workspace, oldest first, revoked ones included.
    pub items: Vec<ApiKeyInfo>,
}

/// `GET /workspaces` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct WorkspacePage {
    /// Workspaces by id.
    pub items: Vec<WorkspaceInfo>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Query of `GET /workspaces`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceQuery {
    /// Page size (default `limits.default_page_size`).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Prefix of workspace keys, so leaked keys are recognisable.
pub const KEY_PREFIX: &str = "swk_";

/// A page size from `limit`, checked against the limits.
pub fn page_limit(state: &AppState, limit: Option<u32>) -> Result<u32, ApiError> {
    let limits = &state.settings.limits;
    let limit = limit.unwrap_or(limits.default_page_size);
    if limit == 0 || limit > limits.max_page_size {
        return Err(ParseError::new(
            "limit",
            format!("must be between 1 and {}", limits.max_page_size),
        )
        .into());
    }
    Ok(limit)
}

/// A UUID from the path or query, or 400 naming the field.
pub fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::field(
            ErrorCode::InvalidField,
            field,
            format!("{field}: not a UUID"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

/// The workspace of the path, or 404.
async fn existing_workspace(state: &AppState, raw: &str) -> Result<WorkspaceId, ApiError> {
    let ws = WorkspaceId(parse_uuid("workspace_id", raw)?);
    if state.store.workspace(ws).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::WorkspaceNotFound,
            format!("workspace {ws} does not exist; list workspaces with GET /api/v1/workspaces"),
        ));
    }
    Ok(ws)
}

fn key_not_found(ws: WorkspaceId, key: Uuid) -> ApiError {
    ApiError::new(
        ErrorCode::ApiKeyNotFound,
        format!("workspace {ws} has no API key {key}; list them with GET /api/v1/workspaces/{ws}/api-keys"),
    )
}

/// Creates a workspace and its first key → 201 `{id, name, api_key, api_key_id}`; the key is shown once.
#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", request_body = CreateWorkspace,
    responses((status = 201, body = WorkspaceCreated), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn create(
    _: Admin,
    state: web::Data<AppState>,
    body: Body<CreateWorkspace>,
) -> Result<HttpResponse, ApiError> {
    swarmwise_actors::domain::storable_text("name", &body.0.name)?;
    let name = body.0.name.trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
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
    audit::record(
        state.store.as_ref(),
        Caller::Admin,
        actions::WORKSPACE_CREATE,
        Some(ws),
        &ws.to_string(),
        json!({"name": name, "api_key_id": stored.id, "prefix": stored.prefix}),
    )
    .await;
    Ok(HttpResponse::Created().json(WorkspaceCreated {
        id: ws,
        name,
        api_key: key,
        api_key_id: stored.id,
    }))
}

/// Lists workspaces by id → `{items, next_cursor}`.
#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces", params(WorkspaceQuery),
    responses((status = 200, body = WorkspacePage), (status = 400, description = "malformed query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn list(
    _: Admin,
    state: web::Data<AppState>,
    query: crate::extract::Query<WorkspaceQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = page_limit(&state, q.limit)?;
    let after = q
        .cursor
        .map(|c| {
            Uuid::parse_str(&c)
                .map(WorkspaceId)
                .map_err(|_| ParseError::new("cursor", "not a cursor returned by this endpoint"))
        })
        .transpose()?;
    let mut items = state.store.workspaces(after, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|w| w.id.to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(WorkspacePage { items, next_cursor }))
}

/// Adds an API key to a workspace → 201 `{workspace_id, api_key, id, prefix}`; the key is shown once.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/api-keys", tag = "workspaces",
    params(("workspace_id" = String, Path, description = "workspace id")),
    responses((status = 201, body = ApiKeyCreated), (status = 400, description = "malformed JSON or query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 404, description = "no such workspace", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn add_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ws = existing_workspace(&state, &path.into_inner()).await?;
    let (key, stored) = generate_key(KEY_PREFIX);
    state
        .store
        .add_api_key(ws, &stored, to_micros(Utc::now()))
        .await?;
    audit::record(
        state.store.as_ref(),
        Caller::Admin,
        actions::API_KEY_CREATE,
        Some(ws),
        &stored.id.to_string(),
        json!({"prefix": stored.prefix}),
    )
    .await;
    Ok(HttpResponse::Created().json(ApiKeyCreated {
        workspace_id: ws,
        api_key: key,
        id: stored.id,
        prefix: stored.prefix,
    }))
}

/// Lists a workspace's keys (prefix, created_at, revoked_at; never the key) → `{items}`.
#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/api-keys", tag = "workspaces",
    params(("workspace_id" = String, Path, description = "workspace id")),
    responses((status = 200, body = ApiKeyList), (status = 400, description = "malformed path; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 404, description = "no such workspace", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn list_keys(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ws = existing_workspace(&state, &path.into_inner()).await?;
    let items = state.store.api_keys(ws).await?;
    Ok(HttpResponse::Ok().json(ApiKeyList { items }))
}

/// Revokes a key → 200 with the key; it is refused (401) from the next
/// request on. Revoking a revoked key changes nothing and answers the same.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/api-keys/{key_id}/revoke", tag = "workspaces",
    params(("workspace_id" = String, Path, description = "workspace id"), ("key_id" = String, Path, description = "key id, from the listing")),
    responses((status = 200, body = ApiKeyInfo), (status = 400, description = "malformed path; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 404, description = "no such workspace or key", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn revoke_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_ws, raw_key) = path.into_inner();
    let ws = existing_workspace(&state, &raw_ws).await?;
    let key_id = parse_uuid("key_id", &raw_key)?;
    let change = state
        .store
        .revoke_api_key(ws, key_id, to_micros(Utc::now()))
        .await?;
    state.forget_keys(ws);
    match change {
        KeyChange::NotFound => Err(key_not_found(ws, key_id)),
        KeyChange::AlreadyRevoked(key) => Ok(HttpResponse::Ok().json(key)),
        KeyChange::Done(key) => {
            tracing::info!(workspace = %ws, key = %key.id, "API key revoked");
            audit::record(
                state.store.as_ref(),
                Caller::Admin,
                actions::API_KEY_REVOKE,
                Some(ws),
                &key.id.to_string(),
                json!({"prefix": key.prefix}),
            )
            .await;
            Ok(HttpResponse::Ok().json(key))
        }
    }
}

/// Rotates a key → 201 with a new key (shown once); the old key is revoked
/// at once, in the same transaction. For a switch without downtime, create a
/// second key, move clients to it, then revoke the first.
#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/api-keys/{key_id}/rotate", tag = "workspaces",
    params(("workspace_id" = String, Path, description = "workspace id"), ("key_id" = String, Path, description = "key id, from the listing")),
    responses((status = 201, body = ApiKeyRotated), (status = 400, description = "malformed path; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 404, description = "no such workspace or key", body = crate::error::ErrorBody), (status = 409, description = "the key is already revoked", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn rotate_key(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (raw_ws, raw_key) = path.into_inner();
    let ws = existing_workspace(&state, &raw_ws).await?;
    let key_id = parse_uuid("key_id", &raw_key)?;
    let (key, stored) = generate_key(KEY_PREFIX);
    let change = state
        .store
        .rotate_api_key(ws, key_id, &stored, to_micros(Utc::now()))
        .await?;
    state.forget_keys(ws);
    match change {
        KeyChange::NotFound => Err(key_not_found(ws, key_id)),
        KeyChange::AlreadyRevoked(old) => Err(ApiError::new(
            ErrorCode::ApiKeyRevoked,
            format!(
                "API key {} was revoked; a revoked key cannot be rotated. Create a new one with POST /api/v1/workspaces/{ws}/api-keys",
                old.id
            ),
        )
        .with_details(json!({"key_id": old.id, "revoked_at": old.revoked_at}))),
        KeyChange::Done(old) => {
            tracing::info!(workspace = %ws, old = %old.id, new = %stored.id, "API key rotated");
            audit::record(
                state.store.as_ref(),
                Caller::Admin,
                actions::API_KEY_ROTATE,
                Some(ws),
                &old.id.to_string(),
                json!({"prefix": old.prefix, "new_key_id": stored.id, "new_prefix": stored.prefix}),
            )
            .await;
            Ok(HttpResponse::Created().json(ApiKeyRotated {
                workspace_id: ws,
                api_key: key,
                id: stored.id,
                prefix: stored.prefix,
                revoked: old,
            }))
        }
    }
}
