//! The event hub: what the SSE streams (`GET /api/v1/events`,
//! `GET /learning/events`, both `crate::routes::events::stream_for`) read.
//! It merges this node's events (from the engine's `EventBus`) with the
//! events other nodes relay over Redis pub/sub (`relay`), numbers them per
//! workspace, and keeps a bounded buffer of recent events per workspace so
//! that a client reconnecting with `Last-Event-ID` gets what it missed.
//!
//! Invariants:
//! - The engine's bus stays local: its internal subscribers (the Alerter,
//!   admission, pattern invalidation) never see another node's events; only
//!   the hub does, and only streams read the hub.
//! - An event id is `<numbering>-<seq>`. The numbering is `r` + 12 hex
//!   digits for the shared one (kept in Redis, the same on every node, new
//!   when Redis loses its data) or `l` + 12 hex for this process's local one
//!   (used while Redis is unavailable, or without Redis). `seq` counts per
//!   workspace from 1, so an id tells a tenant nothing about another tenant.
//! - A workspace's buffer holds events of one numbering only, sorted by
//!   `seq`; `covered_from` is the smallest `seq` from which this node holds
//!   every event it has seen. A resume from an id the buffer cannot answer
//!   for (another numbering, older than `covered_from - 1`, newer than the
//!   newest, malformed) is answered with a `reset` (see [`ResetReason`]),
//!   never with a guess; and a resume only ever reads the caller's own
//!   workspace's buffer.
//! - Recording an event into its buffer and broadcasting it happen under one
//!   lock, so a stream that subscribes, then snapshots the buffer, sees every
//!   event exactly once after de-duplication by id.
//!
//! Memory: at most `events.replay_buffer` events per workspace that had an
//! event since the process started (and the broadcast channel's
//! [`CHANNEL_CAPACITY`] shared by all streams).

pub mod relay;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use swarmwise_actors::cluster::NodeId;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::events::Event;
use tokio::sync::broadcast;

use crate::redis_link::RedisLink;

/// Messages a stream may lag behind before it is told so (it then resumes
/// from the buffer, or gets a `reset`).
pub const CHANNEL_CAPACITY: usize = 4096;

/// Longest `Last-Event-ID` looked at; a longer one is unknown.
pub const MAX_EVENT_ID_LEN: usize = 40;

/// One numbered event: what a stream writes as `id:` and `data:`.
#[derive(Debug)]
pub struct Numbered {
    /// Its workspace (streams of other workspaces skip it).
    pub ws: WorkspaceId,
    /// The numbering (`r…` shared, `l…` local).
    pub epoch: Arc<str>,
    /// Its number within the workspace and numbering, from 1.
    pub seq: u64,
    /// The event as JSON (the engine's `Event` serialised once, on the node
    /// that published it: the exact text every client gets).
    pub json: Arc<str>,
}

impl Numbered {
    /// The SSE `id:` value.
    pub fn id(&self) -> String {
        format!("{}-{}", self.epoch, self.seq)
    }
}

/// What the hub broadcasts to the streams.
#[derive(Debug, Clone)]
pub enum HubMsg {
    /// An event of `ws`.
    Event(Arc<Numbered>),
    /// Streams of `ws` (every workspace when `None`) may have missed events.
    Reset {
        /// The workspace, or all.
        ws: Option<WorkspaceId>,
        /// Why.
        reason: ResetReason,
    },
}

/// Why a stream gets a `reset` event (`{"type":"reset","workspace_id",
/// "reason"}`, docs/events.md): after it the client should re-read what it
/// shows (the GET endpoints) instead of trusting it missed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    /// `Last-Event-ID` is malformed, from another numbering, or newer than
    /// anything this node has seen.
    UnknownLastEventId,
    /// `Last-Event-ID` is older than what this node still buffers.
    Expired,
    /// The stream (or the hub) fell behind and events were dropped.
    Lagged,
    /// The workspace's numbering changed (Redis became unavailable, or came
    /// back): ids restart in a new numbering.
    NumberingChanged,
    /// The Redis subscription was renewed after an interruption: events of
    /// other nodes may have been missed meanwhile.
    RelayInterrupted,
}

