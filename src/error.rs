//! The API error: a stable code from one vocabulary ([`ErrorCode`]), a
//! message that says what to do, details (at least the offending `field`
//! where there is one), and the status. Serialised as
//! `{"error": "...", "message": "...", "details": {...}}`.
//!
//! Every code the API can send is a variant of [`ErrorCode`]; its string is
//! part of the REST contract (clients match on it) and never changes. The
//! table in `docs/errors.md` is generated from [`ErrorCode::ALL`] and a test
//! fails when it drifts (`UPDATE_ERROR_DOCS=1 cargo test error::` rewrites it).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};
use swarmwise_actors::domain::ParseError;
use swarmwise_actors::ports::StoreError;
use swarmwise_actors::EngineError;

/// Declares [`ErrorCode`] with, for each code: its stable string, its HTTP
/// status (and any other status a handler sends it with), a one-line meaning
/// and what a client should do.
macro_rules! error_codes {
    ($(
        $variant:ident = $code:literal, $status:ident $(| $also:ident)*,
        $meaning:literal, $action:literal;
    )*) => {
        /// Every error code of the API (the `error` field of an error body).
        ///
        /// Variant names are the codes in CamelCase (`serde` and utoipa
        /// derive the strings with `rename_all`; a test checks they equal
        /// [`ErrorCode::as_str`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $(
                #[doc = $meaning]
                $variant,
            )*
        }

        impl ErrorCode {
            /// Every code, in the order of `docs/errors.md`.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable string sent as `error` (never renamed).
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The status the code is sent with.
            pub const fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            /// Other statuses some endpoints send this code with (documented
            /// in `docs/errors.md`; usually none).
            pub fn other_statuses(self) -> &'static [StatusCode] {
                match self { $(ErrorCode::$variant => &[$(StatusCode::$also),*],)* }
            }

            /// What the code means, in one line.
            pub const fn meaning(self) -> &'static str {
                match self { $(ErrorCode::$variant => $meaning,)* }
            }

            /// What a client should do about it.
            pub const fn action(self) -> &'static str {
                match self { $(ErrorCode::$variant => $action,)* }
            }
        }
    };
}

