//! The `TrustScorer` actor: owns trust state per workspace, folds outcomes in
//! as evaluations commit, publishes read-only snapshots, persists cards.
//!
//! Talks to: the tracker (sends `OutcomesRecorded` after each evaluation
//! commits and `RecomputeAgent` after feedback overrides a verdict), the
//! store (reload at start and restart, persist cards), readers (through
//! [`TrustSnapshots`], never through the mailbox).
//!
//! Invariant: a snapshot is always the fold of a prefix of the committed
//! outcomes in key order; a restart reloads from the store, and messages
//! already reflected in the reload are skipped by the per-agent watermark.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::Utc;
use dashmap::DashMap;

use super::state::{TrustParams, WorkspaceSnapshot, WorkspaceTrust};
use crate::domain::{AgentFailure, AgentId, OutcomeSample, WorkspaceId};
use crate::error::EngineError;
use crate::events::{Event, EventBus};
use crate::ports::{Store, TrustRow};
use crate::supervisor::{ActorHealth, HealthRegistry, RestartPolicy, RestartTracker};

const NAME: &str = "trust_scorer";

/// Read-only trust snapshots, one per workspace, swapped whole on update.
/// Readers clone an `Arc`; they never wait on the actor.
#[derive(Debug, Clone, Default)]
pub struct TrustSnapshots {
    inner: Arc<DashMap<WorkspaceId, Arc<WorkspaceSnapshot>>>,
    params: Arc<TrustParams>,
}

impl TrustSnapshots {
    /// Empty snapshots computed with `params`.
    pub fn new(params: Arc<TrustParams>) -> Self {
        Self {
            inner: Arc::default(),
            params,
        }
    }

    /// The workspace's snapshot (an empty one if it has no outcomes yet).
    pub fn get(&self, ws: WorkspaceId) -> Arc<WorkspaceSnapshot> {
        if let Some(s) = self.inner.get(&ws) {
            return Arc::clone(s.value());
        }
        Arc::new(WorkspaceTrust::default().snapshot(&self.params))
    }

    /// Every workspace with a published snapshot.
    pub fn workspaces(&self) -> Vec<WorkspaceId> {
        self.inner.iter().map(|e| *e.key()).collect()
    }

    /// The boost of an agent on a type, without allocation on the hot path.
    pub fn boost(
        &self,
        ws: WorkspaceId,
        agent: &AgentId,
        recommendation_type: Option<&str>,
    ) -> f64 {
        self.inner
            .get(&ws)
            .map_or(0.0, |s| s.value().boost(agent, recommendation_type))
    }

    fn publish(&self, ws: WorkspaceId, snapshot: WorkspaceSnapshot) {
        self.inner.insert(ws, Arc::new(snapshot));
    }
}

/// Sent by the tracker after an evaluation committed: fold these in.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct OutcomesRecorded {
    /// Whose outcomes.
    pub workspace: WorkspaceId,
    /// The newly evaluated samples, in key order.
    pub samples: Vec<OutcomeSample>,
}

/// Sent by the engine after failed executions (errors, timeouts, invalid
/// answers) were stored: fold them into reliability.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct FailuresRecorded {
    /// Whose failures.
    pub workspace: WorkspaceId,
    /// The stored failures, in key order.
    pub failures: Vec<AgentFailure>,
}

/// Sent by the tracker after feedback changed an already evaluated
/// recommendation: rebuild this agent from the store.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct RecomputeAgent {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Agent.
    pub agent: AgentId,
}

/// Sent by the service's change-feed task (`src/sync.rs`) when another
/// process committed outcomes, verdicts or failures of these agents: rebuild
/// each from the store and publish. Unlike [`RecomputeAgent`] it neither
/// persists cards nor publishes `TrustUpdated` (the origin process did
/// both). Replies once the new snapshot is published. Cost: one read of
/// each agent's evaluated recommendations and failures.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RefreshAgents {
    /// Workspace.
    pub workspace: WorkspaceId,
    /// Agents, each rebuilt once.
    pub agents: Vec<AgentId>,
}

/// Full recompute from the store (scheduler, operators, tests). Replies when
/// the new snapshots are published.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Recompute {
    /// One workspace, or all.
    pub workspace: Option<WorkspaceId>,
}

/// Stops the actor so that its supervisor restarts it (state reloaded from
/// the store). Operators use it to recover from suspected corruption; tests
/// use it to prove nothing is lost.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Restart {
    /// Logged.
    pub reason: String,
}

