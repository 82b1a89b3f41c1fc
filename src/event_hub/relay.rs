//! The hub's two tasks: numbering this node's events (shared numbering in
//! Redis when it answers, else the local one) and publishing them on the
//! Redis channel `<redis.key_prefix>events`; and receiving what other nodes
//! publish there.
//!
//! Redis keys: `<prefix>events:numbering` (the shared numbering's name,
//! created by the first node that needs it; a Redis that lost its data gets
//! a new one, so old ids are recognised as another numbering) and
//! `<prefix>events:seq:<workspace>` (the workspace's last `seq`). Both are
//! written by one Lua script per batch, so a batch's ids and the numbering
//! they belong to come from one atomic step. The keys have no TTL: a Redis
//! that evicts keys (`maxmemory-policy` other than `noeviction` or
//! `volatile-*`) could restart a counter and repeat ids.
//!
//! A message is `{"node", "events": [{"ws", "epoch", "seq", "data"}]}`,
//! `data` being the event's JSON text. A node skips its own messages, and
//! drops a malformed one (logged): the channel is the operator's, but a
//! value that could break an SSE frame never reaches a client.

use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::events::Event;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use super::{random48, valid_epoch, EventHub, Numbered, ResetReason};
use crate::redis_link::{RedisLink, UPKEEP_INTERVAL};

/// Events numbered (and published) together at most.
const MAX_BATCH: usize = 512;

/// Returns the shared numbering's name (creating it when absent) and, for
/// each workspace key, its counter after adding its count.
const NUMBER_SCRIPT: &str = r"
local e = redis.call('GET', KEYS[1])
if not e then
  e = ARGV[1]
  redis.call('SET', KEYS[1], e)
end
local out = {e}
for i = 2, #KEYS do
  out[i] = tostring(redis.call('INCRBY', KEYS[i], tonumber(ARGV[i])))
end
return out
";

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    events: Vec<Relayed>,
}

#[derive(Serialize, Deserialize)]
struct Relayed {
    ws: WorkspaceId,
    epoch: String,
    seq: u64,
    data: String,
}

/// Reads the engine's bus, numbers and records each batch, and publishes
/// it when the numbering is the shared one. Ends at shutdown or when the
/// bus closes.
pub(super) async fn number_local_events(
    hub: EventHub,
    mut bus: broadcast::Receiver<Event>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            next = bus.recv() => next,
            _ = shutdown.changed() => return,
        };
        let mut batch = Vec::new();
        let mut lagged = false;
        match first {
            Ok(event) => batch.push(event),
            Err(RecvError::Lagged(_)) => lagged = true,
            Err(RecvError::Closed) => return,
        }
        while batch.len() < MAX_BATCH {
            match bus.try_recv() {
                Ok(event) => batch.push(event),
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        if lagged {
            // Events were dropped before they had ids: every stream may
            // have missed some.
            tracing::warn!("the event hub fell behind the engine's bus; streams are told to reset");
            hub.reset(None, ResetReason::Lagged);
        }
        let items: Vec<(WorkspaceId, Arc<str>)> = batch
            .iter()
            .filter_map(|e| Some((e.workspace(), serde_json::to_string(e).ok()?.into())))
            .collect();
        if items.is_empty() {
            continue;
        }
        // A fresh candidate each time: it becomes the numbering only when
        // Redis has none (first use, or it lost its data), and must then
        // differ from every earlier one.
        let candidate = format!("r{:012x}", random48());
        match number_shared(hub.redis(), &candidate, &items).await {
            Some(numbered) => {
                let envelope = envelope(&hub, &numbered);
                hub.record(numbered);
                if let Some(payload) = envelope {
                    publish(hub.redis(), payload).await;
                }
            }
            None => hub.record(hub.number_locally(items)),
        }
    }
}