error_codes! {
    Unauthorized = "unauthorized", UNAUTHORIZED,
        "The Authorization header is missing, malformed, or names an unknown or revoked API key.",
        "Send `Authorization: Bearer <api key>` with a live key; ask the operator for a new one.";
    WorkspaceKeyRequired = "workspace_key_required", FORBIDDEN,
        "The admin key was sent to an endpoint that acts inside one workspace.",
        "Use a workspace API key (from `POST /api/v1/workspaces`).";
    AdminKeyRequired = "admin_key_required", FORBIDDEN,
        "A workspace key was sent to an endpoint that manages workspaces, keys or the audit log.",
        "Use the admin key (`auth.admin_key`).";
    AgentPolicyViolation = "agent_policy_violation", FORBIDDEN,
        "An agent's kind or config breaks the operator's agent policy (`details.rule` names the rule).",
        "Change the named field; the operator widens the policy in `agents.*` if it should be allowed.";
    MalformedJson = "malformed_json", BAD_REQUEST,
        "The body is not JSON of the expected shape (`details.field` names the first wrong field).",
        "Fix the named field; see the endpoint's schema in `/api/v1/openapi.json`.";
    BadBody = "bad_body", BAD_REQUEST,
        "The request body could not be read (the connection broke or the encoding is wrong).",
        "Send the request again.";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE,
        "The body was not sent as JSON.",
        "Send `Content-Type: application/json`.";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE,
        "The body exceeds `limits.max_body_bytes`.",
        "Send fewer items per request.";
    ContentTooLarge = "content_too_large", PAYLOAD_TOO_LARGE,
        "A recommendation's `content` exceeds `limits.max_content_bytes`.",
        "Shorten the content or store it elsewhere and send a reference.";
    BatchTooLarge = "batch_too_large", PAYLOAD_TOO_LARGE,
        "A batch has more items than `limits.max_batch_items`.",
        "Split the batch.";
    InvalidQuery = "invalid_query", BAD_REQUEST,
        "A query-string parameter is malformed or not storable (`details.field` names it where known).",
        "Fix the parameter.";
    InvalidPath = "invalid_path", BAD_REQUEST,
        "A path segment is malformed or not storable.",
        "Fix the path.";
    InvalidField = "invalid_field", UNPROCESSABLE_ENTITY | BAD_REQUEST,
        "A value breaks a rule (`details.field` names it); sent with 400 when the value is an id in the path or query that is not a UUID or a known name.",
        "Fix the named field; retrying unchanged fails again.";
    UnknownAgent = "unknown_agent", UNPROCESSABLE_ENTITY,
        "`agent_id` names an agent this workspace has not registered.",
        "Register the agent with `POST /api/v1/agents` first, or fix the id.";
    RejectedByDatabase = "rejected_by_database", UNPROCESSABLE_ENTITY,
        "The database refused a value of the request (a constraint or an unstorable value).",
        "Correct the data; retrying it unchanged fails again.";
    WriteRefused = "write_refused", UNPROCESSABLE_ENTITY | INTERNAL_SERVER_ERROR,
        "A tracked recommendation was not stored and went to the dead-letter table (500 when the cause was not the data).",
        "On 422 correct the data; on 500 report it to the operator.";
    InvalidIdempotencyKey = "invalid_idempotency_key", BAD_REQUEST,
        "The `Idempotency-Key` header is empty, longer than 255 characters, not printable ASCII, or sent twice (`details.field` is `Idempotency-Key`).",
        "Send one key of 1-255 printable ASCII characters (e.g. a UUID) per operation, the same one on each retry.";
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY,
        "The `Idempotency-Key` was used within `idempotency.ttl_secs` with a different request (method, path, query or body); nothing was run.",
        "Use a new key for a new operation; reuse a key only to retry the identical request.";
    IdempotencyInProgress = "idempotency_in_progress", CONFLICT,
        "A request with this `Idempotency-Key` is still being processed (on this node or another); nothing was run.",
        "Retry after `Retry-After` seconds with the same key and body: you get the first request's answer.";
    RouteNotFound = "route_not_found", NOT_FOUND,
        "No endpoint has this path and method.",
        "See `/api/v1/openapi.json` for the API.";
    NotFound = "not_found", NOT_FOUND,
        "A thing named by id does not exist in this workspace, for kinds without their own code (e.g. an unknown workflow definition in `POST /api/v1/workflows/runs`).",
        "Check the name or id; list workflows with `GET /api/v1/workflows`.";
    AgentNotFound = "agent_not_found", NOT_FOUND,
        "The agent is not registered in this workspace.",
        "List agents with `GET /api/v1/agents`.";
    WorkflowNotFound = "workflow_not_found", NOT_FOUND,
        "No recommendation was tracked under this `workflow_id` in this workspace, so an outcome has nothing to judge.",
        "Check the `workflow_id` you tracked recommendations with.";
    RecommendationNotFound = "recommendation_not_found", NOT_FOUND,
        "The recommendation does not exist in this workspace.",
        "Check the id (from the track answer or `GET /api/v1/recommendations`).";
    RunNotFound = "run_not_found", NOT_FOUND,
        "The workflow run does not exist in this workspace.",
        "Check the run id returned by `POST /api/v1/workflows/{id}/runs`.";
    CycleNotFound = "cycle_not_found", NOT_FOUND,
        "No learning cycle has run in this workspace yet.",
        "Start one with `POST /api/v1/learning/cycles`.";
    WorkspaceNotFound = "workspace_not_found", NOT_FOUND,
        "The workspace does not exist.",
        "List workspaces with `GET /api/v1/workspaces` (admin key).";
    ApiKeyNotFound = "api_key_not_found", NOT_FOUND,
        "The workspace has no API key with this id.",
        "List its keys with `GET /api/v1/workspaces/{id}/api-keys`.";
    AlertNotFound = "alert_not_found", NOT_FOUND,
        "The alert does not exist in this workspace (a workspace key sees only its own workspace's alerts).",
        "List alerts with `GET /api/v1/alerts`.";
    SilenceNotFound = "silence_not_found", NOT_FOUND,
        "The silence does not exist in this workspace.",
        "List silences with `GET /api/v1/alerts/silences`.";
    Conflict = "conflict", CONFLICT,
        "The request conflicts with the current state (e.g. a learning cycle is already running, an outcome was already recorded).",
        "Read the current state and retry if it still applies.";
    RunNotAwaitingApproval = "run_not_awaiting_approval", CONFLICT,
        "The workflow run is not paused for approval (it is running, finished, or another decision on it won a race), so it cannot be approved or rejected.",
        "Read the run with `GET /api/v1/workflows/runs/{id}`: only a run with status `awaiting_approval` takes a decision, once.";
    AgentExists = "agent_exists", CONFLICT,
        "An agent with this id is already registered in this workspace.",
        "Update it with `PATCH /api/v1/agents/{id}` or pick another id.";
    TooManyAgents = "too_many_agents", CONFLICT,
        "The workspace already has `limits.max_agents_per_workspace` agents.",
        "Delete an agent first, or ask the operator to raise the cap.";
    TooManySilences = "too_many_silences", CONFLICT,
        "The workspace already holds `alerts.max_silences_per_workspace` active or scheduled silences.",
        "Delete one with `DELETE /api/v1/alerts/silences/{id}`, or ask the operator to raise the cap.";
    ApiKeyRevoked = "api_key_revoked", CONFLICT,
        "The API key was revoked and cannot be rotated.",
        "Create a new key with `POST /api/v1/workspaces/{id}/api-keys`.";
    RateLimited = "rate_limited", TOO_MANY_REQUESTS,
        "The API key sent more requests than `limits.key_requests_per_second` allows.",
        "Slow down; retry after `Retry-After` seconds (`details.retry_after_secs`).";
    TooManyRuns = "too_many_runs", TOO_MANY_REQUESTS,
        "The workspace already has `limits.max_runs_in_flight` workflow runs in flight.",
        "Wait for some to finish; retry after `Retry-After` seconds.";
    TooManyStreams = "too_many_streams", TOO_MANY_REQUESTS,
        "The workspace already has `limits.max_event_streams_per_workspace` event streams open.",
        "Close a stream (another tab or client) first; retry after `Retry-After` seconds.";
    Overloaded = "overloaded", SERVICE_UNAVAILABLE,
        "The engine's queue for this work is full (tracking: `tracking.max_pending` rows of all workspaces, or `tracking.max_pending_per_workspace` of this one, still awaited the database after the request waited `tracking.max_pending_wait_ms`; nothing of it was stored).",
        "Retry after `Retry-After` seconds, with backoff.";
    LearningDisabled = "learning_disabled", SERVICE_UNAVAILABLE,
        "Learning is turned off on this server (`learning.enabled = false`).",
        "Ask the operator to set `learning.enabled = true`.";
    ShuttingDown = "shutting_down", SERVICE_UNAVAILABLE,
        "The server is shutting down.",
        "Retry in a moment (another node or the restarted one answers).";
    WritesPending = "writes_pending", SERVICE_UNAVAILABLE,
        "A read waited `tracking.read_flush_timeout_ms` for acknowledged writes that were not stored yet.",
        "Retry after `Retry-After` seconds; check `/readyz`.";
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE,
        "The database cannot be reached.",
        "Retry shortly; check `/readyz`.";
    Internal = "internal", INTERNAL_SERVER_ERROR,
        "An unexpected error; it was logged on the server.",
        "Retry, and report it to the operator if it persists.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    /// The table of `docs/errors.md` (Markdown, one row per code).
    pub fn markdown_table() -> String {
        let mut out =
            String::from("| Code | Status | Meaning | What to do |\n| --- | --- | --- | --- |\n");
        for c in Self::ALL {
            let mut status = c.status().as_u16().to_string();
            for s in c.other_statuses() {
                status.push_str(&format!(", {}", s.as_u16()));
            }
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.as_str(),
                status,
                c.meaning().replace('|', "\\|"),
                c.action().replace('|', "\\|"),
            ));
        }
        out
    }
}