/// Replies once every message sent before it has been handled (and, after a
/// restart, once the state is reloaded) and the cards they changed are
/// persisted: a barrier for callers and tests.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct Ping;

/// The actor. Start it with [`TrustScorer::start_supervised`].
pub struct TrustScorer {
    /// Where outcomes are reloaded from and cards persisted to.
    store: Arc<dyn Store>,
    /// The maths' knobs.
    params: Arc<TrustParams>,
    /// Published for readers.
    snapshots: TrustSnapshots,
    /// The folded state per workspace; rebuilt from the store on (re)start.
    states: HashMap<WorkspaceId, WorkspaceTrust>,
    /// Restart limit and backoff.
    restarts: RestartTracker,
    /// Shown by `/readyz`.
    health: HealthRegistry,
    /// Backoff to wait before reloading after a restart.
    backoff: std::time::Duration,
    /// Where `TrustUpdated` goes.
    events: EventBus,
    /// Cards changed since the last persist began, per workspace.
    dirty: HashMap<WorkspaceId, BTreeSet<AgentId>>,
    /// A persist is running (at most one at a time, in order).
    persisting: bool,
    /// When the last persist started (`persist_interval_ms` apart).
    last_persist: Option<Instant>,
    /// The persist scheduled for when the interval has passed, if any.
    persist_scheduled: Option<SpawnHandle>,
    /// `Ping`s waiting for the persists to catch up.
    settled: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl TrustScorer {
    /// Starts the scorer under an actix supervisor.
    pub fn start_supervised(
        store: Arc<dyn Store>,
        params: Arc<TrustParams>,
        snapshots: TrustSnapshots,
        policy: RestartPolicy,
        health: HealthRegistry,
        events: EventBus,
    ) -> Addr<Self> {
        health.set(NAME, ActorHealth::Starting);
        Supervisor::start(move |_| Self {
            store,
            params,
            snapshots,
            states: HashMap::new(),
            restarts: RestartTracker::new(policy),
            health,
            backoff: std::time::Duration::ZERO,
            events,
            dirty: HashMap::new(),
            persisting: false,
            last_persist: None,
            persist_scheduled: None,
            settled: Vec::new(),
        })
    }

    fn publish(&self, ws: WorkspaceId) {
        if let Some(state) = self.states.get(&ws) {
            self.snapshots.publish(ws, state.snapshot(&self.params));
        }
    }

    /// Marks the cards of `agents` for persisting (a materialised view for
    /// SQL readers and history) and starts a persist unless one is running
    /// or the last one started less than `persist_interval_ms` ago (then one
    /// is scheduled for when it has passed). Persists are coalesced: while
    /// one runs or waits, changed cards accumulate and the next persist
    /// writes each card once, as it is then; the mailbox is never blocked by
    /// the store. Cards are derived state (rebuilt from outcomes at start),
    /// so a persist that fails, or never ran because the node stopped, loses
    /// nothing.
    fn persist(&mut self, ws: WorkspaceId, agents: &[AgentId], ctx: &mut Context<Self>) {
        self.dirty
            .entry(ws)
            .or_default()
            .extend(agents.iter().cloned());
        self.persist_dirty(ctx);
    }

    fn persist_dirty(&mut self, ctx: &mut Context<Self>) {
        if self.persisting || self.persist_scheduled.is_some() {
            return;
        }
        if self.dirty.is_empty() {
            for w in self.settled.drain(..) {
                let _ = w.send(());
            }
            return;
        }
        let interval = std::time::Duration::from_millis(self.params.persist_interval_ms);
        if let Some(wait) = self
            .last_persist
            .and_then(|at| interval.checked_sub(at.elapsed()))
            .filter(|w| !w.is_zero())
        {
            self.persist_scheduled = Some(ctx.run_later(wait, |act, ctx| {
                act.persist_scheduled = None;
                act.persist_dirty(ctx);
            }));
            return;
        }
        self.last_persist = Some(Instant::now());
        let mut batches = Vec::new();
        for (ws, agents) in std::mem::take(&mut self.dirty) {
            let snap = self.snapshots.get(ws);
            let mut rows = Vec::new();
            for a in &agents {
                if let Some(cards) = snap.agents.get(a) {
                    rows.push(TrustRow {
                        agent_id: a.clone(),
                        recommendation_type: None,
                        card: cards.overall.clone(),
                    });
                    for (t, c) in &cards.per_type {
                        rows.push(TrustRow {
                            agent_id: a.clone(),
                            recommendation_type: Some(t.clone()),
                            card: c.clone(),
                        });
                    }
                }
            }
            if !rows.is_empty() {
                batches.push((ws, rows));
            }
        }
        self.persisting = true;
        let store = Arc::clone(&self.store);
        ctx.spawn(
            async move {
                for (ws, rows) in batches {
                    if let Err(e) = store.save_trust(ws, &rows, Utc::now()).await {
                        metrics::counter!("swarmwise_trust_persist_failures_total").increment(1);
                        tracing::warn!(error = %e, workspace = %ws, "could not persist trust cards; they are recomputed from outcomes on restart");
                    }
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.persisting = false;
                act.persist_dirty(ctx);
            }),
        );
    }

    /// Reloads every workspace (or one) from the store and publishes.
    fn reload(
        &mut self,
        only: Option<WorkspaceId>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<(), EngineError>> {
        let _ = ctx;
        let store = Arc::clone(&self.store);
        let params = Arc::clone(&self.params);
        let started = Instant::now();
        Box::pin(
            async move {
                let ids = match only {
                    Some(ws) => vec![ws],
                    None => store.workspace_ids().await?,
                };
                let mut loaded = Vec::with_capacity(ids.len());
                for ws in ids {
                    let samples = store.outcome_samples(ws, None).await?;
                    let failures = store.agent_failures(ws, None).await?;
                    loaded.push((
                        ws,
                        WorkspaceTrust::from_observations(samples, failures, &params),
                    ));
                }
                Ok::<_, EngineError>(loaded)
            }
            .into_actor(self)
            .map(move |res, act, _| {
                let loaded = res?;
                for (ws, state) in loaded {
                    act.states.insert(ws, state);
                    act.publish(ws);
                }
                metrics::histogram!("swarmwise_trust_reload_seconds")
                    .record(started.elapsed().as_secs_f64());
                Ok(())
            }),
        )
    }
}

impl Actor for TrustScorer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        let backoff = self.backoff;
        if !backoff.is_zero() {
            ctx.wait(actix::clock::sleep(backoff).into_actor(self));
        }
        let fut = self.reload(None, ctx).map(|res, act, ctx| match res {
            Ok(()) => {
                if act.health.get(NAME) != Some(ActorHealth::Failed) {
                    act.health.set(NAME, ActorHealth::Running);
                }
                tracing::info!(workspaces = act.states.len(), "trust scorer loaded");
                act.persist_dirty(ctx);
            }
            Err(e) => {
                tracing::error!(error = %e, "trust scorer could not load its state; restarting with backoff");
                ctx.stop();
            }
        });
        ctx.wait(fut);
    }
}

