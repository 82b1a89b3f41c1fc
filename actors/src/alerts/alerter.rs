//! The `Alerter` actor: evaluates the alert rules on the live state and
//! applies what they decide.
//!
//! Inputs: the event bus (`TrustUpdated` is evaluated at once for the agents
//! it names, so `agent_trust_low` acts within the outcome that crossed the
//! threshold; `LearningCycle` feeds the cycle and pattern rules), and a tick
//! every `alerts.evaluate_every_secs` (every workspace's trust snapshot, the
//! store probe, the `trust_updated` summaries, retention). The decisions are
//! pure ([`super::rules`]); their effects (store, `Event::Alert`, the
//! `quarantine` action, notifications) run one at a time, in order, on a
//! task the actor feeds through an unbounded channel. It is bounded in
//! practice by the transitions, at most two per fingerprint per evaluation.
//!
//! Deduplication across restarts and nodes goes through the store: at start
//! the actor adopts every firing alert (no second alert after a restart),
//! and the store refuses a second firing alert for a fingerprint (a unique
//! partial index), so when two nodes see the same breach one alert is
//! raised, one agent quarantine is requested and one notification sent; the
//! other node adopts the stored alert.
//!
//! `database_errors` is node-level and is about the store itself: when the
//! store cannot record it, it is notified anyway (PagerDuty deduplicates on
//! the fingerprint, the same on every node) and recorded, resolved, once
//! the store is back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::stream;
use tokio::sync::mpsc;

use super::config::{
    AlertsConfig, RuleBook, ACTION_QUARANTINE, DATABASE_ERRORS, PATTERN_CONFIDENCE_LOW,
    TRUST_UPDATED,
};
use super::rules::{self, AlertBook, CycleFacts, Reading, Transition};
use super::{AgentAdmission, Alert, AlertStatus, Notification, NotificationSink};
use crate::domain::{AgentId, WorkspaceId};
use crate::engine::Engine;
use crate::events::Event;
use crate::ports::{AlertInsert, AlertScope, Store, StoreError};
use crate::supervisor::{ActorHealth, HealthRegistry, RestartPolicy, RestartTracker};

const NAME: &str = "alerter";

/// An admission controller that changes nothing (until one is wired): the
/// `quarantine` action is logged and reported as not applied.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAdmission;

#[async_trait::async_trait]
impl AgentAdmission for NoAdmission {
    async fn quarantine(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        reason: &str,
        alert_id: uuid::Uuid,
    ) -> Result<bool, StoreError> {
        tracing::info!(workspace = %ws, agent = %agent, alert = %alert_id, reason, "quarantine requested; no admission controller is wired");
        Ok(false)
    }
}

/// The `database_errors` probe: whether the store answers (the readiness
/// check). `Err` carries the reason.
#[async_trait::async_trait]
pub trait StoreProbe: Send + Sync + 'static {
    /// Probes once.
    async fn probe(&self) -> Result<(), String>;
}

/// What the alerter needs from the rest of the process.
#[derive(Clone)]
pub struct AlerterDeps {
    /// Alerts, silences, patterns.
    pub store: Arc<dyn Store>,
    /// Trust snapshots and the event bus.
    pub engine: Engine,
    /// The `quarantine` action.
    pub admission: Arc<dyn AgentAdmission>,
    /// Notifications.
    pub sink: Arc<dyn NotificationSink>,
    /// The `database_errors` probe (none: the rule is not evaluated).
    pub probe: Option<Arc<dyn StoreProbe>>,
    /// Shown by `/readyz`.
    pub health: HealthRegistry,
}

/// Handle to the running alerter; cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    addr: Addr<AlerterActor>,
}

impl Alerter {
    /// Starts the alerter under a supervisor (validate the config first:
    /// `rules` is its resolution). Must run inside an actix system.
    pub fn start(
        deps: AlerterDeps,
        config: &AlertsConfig,
        rules: RuleBook,
        policy: RestartPolicy,
    ) -> Self {
        deps.health.set(NAME, ActorHealth::Starting);
        let rules = Arc::new(rules);
        let every = Duration::from_secs(config.evaluate_every_secs.max(1));
        let retention_days = config.retention_days;
        let addr = Supervisor::start(move |_| AlerterActor {
            deps,
            rules,
            every,
            retention_days,
            book: AlertBook::default(),
            changed: HashMap::new(),
            last_summary: HashMap::new(),
            failed_probes: 0,
            probing: false,
            last_purge: None,
            effects: None,
            restarts: RestartTracker::new(policy),
        });
        Self { addr }
    }

