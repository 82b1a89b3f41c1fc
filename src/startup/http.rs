//! The actix-web server: the shared state, extractor errors in our error
//! shape, the request span (request id, echoed in `x-request-id`) and the
//! request-duration metric, the routes and the 404 for the rest.
//! Signals are not actix's: [`super::Application::run`] handles them.

use std::net::TcpListener;
use std::time::Instant;

use actix_web::dev::{Server, Service as _};
use actix_web::{web, App, HttpServer};
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Binds `workers` workers to `listener`; the graceful stop waits at most
/// `shutdown_timeout_secs` for in-flight requests.
pub(super) fn server(
    state: web::Data<AppState>,
    workers: usize,
    shutdown_timeout_secs: u64,
    listener: TcpListener,
) -> std::io::Result<Server> {
    // Dashboard sessions: in the database, shared by every worker and node.
    let sessions = web::Data::new(crate::dashboard::session::Sessions::new(
        state.store.clone(),
        std::time::Duration::from_secs(state.settings.dashboard.session_ttl_secs),
        state.settings.dashboard.max_sessions_per_workspace,
    ));
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(sessions.clone())
            .app_data(web::PathConfig::default().error_handler(|e, _| {
                ApiError::new(ErrorCode::InvalidPath, format!("path: {e}")).into()
            }))
            .wrap_fn(|req, srv| {
                let started = Instant::now();
                let method = crate::telemetry::method_label(req.method());
                let request_id = crate::telemetry::request_id(req.headers());
                let span = crate::telemetry::request_span(&request_id, method, req.path());
                crate::otel::propagation::adopt(&span, req.headers());
                let fut = span.in_scope(|| srv.call(req));
                async move {
                    let mut res = fut.await?;
                    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&request_id) {
                        res.headers_mut().insert(
                            actix_web::http::header::HeaderName::from_static(
                                crate::telemetry::REQUEST_ID_HEADER,
                            ),
                            v,
                        );
                    }
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".into());
                    let current = tracing::Span::current();
                    current.record("route", route.as_str());
                    current.record("status", res.status().as_u16());
                    metrics::histogram!(
                        "swarmwise_http_request_duration_seconds",
                        "method" => method,
                        "route" => route,
                        "status" => res.status().as_u16().to_string()
                    )
                    .record(started.elapsed().as_secs_f64());
                    Ok(res)
                }
                .instrument(span)
            })
            .configure(crate::routes::configure)
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::new(
                    ErrorCode::RouteNotFound,
                    "no such endpoint; see /api/v1/openapi.json for the API",
                ))
            }))
    })
    .workers(workers)
    // Signals are handled in `run`, which first ends SSE streams.
    .disable_signals()
    .shutdown_timeout(shutdown_timeout_secs)
    .listen(listener)
    .map(|s| s.run())
}
