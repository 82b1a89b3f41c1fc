//! `GET /api/v1/events`: server-sent events of the caller's workspace (trust
//! updates, agent health, workflow progress). Slow clients miss events
//! rather than slowing the engine; a `lagged` comment says that some were
//! missed (not how many: the buffer is shared by every workspace, and its
//! count would tell one tenant about another's activity).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures_util::stream;
use tokio::sync::broadcast::error::RecvError;

use swarmwise_actors::domain::WorkspaceId;

use crate::auth::Workspace;
use crate::error::ApiError;
use crate::state::AppState;

/// The event stream.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses((status = 200, description = "text/event-stream of JSON events with a `type` field", content_type = "text/event-stream"),
              (status = 429, description = "the workspace already has limits.max_event_streams_per_workspace streams open (too_many_streams); see Retry-After", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn stream(ws: Workspace, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    stream_for(&state, ws.0)
}

/// Seconds between `: ping` comments on an idle stream: writing is how a
/// closed client is noticed, so a closed tab frees its slot of
/// `limits.max_event_streams_per_workspace` within this time.
pub const HEARTBEAT_SECS: u64 = 15;

/// The event stream of one workspace (the API's, and the dashboard's for a
/// session's workspace). At most `limits.max_event_streams_per_workspace`
/// are open per workspace (429 `too_many_streams` past it); the slot is
/// held by the stream and freed when the client goes away.
pub(crate) fn stream_for(state: &AppState, ws: WorkspaceId) -> Result<HttpResponse, ApiError> {
    let slot = state.limits.start_stream(ws)?;
    let rx = state.engine.events().subscribe();
    let stop = state.shutdown.clone();
    let mut beat = tokio::time::interval(Duration::from_secs(HEARTBEAT_SECS));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.reset();
    let init = (rx, ws, stop, beat, slot);
    let body = stream::unfold(init, |(mut rx, ws, mut stop, mut beat, slot)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            let next = tokio::select! {
                next = rx.recv() => next,
                _ = beat.tick() => {
                    let chunk = web::Bytes::from_static(b": ping\n\n");
                    return Some((Ok(chunk), (rx, ws, stop, beat, slot)));
                }
                _ = stop.changed() => return None,
            };
            match next {
                Ok(event) if event.workspace() == ws => {
                    let json = serde_json::to_string(&event).unwrap_or_default();
                    let chunk = web::Bytes::from(format!("data: {json}\n\n"));
                    return Some((Ok::<_, actix_web::Error>(chunk), (rx, ws, stop, beat, slot)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {
                    let chunk = web::Bytes::from(": lagged: events were missed\n\n");
                    return Some((Ok(chunk), (rx, ws, stop, beat, slot)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body))
}
