//! Notifiers: the delivery side of alerts. The `Alerter` decides *what* to
//! notify (a transition no silence matches) and hands it to the
//! [`Dispatcher`] through the engine's port
//! [`NotificationSink`](swarmwise_actors::alerts::NotificationSink); the
//! dispatcher decides *where* (`[alerts.routes]` by severity, each
//! notifier's `workspaces` filter and `notify_resolved`) and delivers in the
//! background.
//!
//! - [`config`]: `[alerts.notifiers.NAME]` and `[alerts.routes]`, validated
//!   with the key named. Only the operator configures notifiers: a tenant
//!   never supplies a URL, a host, a header or a secret.
//! - [`payload`]: what each kind sends (webhook JSON with `version`, Slack
//!   message, PagerDuty Events API v2 event, mail subject and body), pure.
//! - [`deliver`]: one attempt per kind, classified as delivered, permanent
//!   (not retried) or transient (retried).
//!
//! Invariants: [`Dispatcher::send`] never blocks and never fails its
//! caller. Each notifier has a bounded queue drained by one task, so its
//! notifications are delivered in order (a PagerDuty `resolve` never
//! overtakes its `trigger`) and a slow or dead receiver delays only its
//! own queue; a full queue drops the notification, logs it and counts
//! `swarmwise_notifications_dropped_total`. Retries back off exponentially
//! with jitter ([`backoff`]) up to `attempts`; then the notification is
//! given up, logged and counted. Every attempt updates the notifier's
//! status (`GET /api/v1/alerts/notifiers`, admin key) and
//! `swarmwise_notifier_up`. At shutdown, [`Dispatcher::settle`] gives the
//! queues what is left of `server.shutdown_timeout_secs`.

pub mod config;
pub mod deliver;
pub mod payload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use swarmwise_actors::alerts::{AlertStatus, Notification, NotificationSink, Severity};
use tokio::sync::mpsc;

pub use config::{NotifierKind, NotifierSettings, RouteSettings, SmtpTls};
use deliver::{Attempt, Target};

/// What the admin sees of one notifier (`GET /api/v1/alerts/notifiers`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NotifierStatus {
    /// Its name in `[alerts.notifiers.NAME]`.
    pub name: String,
    /// `webhook`, `slack`, `pagerduty` or `email`.
    pub kind: NotifierKind,
    /// Whether its last attempt succeeded; true before any attempt.
    pub up: bool,
    /// When a notification was last delivered.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed attempt's error (never a secret).
    pub last_error: Option<String>,
    /// When that attempt failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Failed attempts since the last success (retries included).
    pub consecutive_failures: u64,
    /// Notifications delivered since start.
    pub sent: u64,
    /// Notifications given up since start (refused, or out of attempts).
    pub failed: u64,
    /// Notifications dropped since start because the queue was full.
    pub dropped: u64,
    /// Notifications waiting in the queue now.
    pub queued: usize,
}

/// Retry policy of one notifier (from its settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per notification, the first included.
    pub attempts: u32,
    /// Backoff before the first retry.
    pub initial: Duration,
    /// Cap of every backoff.
    pub max: Duration,
}

/// The wait before retry number `retry` (1 = the first retry):
/// `d = min(max, initial · 2^(retry−1))`, then "equal jitter" (AWS
/// Architecture Blog, *Exponential Backoff and Jitter*, 2015): uniform in
/// `[d/2, d]` via `unit` ∈ [0, 1), so notifiers failing together do not
/// retry in lockstep, and the wait still grows. A receiver's
/// `Retry-After` raises it, never above `max`.
pub fn backoff(policy: Retry, retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
    let doublings = retry.saturating_sub(1).min(32);
    let exp = policy
        .initial
        .saturating_mul(1u32 << doublings.min(31))
        .min(policy.max);
    let half = exp / 2;
    let jittered = half + half.mul_f64(unit.clamp(0.0, 1.0));
    jittered
        .max(retry_after.unwrap_or_default())
        .min(policy.max)
}

/// A notifier as the dispatcher and its worker share it.
struct Notifier {
    name: String,
    kind: NotifierKind,
    /// Workspace ids (and `node`) whose alerts it takes; `None` = all.
    workspaces: Option<BTreeSet<String>>,
    notify_resolved: bool,
    queue: mpsc::Sender<Notification>,
    /// Notifications accepted and not yet finished (queued or being
    /// delivered): what [`Dispatcher::settle`] waits for at shutdown.
    pending: AtomicUsize,
    status: Mutex<NotifierStatus>,
}

