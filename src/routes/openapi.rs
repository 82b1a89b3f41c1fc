//! The OpenAPI document (generated from the handlers' annotations with
//! utoipa) and a self-contained interactive page that renders it and can
//! send requests (no CDN, no Node toolchain).

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    agents, alerts, audit, costs, events, health, learning, notifiers, recommendations, runs,
    series, trust, workspaces,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "admin_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Documents the `Idempotency-Key` header, and the answers it adds (409
/// `idempotency_in_progress`, 422 `idempotency_key_reused`), on every
/// operation [`crate::idempotency::covered`] applies to: the same rule the
/// middleware uses, so the document cannot drift from it.
struct IdempotencyHeader;

impl Modify for IdempotencyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, ResponseBuilder, Type};
        let method = actix_web::http::Method::POST;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let Some(op) = item
                .post
                .as_mut()
                .filter(|_| crate::idempotency::covered(&method, path))
            else {
                continue;
            };
            let header = ParameterBuilder::new()
                .name(crate::idempotency::HEADER)
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Makes the request safe to retry (docs/idempotency.md): a repeat with the same key and request                      within idempotency.ttl_secs, on any node, answers with the first answer (header                      `Idempotent-Replayed: true`) instead of running again. 1-255 printable ASCII characters, e.g. a UUID.",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .max_length(Some(crate::idempotency::MAX_KEY_LEN)),
                ))
                .build();
            op.parameters.get_or_insert_with(Vec::new).push(header);
            let responses = &mut op.responses.responses;
            for (status, text) in [
                ("400", "malformed input, or an invalid Idempotency-Key (`invalid_idempotency_key`)"),
                ("409", "a request with this Idempotency-Key is still running (`idempotency_in_progress`, with Retry-After)"),
                ("422", "a value breaks a rule, or the Idempotency-Key was used for another request (`idempotency_key_reused`)"),
            ] {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| ResponseBuilder::new().description(text).into());
            }
        }
    }
}

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Swarmwise", description = "Track agent recommendations, learn from outcomes, read trust scores and decision boosts."),
    paths(
        workspaces::create, workspaces::list, workspaces::add_key, workspaces::list_keys,
        workspaces::revoke_key, workspaces::rotate_key, audit::list, notifiers::list,
        agents::register, agents::register_as_admin, agents::update_as_admin, agents::list, agents::get, agents::history, agents::update, agents::delete,
        recommendations::track, recommendations::track_batch, recommendations::list, recommendations::get,
        recommendations::feedback, recommendations::outcome,
        trust::list, trust::get, trust::recompute, trust::metrics_csv, trust::boost, trust::agent_metrics, trust::initialize,
        series::agent_series, costs::totals,
        learning::trigger, learning::list, learning::latest, learning::patterns, learning::insights,
        learning::schedule,
        runs::list, runs::run, runs::list_runs, runs::get, runs::approve, runs::reject, events::stream,
        alerts::list, alerts::get, alerts::ack, alerts::create_silence, alerts::list_silences,
        alerts::delete_silence,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorCode)),
    modifiers(&BearerAuth, &IdempotencyHeader),
)]
pub struct ApiDoc;

/// `GET /api/v1/openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

/// `GET /api/v1/docs`: lists every operation from the document and lets you
/// send requests with your key.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(PAGE)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Swarmwise API</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
details{border:1px solid #ddd;border-radius:6px;margin:.4rem 0;padding:.4rem .8rem}
summary{cursor:pointer;font-family:monospace}
.m{display:inline-block;width:4.5rem;font-weight:bold}
.get{color:#06c}.post{color:#080}.patch{color:#a60}
textarea,input{width:100%;font-family:monospace;box-sizing:border-box}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:24rem}
</style></head><body>
<h1>Swarmwise API</h1>
<p>Machine-readable document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.
API key (sent as <code>Authorization: Bearer …</code>): <input id="key" placeholder="swk_… or the admin key"></p>
<div id="ops">loading…</div>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
fetch('/api/v1/openapi.json').then(r => r.json()).then(doc => {
  const box = document.getElementById('ops'); box.innerHTML = '';
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const d = document.createElement('details');
      const hasBody = !!op.requestBody;
      d.innerHTML = `<summary><span class="m ${method}">${method.toUpperCase()}</span>${esc(path)} — ${esc(op.summary || '')}</summary>
        <p>${esc(op.description || '')}</p>
        <label>path (fill in {placeholders}, add ?query)<input class="p" value="${esc(path)}"></label>
        ${hasBody ? '<label>JSON body<textarea class="b" rows="6">{}</textarea></label>' : ''}
        <button>Send</button><pre class="o"></pre>`;
      d.querySelector('button').onclick = async () => {
        const headers = {'Authorization': 'Bearer ' + document.getElementById('key').value};
        const init = {method: method.toUpperCase(), headers};
        if (hasBody) { headers['Content-Type'] = 'application/json'; init.body = d.querySelector('.b').value; }
        const res = await fetch(d.querySelector('.p').value, init);
        const text = await res.text();
        d.querySelector('.o').textContent = res.status + ' ' + res.statusText + '\n\n' + text;
      };
      box.appendChild(d);
    }
  }
});
</script></body></html>"#;