impl Supervised for TrustScorer {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        self.states.clear();
        // A persist cut short by the stop is not running any more, nor is
        // one scheduled; the cards still to save stay marked and are saved,
        // as the reload rebuilt them, once it is done.
        self.persisting = false;
        self.persist_scheduled = None;
        for w in self.settled.drain(..) {
            let _ = w.send(());
        }
        self.health.restarted(NAME);
        let (backoff, exceeded) = self.restarts.on_restart(Instant::now());
        self.backoff = backoff;
        metrics::counter!("swarmwise_actor_restarts_total", "actor" => NAME).increment(1);
        if exceeded {
            self.health.set(NAME, ActorHealth::Failed);
            tracing::error!(actor = NAME, "restart limit exceeded; readiness now fails. Check the database and the logs above, then restart the service");
        } else {
            self.health.set(NAME, ActorHealth::Starting);
            tracing::warn!(
                actor = NAME,
                backoff_ms = backoff.as_millis() as u64,
                "restarting"
            );
        }
    }
}

impl Handler<OutcomesRecorded> for TrustScorer {
    type Result = ();

    fn handle(&mut self, msg: OutcomesRecorded, ctx: &mut Context<Self>) {
        let state = self.states.entry(msg.workspace).or_default();
        let changed = state.fold(&msg.samples, &self.params);
        if changed.is_empty() {
            return;
        }
        metrics::counter!("swarmwise_trust_updates_total").increment(msg.samples.len() as u64);
        self.publish(msg.workspace);
        self.persist(msg.workspace, &changed, ctx);
        self.events.publish(Event::TrustUpdated {
            workspace_id: msg.workspace,
            agents: changed,
        });
    }
}

impl Handler<FailuresRecorded> for TrustScorer {
    type Result = ();

