//! The change-feed task: keeps what this node derives from the database
//! right when another process (another `swarmwise serve`, `swarmwise
//! learn`) changes the database.
//!
//! Every store call that changes something a node keeps in memory appends a
//! row to the change feed in the same transaction (`crate::store::changes`).
//! This task reads the feed every `cluster.sync_poll_ms` (one indexed query,
//! across workspaces), skips the rows this node wrote (`origin` = its
//! `NodeId`), coalesces the rest per workspace and applies them:
//!
//! | kind | what this node refreshes |
//! |---|---|
//! | `outcomes`, `failures` | the named agents' trust, rebuilt from the store (`Engine::refresh_trust`) |
//! | `verdicts` | the same, and the verdict revision (the learner reloads outcomes) |
//! | `agents` | the cached agent names; each agent's actor is started again from its registration, or stopped if it is gone |
//! | `admission` | the workspace joins the admission controller's checks |
//! | `patterns` | the cached patterns and the agreement estimate of the latest cycle |
//! | `keys` | every cached key of the workspace |
//!
//! Applying publishes no engine `Event` (the origin node published them)
//! and persists nothing: the feed only makes this node's memory agree with
//! the tables.
//!
//! Nothing is lost: the position advances only past rows that were applied;
//! when applying fails (the database went away mid-way), or when the feed
//! could not be read for longer than `cluster.sync_retention_secs` (rows
//! this node never read may have been pruned), the node rebuilds all of it
//! from the tables instead, as it does at start. At start the position is
//! the feed's head read *before* the engine loads its state, so a change
//! committed while the node starts is applied after.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actix_web::web;
use chrono::Utc;
use swarmwise_actors::domain::{AgentId, WorkspaceId};
use swarmwise_actors::ports::StoreError;

use crate::state::AppState;
use crate::store::{Change, ChangeKind, FeedPosition};

/// What a batch of feed rows asks this node to refresh, per workspace.
#[derive(Debug, Default, PartialEq)]
pub struct Pending {
    /// Agents whose trust must be rebuilt.
    pub trust: BTreeMap<WorkspaceId, BTreeSet<AgentId>>,
    /// Workspaces where an evaluated verdict was overridden.
    pub revised: BTreeSet<WorkspaceId>,
    /// Agents registered, enabled, disabled or deleted.
    pub agents: BTreeMap<WorkspaceId, BTreeSet<AgentId>>,
    /// Workspaces whose admission rows changed.
    pub admission: BTreeSet<WorkspaceId>,
    /// Workspaces with new patterns.
    pub patterns: BTreeSet<WorkspaceId>,
    /// Workspaces with a revoked or rotated key.
    pub keys: BTreeSet<WorkspaceId>,
    /// Rows to apply, by kind (for the metric).
    pub counts: BTreeMap<ChangeKind, u64>,
}

