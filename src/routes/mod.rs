//! HTTP routes, one module per resource. Handlers are thin: parse, call the
//! engine or the store, map the result.

pub mod agents;
pub mod health;
pub mod openapi;
pub mod recommendations;
pub mod trust;
pub mod workspaces;

use actix_web::web;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .service(
            web::scope("/api/v1")
                .route("/openapi.json", web::get().to(openapi::document))
                .route("/docs", web::get().to(openapi::page))
                .route("/workspaces", web::post().to(workspaces::create))
                .route(
                    "/workspaces/{workspace_id}/api-keys",
                    web::post().to(workspaces::add_key),
                )
                .route("/agents", web::post().to(agents::register))
                .route("/agents", web::get().to(agents::list))
                .route("/agents/{agent_id}", web::get().to(agents::get))
                .route("/agents/{agent_id}", web::patch().to(agents::update))
                .route("/recommendations", web::post().to(recommendations::track))
                .route("/recommendations", web::get().to(recommendations::list))
                .route(
                    "/recommendations/batch",
                    web::post().to(recommendations::track_batch),
                )
                .route("/recommendations/{id}", web::get().to(recommendations::get))
                .route(
                    "/recommendations/{id}/feedback",
                    web::post().to(recommendations::feedback),
                )
                .route(
                    "/workflows/{workflow_id}/outcome",
                    web::post().to(recommendations::outcome),
                )
                .route("/learning/trust-scores", web::get().to(trust::list))
                .route(
                    "/learning/trust-scores/{agent_id}",
                    web::get().to(trust::get),
                )
                .route(
                    "/learning/trust/recompute",
                    web::post().to(trust::recompute),
                )
                .route(
                    "/learning/agents/metrics.csv",
                    web::get().to(trust::metrics_csv),
                )
                .route(
                    "/learning/agents/{agent_id}/boost",
                    web::get().to(trust::boost),
                )
                .route(
                    "/learning/agents/{agent_id}/metrics",
                    web::get().to(trust::agent_metrics),
                )
                .route(
                    "/learning/debug/initialize-trust-scores",
                    web::post().to(trust::initialize),
                ),
        );
}
