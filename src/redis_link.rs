//! The node's link to Redis (optional, `redis.url`): one multiplexed
//! connection shared by the pattern cache (`crate::cache`) and the event
//! relay (`crate::event_hub`), with the rules that keep Redis off every
//! request's critical path:
//!
//! - every call runs under its own deadline, `redis.op_timeout_ms`; a call
//!   that fails or times out answers `None` and its caller falls back (to the
//!   database, or to this node's local behaviour);
//! - a failure marks Redis *unavailable*: later calls answer `None` at once,
//!   without waiting on a dead server, until the upkeep task (one PING every
//!   [`UPKEEP_INTERVAL`]) sees it answer again;
//! - the node starts with Redis down; the upkeep task connects in the
//!   background and keeps reconnecting;
//! - an outage is logged once when it starts and once when it ends (not per
//!   call), `swarmwise_redis_up` says 1 or 0, and `/readyz` shows the state
//!   and the last error under `redis` (readiness does not depend on it:
//!   Redis is optional).
//!
//! Who talks to it: `PatternCache` (GET/SET/DEL), the event hub (numbering
//! and PUBLISH through [`RedisLink::call`], SUBSCRIBE on a connection of its
//! own from [`RedisLink::client`], told about outages by [`RedisLink::watch_up`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::RedisSettings;

/// How often the upkeep task PINGs Redis (or tries to connect while it is
/// down): the longest a recovered Redis stays unused.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A handle to the link; cheap to clone. [`RedisLink::disabled`] when
/// `redis.url` is empty: every call answers `None` and nothing is logged.
#[derive(Clone, Default)]
pub struct RedisLink {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    /// Opens connections (the shared one, and the relay's subscriber).
    client: redis::Client,
    /// The shared connection; `None` until connected and after an I/O error
    /// (the upkeep task opens a new one).
    conn: Mutex<Option<MultiplexedConnection>>,
    /// `true` while Redis answers; flips to `false` at the first failure and
    /// back when a PING succeeds. Watched by the relay (its subscription is
    /// renewed after an outage) and read by `/readyz`.
    up: watch::Sender<bool>,
    /// The error that started the current (or last) outage, for `/readyz`.
    last_error: Mutex<Option<String>>,
    /// Unix seconds of the last warning about an error reply (at most one a
    /// minute: a persistent one must not flood the logs).
    refusal_logged_at: std::sync::atomic::AtomicU64,
    /// Whether the current outage was logged (once per outage, including
    /// the one a node starts in).
    outage_logged: std::sync::atomic::AtomicBool,
    /// `redis.op_timeout_ms`: the deadline of every call.
    op_timeout: Duration,
    /// `redis.key_prefix`: every key and channel swarmwise uses starts with it.
    prefix: String,
}

/// What `/readyz` shows under `redis`.
#[derive(Debug, Clone, Serialize)]
pub struct RedisStatus {
    /// `disabled` (no `redis.url`), `ok`, or `unavailable`.
    pub status: &'static str,
    /// Why it is unavailable (the error that started the outage).
    pub error: Option<String>,
}

