//! Alerts and silences: `GET /api/v1/alerts` (filters, keyset pagination),
//! `GET /api/v1/alerts/{id}`, `POST /api/v1/alerts/{id}/ack`, and
//! `POST/GET /api/v1/alerts/silences`, `DELETE /api/v1/alerts/silences/{id}`.
//!
//! A workspace key sees and acts on its own workspace's alerts and silences
//! only (another workspace's id answers 404, exactly like an unknown one);
//! the admin key sees every workspace's and the node-level alerts
//! (`database_errors`), and its silences without `workspace_id` silence the
//! node-level ones. Every change (ack, silence created or deleted) is in the
//! audit log.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use swarmwise_actors::alerts::config::{DATABASE_ERRORS, RULES};
use swarmwise_actors::alerts::{Alert, AlertStatus, Severity, Silence};
use swarmwise_actors::domain::{to_micros, ParseError, WorkspaceId};
use swarmwise_actors::ports::{AlertFilter, AlertScope};
use uuid::Uuid;

use super::workspaces::parse_uuid;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::extract::Body;
use crate::state::AppState;

/// An alert as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    /// The alert.
    #[serde(flatten)]
    pub alert: Alert,
    /// Whether a silence matches it now (it is recorded and listed, but not notified).
    pub silenced: bool,
}

/// `GET /alerts` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertPage {
    /// Alerts, newest first.
    pub items: Vec<AlertView>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Query of `GET /alerts`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// `firing` or `resolved`.
    status: Option<AlertStatus>,
    /// `critical`, `warning` or `info`.
    severity: Option<Severity>,
    /// A rule name, e.g. `agent_trust_low`.
    rule: Option<String>,
    /// A subject (agent id, pattern id).
    subject: Option<String>,
    /// Admin key only: one workspace's alerts.
    workspace_id: Option<String>,
    /// Page size (default `limits.default_page_size`, at most `alerts.max_alerts_listed`).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn scope(caller: Caller) -> AlertScope {
    match caller {
        Caller::Admin => AlertScope::Admin,
        Caller::Workspace(ws) => AlertScope::Workspace(ws),
    }
}

fn alert_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AlertNotFound,
        format!("no alert {id} in this workspace; list alerts with GET /api/v1/alerts"),
    )
}

fn bad_query(field: &str, message: String) -> ApiError {
    ApiError::field(ErrorCode::InvalidQuery, field, message)
}

/// A rule name from the catalogue, or 422 naming `field`.
fn known_rule(field: &str, rule: &str) -> Result<(), ApiError> {
    if RULES.contains(&rule) {
        Ok(())
    } else {
        Err(ApiError::field(
            ErrorCode::InvalidField,
            field,
            format!("{field}: unknown rule; use one of {}", RULES.join(", ")),
        ))
    }
}

/// A subject: 1–200 bytes of printable characters (an agent or pattern id).
fn valid_subject(field: &str, subject: &str) -> Result<(), ApiError> {
    if subject.is_empty() || subject.len() > 200 || subject.chars().any(char::is_control) {
        return Err(ApiError::field(
            ErrorCode::InvalidField,
            field,
            format!("{field}: 1-200 printable characters (an agent id or a pattern id)"),
        ));
    }
    Ok(())
}

/// Marks which alerts a silence matches now.
async fn views(
    state: &AppState,
    scope: AlertScope,
    alerts: Vec<Alert>,
) -> Result<Vec<AlertView>, ApiError> {
    let now = Utc::now();
    let silences = state.store.silences(scope, Some(now)).await?;
    Ok(alerts
        .into_iter()
        .map(|alert| AlertView {
            silenced: silences.iter().any(|s| s.matches(&alert, now)),
            alert,
        })
        .collect())
}

/// Lists alerts, newest first → `{items, next_cursor}`.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertPage),
              (status = 400, description = "malformed query; `details.field` names the field", body = crate::error::ErrorBody),
              (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody),
              (status = 422, description = "a value breaks a rule; `details.field` names it", body = crate::error::ErrorBody)),
    security(("api_key" = []), ("admin_key" = [])))]