impl Pending {
    /// Coalesces `rows`, skipping those written by `own` (this node) and
    /// those of a kind this binary does not know.
    pub fn of(rows: &[Change], own: &str) -> Self {
        let mut p = Self::default();
        for row in rows.iter().filter(|r| r.origin != own) {
            let Some(kind) = row.kind else { continue };
            *p.counts.entry(kind).or_default() += 1;
            let ws = row.workspace;
            match kind {
                ChangeKind::Outcomes | ChangeKind::Failures => {
                    p.trust
                        .entry(ws)
                        .or_default()
                        .extend(row.agents.iter().cloned());
                }
                ChangeKind::Verdicts => {
                    p.trust
                        .entry(ws)
                        .or_default()
                        .extend(row.agents.iter().cloned());
                    p.revised.insert(ws);
                }
                ChangeKind::Agents => {
                    p.agents
                        .entry(ws)
                        .or_default()
                        .extend(row.agents.iter().cloned());
                }
                ChangeKind::Admission => {
                    p.admission.insert(ws);
                }
                ChangeKind::Patterns => {
                    p.patterns.insert(ws);
                }
                ChangeKind::Keys => {
                    p.keys.insert(ws);
                }
            }
        }
        p
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// Starts the task (unless `cluster.sync_poll_ms` is 0) reading the feed
/// after `start`; it ends at shutdown. The stop waits for the returned
/// handle, so no store call of the task is still in flight when the
/// runtime is dropped.
pub(crate) fn spawn(
    state: web::Data<AppState>,
    start: FeedPosition,
) -> Option<tokio::task::JoinHandle<()>> {
    let c = &state.settings.cluster;
    if c.sync_poll_ms == 0 {
        tracing::info!("cluster.sync_poll_ms = 0: this node does not follow changes other processes make to the database");
        return None;
    }
    let poll = Duration::from_millis(c.sync_poll_ms);
    let batch = c.sync_batch.max(1);
    let retention = Duration::from_secs(c.sync_retention_secs);
    let prune_every = (retention / 4).min(Duration::from_secs(60));
    // Registered now, so `/metrics` lists it from the first scrape.
    metrics::counter!("swarmwise_sync_pruned_rows_total").increment(0);
    let mut shutdown = state.shutdown.clone();
    Some(actix::spawn(async move {
        let mut position = start;
        let mut last_read = Instant::now();
        let mut last_prune: Option<Instant> = None;
        let mut needs_full = false;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if needs_full || last_read.elapsed() > retention {
                match full_refresh(&state).await {
                    Ok(head) => {
                        position = head;
                        last_read = Instant::now();
                        needs_full = false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "full refresh from the database failed; retried at the next poll");
                        continue;
                    }
                }
            }
            // Drain: a node that fell behind reads again at once.
            loop {
                let rows = match state.store.feed_since(position, batch).await {
                    Ok(rows) => rows,
                    Err(e) => {
                        metrics::counter!("swarmwise_sync_poll_failures_total").increment(1);
                        tracing::warn!(error = %e, "could not read the change feed; retried at the next poll (other nodes' changes reach this one late)");
                        break;
                    }
                };
                last_read = Instant::now();
                let Some(last) = rows.last().map(|r| r.position) else {
                    break;
                };
                let full = rows.len() >= batch as usize;
                if let Err(e) = apply(&state, &rows).await {
                    tracing::warn!(error = %e, "could not apply other nodes' changes; rebuilding from the database at the next poll");
                    needs_full = true;
                    break;
                }
                position = last;
                if !full {
                    break;
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= prune_every) {
                last_prune = Some(Instant::now());
                let before = Utc::now() - retention;
                match state.store.prune_feed(before).await {
                    Ok(n) => metrics::counter!("swarmwise_sync_pruned_rows_total").increment(n),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not prune the change feed; retried later")
                    }
                }
            }
        }
    }))
}

/// Applies a batch of feed rows (see the module's table).
async fn apply(state: &AppState, rows: &[Change]) -> Result<(), StoreError> {
    let p = Pending::of(rows, state.store.origin());
    if p.is_empty() {
        return Ok(());
    }
    // Authorisation first: a revoked key must stop working before anything else.
    for ws in &p.keys {
        state.forget_keys(*ws);
    }
    let swarm = state.workflows.swarm();
    for (ws, agents) in &p.agents {
        for id in agents {
            state.forget_agent(*ws, id);
            match state.store.agent(*ws, id).await? {
                Some(agent) => {
                    if let Err(e) = swarm.start_agent(*ws, &agent) {
                        tracing::warn!(workspace = %ws, agent = %id, error = %e, "agent registered by another node not started here; fix its config with PATCH or re-register it");
                    }
                }
                None => swarm.remove_agent(*ws, id),
            }
        }
    }
    for ws in &p.revised {
        state.engine.note_verdicts_revised(*ws);
    }
    for (ws, agents) in &p.trust {
        state
            .engine
            .refresh_trust(*ws, agents.iter().cloned().collect())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    }
    for ws in &p.patterns {
        state.patterns.invalidate(*ws).await;
        swarmwise_actors::learner::agreement::restore_workspace(
            state.store.as_ref(),
            &state.engine,
            *ws,
        )
        .await;
    }
    for ws in &p.admission {
        state.engine.admission().watch_workspace(*ws);
    }
    let now = Utc::now();
    for row in rows.iter().filter(|r| r.origin != state.store.origin()) {
        let delay = (now - row.at).to_std().unwrap_or_default();
        metrics::histogram!("swarmwise_sync_delay_seconds").record(delay.as_secs_f64());
    }
    for (kind, n) in &p.counts {
        metrics::counter!("swarmwise_sync_changes_applied_total", "kind" => kind.as_str())
            .increment(*n);
    }
    Ok(())
}