impl RedisLink {
    /// No Redis: every call answers `None`.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// A link to `settings.url` (disabled when empty). Does not connect:
    /// [`RedisLink::spawn_upkeep`] does, in the background, so a node starts
    /// while Redis is down. Errors only on a URL the client cannot parse.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        if settings.url.is_empty() {
            return Ok(Self::disabled());
        }
        let client = redis::Client::open(settings.url.as_str()).map_err(|e| {
            anyhow::anyhow!(
                "config key `redis.url`: {e}; use redis://host:port/db or set it to \"\""
            )
        })?;
        metrics::gauge!("swarmwise_redis_up").set(0.0);
        Ok(Self {
            inner: Some(Arc::new(Inner {
                client,
                conn: Mutex::new(None),
                up: watch::channel(false).0,
                last_error: Mutex::new(Some("not connected yet".into())),
                outage_logged: std::sync::atomic::AtomicBool::new(false),
                refusal_logged_at: std::sync::atomic::AtomicU64::new(0),
                op_timeout: Duration::from_millis(settings.op_timeout_ms.max(1)),
                prefix: settings.key_prefix.clone(),
            })),
        })
    }

    /// Whether `redis.url` is set.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether Redis answered the last call or PING.
    pub fn is_up(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| *i.up.borrow())
    }

    /// `redis.key_prefix` (empty when disabled).
    pub fn prefix(&self) -> &str {
        self.inner.as_ref().map_or("", |i| i.prefix.as_str())
    }

    /// `redis.op_timeout_ms` as a duration.
    pub fn op_timeout(&self) -> Duration {
        self.inner
            .as_ref()
            .map_or(Duration::from_millis(1), |i| i.op_timeout)
    }

    /// The client, to open a dedicated connection (the relay's SUBSCRIBE).
    pub fn client(&self) -> Option<&redis::Client> {
        self.inner.as_ref().map(|i| &i.client)
    }

    /// Follows the up/down state (`None` when disabled).
    pub fn watch_up(&self) -> Option<watch::Receiver<bool>> {
        self.inner.as_ref().map(|i| i.up.subscribe())
    }

    /// For `/readyz`.
    pub fn status(&self) -> RedisStatus {
        match &self.inner {
            None => RedisStatus {
                status: "disabled",
                error: None,
            },
            Some(i) if *i.up.borrow() => RedisStatus {
                status: "ok",
                error: None,
            },
            Some(i) => RedisStatus {
                status: "unavailable",
                error: lock(&i.last_error).clone(),
            },
        }
    }

    /// Runs one Redis operation `op` (a closed set of names, for the
    /// `swarmwise_redis_fallbacks_total{op}` label) under the deadline.
    /// `None` when Redis is disabled, known to be down, failed, or did not
    /// answer in time: the caller falls back. A failure starts an outage
    /// (logged once) that the upkeep task ends.
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Option<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let inner = self.inner.as_ref()?;
        let conn = if *inner.up.borrow() {
            lock(&inner.conn).clone()
        } else {
            None
        };
        let Some(conn) = conn else {
            metrics::counter!("swarmwise_redis_fallbacks_total", "op" => op).increment(1);
            return None;
        };
        match tokio::time::timeout(inner.op_timeout, f(conn)).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    inner.down(format!("{op}: {e}"), true);
                } else {
                    // Redis answered with an error (a key of another type, a
                    // script error): not an outage, so the link stays up; the
                    // call falls back, and the warning is rate-limited.
                    inner.refused(op, &e);
                }
                metrics::counter!("swarmwise_redis_fallbacks_total", "op" => op).increment(1);
                None
            }
            Err(_) => {
                inner.down(
                    format!(
                        "{op}: no answer within redis.op_timeout_ms = {} ms",
                        inner.op_timeout.as_millis()
                    ),
                    false,
                );
                metrics::counter!("swarmwise_redis_fallbacks_total", "op" => op).increment(1);
                None
            }
        }
    }

    /// Connects now (bounded by the deadline, at most about 0.5 s when Redis
    /// is down), so a node whose Redis is up starts with it in use.
    pub async fn connect_now(&self) {
        if let Some(inner) = &self.inner {
            inner.check().await;
        }
    }

    /// Starts the task that connects, PINGs every [`UPKEEP_INTERVAL`] and
    /// ends outages; it stops when `shutdown` flips. Does nothing when disabled.
    pub fn spawn_upkeep(&self, mut shutdown: watch::Receiver<bool>) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => inner.check().await,
                    _ = shutdown.changed() => break,
                }
                if *shutdown.borrow() {
                    break;
                }
            }
        });
    }
}

impl Inner {
    /// One upkeep step: connect if needed, then PING under the deadline.
    async fn check(&self) {
        let existing = lock(&self.conn).clone();
        let conn = match existing {
            Some(c) => c,
            None => {
                // Connecting may take a little longer than one call; it runs
                // in this background task, never in a request.
                let limit = self.op_timeout.max(Duration::from_millis(500));
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(limit)
                    .set_response_timeout(self.op_timeout);
                let opened = tokio::time::timeout(
                    limit,
                    self.client
                        .get_multiplexed_async_connection_with_config(&config),
                )
                .await;
                match opened {
                    Ok(Ok(c)) => {
                        *lock(&self.conn) = Some(c.clone());
                        c
                    }
                    Ok(Err(e)) => return self.down(format!("connect: {e}"), true),
                    Err(_) => return self.down("connect: timed out".into(), true),
                }
            }
        };
        let mut conn = conn;
        let pong = tokio::time::timeout(
            self.op_timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        match pong {
            Ok(Ok(_)) => self.recovered(),
            Ok(Err(e)) => self.down(format!("ping: {e}"), true),
            // A connection whose PING is late may be dead without knowing
            // it (a partition, a failover behind one address): open a new one.
            Err(_) => self.down("ping: timed out".into(), true),
        }
    }

    /// An error reply to `op`: logged at most once a minute.
    fn refused(&self, op: &'static str, e: &redis::RedisError) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self
            .refusal_logged_at
            .load(std::sync::atomic::Ordering::Acquire);
        if now >= last.saturating_add(60)
            && self
                .refusal_logged_at
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                )
                .is_ok()
        {
            tracing::warn!(op, error = %e, "Redis refused a call; it was answered by the fallback (check that nothing else writes under redis.key_prefix; logged at most once a minute)");
        }
    }

    /// Starts an outage (logged once); `broken` drops the connection so the
    /// upkeep task opens a new one.
    fn down(&self, error: String, broken: bool) {
        if broken {
            *lock(&self.conn) = None;
        }
        self.up.send_replace(false);
        if !self
            .outage_logged
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::warn!(error = %error, "Redis unavailable: patterns are read from the database and events reach only this node's streams until it returns (checked every second)");
            metrics::gauge!("swarmwise_redis_up").set(0.0);
        }
        *lock(&self.last_error) = Some(error);
    }

    /// Ends an outage (logged once).
    fn recovered(&self) {
        let was_up = self.up.send_replace(true);
        self.outage_logged
            .store(false, std::sync::atomic::Ordering::Release);
        if !was_up {
            let error = lock(&self.last_error).take();
            tracing::info!(previous_error = ?error, "Redis available: shared caches and the event relay resume");
            metrics::gauge!("swarmwise_redis_up").set(1.0);
        }
    }
}

/// Locks a mutex whose holders never panic while holding it (they only
/// clone or assign); a poisoned one is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