/// Numbers a batch in the shared numbering; `None` when Redis is disabled,
/// unavailable or late (the caller numbers locally).
async fn number_shared(
    redis: &RedisLink,
    candidate: &str,
    items: &[(WorkspaceId, Arc<str>)],
) -> Option<Vec<Numbered>> {
    if !redis.is_up() {
        return None;
    }
    let prefix = redis.prefix();
    let mut order: Vec<WorkspaceId> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for (ws, _) in items {
        match order.iter().position(|w| w == ws) {
            Some(i) => {
                if let Some(c) = counts.get_mut(i) {
                    *c += 1;
                }
            }
            None => {
                order.push(*ws);
                counts.push(1);
            }
        }
    }
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(NUMBER_SCRIPT)
        .arg(order.len() + 1)
        .arg(format!("{prefix}events:numbering"));
    for ws in &order {
        cmd.arg(format!("{prefix}events:seq:{ws}"));
    }
    cmd.arg(candidate);
    for c in &counts {
        cmd.arg(*c);
    }
    let reply: Vec<String> = redis
        .call("event_numbering", |mut conn| async move {
            cmd.query_async(&mut conn).await
        })
        .await?;
    let (epoch, lasts) = reply.split_first()?;
    if !valid_epoch(epoch) || lasts.len() != order.len() {
        tracing::warn!(numbering = %epoch, "unexpected reply from the event numbering script; numbering locally");
        return None;
    }
    let epoch: Arc<str> = epoch.as_str().into();
    // The first seq of each workspace in this batch: last - count + 1.
    let mut next: Vec<u64> = Vec::with_capacity(order.len());
    for (last, count) in lasts.iter().zip(&counts) {
        let last: u64 = last.parse().ok()?;
        next.push(last.checked_sub(*count)?.checked_add(1)?);
    }
    let mut out = Vec::with_capacity(items.len());
    for (ws, json) in items {
        let i = order.iter().position(|w| w == ws)?;
        let seq = next.get_mut(i)?;
        out.push(Numbered {
            ws: *ws,
            epoch: Arc::clone(&epoch),
            seq: *seq,
            json: Arc::clone(json),
        });
        *seq += 1;
    }
    Some(out)
}

fn envelope(hub: &EventHub, events: &[Numbered]) -> Option<String> {
    serde_json::to_string(&Envelope {
        node: hub.node().as_str().to_owned(),
        events: events
            .iter()
            .map(|e| Relayed {
                ws: e.ws,
                epoch: e.epoch.to_string(),
                seq: e.seq,
                data: e.json.to_string(),
            })
            .collect(),
    })
    .ok()
}

async fn publish(redis: &RedisLink, payload: String) {
    let channel = format!("{}events", redis.prefix());
    let sent = redis
        .call("event_publish", |mut conn| async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await;
    if sent.is_some() {
        metrics::counter!("swarmwise_events_relayed_total", "direction" => "published")
            .increment(1);
    }
}

/// A subscription to the events channel, or `None` when Redis is down
/// (bounded by about twice the call deadline, at least 0.5 s).
pub(super) async fn subscribe(redis: &RedisLink) -> Option<redis::aio::PubSubStream> {
    if !redis.is_up() {
        return None;
    }
    let client = redis.client()?;
    let channel = format!("{}events", redis.prefix());
    let limit = redis
        .op_timeout()
        .max(std::time::Duration::from_millis(500));
    let attempt = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(pubsub.into_on_message())
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not subscribe to the events channel yet");
            None
        }
        Err(_) => None,
    }
}

/// Receives other nodes' events until shutdown; renews the subscription
/// whenever it ends or Redis is reported down, and then resets every stream
/// of this node (events of other nodes may have been missed meanwhile).
pub(super) async fn receive_remote_events(
    hub: EventHub,
    first: Option<redis::aio::PubSubStream>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(mut up) = hub.redis().watch_up() else {
        return;
    };
    let mut current = first;
    loop {
        if let Some(mut messages) = current.take() {
            loop {
                tokio::select! {
                    msg = messages.next() => match msg {
                        Some(msg) => receive(&hub, &msg),
                        None => break,
                    },
                    changed = up.changed() => {
                        if changed.is_err() || !*up.borrow() {
                            break;
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
            tracing::warn!(
                "the Redis event subscription ended; renewing it (streams will get a reset)"
            );
        }
        // Wait until Redis answers again, then subscribe.
        loop {
            if *shutdown.borrow() {
                return;
            }
            if *up.borrow() {
                if let Some(s) = subscribe(hub.redis()).await {
                    current = Some(s);
                    break;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(UPKEEP_INTERVAL) => {}
                _ = up.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
        hub.reset(None, ResetReason::RelayInterrupted);
    }
}

/// Records another node's events from one message.
fn receive(hub: &EventHub, msg: &redis::Msg) {
    let Ok(payload) = msg.get_payload::<String>() else {
        return;
    };
    let envelope: Envelope = match serde_json::from_str(&payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "dropped a malformed message on the Redis events channel");
            return;
        }
    };
    if envelope.node == hub.node().as_str() {
        return;
    }
    let events: Vec<Numbered> = envelope
        .events
        .into_iter()
        .filter(|r| valid_epoch(&r.epoch) && !r.data.contains(['\n', '\r']))
        .map(|r| Numbered {
            ws: r.ws,
            epoch: r.epoch.into(),
            seq: r.seq,
            json: r.data.into(),
        })
        .collect();
    metrics::counter!("swarmwise_events_relayed_total", "direction" => "received")
        .increment(events.len() as u64);
    hub.record(events);
}