impl Notifier {
    fn status(&self) -> std::sync::MutexGuard<'_, NotifierStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn takes(&self, n: &Notification) -> bool {
        if n.status == AlertStatus::Resolved && !self.notify_resolved {
            return false;
        }
        self.workspaces.as_ref().is_none_or(|ws| {
            let scope = n
                .alert
                .workspace_id
                .map_or_else(|| "node".to_owned(), |w| w.to_string());
            ws.contains(&scope)
        })
    }

    // The events below each emit their log line and their metric together.

    fn delivered(&self, n: &Notification) {
        {
            let mut s = self.status();
            s.up = true;
            s.last_success_at = Some(Utc::now());
            s.consecutive_failures = 0;
            s.sent += 1;
        }
        metrics::counter!("swarmwise_notifications_sent_total", "notifier" => self.name.clone(), "kind" => self.kind.as_str()).increment(1);
        metrics::gauge!("swarmwise_notifier_up", "notifier" => self.name.clone()).set(1.0);
        tracing::debug!(notifier = %self.name, alert = %n.alert.id, status = ?n.status, "notification delivered");
    }

    fn attempt_failed(&self, error: &str) {
        {
            let mut s = self.status();
            s.up = false;
            s.last_error = Some(error.to_owned());
            s.last_error_at = Some(Utc::now());
            s.consecutive_failures += 1;
        }
        metrics::gauge!("swarmwise_notifier_up", "notifier" => self.name.clone()).set(0.0);
    }

    fn gave_up(&self, n: &Notification, error: &str, attempts: u32) {
        self.status().failed += 1;
        metrics::counter!("swarmwise_notifications_failed_total", "notifier" => self.name.clone(), "kind" => self.kind.as_str()).increment(1);
        tracing::warn!(notifier = %self.name, kind = self.kind.as_str(), alert = %n.alert.id, attempts, error, "notification not delivered; check the receiver (GET /api/v1/alerts/notifiers shows its last error)");
    }

    fn dropped(&self, n: &Notification) {
        self.status().dropped += 1;
        metrics::counter!("swarmwise_notifications_dropped_total", "notifier" => self.name.clone(), "kind" => self.kind.as_str()).increment(1);
        tracing::warn!(notifier = %self.name, alert = %n.alert.id, "notification dropped: the notifier's queue is full (its receiver is slow or down); raise queue_capacity or fix the receiver");
    }
}

struct Inner {
    notifiers: Vec<Arc<Notifier>>,
    /// Indices into `notifiers` by severity: critical, warning, info.
    routes: [Vec<usize>; 3],
}

/// Hands notifications to the notifiers routed for their severity. Cheap
/// to clone (one `Arc`); [`send`](Self::send) never blocks.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field(
                "notifiers",
                &self
                    .inner
                    .notifiers
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn severity_index(s: Severity) -> usize {
    match s {
        Severity::Critical => 0,
        Severity::Warning => 1,
        Severity::Info => 2,
    }
}

impl Dispatcher {
    /// A dispatcher without notifiers: every notification is dropped silently.
    pub fn none() -> Self {
        Self {
            inner: Arc::new(Inner {
                notifiers: Vec::new(),
                routes: [Vec::new(), Vec::new(), Vec::new()],
            }),
        }
    }

    /// Builds every notifier (secrets read from the process environment)
    /// and starts one delivery task each. Must run inside a tokio runtime.
    /// `Err((key, message))`: a setting or a secret is unusable.
    pub fn start(
        notifiers: &BTreeMap<String, NotifierSettings>,
        routes: &RouteSettings,
    ) -> Result<Self, (String, String)> {
        Self::start_with_env(notifiers, routes, &|name| std::env::var(name).ok())
    }