    /// Evaluates every rule now (as a tick does) and waits until the
    /// resulting effects are applied (stored, published, notified).
    pub async fn evaluate_now(&self) -> Result<(), crate::EngineError> {
        let done = self
            .addr
            .send(EvaluateNow)
            .await
            .map_err(|_| crate::EngineError::ShuttingDown)?;
        let _ = done.await;
        Ok(())
    }
}

/// The actor; see the module doc.
pub struct AlerterActor {
    deps: AlerterDeps,
    rules: Arc<RuleBook>,
    /// `alerts.evaluate_every_secs`.
    every: Duration,
    /// `alerts.retention_days` (0 = keep).
    retention_days: u32,
    /// Pending and firing fingerprints.
    book: AlertBook,
    /// Agents whose trust changed since the workspace's last `trust_updated`.
    changed: HashMap<WorkspaceId, HashSet<AgentId>>,
    /// When each workspace's last `trust_updated` summary was raised.
    last_summary: HashMap<WorkspaceId, DateTime<Utc>>,
    /// Store probes failed in a row.
    failed_probes: u64,
    /// A probe is in flight (never two at once).
    probing: bool,
    /// When resolved alerts past retention were last purged.
    last_purge: Option<Instant>,
    /// The effects task's queue (created at each start).
    effects: Option<mpsc::UnboundedSender<Effect>>,
    restarts: RestartTracker,
}

/// One effect, applied in order by the effects task.
enum Effect {
    /// Store, act, publish, notify.
    Apply(Transition),
    /// A one-shot alert: store, publish, notify.
    OneShot(Alert),
    /// Replies once everything queued before it is applied.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

/// Evaluate every rule now; replies with a receiver that completes once the
/// effects are applied.
#[derive(Message)]
#[rtype(result = "tokio::sync::oneshot::Receiver<()>")]
struct EvaluateNow;

/// The effects task could not store a new alert: forget it, so the next
/// reading starts it again.
#[derive(Message)]
#[rtype(result = "()")]
struct Forget(String);

/// Open alerts to take over (restored at start, or raised by another node).
#[derive(Message)]
#[rtype(result = "()")]
struct Adopt(Vec<Alert>);

/// A probe finished.
#[derive(Message)]
#[rtype(result = "()")]
struct Probed(Result<(), String>);

/// A workspace's patterns after a cycle.
#[derive(Message)]
#[rtype(result = "()")]
struct PatternsLoaded(WorkspaceId, Vec<crate::learner::cycle::StoredPattern>);

/// An item of the event bus stream.
enum BusItem {
    Event(Event),
    /// Some events were missed: re-evaluate everything.
    Lagged,
}

impl Actor for AlerterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.effects = Some(tx);
        let applier = Applier {
            deps: self.deps.clone(),
            rules: Arc::clone(&self.rules),
            me: ctx.address(),
            unsaved: HashMap::new(),
        };
        actix::spawn(applier.run(rx));
        let rx = self.deps.engine.events().subscribe();
        let bus = stream::unfold(rx, |mut rx| async move {
            use tokio::sync::broadcast::error::RecvError;
            match rx.recv().await {
                Ok(e) => Some((BusItem::Event(e), rx)),
                Err(RecvError::Lagged(_)) => Some((BusItem::Lagged, rx)),
                Err(RecvError::Closed) => None,
            }
        });
        ctx.add_stream(bus);
        // Restore open alerts before the first tick evaluates.
        let store = Arc::clone(&self.deps.store);
        ctx.wait(
            async move { store.firing_alerts().await }
                .into_actor(self)
                .map(|res, act, _| match res {
                    Ok(open) => {
                        tracing::info!(open = open.len(), "alerter restored open alerts");
                        for a in open {
                            act.book.adopt(a);
                        }
                        act.deps.health.set(NAME, ActorHealth::Running);
                    }
                    Err(e) => {
                        // The store's unique index still prevents duplicates.
                        tracing::warn!(error = %e, "alerter could not restore open alerts; a breach still open is adopted when it is seen again");
                        act.deps.health.set(NAME, ActorHealth::Running);
                    }
                }),
        );
        ctx.run_interval(self.every, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for AlerterActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.book = AlertBook::default();
        self.probing = false;
        self.effects = None;
        let (_, escalate) = self.restarts.on_restart(Instant::now());
        self.deps.health.restarted(NAME);
        self.deps.health.set(
            NAME,
            if escalate {
                ActorHealth::Failed
            } else {
                ActorHealth::Starting
            },
        );
        metrics::counter!("swarmwise_actor_restarts_total", "actor" => NAME).increment(1);
    }
}

