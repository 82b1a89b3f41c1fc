//! The dashboards under `/learning`: server-rendered pages (askama
//! templates in `templates/dashboard/`, compiled into the binary), charts
//! drawn on the server as SVG ([`svg`]), one small script for the live
//! insights widget and one stylesheet, both compiled in ([`assets`]).
//!
//! Sign-in ([`session`]): `GET /learning/login` shows a form with an input
//! named `api_key`; a valid workspace key starts a session held in an
//! HttpOnly, SameSite=Strict cookie. Every page needs a session (otherwise a
//! redirect to the sign-in form); every action (sign out, run a cycle,
//! enable/disable an agent) is a POST carrying the session's CSRF token
//! (403 without it, nothing changed). An API key in a URL's query string is
//! refused on every `/learning` route, so keys never land in logs or history.
//!
//! A session sees only its workspace: every store read takes the session's
//! workspace, and ids from the URL (agents, runs) are looked up in it (404
//! otherwise). The same functions serve the JSON API and the pages
//! (`routes::trust::scores`, `routes::learning::insights_of`, ...), so a
//! page shows the API's numbers.

pub mod assets;
mod pages;
pub mod session;
pub mod svg;

use std::future::Future;
use std::pin::Pin;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use swarmwise_actors::domain::WorkspaceId;

use crate::auth::{caller_of_digest, Caller};
use crate::error::ApiError;
use crate::state::AppState;
use session::{Session, Sessions, COOKIE};

/// What a dashboard handler can fail with; rendered as an HTML page (or a
/// redirect to the sign-in form).
#[derive(Debug)]
pub enum DashError {
    /// No live session: 303 to `/learning/login`.
    SignIn,
    /// 403 with a message (CSRF, cross-origin POST).
    Forbidden(String),
    /// 400 with a message.
    BadRequest(String),
    /// An API error (404 for another workspace's id, 409, 503, ...).
    Api(ApiError),
}

impl std::fmt::Display for DashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DashError::SignIn => f.write_str("sign in first"),
            DashError::Forbidden(m) | DashError::BadRequest(m) => f.write_str(m),
            DashError::Api(e) => write!(f, "{e}"),
        }
    }
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        DashError::Api(e)
    }
}

impl From<swarmwise_actors::ports::StoreError> for DashError {
    fn from(e: swarmwise_actors::ports::StoreError) -> Self {
        DashError::Api(e.into())
    }
}

impl From<swarmwise_actors::EngineError> for DashError {
    fn from(e: swarmwise_actors::EngineError) -> Self {
        DashError::Api(e.into())
    }
}

impl From<swarmwise_actors::domain::ParseError> for DashError {
    fn from(e: swarmwise_actors::domain::ParseError) -> Self {
        DashError::Api(e.into())
    }
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
    css_url: &'a str,
}

/// An HTML error page with `status`.
pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = ErrorPage {
        title,
        message,
        css_url: assets::css_url(),
    }
    .render()
    .unwrap_or_else(|_| message.to_owned());
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

impl ResponseError for DashError {
    fn status_code(&self) -> StatusCode {
        match self {
            DashError::SignIn => StatusCode::SEE_OTHER,
            DashError::Forbidden(_) => StatusCode::FORBIDDEN,
            DashError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashError::Api(e) => e.status,
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        match self {
            DashError::SignIn => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/learning/login"))
                .finish(),
            DashError::Api(e) if e.status.is_server_error() => {
                tracing::warn!(error = %e, "dashboard request failed");
                with_retry_after(error_page(e.status, &e.message), e)
            }
            DashError::Api(e) => with_retry_after(error_page(e.status, &e.message), e),
            other => error_page(other.status_code(), &other.to_string()),
        }
    }
}

/// Adds `Retry-After` to a 429 or 503 page (from `details.retry_after_secs`).
fn with_retry_after(mut res: HttpResponse, e: &ApiError) -> HttpResponse {
    if e.status == StatusCode::TOO_MANY_REQUESTS || e.status == StatusCode::SERVICE_UNAVAILABLE {
        let secs = e
            .details
            .get("retry_after_secs")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    res
}

/// A request with a live session whose key still resolves to its workspace.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The cookie's value.
    pub id: String,
    /// The session.
    pub session: Session,
}

impl Signed {
    /// The session's workspace.
    pub fn ws(&self) -> WorkspaceId {
        self.session.workspace
    }

    /// Refuses a POST whose `csrf` field is missing or wrong (403).
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), DashError> {
        match sent {
            Some(t) if session::same(t, &self.session.csrf) => Ok(()),
            Some(_) => Err(DashError::Forbidden(
                "the form's CSRF token is wrong or from another session; reload the page and try again".into(),
            )),
            None => Err(DashError::Forbidden(
                "the form carries no CSRF token; use the buttons of the dashboard pages".into(),
            )),
        }
    }
}

/// The session cookie's value in a request.
pub fn session_id(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get(header::COOKIE)?.to_str().ok()?;
    session::cookie_value(header, COOKIE).map(str::to_owned)
}

