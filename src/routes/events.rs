//! `GET /api/v1/events`: server-sent events of the caller's workspace
//! (trust updates, agent health, learning cycles, workflow progress,
//! alerts), from every node when Redis relays them (`crate::event_hub`).
//!
//! The frame of an event is `id: <numbering>-<seq>` then `data: <JSON with
//! a "type">`. A client that reconnects with `Last-Event-ID` first gets
//! the buffered events after that id, or one `reset` event
//! (`{"type":"reset","workspace_id","reason"}`, with an empty `id:` that
//! clears the client's last id) when the node cannot tell what it missed:
//! the client should then re-read what it shows. A malformed or foreign
//! `Last-Event-ID` is an unknown one (a reset, not a 400: browsers'
//! `EventSource` reconnects by itself and would stop on an error status).
//!
//! A stream sends `: ping` every `events.heartbeat_secs` (writing is how a
//! gone client is noticed, so its slot of
//! `limits.max_event_streams_per_workspace`, counted per node, is freed),
//! and ends after `events.max_stream_secs` with a `retry:` hint, so
//! clients reconnect (possibly to another node) and resume by id.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use swarmwise_actors::domain::WorkspaceId;

use crate::auth::Workspace;
use crate::error::ApiError;
use crate::event_hub::{EventHub, HubMsg, Numbered, ResetReason, Resume};
use crate::limits::RunSlot;
use crate::state::AppState;