impl AlerterActor {
    fn push(&self, effect: Effect) {
        if let Some(tx) = &self.effects {
            let _ = tx.send(effect);
        }
    }

    fn apply(&mut self, readings: &[Reading], now: DateTime<Utc>) {
        let mut out = Vec::new();
        rules::evaluate(&mut self.book, &self.rules, readings, now, &mut out);
        for t in out {
            self.push(Effect::Apply(t));
        }
        super::publish_firing(self.book.open());
    }

    fn evaluate_trust(&mut self, ws: WorkspaceId, only: Option<&[AgentId]>, now: DateTime<Utc>) {
        let snap = self.deps.engine.trust(ws);
        let mut readings = Vec::new();
        rules::trust_readings(ws, &snap, only, &self.rules, &mut readings);
        self.apply(&readings, now);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Utc::now();
        for ws in self.deps.engine.trust_workspaces() {
            self.evaluate_trust(ws, None, now);
        }
        self.summaries(now);
        if let (Some(probe), false) = (&self.deps.probe, self.probing) {
            if self.rules.enabled(DATABASE_ERRORS).is_some() {
                self.probing = true;
                let probe = Arc::clone(probe);
                let me = ctx.address();
                actix::spawn(async move {
                    let res = tokio::time::timeout(Duration::from_secs(10), probe.probe())
                        .await
                        .unwrap_or_else(|_| Err("the probe did not answer within 10 s".into()));
                    me.do_send(Probed(res));
                });
            }
        }
        self.purge();
        // Adopted and forgotten alerts change the book outside `apply`.
        super::publish_firing(self.book.open());
    }

    /// One `trust_updated` per workspace per `min_interval_secs`.
    fn summaries(&mut self, now: DateTime<Utc>) {
        let Some(spec) = self.rules.enabled(TRUST_UPDATED).cloned() else {
            self.changed.clear();
            return;
        };
        let interval = TimeDelta::seconds(spec.min_interval_secs as i64);
        let due: Vec<WorkspaceId> = self
            .changed
            .iter()
            .filter(|(ws, agents)| {
                !agents.is_empty()
                    && self
                        .last_summary
                        .get(ws)
                        .is_none_or(|last| now - *last >= interval)
            })
            .map(|(ws, _)| *ws)
            .collect();
        for ws in due {
            let n = self.changed.remove(&ws).map_or(0, |s| s.len());
            self.last_summary.insert(ws, now);
            let r = Reading {
                workspace: Some(ws),
                rule: TRUST_UPDATED,
                subject: String::new(),
                value: n as f64,
                samples: n as u64,
                detail: format!("{n} agents' trust changed"),
            };
            self.push(Effect::OneShot(AlertBook::one_shot(&spec, &r, now)));
        }
    }

    fn purge(&mut self) {
        if self.retention_days == 0
            || self
                .last_purge
                .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
        {
            return;
        }
        self.last_purge = Some(Instant::now());
        let store = Arc::clone(&self.deps.store);
        let before = Utc::now() - TimeDelta::days(i64::from(self.retention_days));
        actix::spawn(async move {
            match store.purge_alerts(before).await {
                Ok(n) if n > 0 => tracing::info!(
                    purged = n,
                    "resolved alerts past alerts.retention_days deleted"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not purge old alerts; retried in an hour")
                }
            }
        });
    }

    fn on_cycle(&mut self, facts: CycleFacts, ctx: &mut Context<Self>) {
        let now = Utc::now();
        let mut readings = Vec::new();
        rules::cycle_readings(&facts, &mut readings);
        self.apply(&readings, now);
        let mut shots = Vec::new();
        rules::cycle_one_shots(&facts, &mut shots);
        for r in &shots {
            if let Some(spec) = self.rules.enabled(r.rule) {
                self.push(Effect::OneShot(AlertBook::one_shot(spec, r, now)));
            }
        }
        if facts.succeeded && self.rules.enabled(PATTERN_CONFIDENCE_LOW).is_some() {
            let store = Arc::clone(&self.deps.store);
            let me = ctx.address();
            let ws = facts.workspace;
            actix::spawn(async move {
                match store.patterns(ws).await {
                    Ok(p) => me.do_send(PatternsLoaded(ws, p)),
                    Err(e) => {
                        tracing::warn!(workspace = %ws, error = %e, "pattern_confidence_low: could not read patterns; evaluated after the next cycle")
                    }
                }
            });
        }
    }
}

