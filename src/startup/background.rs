//! Tasks that live as long as the server and end when it stops: forgetting
//! idle rate-limit state, dropping cached patterns when a learning cycle
//! finishes (and the Redis entries an outage kept), refreshing the
//! database-derived gauges, the run sweeper (lease renewal, takeover of
//! runs whose node died, approval deadlines), and purging expired
//! idempotency keys.

use actix_web::web;
use swarmwise_actors::events::Event;

use crate::state::AppState;

/// Every minute, forgets idle rate-limit buckets and run counters; ends at shutdown.
pub(super) fn spawn_limits_upkeep(state: web::Data<AppState>) {
    // Idle rate-limit buckets and run counters are forgotten, so the
    // limits hold state only for active keys and workspaces.
    let mut shutdown = state.shutdown.clone();
    actix::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => state.limits.upkeep(),
                _ = shutdown.changed() => break,
            }
        }
    });
}

/// Invalidates a workspace's cached patterns when any of its cycles (API,
/// outcomes, schedule) finishes; on a lagged receiver clears the local cache.
pub(super) fn spawn_pattern_invalidation(
    state: web::Data<AppState>,
    mut rx: tokio::sync::broadcast::Receiver<Event>,
) {
    // Cached patterns go stale when any cycle (API, outcomes, schedule) finishes.
    actix::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(swarmwise_actors::events::Event::LearningCycle { workspace_id, .. }) => {
                    state.patterns.invalidate(workspace_id).await;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    state.patterns.clear_local()
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Refreshes the gauges `/metrics` appends (`crate::stats`) every
/// `telemetry.stats_refresh_secs`; ends at shutdown.
pub(super) fn spawn_stats_refresh(state: &web::Data<AppState>) {
    let t = &state.settings.telemetry;
    actix::spawn(crate::stats::refresh_loop(
        state.stats.clone(),
        state.store.clone(),
        state.engine.clone(),
        std::time::Duration::from_secs(t.stats_refresh_secs),
        t.max_agent_series,
        state.shutdown.clone(),
    ));
}

/// When Redis comes back after an outage, deletes the cached pattern lists
/// whose invalidation it missed; ends at shutdown.
pub(super) fn spawn_redis_catch_up(state: web::Data<AppState>) {
    let Some(mut up) = state.redis.watch_up() else {
        return;
    };
    let mut shutdown = state.shutdown.clone();
    actix::spawn(async move {
        loop {
            tokio::select! {
                changed = up.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if *up.borrow() {
                        state.patterns.catch_up().await;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    });
}

/// Every `workflows.lease_secs / 3`: renews this node's run leases, takes
/// over runs whose lease expired, applies due approval deadlines
/// ([`swarmwise_actors::workflow::Workflows::sweep`]). The first sweep, at
/// start, also claims the runs this node id's previous process still held
/// (its leftovers), never one this process started.
/// Once the server stops it only renews the leases of the runs it is still
/// finishing (until they are handed over), and claims nothing new.
pub(super) fn spawn_run_sweeper(state: &web::Data<AppState>) {
    let workflows = state.workflows.clone();
    let mut shutdown = state.shutdown.clone();
    let every = workflows.config().sweep_every();
    actix::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut own = true;
        let mut claim = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let report = workflows.sweep(own, claim).await;
                    own = false;
                    if report.resumed + report.failed + report.deadlines > 0 {
                        tracing::info!(resumed = report.resumed, failed = report.failed, deadlines = report.deadlines, "run sweeper");
                    }
                }
                changed = shutdown.changed(), if claim => {
                    // Stopping (or the sender is gone): renew only.
                    let _ = changed;
                    claim = false;
                }
            }
        }
    });
}

/// Purges expired `Idempotency-Key` records every
/// `idempotency.purge_interval_secs`; ends at shutdown.
pub(super) fn spawn_idempotency_purge(state: &web::Data<AppState>) {
    actix::spawn(crate::idempotency::purge_loop(
        state.store.clone(),
        std::time::Duration::from_secs(state.settings.idempotency.purge_interval_secs),
        state.shutdown.clone(),
    ));
}