/// The event stream.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "the last `id:` the client received: the stream starts with the buffered events after it, or with a `reset` event when they cannot be told (docs/events.md)")),
    responses((status = 200, description = "text/event-stream: `id: <numbering>-<seq>` and `data: <JSON event with a type>` frames, `: ping` comments every events.heartbeat_secs, a `reset` event when events may have been missed; ends after events.max_stream_secs with a `retry:` hint", content_type = "text/event-stream"),
              (status = 429, description = "the workspace already has limits.max_event_streams_per_workspace streams open on this node (too_many_streams); see Retry-After", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn stream(
    ws: Workspace,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    stream_for(&state, ws.0, last_event_id(&req))
}

/// The `Last-Event-ID` header, when present (a value that is not visible
/// ASCII counts as an unknown id, never as an error).
pub(crate) fn last_event_id(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or(""))
}

/// The `retry:` hint (milliseconds) sent when a stream's lifetime ends.
pub const RETRY_MS: u64 = 1000;

/// The event stream of one workspace (the API's, and the dashboard's for a
/// session's workspace), resuming after `last_event_id` when given. At most
/// `limits.max_event_streams_per_workspace` are open per workspace on this
/// node (429 `too_many_streams` past it); the slot is held by the stream and
/// freed when the client goes away or the stream ends.
pub(crate) fn stream_for(
    state: &AppState,
    ws: WorkspaceId,
    last_event_id: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let slot = state.limits.start_stream(ws)?;
    let events = &state.settings.events;
    // Subscribe before reading the buffer: an event recorded in between is
    // in both, and de-duplicated by id.
    let rx = state.hub.subscribe();
    let mut out = Stream {
        rx,
        hub: state.hub.clone(),
        ws,
        stop: state.shutdown.clone(),
        beat: tokio::time::interval(Duration::from_secs(events.heartbeat_secs.max(1))),
        lifetime: (events.max_stream_secs > 0)
            .then(|| Box::pin(tokio::time::sleep(lifetime(events.max_stream_secs)))),
        pending: VecDeque::new(),
        replayed: HashSet::new(),
        last: None,
        ending: false,
        _open: Open::new(slot),
    };
    out.beat
        .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    out.beat.reset();
    if let Some(id) = last_event_id {
        out.resume(id, false);
    }
    let body = stream::unfold(out, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, actix_web::Error>(chunk), s))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// A stream's lifetime: `max_secs` less up to a tenth, at random, so that
/// streams opened together (after a deploy) do not all reconnect together.
fn lifetime(max_secs: u64) -> Duration {
    let max = Duration::from_secs(max_secs);
    let spread = max.as_millis() as u64 / 10;
    let cut = if spread == 0 {
        0
    } else {
        crate::event_hub::random48() % spread
    };
    max.saturating_sub(Duration::from_millis(cut))
}

/// One open stream's state.
struct Stream {
    rx: broadcast::Receiver<HubMsg>,
    hub: EventHub,
    ws: WorkspaceId,
    stop: tokio::sync::watch::Receiver<bool>,
    /// `events.heartbeat_secs`.
    beat: tokio::time::Interval,
    /// Ends the stream after `events.max_stream_secs` (none when 0).
    lifetime: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Frames to write before reading more (a replay).
    pending: VecDeque<web::Bytes>,
    /// Ids sent by a replay, so the same events arriving live are skipped.
    replayed: HashSet<(Arc<str>, u64)>,
    /// The last event sent, to resume from after a lag.
    last: Option<String>,
    /// The lifetime's farewell is queued: end after it.
    ending: bool,
    /// The slot and the open-streams gauge, released on drop (the client
    /// went away, the stream ended, or the server stops).
    _open: Open,
}

impl Stream {
    /// Queues the replay after `id`, or a reset (with `lagged` when the
    /// stream fell behind, else the hub's reason).
    fn resume(&mut self, id: &str, lagged: bool) {
        match self.hub.resume(self.ws, id) {
            Resume::Replay(events) => {
                for e in events {
                    self.replayed.insert((Arc::clone(&e.epoch), e.seq));
                    let frame = self.event_frame(&e);
                    self.pending.push_back(frame);
                }
            }
            Resume::Reset(reason) => {
                let reason = if lagged { ResetReason::Lagged } else { reason };
                let frame = self.reset_frame(reason);
                self.pending.push_back(frame);
            }
        }
    }

    fn event_frame(&mut self, e: &Numbered) -> web::Bytes {
        let id = e.id();
        let frame = format!("id: {id}\ndata: {}\n\n", e.json);
        self.last = Some(id);
        web::Bytes::from(frame)
    }

    fn reset_frame(&mut self, reason: ResetReason) -> web::Bytes {
        metrics::counter!("swarmwise_event_resets_total", "reason" => reason.as_str()).increment(1);
        self.last = None;
        let data = json!({ "type": "reset", "workspace_id": self.ws, "reason": reason });
        web::Bytes::from(format!("id:\ndata: {data}\n\n"))
    }

    /// The next frame to write, or `None` to end the stream.
    async fn next_chunk(&mut self) -> Option<web::Bytes> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Some(chunk);
            }
            if self.ending || *self.stop.borrow() {
                return None;
            }
            let wake = {
                let lifetime = &mut self.lifetime;
                let end = async move {
                    match lifetime {
                        Some(sleep) => sleep.as_mut().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    next = self.rx.recv() => Wake::Next(next),
                    _ = self.beat.tick() => Wake::Beat,
                    _ = end => Wake::End,
                    _ = self.stop.changed() => Wake::Stop,
                }
            };
            let next = match wake {
                Wake::Next(next) => next,
                Wake::Beat => return Some(web::Bytes::from_static(b": ping\n\n")),
                Wake::End => {
                    self.ending = true;
                    return Some(web::Bytes::from(format!(
                        "retry: {RETRY_MS}\n: stream lifetime reached (events.max_stream_secs); reconnect with Last-Event-ID\n\n"
                    )));
                }
                Wake::Stop => return None,
            };
            match next {
                Ok(HubMsg::Event(e)) if e.ws == self.ws => {
                    if self.replayed.remove(&(Arc::clone(&e.epoch), e.seq)) {
                        continue;
                    }
                    return Some(self.event_frame(&e));
                }
                Ok(HubMsg::Reset { ws, reason }) if ws.is_none() || ws == Some(self.ws) => {
                    return Some(self.reset_frame(reason));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => match self.last.clone() {
                    Some(last) => self.resume(&last, true),
                    None => return Some(self.reset_frame(ResetReason::Lagged)),
                },
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

/// What woke a stream up.
enum Wake {
    Next(Result<HubMsg, RecvError>),
    Beat,
    End,
    Stop,
}

/// An open stream: holds its slot and counts in `swarmwise_event_streams_open`.
struct Open(#[allow(dead_code)] RunSlot);

impl Open {
    fn new(slot: RunSlot) -> Self {
        metrics::gauge!("swarmwise_event_streams_open").increment(1.0);
        Self(slot)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("swarmwise_event_streams_open").decrement(1.0);
    }
}