/// The JSON shape of every error answer (for the OpenAPI document).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (see `docs/errors.md`).
    pub error: ErrorCode,
    /// What happened and what to do next.
    pub message: String,
    /// Structured details; `field` names the offending JSON field.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status (the code's own, or one of its `other_statuses`).
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What happened and what to do next.
    pub message: String,
    /// Structured details, e.g. `{"field": "confidence"}`.
    pub details: Value,
}

impl ApiError {
    /// An error with no details, sent with the code's status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// A refused field, sent with the code's status.
    pub fn field(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            details: json!({ "field": field }),
        }
    }

    /// The same error sent with another of the code's documented statuses
    /// (`ErrorCode::other_statuses`); a status outside them is a bug, caught
    /// in debug builds.
    #[must_use]
    pub fn with_status(mut self, status: StatusCode) -> Self {
        debug_assert!(
            status == self.code.status() || self.code.other_statuses().contains(&status),
            "{} is not documented with status {status}",
            self.code
        );
        self.status = status;
        self
    }

    /// Replaces the details.
    #[must_use]
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// The JSON body this error is sent with.
    pub fn body(&self) -> Value {
        json!({
            "error": self.code,
            "message": self.message,
            "details": self.details,
        })
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        Self::field(
            ErrorCode::InvalidField,
            &e.field,
            format!("{}: {}", e.field, e.message),
        )
    }
}