/// Rebuilds everything this node derives from the database, as at start,
/// and returns the feed position to continue from (read first, so nothing
/// committed during the rebuild is missed).
async fn full_refresh(state: &AppState) -> anyhow::Result<FeedPosition> {
    let head = state.store.feed_head().await?;
    tracing::warn!("rebuilding trust, caches and agents from the database (this node fell behind the change feed)");
    metrics::counter!("swarmwise_sync_full_refreshes_total").increment(1);
    state.key_cache.retain(|_, _| false);
    state.agents.retain(|_, _| false);
    state.patterns.clear_local();
    state.engine.recompute_trust(None).await?;
    let swarm = state.workflows.swarm();
    for ws in state.store.workspace_ids().await? {
        let registered = state.store.agents(ws).await?;
        let ids: BTreeSet<&AgentId> = registered.iter().map(|a| &a.id).collect();
        for id in swarm.running(ws) {
            if !ids.contains(&id) {
                swarm.remove_agent(ws, &id);
            }
        }
        for agent in &registered {
            if let Err(e) = swarm.start_agent(ws, agent) {
                tracing::warn!(workspace = %ws, agent = %agent.id, error = %e, "agent not started; fix its config with PATCH or re-register it");
            }
        }
        state.patterns.invalidate(ws).await;
    }
    swarmwise_actors::learner::agreement::restore(state.store.as_ref(), &state.engine).await;
    state.engine.admission().check_all().await?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(ws: WorkspaceId, origin: &str, kind: Option<ChangeKind>, agents: &[&str]) -> Change {
        Change {
            position: FeedPosition::default(),
            workspace: ws,
            origin: origin.into(),
            kind,
            agents: agents
                .iter()
                .map(|a| AgentId::parse("agent", a).unwrap())
                .collect(),
            at: Utc::now(),
        }
    }

    #[test]
    fn own_and_unknown_rows_are_skipped_and_the_rest_merged_per_workspace() {
        let (x, y) = (
            WorkspaceId(uuid::Uuid::now_v7()),
            WorkspaceId(uuid::Uuid::now_v7()),
        );
        let rows = [
            row(x, "me", Some(ChangeKind::Keys), &[]),
            row(x, "other", Some(ChangeKind::Outcomes), &["a", "b"]),
            row(x, "other", Some(ChangeKind::Verdicts), &["a"]),
            row(y, "cli", Some(ChangeKind::Failures), &["a"]),
            row(y, "cli", Some(ChangeKind::Agents), &["c"]),
            row(y, "cli", None, &["z"]),
            row(y, "other", Some(ChangeKind::Patterns), &[]),
        ];
        let p = Pending::of(&rows, "me");
        let ids = |v: &[&str]| -> BTreeSet<AgentId> {
            v.iter()
                .map(|a| AgentId::parse("agent", a).unwrap())
                .collect()
        };
        assert!(p.keys.is_empty(), "this node's own row is skipped");
        assert_eq!(p.trust.get(&x), Some(&ids(&["a", "b"])));
        assert_eq!(p.trust.get(&y), Some(&ids(&["a"])));
        assert_eq!(p.revised, BTreeSet::from([x]));
        assert_eq!(p.agents.get(&y), Some(&ids(&["c"])));
        assert!(!p.agents.contains_key(&x));
        assert_eq!(p.patterns, BTreeSet::from([y]));
        assert_eq!(
            p.counts.values().sum::<u64>(),
            5,
            "unknown kinds are not counted"
        );
        assert!(Pending::of(&rows[..1], "me").is_empty());
    }
}