pub async fn list(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<AlertQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let max = state.settings.alerts.max_alerts_listed;
    let limit = q
        .limit
        .unwrap_or(state.settings.limits.default_page_size.min(max));
    if limit == 0 || limit > max {
        return Err(ParseError::new(
            "limit",
            format!("must be between 1 and {max} (alerts.max_alerts_listed)"),
        )
        .into());
    }
    let before = q
        .cursor
        .map(|c| {
            Uuid::parse_str(&c).map_err(|_| {
                bad_query(
                    "cursor",
                    "cursor: not a cursor returned by this endpoint".into(),
                )
            })
        })
        .transpose()?;
    if let Some(r) = &q.rule {
        known_rule("rule", r)?;
    }
    if let Some(s) = &q.subject {
        valid_subject("subject", s)?;
    }
    let workspace = match (caller, q.workspace_id) {
        (_, None) => None,
        (Caller::Admin, Some(w)) => Some(WorkspaceId(parse_uuid("workspace_id", &w)?)),
        (Caller::Workspace(_), Some(_)) => {
            return Err(ApiError::field(
                ErrorCode::InvalidField,
                "workspace_id",
                "workspace_id: only the admin key may choose a workspace; a workspace key lists its own alerts",
            ))
        }
    };
    let filter = AlertFilter {
        status: q.status,
        severity: q.severity,
        rule: q.rule,
        subject: q.subject,
        workspace,
        before,
        limit: limit + 1,
    };
    let scope = scope(caller);
    let mut items = state.store.list_alerts(scope, &filter).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|a| a.id.to_string())
    } else {
        None
    };
    let items = views(&state, scope, items).await?;
    Ok(HttpResponse::Ok().json(AlertPage { items, next_cursor }))
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = AlertView),
              (status = 400, description = "the id is not a UUID", body = crate::error::ErrorBody),
              (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody),
              (status = 404, description = "no such alert in this workspace (alert_not_found)", body = crate::error::ErrorBody)),
    security(("api_key" = []), ("admin_key" = [])))]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = parse_uuid("id", &raw)?;
    let scope = scope(caller);
    let alert = state
        .store
        .alert(scope, id)
        .await?
        .ok_or_else(|| alert_not_found(&raw))?;
    let mut v = views(&state, scope, vec![alert]).await?;
    Ok(HttpResponse::Ok().json(v.pop()))
}

/// Acknowledges an alert (someone is on it). Idempotent: the first
/// acknowledgement (time and who) is kept.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/ack", tag = "alerts", params(("id" = String, Path)),
    responses((status = 200, body = AlertView),
              (status = 400, description = "the id is not a UUID", body = crate::error::ErrorBody),
              (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody),
              (status = 404, description = "no such alert in this workspace (alert_not_found)", body = crate::error::ErrorBody)),
    security(("api_key" = []), ("admin_key" = [])))]
pub async fn ack(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = parse_uuid("id", &raw)?;
    let scope = scope(caller);
    let alert = state
        .store
        .ack_alert(scope, id, &caller.actor(), to_micros(Utc::now()))
        .await?
        .ok_or_else(|| alert_not_found(&raw))?;
    crate::audit::record(
        state.store.as_ref(),
        caller,
        "alert.ack",
        alert.workspace_id,
        &alert.id.to_string(),
        json!({ "rule": alert.rule, "subject": alert.subject }),
    )
    .await;
    let mut v = views(&state, scope, vec![alert]).await?;
    Ok(HttpResponse::Ok().json(v.pop()))
}

/// Body of `POST /alerts/silences`: what to silence and for how long. Give
/// `ends_at` or `duration_secs` (not both).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Only alerts of this rule (any rule when absent).
    pub rule: Option<String>,
    /// Only alerts about this subject (an agent id, a pattern id).
    pub subject: Option<String>,
    /// Only alerts of this severity.
    pub severity: Option<Severity>,
    /// From when (default: now).
    pub starts_at: Option<DateTime<Utc>>,
    /// Until when (exclusive).
    pub ends_at: Option<DateTime<Utc>>,
    /// Or: for this many seconds from `starts_at`.
    pub duration_secs: Option<u64>,
    /// Why (required): shown beside the silence.
    pub comment: String,
    /// Admin key only: the workspace whose alerts it silences (absent: the
    /// node-level alerts).
    pub workspace_id: Option<String>,
}

