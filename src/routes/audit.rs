//! The audit log, read with the admin key: newest first, filtered by
//! workspace and action, paginated by cursor like `GET /recommendations`.
//! Tenants get 403: the log spans every workspace.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use swarmwise_actors::domain::{ParseError, WorkspaceId};
use uuid::Uuid;

use super::workspaces::{page_limit, parse_uuid};
use crate::auth::Admin;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::store::{AuditEntry, AuditFilter};

/// Query of `GET /audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only entries about this workspace.
    workspace_id: Option<String>,
    /// Only this action, e.g. `api_key.revoke`.
    action: Option<String>,
    /// Page size (default `limits.default_page_size`).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /audit` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Entries, newest first.
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Reads the audit log, newest first → `{items, next_cursor}`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "workspaces", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, description = "malformed query; `details.field` names the field", body = crate::error::ErrorBody), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody), (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn list(
    _: Admin,
    state: web::Data<AppState>,
    query: crate::extract::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = page_limit(&state, q.limit)?;
    let before = q
        .cursor
        .map(|c| {
            Uuid::parse_str(&c)
                .map_err(|_| ParseError::new("cursor", "not a cursor returned by this endpoint"))
        })
        .transpose()?;
    let workspace_id = q
        .workspace_id
        .map(|w| parse_uuid("workspace_id", &w).map(WorkspaceId))
        .transpose()?;
    if let Some(a) = &q.action {
        let valid = !a.is_empty()
            && a.len() <= 100
            && a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
        if !valid {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "action",
                "action: letters, digits, `.` and `_` only, e.g. api_key.revoke",
            )
            .with_status(actix_web::http::StatusCode::BAD_REQUEST));
        }
    }
    let filter = AuditFilter {
        workspace_id,
        action: q.action,
        target: None,
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
    Ok(HttpResponse::Ok().json(AuditPage { items, next_cursor }))
}
