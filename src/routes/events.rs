//! `GET /api/v1/events`: server-sent events of the caller's workspace (trust
//! updates, agent health, workflow progress). Slow clients miss events
//! rather than slowing the engine; a `lagged` comment says that some were
//! missed (not how many: the buffer is shared by every workspace, and its
//! count would tell one tenant about another's activity).

use actix_web::{web, HttpResponse};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use swarmwise_actors::domain::WorkspaceId;

use crate::auth::Workspace;
use crate::state::AppState;

/// The event stream.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 200, description = "text/event-stream of JSON events with a `type` field", content_type = "text/event-stream")),
    security(("api_key" = [])))]
pub async fn stream(ws: Workspace, state: web::Data<AppState>) -> HttpResponse {
    stream_for(&state, ws.0)
}

/// The event stream of one workspace (the API's, and the dashboard's for a
/// session's workspace).
pub(crate) fn stream_for(state: &AppState, ws: WorkspaceId) -> HttpResponse {
    let rx = state.engine.events().subscribe();
    let stop = state.shutdown.clone();
    let body = stream::unfold((rx, ws, stop), |(mut rx, ws, mut stop)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = stop.changed() => return None,
            };
            match next {
                Ok(event) if event.workspace() == ws => {
                    let json = serde_json::to_string(&event).unwrap_or_default();
                    let chunk = web::Bytes::from(format!("data: {json}\n\n"));
                    return Some((Ok::<_, actix_web::Error>(chunk), (rx, ws, stop)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {
                    let chunk = web::Bytes::from(": lagged: events were missed\n\n");
                    return Some((Ok(chunk), (rx, ws, stop)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}