impl ResetReason {
    /// The label value of `swarmwise_event_resets_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownLastEventId => "unknown_last_event_id",
            Self::Expired => "expired",
            Self::Lagged => "lagged",
            Self::NumberingChanged => "numbering_changed",
            Self::RelayInterrupted => "relay_interrupted",
        }
    }
}

/// The answer to a `Last-Event-ID`.
#[derive(Debug)]
pub enum Resume {
    /// The buffered events after it, in `seq` order (possibly none).
    Replay(Vec<Arc<Numbered>>),
    /// It cannot be answered: send a reset.
    Reset(ResetReason),
}

/// The hub; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node: tags what it relays, so it skips its own messages.
    node: NodeId,
    /// To the streams.
    tx: broadcast::Sender<HubMsg>,
    /// Buffers and local counters, under one lock with the broadcast.
    state: Mutex<State>,
    /// `events.replay_buffer`: events kept per workspace (0 = no replay).
    capacity: usize,
    /// This process's local numbering, `l` + 12 hex.
    local_epoch: Arc<str>,
    /// Redis (the shared numbering and the relay); disabled without it.
    redis: RedisLink,
}

#[derive(Default)]
struct State {
    buffers: HashMap<WorkspaceId, Buffer>,
    /// The local numbering's last `seq` per workspace.
    local_seq: HashMap<WorkspaceId, u64>,
}

struct Buffer {
    epoch: Arc<str>,
    /// Every event with `seq >= covered_from` this node has seen is in `events`.
    covered_from: u64,
    /// Sorted by `seq`.
    events: VecDeque<Arc<Numbered>>,
}

impl EventHub {
    /// A hub for this node. Nothing runs until [`EventHub::start`].
    pub fn new(node: NodeId, redis: RedisLink, replay_buffer: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                node,
                tx: broadcast::channel(CHANNEL_CAPACITY).0,
                state: Mutex::new(State::default()),
                capacity: replay_buffer,
                local_epoch: format!("l{:012x}", random48()).into(),
                redis,
            }),
        }
    }

    /// Starts the hub's tasks: numbering this node's events (read from
    /// `bus`, the engine's bus) and, with Redis, relaying them and receiving
    /// other nodes'. Subscribes to Redis before it returns when Redis is up,
    /// so a node is in the relay from its first request. Ends at `shutdown`.
    pub async fn start(
        &self,
        bus: broadcast::Receiver<Event>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        actix_web::rt::spawn(relay::number_local_events(
            self.clone(),
            bus,
            shutdown.clone(),
        ));
        if self.inner.redis.enabled() {
            let first = relay::subscribe(&self.inner.redis).await;
            actix_web::rt::spawn(relay::receive_remote_events(self.clone(), first, shutdown));
        }
    }

    /// A new subscription (subscribe before [`EventHub::resume`]).
    pub fn subscribe(&self) -> broadcast::Receiver<HubMsg> {
        self.inner.tx.subscribe()
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// The link to Redis.
    pub(crate) fn redis(&self) -> &RedisLink {
        &self.inner.redis
    }

    /// What to send a client of `ws` that reconnected with `last_event_id`.
    /// Reads `ws`'s buffer only: an id taken from another workspace's
    /// stream is just a position in this workspace's numbering.
    pub fn resume(&self, ws: WorkspaceId, last_event_id: &str) -> Resume {
        let Some((epoch, seq)) = parse_id(last_event_id) else {
            return Resume::Reset(ResetReason::UnknownLastEventId);
        };
        let state = lock(&self.inner.state);
        let Some(buf) = state.buffers.get(&ws) else {
            return Resume::Reset(ResetReason::UnknownLastEventId);
        };
        if *buf.epoch != *epoch {
            return Resume::Reset(ResetReason::UnknownLastEventId);
        }
        let newest = buf.events.back().map_or(0, |e| e.seq);
        if seq > newest {
            return Resume::Reset(ResetReason::UnknownLastEventId);
        }
        if seq.saturating_add(1) < buf.covered_from {
            return Resume::Reset(ResetReason::Expired);
        }
        Resume::Replay(buf.events.iter().filter(|e| e.seq > seq).cloned().collect())
    }

    /// Tells every stream (of `ws`, or all) to reset, and forgets the
    /// buffers concerned (a resume from before this point cannot be answered).
    pub(crate) fn reset(&self, ws: Option<WorkspaceId>, reason: ResetReason) {
        let mut state = lock(&self.inner.state);
        match ws {
            Some(ws) => {
                state.buffers.remove(&ws);
            }
            None => state.buffers.clear(),
        }
        let _ = self.inner.tx.send(HubMsg::Reset { ws, reason });
    }

    /// Numbers events in this process's local numbering.
    pub(crate) fn number_locally(&self, items: Vec<(WorkspaceId, Arc<str>)>) -> Vec<Numbered> {
        let mut state = lock(&self.inner.state);
        items
            .into_iter()
            .map(|(ws, json)| {
                let seq = state.local_seq.entry(ws).or_insert(0);
                *seq += 1;
                Numbered {
                    ws,
                    epoch: Arc::clone(&self.inner.local_epoch),
                    seq: *seq,
                    json,
                }
            })
            .collect()
    }

    /// Buffers and broadcasts numbered events (this node's or relayed). An
    /// event in another numbering than its workspace's buffer replaces the
    /// buffer and resets that workspace's streams first.
    pub(crate) fn record(&self, events: Vec<Numbered>) {
        let mut state = lock(&self.inner.state);
        for event in events {
            let event = Arc::new(event);
            let changed = state
                .buffers
                .get(&event.ws)
                .is_some_and(|b| b.epoch != event.epoch);
            if changed {
                let _ = self.inner.tx.send(HubMsg::Reset {
                    ws: Some(event.ws),
                    reason: ResetReason::NumberingChanged,
                });
            }
            if self.inner.capacity > 0 {
                if changed || !state.buffers.contains_key(&event.ws) {
                    state.buffers.insert(
                        event.ws,
                        Buffer {
                            epoch: Arc::clone(&event.epoch),
                            covered_from: event.seq,
                            events: VecDeque::new(),
                        },
                    );
                }
                if let Some(buf) = state.buffers.get_mut(&event.ws) {
                    buf.insert(Arc::clone(&event), self.inner.capacity);
                }
            }
            let _ = self.inner.tx.send(HubMsg::Event(event));
        }
    }
}