impl StreamHandler<BusItem> for AlerterActor {
    fn handle(&mut self, item: BusItem, ctx: &mut Context<Self>) {
        match item {
            BusItem::Event(Event::TrustUpdated {
                workspace_id,
                agents,
            }) => {
                self.evaluate_trust(workspace_id, Some(&agents), Utc::now());
                if self.rules.enabled(TRUST_UPDATED).is_some() {
                    self.changed.entry(workspace_id).or_default().extend(agents);
                }
            }
            BusItem::Event(Event::LearningCycle {
                workspace_id,
                cycle_id,
                status,
                error,
                reason,
                duration_seconds,
                patterns_discovered,
            }) => self.on_cycle(
                CycleFacts {
                    workspace: workspace_id,
                    cycle_id,
                    succeeded: status == "succeeded",
                    reason: Some(reason),
                    duration_seconds: Some(duration_seconds),
                    patterns_discovered,
                    error,
                },
                ctx,
            ),
            BusItem::Event(_) => {}
            BusItem::Lagged => self.tick(ctx),
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The bus closed: the engine is stopping. Ticks go on until then.
    }
}

impl Handler<EvaluateNow> for AlerterActor {
    type Result = MessageResult<EvaluateNow>;

    fn handle(&mut self, _: EvaluateNow, ctx: &mut Context<Self>) -> Self::Result {
        self.tick(ctx);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(Effect::Barrier(tx));
        MessageResult(rx)
    }
}

impl Handler<Forget> for AlerterActor {
    type Result = ();

    fn handle(&mut self, msg: Forget, _ctx: &mut Context<Self>) {
        self.book.forget(&msg.0);
    }
}

impl Handler<Adopt> for AlerterActor {
    type Result = ();

    fn handle(&mut self, msg: Adopt, _ctx: &mut Context<Self>) {
        for a in msg.0 {
            self.book.adopt(a);
        }
    }
}

impl Handler<Probed> for AlerterActor {
    type Result = ();

    fn handle(&mut self, msg: Probed, _ctx: &mut Context<Self>) {
        self.probing = false;
        let error = match msg.0 {
            Ok(()) => {
                self.failed_probes = 0;
                None
            }
            Err(e) => {
                self.failed_probes += 1;
                Some(e)
            }
        };
        let r = rules::probe_reading(self.failed_probes, error.as_deref());
        self.apply(std::slice::from_ref(&r), Utc::now());
    }
}

impl Handler<PatternsLoaded> for AlerterActor {
    type Result = ();

    fn handle(&mut self, msg: PatternsLoaded, _ctx: &mut Context<Self>) {
        let mut readings = Vec::new();
        rules::pattern_readings(msg.0, &msg.1, &mut readings);
        self.apply(&readings, Utc::now());
    }
}

/// Applies effects in order (the actor's other half, on a task).
struct Applier {
    deps: AlerterDeps,
    rules: Arc<RuleBook>,
    me: Addr<AlerterActor>,
    /// `database_errors` alerts the store could not record, by fingerprint.
    unsaved: HashMap<String, Alert>,
}

impl Applier {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Effect>) {
        while let Some(effect) = rx.recv().await {
            match effect {
                Effect::Apply(Transition::Fired(a)) => self.fired(a).await,
                Effect::Apply(Transition::Resolved(a)) => self.resolved(a).await,
                Effect::Apply(Transition::StillBreaching(a)) => self.act(&a).await,
                Effect::OneShot(a) => self.one_shot(a).await,
                Effect::Barrier(tx) => {
                    let _ = tx.send(());
                }
            }
        }
    }

