//! The OpenAPI document (generated from the handlers' annotations with
//! utoipa) and a self-contained interactive page that renders it and can
//! send requests (no CDN, no Node toolchain).

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    agents, alerts, audit, events, health, learning, notifiers, recommendations, runs, series,
    trust, workspaces,
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
        series::agent_series,
        learning::trigger, learning::list, learning::latest, learning::patterns, learning::insights,
        learning::schedule,
        runs::list, runs::run, runs::list_runs, runs::get, runs::approve, runs::reject, events::stream,
        alerts::list, alerts::get, alerts::ack, alerts::create_silence, alerts::list_silences,
        alerts::delete_silence,
        health::healthz, health::readyz, health::metrics,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorCode)),
    modifiers(&BearerAuth),
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