impl Buffer {
    /// Inserts in `seq` order (relayed events may arrive a little out of
    /// order); past `capacity` the oldest goes and `covered_from` moves up.
    fn insert(&mut self, event: Arc<Numbered>, capacity: usize) {
        if event.seq < self.covered_from {
            // Older than what this buffer answers for: stream it, keep it out.
            return;
        }
        let at = self
            .events
            .iter()
            .rposition(|e| e.seq < event.seq)
            .map_or(0, |i| i + 1);
        if self.events.get(at).is_some_and(|e| e.seq == event.seq) {
            return;
        }
        self.events.insert(at, event);
        while self.events.len() > capacity {
            if let Some(old) = self.events.pop_front() {
                self.covered_from = old.seq.saturating_add(1);
            }
        }
    }
}

/// Parses `<numbering>-<seq>`: numbering `r` or `l` then 12 lowercase hex
/// digits, seq a decimal `u64`. Anything else (too long, other characters)
/// is `None`.
pub fn parse_id(raw: &str) -> Option<(&str, u64)> {
    if raw.len() > MAX_EVENT_ID_LEN {
        return None;
    }
    let (epoch, seq) = raw.trim().split_once('-')?;
    if !valid_epoch(epoch) || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((epoch, seq.parse().ok()?))
}