    fn handle(&mut self, msg: FailuresRecorded, ctx: &mut Context<Self>) {
        let state = self.states.entry(msg.workspace).or_default();
        let folded = state.fold_failures(&msg.failures, &self.params);
        // A failure older than an outcome already folded (a concurrent
        // workflow evaluated first): rebuild that agent from the store, which
        // holds both, so incremental and full recompute stay equal.
        for agent in folded.stale {
            ctx.notify(RecomputeAgent {
                workspace: msg.workspace,
                agent,
            });
        }
        if folded.changed.is_empty() {
            return;
        }
        self.publish(msg.workspace);
        self.persist(msg.workspace, &folded.changed, ctx);
        self.events.publish(Event::TrustUpdated {
            workspace_id: msg.workspace,
            agents: folded.changed,
        });
    }
}

impl Handler<RecomputeAgent> for TrustScorer {
    type Result = ();

    fn handle(&mut self, msg: RecomputeAgent, ctx: &mut Context<Self>) {
        let store = Arc::clone(&self.store);
        let agent = msg.agent.clone();
        let ws = msg.workspace;
        let fut = async move {
            let samples = store.outcome_samples(ws, Some(&agent)).await?;
            let failures = store.agent_failures(ws, Some(&agent)).await?;
            Ok::<_, crate::ports::StoreError>((samples, failures))
        }
        .into_actor(self)
        .map(move |res, act, ctx| match res {
                Ok((samples, failures)) => {
                    let params = Arc::clone(&act.params);
                    act.states
                        .entry(ws)
                        .or_default()
                        .replace_agent(&msg.agent, samples, failures, &params);
                    act.publish(ws);
                    act.persist(ws, std::slice::from_ref(&msg.agent), ctx);
                }
                Err(e) => {
                    tracing::error!(error = %e, "could not reload an agent's outcomes; restarting the scorer to reload all");
                    ctx.stop();
                }
            });
        ctx.wait(fut);
    }
}

impl Handler<RefreshAgents> for TrustScorer {
    // Atomic: an outcome folded while the agents are read would be lost
    // when their state is replaced.
    type Result = AtomicResponse<Self, Result<(), EngineError>>;

    fn handle(&mut self, msg: RefreshAgents, _ctx: &mut Context<Self>) -> Self::Result {
        let store = Arc::clone(&self.store);
        let ws = msg.workspace;
        let agents = msg.agents;
        let fut = async move {
            let mut loaded = Vec::with_capacity(agents.len());
            for agent in agents {
                let samples = store.outcome_samples(ws, Some(&agent)).await?;
                let failures = store.agent_failures(ws, Some(&agent)).await?;
                loaded.push((agent, samples, failures));
            }
            Ok::<_, EngineError>(loaded)
        }
        .into_actor(self)
        .map(move |res, act, _ctx| {
            let loaded = res?;
            if loaded.is_empty() {
                return Ok(());
            }
            let params = Arc::clone(&act.params);
            let state = act.states.entry(ws).or_default();
            for (agent, samples, failures) in loaded {
                state.replace_agent(&agent, samples, failures, &params);
            }
            act.publish(ws);
            Ok(())
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<Recompute> for TrustScorer {
    // Atomic: no outcome message may interleave with the reload.
    type Result = AtomicResponse<Self, Result<(), EngineError>>;

    fn handle(&mut self, msg: Recompute, ctx: &mut Context<Self>) -> Self::Result {
        // The reload replaces each workspace's state only once it is fully
        // read: a failed recompute keeps the last good state.
        let fut = self.reload(msg.workspace, ctx).map(|res, _act, _ctx| {
            if let Err(e) = &res {
                metrics::counter!("swarmwise_trust_recompute_failures_total").increment(1);
                tracing::error!(error = %e, "trust recompute failed; the last good trust state stays in force");
            }
            res
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<Restart> for TrustScorer {
    type Result = ();

    fn handle(&mut self, msg: Restart, ctx: &mut Context<Self>) {
        tracing::warn!(reason = %msg.reason, "trust scorer restart requested");
        ctx.stop();
    }
}

impl Handler<Ping> for TrustScorer {
    type Result = ResponseFuture<()>;

    /// Answers once every card changed before it is saved: a save waiting
    /// for `persist_interval_ms` starts now (a caller settling, a shutdown,
    /// does not wait out the interval).
    fn handle(&mut self, _msg: Ping, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(handle) = self.persist_scheduled.take() {
            ctx.cancel_future(handle);
        }
        self.last_persist = None;
        self.persist_dirty(ctx);
        if !self.persisting && self.dirty.is_empty() {
            return Box::pin(async {});
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.settled.push(tx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}