/// `GET /alerts/silences` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SilenceList {
    /// Silences, newest first.
    pub items: Vec<Silence>,
}

/// Query of `GET /alerts/silences`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SilenceQuery {
    /// Include silences that have ended (default false).
    include_expired: Option<bool>,
}

/// Creates a silence: matching alerts are still recorded and listed
/// (`silenced: true`) but not notified until it ends.
#[utoipa::path(post, path = "/api/v1/alerts/silences", tag = "alerts", request_body = NewSilence,
    responses((status = 201, body = Silence),
              (status = 400, description = "malformed JSON; `details.field` names the field", body = crate::error::ErrorBody),
              (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody),
              (status = 409, description = "the workspace already holds alerts.max_silences_per_workspace active silences (too_many_silences)", body = crate::error::ErrorBody),
              (status = 422, description = "a value breaks a rule (unknown rule, ends before it starts, longer than alerts.max_silence_secs, empty comment); `details.field` names it", body = crate::error::ErrorBody)),
    security(("api_key" = []), ("admin_key" = [])))]
pub async fn create_silence(
    caller: Caller,
    state: web::Data<AppState>,
    body: Body<NewSilence>,
) -> Result<HttpResponse, ApiError> {
    let b = body.0;
    let cfg = &state.settings.alerts;
    let invalid = |field: &str, msg: String| ApiError::field(ErrorCode::InvalidField, field, msg);
    if let Some(r) = &b.rule {
        known_rule("rule", r)?;
    }
    if let Some(s) = &b.subject {
        valid_subject("subject", s)?;
    }
    let comment = b.comment.trim();
    if comment.is_empty() {
        return Err(invalid(
            "comment",
            "comment: say why (it is shown beside the silence)".into(),
        ));
    }
    let max_text = state.settings.limits.max_text_bytes;
    if comment.len() > max_text || comment.contains('\0') {
        return Err(invalid(
            "comment",
            format!("comment: at most {max_text} bytes (limits.max_text_bytes), no NUL characters"),
        ));
    }
    let workspace_id = match (caller, b.workspace_id) {
        (Caller::Workspace(ws), None) => Some(ws),
        (Caller::Workspace(_), Some(_)) => {
            return Err(invalid(
                "workspace_id",
                "workspace_id: only the admin key may choose a workspace; a workspace key silences its own alerts".into(),
            ))
        }
        (Caller::Admin, None) => None,
        (Caller::Admin, Some(w)) => {
            let ws = WorkspaceId(parse_uuid("workspace_id", &w)?);
            if state.store.workspace(ws).await?.is_none() {
                return Err(ApiError::new(
                    ErrorCode::WorkspaceNotFound,
                    format!("no workspace {ws}; list them with GET /api/v1/workspaces"),
                ));
            }
            Some(ws)
        }
    };
    // A silence that can never match is refused rather than stored: node-level
    // alerts (database_errors) have no workspace, every other rule has one.
    if let Some(r) = b.rule.as_deref() {
        let node_level = r == DATABASE_ERRORS;
        if node_level && workspace_id.is_some() {
            return Err(invalid(
                "rule",
                format!("rule: {r} is a node-level alert with no workspace; only the admin key, without workspace_id, can silence it"),
            ));
        }
        if !node_level && workspace_id.is_none() {
            return Err(invalid(
                "rule",
                format!("rule: {r} alerts belong to a workspace; pass workspace_id to silence them (a silence without one matches only node-level alerts such as {DATABASE_ERRORS})"),
            ));
        }
    }
    let now = to_micros(Utc::now());
    let max = cfg.max_silence_secs;
    let starts_at = to_micros(b.starts_at.unwrap_or(now));
    if starts_at > now + TimeDelta::seconds(max as i64) {
        return Err(invalid(
            "starts_at",
            format!("starts_at: at most alerts.max_silence_secs ({max} s) from now"),
        ));
    }
    let ends_at = match (b.ends_at, b.duration_secs) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "duration_secs",
                "duration_secs: give ends_at or duration_secs, not both".into(),
            ))
        }
        (None, None) => {
            return Err(invalid(
                "ends_at",
                "ends_at: give ends_at (a time) or duration_secs".into(),
            ))
        }
        (Some(e), None) => to_micros(e),
        (None, Some(d)) => {
            if d == 0 || d > max {
                return Err(invalid(
                    "duration_secs",
                    format!("duration_secs: between 1 and {max} (alerts.max_silence_secs)"),
                ));
            }
            starts_at + TimeDelta::seconds(d as i64)
        }
    };
    if ends_at <= starts_at {
        return Err(invalid(
            "ends_at",
            "ends_at: must be after starts_at".into(),
        ));
    }
    if ends_at <= now {
        return Err(invalid("ends_at", "ends_at: must be in the future".into()));
    }
    if (ends_at - starts_at).num_seconds() > max as i64 {
        return Err(invalid(
            "ends_at",
            format!("ends_at: a silence lasts at most alerts.max_silence_secs ({max} s)"),
        ));
    }
    let scope = AlertScope::of(workspace_id);
    let active = state
        .store
        .silences(scope, Some(now))
        .await?
        .into_iter()
        .filter(|s| s.workspace_id == workspace_id)
        .count();
    if active >= cfg.max_silences_per_workspace as usize {
        return Err(ApiError::new(
            ErrorCode::TooManySilences,
            format!(
                "{active} silences are active or scheduled (alerts.max_silences_per_workspace); delete one with DELETE /api/v1/alerts/silences/{{id}} first"
            ),
        ));
    }
    let silence = Silence {
        id: Uuid::now_v7(),
        workspace_id,
        rule: b.rule,
        subject: b.subject,
        severity: b.severity,
        starts_at,
        ends_at,
        created_by: caller.actor(),
        comment: comment.to_owned(),
    };
    state.store.insert_silence(&silence).await?;
    crate::audit::record(
        state.store.as_ref(),
        caller,
        "alert_silence.create",
        workspace_id,
        &silence.id.to_string(),
        json!({ "rule": silence.rule, "subject": silence.subject, "severity": silence.severity, "starts_at": silence.starts_at, "ends_at": silence.ends_at }),
    )
    .await;
    Ok(HttpResponse::Created().json(silence))
}