/// Whether `epoch` is a numbering's name (`r`/`l` + 12 lowercase hex).
pub fn valid_epoch(epoch: &str) -> bool {
    let mut bytes = epoch.bytes();
    matches!(bytes.next(), Some(b'r' | b'l'))
        && epoch.len() == 13
        && bytes.all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 48 random bits (the random low bits of a UUIDv7).
pub fn random48() -> u64 {
    (uuid::Uuid::now_v7().as_u128() & 0xffff_ffff_ffff) as u64
}

/// Locks a mutex whose holders never panic while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn hub(capacity: usize) -> EventHub {
        EventHub::new(
            NodeId::parse("n1").unwrap(),
            RedisLink::disabled(),
            capacity,
        )
    }

    fn ws() -> WorkspaceId {
        WorkspaceId(uuid::Uuid::now_v7())
    }

    fn items(ws: WorkspaceId, n: usize) -> Vec<(WorkspaceId, Arc<str>)> {
        (0..n)
            .map(|i| (ws, Arc::from(format!("{{\"n\":{i}}}"))))
            .collect()
    }

    fn seqs(r: Resume) -> Vec<u64> {
        match r {
            Resume::Replay(v) => v.iter().map(|e| e.seq).collect(),
            Resume::Reset(reason) => panic!("reset: {reason:?}"),
        }
    }

    #[test]
    fn ids_parse_strictly() {
        assert_eq!(parse_id("r0123456789ab-7"), Some(("r0123456789ab", 7)));
        assert_eq!(parse_id("l0123456789ab-0"), Some(("l0123456789ab", 0)));
        for bad in [
            "",
            "7",
            "r0123456789ab",
            "r0123456789ab-",
            "r0123456789ab--1",
            "r0123456789AB-1",
            "x0123456789ab-1",
            "r0123456789a-1",
            "r0123456789ab-1a",
            "r0123456789ab-99999999999999999999999",
            "r0123456789ab-1\nid: x",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn replays_after_the_id_and_resets_when_it_cannot() {
        let h = hub(4);
        let (a, b) = (ws(), ws());
        let numbered = h.number_locally(items(a, 6));
        let first = numbered[0].id();
        let fifth = numbered[4].id();
        h.record(numbered);
        h.record(h.number_locally(items(b, 1)));
        // Buffer of a holds 3..=6.
        assert_eq!(seqs(h.resume(a, &fifth)), vec![6]);
        assert_eq!(seqs(h.resume(a, &numbered_id(&h, 2))), vec![3, 4, 5, 6]);
        assert!(matches!(
            h.resume(a, &first),
            Resume::Reset(ResetReason::Expired)
        ));
        assert!(matches!(
            h.resume(a, &numbered_id(&h, 7)),
            Resume::Reset(ResetReason::UnknownLastEventId)
        ));
        assert!(matches!(
            h.resume(a, "r0123456789ab-3"),
            Resume::Reset(ResetReason::UnknownLastEventId)
        ));
        // b's buffer knows only b's one event: a's ids replay nothing of a.
        assert_eq!(seqs(h.resume(b, &numbered_id(&h, 1))), Vec::<u64>::new());
        assert!(matches!(
            h.resume(b, &fifth),
            Resume::Reset(ResetReason::UnknownLastEventId)
        ));
    }

    fn numbered_id(h: &EventHub, seq: u64) -> String {
        format!("{}-{seq}", h.inner.local_epoch)
    }

    #[test]
    fn out_of_order_events_are_buffered_in_order_and_a_new_numbering_resets() {
        let h = hub(10);
        let a = ws();
        let mut rx = h.subscribe();
        let e = |seq: u64, epoch: &str| Numbered {
            ws: a,
            epoch: epoch.into(),
            seq,
            json: "{}".into(),
        };
        h.record(vec![
            e(1, "r000000000001"),
            e(3, "r000000000001"),
            e(2, "r000000000001"),
        ]);
        assert_eq!(seqs(h.resume(a, "r000000000001-1")), vec![2, 3]);
        h.record(vec![e(1, "r000000000002")]);
        let mut resets = 0;
        while let Ok(m) = rx.try_recv() {
            if let HubMsg::Reset { ws, reason } = m {
                assert_eq!((ws, reason), (Some(a), ResetReason::NumberingChanged));
                resets += 1;
            }
        }
        assert_eq!(resets, 1);
        assert!(matches!(
            h.resume(a, "r000000000001-3"),
            Resume::Reset(ResetReason::UnknownLastEventId)
        ));
        assert_eq!(seqs(h.resume(a, "r000000000002-1")), Vec::<u64>::new());
    }

    #[test]
    fn no_buffer_means_every_resume_resets() {
        let h = hub(0);
        let a = ws();
        h.record(h.number_locally(items(a, 2)));
        assert!(matches!(h.resume(a, &numbered_id(&h, 1)), Resume::Reset(_)));
    }
}