impl From<crate::backends::policy::PolicyError> for ApiError {
    fn from(e: crate::backends::policy::PolicyError) -> Self {
        Self::new(
            ErrorCode::AgentPolicyViolation,
            format!("{}: {} (rule: {})", e.field, e.message, e.rule),
        )
        .with_details(json!({ "field": e.field, "rule": e.rule }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            StoreError::Rejected(m) => Self::new(
                ErrorCode::RejectedByDatabase,
                format!("the database refused a value of this request ({m}); correct the data, retrying it unchanged fails again"),
            ),
            StoreError::Unavailable(m) => Self::new(
                ErrorCode::DatabaseUnavailable,
                format!("the database is unavailable ({m}); retry shortly, and check /readyz"),
            ),
            StoreError::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected store error");
                Self::new(
                    ErrorCode::Internal,
                    "an unexpected storage error occurred; it was logged. Retry, and report it if it persists",
                )
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(p) => p.into(),
            EngineError::NotFound { what, id } => {
                let code = match what {
                    "agent" => ErrorCode::AgentNotFound,
                    "workflow" => ErrorCode::WorkflowNotFound,
                    "recommendation" => ErrorCode::RecommendationNotFound,
                    _ => ErrorCode::NotFound,
                };
                Self::new(code, format!("{what} {id:?} was not found in this workspace"))
            }
            EngineError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            EngineError::Overloaded(m) => Self::new(ErrorCode::Overloaded, m),
            EngineError::LearningDisabled => Self::new(
                ErrorCode::LearningDisabled,
                "learning is disabled on this server (learning.enabled = false): recommendations are not tracked; \
                 set learning.enabled = true to turn it back on",
            ),
            EngineError::ShuttingDown => Self::new(
                ErrorCode::ShuttingDown,
                "the server is shutting down; retry in a moment",
            ),
            EngineError::FlushTimeout { waited_ms, pending } => {
                Self::new(ErrorCode::WritesPending, e_message(waited_ms, pending))
                    .with_details(json!({ "pending_writes": pending, "waited_ms": waited_ms }))
            }
            EngineError::WriteRefused { message, data } => Self::new(
                ErrorCode::WriteRefused,
                format!(
                    "the recommendation was not stored: the database refused it ({message}); it was recorded in the dead-letter table. \
                     Retrying the same data fails again"
                ),
            )
            .with_status(if data {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            }),
            EngineError::DrainIncomplete { rows } => Self::new(
                ErrorCode::ShuttingDown,
                format!("the server is shutting down ({rows} writes pending); retry in a moment"),
            ),
            EngineError::Store(s) => s.into(),
        }
    }
}

fn e_message(waited_ms: u64, pending: u64) -> String {
    format!(
        "this request waits for its workspace's acknowledged recommendations to be written ({pending} still waiting), and they were not within {waited_ms} ms \
         (tracking.read_flush_timeout_ms): the database is slow or unreachable. Retry after the Retry-After delay, and check /readyz"
    )
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE
            || self.status == StatusCode::TOO_MANY_REQUESTS
            || self.details.get("retry_after_secs").is_some()
        {
            let secs = self
                .details
                .get("retry_after_secs")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(self.body())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md");
    const BEGIN: &str = "<!-- BEGIN GENERATED: ErrorCode::markdown_table -->\n";
    const END: &str = "<!-- END GENERATED -->";

    #[test]
    fn codes_are_unique_snake_case_and_serialise_as_their_string() {
        let mut seen = std::collections::BTreeSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {c}");
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c} is not snake_case"
            );
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
            assert!(!c.meaning().is_empty() && !c.action().is_empty());
            assert!(!c.other_statuses().contains(&c.status()));
        }
    }

    #[test]
    fn docs_errors_md_lists_every_code() {
        let doc = std::fs::read_to_string(DOC).expect("docs/errors.md");
        let table = ErrorCode::markdown_table();
        let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
        let end = doc.find(END).expect("end marker");
        if doc.get(start..end) != Some(table.as_str()) {
            if std::env::var_os("UPDATE_ERROR_DOCS").is_some() {
                let fresh = format!("{}{}{}", &doc[..start], table, &doc[end..]);
                std::fs::write(DOC, fresh).unwrap();
            } else {
                panic!(
                    "docs/errors.md is out of date with ErrorCode; run \
                     `UPDATE_ERROR_DOCS=1 cargo test --lib error::` and commit it"
                );
            }
        }
    }

    #[test]
    fn the_openapi_document_lists_every_code() {
        use utoipa::OpenApi;
        let doc = serde_json::to_value(crate::routes::openapi::ApiDoc::openapi()).unwrap();
        let listed: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum in the document")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, all);
        assert_eq!(
            doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }

    #[test]
    fn every_error_body_has_the_code_string_and_the_status() {
        let e = ApiError::from(EngineError::WriteRefused {
            message: "x".into(),
            data: false,
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body()["error"], "write_refused");
    }
}