    /// [`start`](Self::start) with secrets read through `env`.
    pub fn start_with_env(
        notifiers: &BTreeMap<String, NotifierSettings>,
        routes: &RouteSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, (String, String)> {
        config::validate(notifiers, routes)?;
        // Build every target first: a bad secret fails the start before
        // any task runs.
        let mut built = Vec::new();
        for (name, s) in notifiers {
            built.push((name, s, Target::build(name, s, env)?));
        }
        let mut list = Vec::new();
        for (name, s, target) in built {
            let (tx, rx) = mpsc::channel(s.queue_capacity);
            let notifier = Arc::new(Notifier {
                name: name.clone(),
                kind: s.kind,
                workspaces: (!s.workspaces.is_empty())
                    .then(|| s.workspaces.iter().cloned().collect()),
                notify_resolved: s.notify_resolved,
                queue: tx,
                pending: AtomicUsize::new(0),
                status: Mutex::new(NotifierStatus {
                    name: name.clone(),
                    kind: s.kind,
                    up: true,
                    last_success_at: None,
                    last_error: None,
                    last_error_at: None,
                    consecutive_failures: 0,
                    sent: 0,
                    failed: 0,
                    dropped: 0,
                    queued: 0,
                }),
            });
            // Every series exists from the start, so a rate() or an
            // absent() rule sees it before the first alert.
            for counter in [
                "swarmwise_notifications_sent_total",
                "swarmwise_notifications_failed_total",
                "swarmwise_notifications_dropped_total",
            ] {
                metrics::counter!(counter, "notifier" => name.clone(), "kind" => s.kind.as_str())
                    .increment(0);
            }
            metrics::gauge!("swarmwise_notifier_up", "notifier" => name.clone()).set(1.0);
            let retry = Retry {
                attempts: s.attempts,
                initial: Duration::from_millis(s.initial_backoff_ms),
                max: Duration::from_millis(s.max_backoff_ms),
            };
            tokio::spawn(drain(Arc::clone(&notifier), target, retry, rx));
            list.push(notifier);
        }
        let index = |names: &[String]| -> Vec<usize> {
            let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
            list.iter()
                .enumerate()
                .filter(|(_, n)| wanted.contains(n.name.as_str()))
                .map(|(i, _)| i)
                .collect()
        };
        let routes = [
            index(&routes.critical),
            index(&routes.warning),
            index(&routes.info),
        ];
        Ok(Self {
            inner: Arc::new(Inner {
                notifiers: list,
                routes,
            }),
        })
    }

    /// Queues `n` for every notifier routed for its severity that takes it
    /// (workspace filter, `notify_resolved`). Never blocks: a full queue
    /// drops `n` for that notifier, logged and counted.
    pub fn send(&self, n: Notification) {
        let Some(route) = self.inner.routes.get(severity_index(n.alert.severity)) else {
            return;
        };
        for notifier in route.iter().filter_map(|&i| self.inner.notifiers.get(i)) {
            if !notifier.takes(&n) {
                continue;
            }
            notifier.pending.fetch_add(1, Ordering::SeqCst);
            match notifier.queue.try_send(n.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(n)) => {
                    notifier.pending.fetch_sub(1, Ordering::SeqCst);
                    notifier.dropped(&n);
                }
                Err(mpsc::error::TrySendError::Closed(n)) => {
                    notifier.pending.fetch_sub(1, Ordering::SeqCst);
                    tracing::error!(notifier = %notifier.name, alert = %n.alert.id, "notifier task is gone; notification lost (restart the service)");
                    notifier.dropped(&n);
                }
            }
        }
    }

    /// Notifications accepted and not yet delivered or given up, over
    /// every notifier.
    pub fn pending(&self) -> usize {
        self.inner
            .notifiers
            .iter()
            .map(|n| n.pending.load(Ordering::SeqCst))
            .sum()
    }

