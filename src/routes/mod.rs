//! HTTP routes, one module per resource. Handlers are thin: parse, call the
//! engine or the store, map the result.
//!
//! The API routes are declared once in [`api_routes!`]: the same table
//! registers them and lists them ([`API_ROUTES`]), and a test checks that the
//! OpenAPI document describes every one.

pub mod agents;
pub mod alerts;
pub mod audit;
pub mod costs;
pub mod events;
pub mod health;
pub mod learning;
pub mod notifiers;
pub mod openapi;
pub mod recommendations;
pub mod runs;
pub mod series;
pub mod trust;
pub mod workspaces;

use actix_web::web;

macro_rules! api_routes {
    ($( $method:ident $path:literal => $handler:path ),* $(,)?) => {
        /// Every route under `/api/v1`: (method, path).
        pub const API_ROUTES: &[(&str, &str)] = &[ $( (stringify!($method), $path) ),* ];

        fn api_scope() -> actix_web::Scope {
            web::scope("/api/v1") $( .route($path, web::$method().to($handler)) )*
        }
    };
}

api_routes! {
    get "/openapi.json" => openapi::document,
    get "/docs" => openapi::page,
    post "/workspaces" => workspaces::create,
    get "/workspaces" => workspaces::list,
    post "/workspaces/{workspace_id}/api-keys" => workspaces::add_key,
    post "/workspaces/{workspace_id}/agents" => agents::register_as_admin,
    patch "/workspaces/{workspace_id}/agents/{agent_id}" => agents::update_as_admin,
    get "/workspaces/{workspace_id}/api-keys" => workspaces::list_keys,
    post "/workspaces/{workspace_id}/api-keys/{key_id}/revoke" => workspaces::revoke_key,
    post "/workspaces/{workspace_id}/api-keys/{key_id}/rotate" => workspaces::rotate_key,
    get "/audit" => audit::list,
    get "/alerts/notifiers" => notifiers::list,
    post "/agents" => agents::register,
    get "/agents" => agents::list,
    get "/agents/{agent_id}" => agents::get,
    get "/agents/{agent_id}/history" => agents::history,
    patch "/agents/{agent_id}" => agents::update,
    delete "/agents/{agent_id}" => agents::delete,
    post "/recommendations" => recommendations::track,
    get "/recommendations" => recommendations::list,
    post "/recommendations/batch" => recommendations::track_batch,
    get "/recommendations/{id}" => recommendations::get,
    post "/recommendations/{id}/feedback" => recommendations::feedback,
    post "/workflows/{workflow_id}/outcome" => recommendations::outcome,
    get "/learning/trust-scores" => trust::list,
    get "/learning/trust-scores/{agent_id}" => trust::get,
    post "/learning/trust/recompute" => trust::recompute,
    get "/learning/agents/metrics.csv" => trust::metrics_csv,
    get "/learning/costs" => costs::totals,
    get "/learning/agents/{agent_id}/boost" => trust::boost,
    get "/learning/agents/{agent_id}/metrics" => trust::agent_metrics,
    get "/learning/agents/{agent_id}/series" => series::agent_series,
    post "/learning/debug/initialize-trust-scores" => trust::initialize,
    post "/learning/cycles" => learning::trigger,
    get "/learning/cycles" => learning::list,
    get "/learning/cycles/latest" => learning::latest,
    get "/learning/patterns" => learning::patterns,
    get "/learning/insights" => learning::insights,
    get "/learning/schedule" => learning::schedule,
    get "/workflows" => runs::list,
    post "/workflows/runs" => runs::run,
    get "/workflows/runs" => runs::list_runs,
    get "/workflows/runs/{run_id}" => runs::get,
    post "/workflows/runs/{run_id}/approve" => runs::approve,
    post "/workflows/runs/{run_id}/reject" => runs::reject,
    get "/events" => events::stream,
    get "/alerts" => alerts::list,
    post "/alerts/silences" => alerts::create_silence,
    get "/alerts/silences" => alerts::list_silences,
    delete "/alerts/silences/{id}" => alerts::delete_silence,
    get "/alerts/{id}" => alerts::get,
    post "/alerts/{id}/ack" => alerts::ack,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        // The last wrap runs first: authenticate, then the Idempotency-Key
        // middleware (which reads the caller that resolved).
        .service(
            api_scope()
                .wrap(actix_web::middleware::from_fn(
                    crate::idempotency::middleware,
                ))
                .wrap(actix_web::middleware::from_fn(crate::auth::authenticate)),
        )
        .service(crate::dashboard::scope());
}
