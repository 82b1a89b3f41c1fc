//! `GET /alerts/notifiers`: the delivery status of every alert notifier,
//! for the admin key only. A failing notifier is visible here (last error,
//! consecutive failures) as well as in `swarmwise_notifier_up`. Tenants get
//! 403: notifiers are the operator's, shared by every workspace, and their
//! errors may name the operator's receivers.

use actix_web::{web, HttpResponse};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::notify::NotifierStatus;
use crate::state::AppState;

/// `GET /alerts/notifiers` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct NotifierList {
    /// Every notifier declared in `[alerts.notifiers]`, by name.
    pub items: Vec<NotifierStatus>,
}

/// Lists the notifiers with their delivery status → `{items}`.
#[utoipa::path(get, path = "/api/v1/alerts/notifiers", tag = "alerts",
    responses((status = 200, body = NotifierList), (status = 401, description = "missing, unknown or revoked API key", body = crate::error::ErrorBody), (status = 403, description = "a workspace key: this needs the admin key", body = crate::error::ErrorBody)), security(("admin_key" = [])))]
pub async fn list(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(NotifierList {
        items: state.notifiers.statuses(),
    }))
}
