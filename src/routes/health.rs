//! `/healthz` (alive), `/readyz` (database reachable, migrations applied,
//! actors running; Redis's state is shown but does not decide readiness) and `/metrics` (Prometheus text format). No auth, except
//! `/metrics` when `telemetry.metrics_token` is set.

use actix_web::{web, HttpResponse};
use serde_json::json;
use swarmwise_actors::supervisor::ActorHealth;

use crate::state::AppState;

/// Always 200 while the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when ready, 503 with the reasons otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "database reachable, migrations applied, actors running, the tracker's writer committing"), (status = 503, description = "not ready; the body says why")))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let db = state.store.ready().await;
    let actors: Vec<_> = state
        .engine
        .health()
        .all()
        .into_iter()
        .map(|(name, health, restarts)| json!({ "name": name, "state": health, "restarts": restarts }))
        .collect();
    let actors_ok = state
        .engine
        .health()
        .all()
        .iter()
        .all(|(_, h, _)| *h == ActorHealth::Running);
    // A writer that cannot commit (retrying a lost database, or hanging)
    // leaves acknowledged rows in memory only: not ready.
    let writer = state.engine.writer();
    let ready = db.is_ok() && actors_ok && !writer.stalled;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": {
            "backend": state.store.backend(),
            "ok": db.is_ok(),
            "error": db.err().map(|e| e.to_string()),
        },
        "actors": actors,
        // Optional: reported, never a reason to be unready (the node falls
        // back to the database and its local events).
        "redis": state.redis.status(),
        "learning_enabled": state.engine.learning_enabled(),
        "pending_writes": state.engine.pending_writes(),
        "writer": writer,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus exposition: the recorder's metrics, then the gauges of the
/// latest stats refresh (`crate::stats`). With `telemetry.metrics_token`
/// set, only `Authorization: Bearer <that token>` is answered (401
/// otherwise; API keys, admin key included, are not accepted).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, description = "telemetry.metrics_token is set and the request does not carry it")))]
pub async fn metrics(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, crate::error::ApiError> {
    let expected = &state.settings.telemetry.metrics_token;
    if !expected.is_empty() {
        let given = crate::auth::bearer(&req)?;
        // Compare digests, so the time taken does not depend on how much
        // of the token matched.
        if crate::auth::hash_key(&given) != crate::auth::hash_key(expected) {
            return Err(crate::error::ApiError::unauthorized(
                "wrong metrics token; send `Authorization: Bearer <telemetry.metrics_token>`",
            ));
        }
    }
    metrics::gauge!("swarmwise_tracker_pending_writes").set(state.engine.pending_writes() as f64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(format!(
            "{}{}",
            state.prometheus.render(),
            state.stats.render()
        )))
}