    async fn fired(&mut self, alert: Alert) {
        match self.deps.store.insert_alert(&alert).await {
            Ok(AlertInsert::Inserted) => {
                count(&alert);
                tracing::warn!(alert = %alert.id, rule = %alert.rule, fingerprint = %alert.fingerprint, summary = %alert.summary, "alert firing");
                self.act(&alert).await;
                self.publish(&alert);
                self.notify(&alert).await;
            }
            Ok(AlertInsert::AlreadyFiring(existing)) => {
                // Raised by another node (or an earlier life of this one).
                self.me.do_send(Adopt(vec![*existing]));
            }
            Err(e) if alert.rule == DATABASE_ERRORS => {
                tracing::error!(error = %e, summary = %alert.summary, "database_errors firing; the store cannot record it now, it is recorded when the store is back");
                count(&alert);
                self.notify(&alert).await;
                self.unsaved.insert(alert.fingerprint.clone(), alert);
            }
            Err(e) => {
                tracing::warn!(error = %e, rule = %alert.rule, fingerprint = %alert.fingerprint, "could not record a firing alert; it is raised again at the next evaluation");
                self.me.do_send(Forget(alert.fingerprint));
            }
        }
    }

    async fn resolved(&mut self, alert: Alert) {
        let stored = if self.unsaved.remove(&alert.fingerprint).is_some() {
            self.deps
                .store
                .insert_alert(&alert)
                .await
                .map(|r| r == AlertInsert::Inserted)
        } else {
            self.deps.store.resolve_alert(&alert).await
        };
        match stored {
            Ok(true) => {
                count(&alert);
                tracing::info!(alert = %alert.id, rule = %alert.rule, fingerprint = %alert.fingerprint, "alert resolved");
                self.publish(&alert);
                if self
                    .rules
                    .get(&alert.rule)
                    .is_some_and(|s| s.notify_resolved)
                {
                    self.notify(&alert).await;
                }
            }
            Ok(false) => {} // another node resolved it first
            Err(e) => {
                tracing::warn!(error = %e, alert = %alert.id, "could not record a resolved alert; it stays firing in the store and is resolved again when seen");
                // Forgotten here; restored from the store at the next start,
                // or adopted again at the next breach.
            }
        }
    }

    async fn one_shot(&mut self, alert: Alert) {
        match self.deps.store.insert_alert(&alert).await {
            Ok(_) => {
                count(&alert);
                self.publish(&alert);
                self.notify(&alert).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, rule = %alert.rule, "could not record a one-shot alert; dropped")
            }
        }
    }

    /// The rule's action (`quarantine`): when an alert is raised, and again
    /// on every reading that still breaches while it is open (a no-op for
    /// an agent already quarantined, held or in an operator's grace).
    async fn act(&self, alert: &Alert) {
        if alert.action.as_deref() != Some(ACTION_QUARANTINE) {
            return;
        }
        let (Some(ws), Ok(agent)) = (
            alert.workspace_id,
            AgentId::parse("subject", &alert.subject),
        ) else {
            return;
        };
        match self
            .deps
            .admission
            .quarantine(ws, &agent, &alert.summary, alert.id)
            .await
        {
            Ok(true) => {
                tracing::warn!(workspace = %ws, agent = %agent, alert = %alert.id, "agent quarantined by agent_trust_low")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(workspace = %ws, agent = %agent, alert = %alert.id, error = %e, "could not quarantine the agent; PATCH /api/v1/agents/{{id}} enabled=false disables it by hand")
            }
        }
    }

    fn publish(&self, alert: &Alert) {
        if let Some(ws) = alert.workspace_id {
            self.deps.engine.events().publish(Event::Alert {
                workspace_id: ws,
                alert: Box::new(alert.clone()),
            });
        }
    }

    /// Notifies unless a silence matches. When silences cannot be read the
    /// alert is notified (a page is worth more than a silence).
    async fn notify(&self, alert: &Alert) {
        let now = Utc::now();
        let silences = self
            .deps
            .store
            .silences(AlertScope::of(alert.workspace_id), Some(now))
            .await
            .unwrap_or_default();
        if silences.iter().any(|s| s.matches(alert, now)) {
            metrics::counter!("swarmwise_alert_notifications_silenced_total").increment(1);
            return;
        }
        self.deps.sink.send(Notification {
            status: alert.status,
            alert: alert.clone(),
        });
    }
}

fn count(alert: &Alert) {
    let status = match alert.status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    // Both labels are closed sets: the rule catalogue and two states.
    let rule = super::config::RULES
        .iter()
        .find(|r| **r == alert.rule)
        .copied()
        .unwrap_or("other");
    metrics::counter!("swarmwise_alert_transitions_total", "rule" => rule, "status" => status)
        .increment(1);
}