async fn signed(req: HttpRequest) -> Result<Signed, DashError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or(DashError::SignIn)?;
    let sessions = req
        .app_data::<web::Data<Sessions>>()
        .cloned()
        .ok_or(DashError::SignIn)?;
    let id = session_id(&req).ok_or(DashError::SignIn)?;
    let session = sessions
        .get(&id)
        .await
        .map_err(|e| DashError::Api(e.into()))?
        .ok_or(DashError::SignIn)?;
    // The key is checked again on every request (through the key cache):
    // a revoked key's sessions end within `auth.cache_ttl_secs`.
    match caller_of_digest(&state, session.key_hash.clone()).await? {
        Some(Caller::Workspace(ws)) if ws == session.workspace => {
            // A session spends its key's request budget
            // (`limits.key_requests_per_second`) like the API does, so a
            // page or CSV loop cannot bypass the per-key limit.
            state.limits.check_key(&session.key_hash)?;
            Ok(Signed { id, session })
        }
        _ => {
            sessions
                .end(&id)
                .await
                .map_err(|e| DashError::Api(e.into()))?;
            Err(DashError::SignIn)
        }
    }
}

impl FromRequest for Signed {
    type Error = DashError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(signed(req.clone()))
    }
}

/// Middleware on `/learning`: refuses an API key in the query string (400,
/// before anything else runs), refuses a cross-origin POST (403), and adds
/// the security headers to every answer: a Content-Security-Policy that
/// allows only this origin's script and style (no inline script or style),
/// no framing, no referrer to other sites (same-origin: with none at all browsers send `Origin: null` on form posts), no MIME sniffing, and `no-store` on pages.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let query = req.query_string();
    let key_in_url = url::form_urlencoded::parse(query.as_bytes()).any(|(k, v)| {
        let k = k.to_ascii_lowercase();
        k == "api_key"
            || k == "key"
            || k == "token"
            || v.starts_with("swk_")
            || v.starts_with("swa_")
    });
    if key_in_url {
        let res = error_page(
            StatusCode::BAD_REQUEST,
            "API keys are never accepted in a URL (they would stay in logs and browser history); sign in with the form at /learning/login",
        );
        return Ok(req.into_response(res));
    }
    if req.method() == actix_web::http::Method::POST && !same_origin(req.request()) {
        let res = error_page(
            StatusCode::FORBIDDEN,
            "cross-origin form posts are refused; use the dashboard's own pages",
        );
        return Ok(req.into_response(res));
    }
    let mut res = next.call(req).await?.map_into_boxed_body();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(res)
}

/// A POST's `Origin` (when the browser sends one) names this host.
fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .is_some_and(|u| {
            let with_port = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
                None => u.host_str().unwrap_or_default().to_owned(),
            };
            with_port.eq_ignore_ascii_case(host)
        })
}

/// The `/learning` scope: pages, actions, partials, events and assets.
pub fn scope() -> impl actix_web::dev::HttpServiceFactory + 'static {
    web::scope("/learning")
        .app_data(
            web::FormConfig::default()
                .limit(16 * 1024)
                .error_handler(|e, _| {
                    DashError::BadRequest(format!("the form could not be read: {e}")).into()
                }),
        )
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            DashError::BadRequest(format!("the query string could not be read: {e}")).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|e, _| {
            DashError::BadRequest(format!("the path could not be read: {e}")).into()
        }))
        .wrap(actix_web::middleware::from_fn(guard))
        .route("", web::get().to(pages::overview))
        .route("/", web::get().to(pages::overview))
        .route("/login", web::get().to(pages::login_form))
        .route("/login", web::post().to(pages::login))
        .route("/logout", web::post().to(pages::logout))
        .route("/cycles", web::post().to(pages::run_cycle))
        .route("/partials/insights", web::get().to(pages::insights_partial))
        .route("/events", web::get().to(pages::events))
        .route("/trust-scores", web::get().to(pages::trust))
        .route("/patterns", web::get().to(pages::patterns))
        .route("/runs", web::get().to(pages::runs))
        .route("/runs/{run_id}", web::get().to(pages::run))
        .route("/runs/{run_id}/decision", web::post().to(pages::decide_run))
        .route("/agents/{agent_id}", web::get().to(pages::agent))
        .route(
            "/agents/{agent_id}/enabled",
            web::post().to(pages::set_enabled),
        )
        .route(
            "/agents/{agent_id}/recommendations.csv",
            web::get().to(pages::recommendations_csv),
        )
        .route(
            "/agents/{agent_id}/series.csv",
            web::get().to(pages::series_csv),
        )
        .route("/export/agents.csv", web::get().to(pages::agents_csv))
        .route("/static/{file}", web::get().to(assets::serve))
        .default_service(web::to(|| async {
            error_page(
                StatusCode::NOT_FOUND,
                "no such dashboard page; start at /learning",
            )
        }))
}