    /// Part of the stop protocol: waits until every accepted notification
    /// is delivered or given up, for at most `within`; returns how many
    /// were still pending (lost when the process exits).
    pub async fn settle(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = self.pending();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every notifier's status, by name.
    pub fn statuses(&self) -> Vec<NotifierStatus> {
        self.inner
            .notifiers
            .iter()
            .map(|n| {
                let mut s = n.status().clone();
                s.queued = n.queue.max_capacity() - n.queue.capacity();
                s
            })
            .collect()
    }
}

impl NotificationSink for Dispatcher {
    fn send(&self, n: Notification) {
        Dispatcher::send(self, n);
    }
}

/// Delivers one notifier's queue in order until every sender is gone.
async fn drain(
    notifier: Arc<Notifier>,
    target: Target,
    retry: Retry,
    mut rx: mpsc::Receiver<Notification>,
) {
    while let Some(n) = rx.recv().await {
        deliver_one(&notifier, &target, retry, &n).await;
        notifier.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Up to `retry.attempts` attempts, backing off between them.
async fn deliver_one(notifier: &Notifier, target: &Target, retry: Retry, n: &Notification) {
    let mut attempt = 1;
    loop {
        match target.attempt(notifier.kind, n).await {
            Attempt::Delivered => return notifier.delivered(n),
            Attempt::Permanent(error) => {
                notifier.attempt_failed(&error);
                return notifier.gave_up(n, &error, attempt);
            }
            Attempt::Transient { error, retry_after } => {
                notifier.attempt_failed(&error);
                if attempt >= retry.attempts {
                    return notifier.gave_up(n, &error, attempt);
                }
                let unit = rand::random::<f64>();
                let wait = backoff(retry, attempt, retry_after, unit);
                tracing::info!(notifier = %notifier.name, alert = %n.alert.id, attempt, wait_ms = wait.as_millis() as u64, error, "notification attempt failed; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const POLICY: Retry = Retry {
        attempts: 5,
        initial: Duration::from_millis(100),
        max: Duration::from_millis(1_000),
    };

    #[test]
    fn backoff_doubles_within_its_jitter_band_and_is_capped() {
        for retry in 1..=6u32 {
            let d = (100u64 << (retry - 1)).min(1_000);
            let lo = backoff(POLICY, retry, None, 0.0).as_millis() as u64;
            let hi = backoff(POLICY, retry, None, 0.999_999).as_millis() as u64;
            assert_eq!(lo, d / 2, "retry {retry}");
            assert!(hi <= d && hi >= d - 1, "retry {retry}: {hi} vs {d}");
        }
        assert_eq!(
            backoff(POLICY, 100, None, 1.0),
            Duration::from_millis(1_000)
        );
    }

    #[test]
    fn retry_after_raises_the_wait_but_not_above_the_cap() {
        let w = backoff(POLICY, 1, Some(Duration::from_millis(700)), 0.0);
        assert_eq!(w, Duration::from_millis(700));
        let w = backoff(POLICY, 1, Some(Duration::from_secs(3600)), 0.0);
        assert_eq!(w, Duration::from_millis(1_000));
    }

    #[test]
    fn jitter_spreads_retries_of_notifiers_failing_together() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let waits: BTreeSet<u128> = (0..100)
            .map(|_| backoff(POLICY, 3, None, rng.gen::<f64>()).as_millis())
            .collect();
        // 100 draws over a 200 ms band land on many distinct milliseconds.
        assert!(waits.len() > 50, "{}", waits.len());
        assert!(waits.iter().all(|w| (200..=400).contains(w)));
    }

    #[tokio::test]
    async fn send_routes_by_severity_filter_and_resolved() {
        let mut hook = NotifierSettings::new(NotifierKind::Webhook);
        // Nothing listens on port 9 of loopback: attempts fail, which does
        // not matter here (only routing is checked, through `queued`).
        hook.url = Some("http://127.0.0.1:9/".into());
        hook.attempts = 1;
        hook.notify_resolved = false;
        hook.workspaces = vec![uuid::Uuid::nil().to_string()];
        let notifiers = BTreeMap::from([("hook".to_owned(), hook)]);
        let routes = RouteSettings {
            critical: vec!["hook".into(), "hook".into()],
            ..RouteSettings::default()
        };
        let d = Dispatcher::start_with_env(&notifiers, &routes, &|_| None).unwrap();
        let inner = &d.inner.notifiers[0];
        let takes = |n: &Notification| inner.takes(n);
        let firing = payload::tests::alert("s", AlertStatus::Firing);
        assert!(takes(&firing));
        assert!(!takes(&payload::tests::alert("s", AlertStatus::Resolved)));
        let mut other = firing.clone();
        other.alert.workspace_id =
            Some(swarmwise_actors::domain::WorkspaceId(uuid::Uuid::now_v7()));
        assert!(!takes(&other));
        let mut node = firing.clone();
        node.alert.workspace_id = None;
        assert!(!takes(&node));
        assert_eq!(
            d.inner.routes[0],
            vec![0],
            "a name listed twice is sent once"
        );
        assert!(d.inner.routes[1].is_empty() && d.inner.routes[2].is_empty());
    }
}