/// Lists silences (active and scheduled; ended ones with `include_expired=true`).
#[utoipa::path(get, path = "/api/v1/alerts/silences", tag = "alerts", params(SilenceQuery),
    responses((status = 200, body = SilenceList),
              (status = 400, description = "malformed query", body = crate::error::ErrorBody),
              (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody)),
    security(("api_key" = []), ("admin_key" = [])))]
pub async fn list_silences(
    caller: Caller,
    state: web::Data<AppState>,
    query: crate::extract::Query<SilenceQuery>,
) -> Result<HttpResponse, ApiError> {
    let now = (!query.include_expired.unwrap_or(false)).then(Utc::now);
    let items = state.store.silences(scope(caller), now).await?;
    Ok(HttpResponse::Ok().json(SilenceList { items }))
}

/// Deletes a silence (notifications of matching alerts resume).
#[utoipa::path(delete, path = "/api/v1/alerts/silences/{id}", tag = "alerts", params(("id" = String, Path)),
    responses((status = 204, description = "deleted"),
              (status = 400, description = "the id is not a UUID", body = crate::error::ErrorBody),
              (status = 401, description = "missing or unknown API key", body = crate::error::ErrorBody),
              (status = 404, description = "no such silence in this workspace (silence_not_found)", body = crate::error::ErrorBody)),
    security(("api_key" = []), ("admin_key" = [])))]
pub async fn delete_silence(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = parse_uuid("id", &raw)?;
    if !state.store.delete_silence(scope(caller), id).await? {
        return Err(ApiError::new(
            ErrorCode::SilenceNotFound,
            format!(
                "no silence {raw} in this workspace; list them with GET /api/v1/alerts/silences"
            ),
        ));
    }
    let ws = match caller {
        Caller::Workspace(ws) => Some(ws),
        Caller::Admin => None,
    };
    crate::audit::record(
        state.store.as_ref(),
        caller,
        "alert_silence.delete",
        ws,
        &raw,
        json!({}),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}
