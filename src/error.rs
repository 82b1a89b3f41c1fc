//! The API error: a stable code, a message that says what to do, details
//! (at least the offending `field` where there is one), and the status.
//! Serialised as `{"error": "...", "message": "...", "details": {...}}`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};
use swarmwise_actors::domain::ParseError;
use swarmwise_actors::ports::StoreError;
use swarmwise_actors::EngineError;

/// The JSON shape of every error answer (for the OpenAPI document).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `invalid_field`, `agent_not_found`.
    pub error: String,
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
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What happened and what to do next.
    pub message: String,
    /// Structured details, e.g. `{"field": "confidence"}`.
    pub details: Value,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// A refused field (422 by default).
    pub fn field(
        status: StatusCode,
        code: &'static str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({ "field": field }),
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 for a thing by id.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<ParseError> for ApiError {
    fn from(e: ParseError) -> Self {
        Self::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            &e.field,
            format!("{}: {}", e.field, e.message),
        )
    }
}

impl From<crate::backends::policy::PolicyError> for ApiError {
    fn from(e: crate::backends::policy::PolicyError) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code: "agent_policy_violation",
            message: format!("{}: {} (rule: {})", e.field, e.message, e.rule),
            details: json!({ "field": e.field, "rule": e.rule }),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Rejected(m) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rejected_by_database",
                format!("the database refused a value of this request ({m}); correct the data, retrying it unchanged fails again"),
            ),
            StoreError::Unavailable(m) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                format!("the database is unavailable ({m}); retry shortly, and check /readyz"),
            ),
            StoreError::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected store error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
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
                    "agent" => "agent_not_found",
                    "workflow" => "workflow_not_found",
                    "recommendation" => "recommendation_not_found",
                    _ => "not_found",
                };
                Self::not_found(code, format!("{what} {id:?} was not found in this workspace"))
            }
            EngineError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            EngineError::Overloaded(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", m),
            EngineError::LearningDisabled => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "learning_disabled",
                "learning is disabled on this server (learning.enabled = false): recommendations are not tracked; \
                 set learning.enabled = true to turn it back on",
            ),
            EngineError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the server is shutting down; retry in a moment",
            ),
            EngineError::FlushTimeout { waited_ms, pending } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "writes_pending",
                message: e_message(waited_ms, pending),
                details: json!({ "pending_writes": pending, "waited_ms": waited_ms }),
            },
            EngineError::WriteRefused { message, data } => Self::new(
                if data {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                "write_refused",
                format!(
                    "the recommendation was not stored: the database refused it ({message}); it was recorded in the dead-letter table. \
                     Retrying the same data fails again"
                ),
            ),
            EngineError::DrainIncomplete { rows } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                format!("the server is shutting down ({rows} writes pending); retry in a moment"),
            ),
            EngineError::Store(s) => s.into(),
        }
    }
}

fn e_message(waited_ms: u64, pending: u64) -> String {
    format!(
        "this read waits for {pending} pending recommendations to be written, and they were not within {waited_ms} ms \
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
        res.json(json!({
            "error": self.code,
            "message": self.message,
            "details": self.details,
        }))
    }
}
