//! Scheduled jobs across nodes (issue 13, item 1): one leader at a time
//! holds the lease; every occurrence of a cluster-wide job is claimed once
//! (keyed by the cron occurrence's time, so skewed clocks agree) and run
//! by the claimer only; a killed leader is replaced after its lease; a
//! starting node leaves a cycle another node is running alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use swarmwise_actors::cluster::NodeId;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::learner::actor::{Learner, LearnerConfig};
use swarmwise_actors::learner::CycleReport;
use swarmwise_actors::ports::Store;
use swarmwise_actors::scheduler::{
    Scheduler, SchedulerConfig, SchedulerHandle, SchedulerParts, LEASE,
};
use swarmwise_actors::supervisor::RestartPolicy;

use crate::both_backends;
use crate::helpers::{poll_until, spawn_app_with, Backend, TestApp};

/// Every second a learning cycle; trust recompute never (1 January, 00:00).
fn every_second() -> SchedulerConfig {
    SchedulerConfig {
        enabled: true,
        learning_cycle: "* * * * * *".into(),
        trust_recompute: "0 0 0 1 1 *".into(),
        leader_lease_secs: 2,
    }
}

fn scheduler(app: &TestApp, learner: &Learner, node: &str, skew_ms: i64) -> SchedulerHandle {
    let store: Arc<dyn Store> = app.store.clone();
    Scheduler::start(
        SchedulerParts {
            store,
            engine: app.engine.clone(),
            learner: learner.clone(),
            node: NodeId::parse(node).unwrap(),
            retention: None,
            clock_offset: TimeDelta::milliseconds(skew_ms),
        },
        &every_second(),
    )
    .unwrap()
}

async fn claims(app: &TestApp, since: DateTime<Utc>) -> Vec<(DateTime<Utc>, String, i64)> {
    app.store
        .occurrence_claims("learning_cycle", since)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.scheduled_at, c.node, c.fencing_token))
        .collect()
}

/// Three schedulers on one database, clocks 10 ms ahead and 7 ms behind,
/// every-second cron; the leader is killed half-way: each occurrence is
/// claimed once and run by its claimer alone, before, during and after the
/// hand-over, and the claims are the leaders' in turn.
async fn each_occurrence_runs_once_across_skewed_nodes(backend: Backend) {
    // No workspace: the job lists none and starts no cycle, so no cycle is
    // still holding a connection when the test's runtime ends.
    let app = spawn_app_with(backend, |s| s.scheduler.enabled = false).await;
    let store: Arc<dyn Store> = app.store.clone();
    let learner = Learner::start(
        store,
        app.engine.clone(),
        LearnerConfig::default(),
        RestartPolicy::default(),
    );
    let since = Utc::now();
    let nodes = [
        scheduler(&app, &learner, "node-a", 0),
        scheduler(&app, &learner, "node-b", 10),
        scheduler(&app, &learner, "node-c", -7),
    ];
    let first = poll_until("three claimed occurrences", || async {
        let c = claims(&app, since).await;
        if c.len() >= 3 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    // Kill the leader mid-way: a node with another clock takes over, and
    // the occurrences around the hand-over still run once.
    let leader = first.last().unwrap().1.clone();
    let killed = ["node-a", "node-b", "node-c"]
        .iter()
        .position(|n| *n == leader)
        .unwrap();
    nodes[killed].kill().await;
    poll_until("three more occurrences claimed by another node", || async {
        let c = claims(&app, since).await;
        let by_others = c.iter().filter(|c| c.1 != leader).count();
        if by_others >= 3 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    for n in &nodes {
        n.kill().await;
    }
    // Every run, on whichever node, is one claimed occurrence: no
    // occurrence ran twice, none ran unclaimed.
    let mut runs: BTreeMap<DateTime<Utc>, Vec<usize>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for (job, at) in n.ran() {
            assert_eq!(job, "learning_cycle");
            runs.entry(at).or_default().push(i);
        }
    }
    let claimed = claims(&app, since).await;
    for (at, by) in &runs {
        assert_eq!(by.len(), 1, "occurrence {at} ran on nodes {by:?}");
    }
    for at in runs.keys() {
        assert!(
            claimed.iter().any(|c| c.0 == *at),
            "occurrence {at} ran unclaimed: {claimed:?}"
        );
    }
    // A claim without a run: its node was killed between claiming the
    // occurrence and recording that it ran, so it is that node's last claim
    // (at most one per node).
    for (at, node, _) in claimed.iter().filter(|c| !runs.contains_key(&c.0)) {
        let last = claimed.iter().filter(|c| c.1 == *node).map(|c| c.0).max();
        assert_eq!(
            last,
            Some(*at),
            "occurrence {at} claimed by {node} never ran and is not its last claim: runs {runs:?}, claims {claimed:?}"
        );
    }
    // Occurrence times are whole seconds of the cron, not any node's clock.
    assert!(claimed.iter().all(|c| c.0.timestamp_subsec_micros() == 0));
    // One leader at a time: the claims form two runs, the first leader's
    // under its token, then the successor's under a higher one.
    let tokens: Vec<(String, i64)> = claimed.iter().map(|c| (c.1.clone(), c.2)).collect();
    let switch = tokens.iter().position(|t| t.0 != leader).unwrap();
    assert!(
        tokens[..switch].iter().all(|t| *t == tokens[0]),
        "{tokens:?}"
    );
    assert!(
        tokens[switch..].iter().all(|t| *t == tokens[switch]),
        "{tokens:?}"
    );
    assert!(tokens[switch].1 > tokens[0].1, "{tokens:?}");
}
both_backends!(each_occurrence_runs_once_across_skewed_nodes);

/// The leader is killed (no release): another node takes the lease once
/// it expires, with a higher fencing token, and goes on claiming; the old
/// token can claim nothing any more.
async fn a_killed_leader_is_replaced_after_its_lease(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.scheduler.enabled = false).await;
    let store: Arc<dyn Store> = app.store.clone();
    let learner = Learner::start(
        store,
        app.engine.clone(),
        LearnerConfig::default(),
        RestartPolicy::default(),
    );
    let a = scheduler(&app, &learner, "node-a", 0);
    poll_until("node-a leads", || async {
        if a.is_leader() {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await;
    let b = scheduler(&app, &learner, "node-b", 3);
    let first = app.store.lease(LEASE).await.unwrap().unwrap();
    assert_eq!(first.holder, "node-a");
    assert!(!b.is_leader());
    a.kill().await;
    let killed_at = Utc::now();
    poll_until("node-b takes over and runs an occurrence", || async {
        let c = claims(&app, killed_at).await;
        match c.iter().find(|c| c.1 == "node-b") {
            Some(_) if b.is_leader() => Ok(()),
            _ => Err(format!("claims {c:?}, b leads: {}", b.is_leader())),
        }
    })
    .await;
    let second = app.store.lease(LEASE).await.unwrap().unwrap();
    assert_eq!(second.holder, "node-b");
    assert!(
        second.fencing_token > first.fencing_token,
        "{first:?} {second:?}"
    );
    // The deposed leader's token is refused, even for a fresh occurrence.
    let next = Utc::now() + TimeDelta::days(1);
    assert!(!app
        .store
        .claim_occurrence(LEASE, "learning_cycle", next, "node-a", first.fencing_token)
        .await
        .unwrap());
    // A clean shutdown hands over at once: the lease is expired, not held.
    b.shutdown().await;
    let released = app.store.lease(LEASE).await.unwrap().unwrap();
    assert!(released.expires_at <= Utc::now() + TimeDelta::seconds(1));
    assert!(app
        .store
        .acquire_lease(LEASE, "node-c", 2)
        .await
        .unwrap()
        .is_some_and(|l| l.fencing_token == second.fencing_token + 1));
}
both_backends!(a_killed_leader_is_replaced_after_its_lease);

/// A lease another node holds unexpired is not granted; its holder renews
/// it with the same token.
async fn the_lease_is_exclusive_and_renewed_in_place(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.scheduler.enabled = false).await;
    let a = app
        .store
        .acquire_lease(LEASE, "node-a", 30)
        .await
        .unwrap()
        .unwrap();
    assert!(app
        .store
        .acquire_lease(LEASE, "node-b", 30)
        .await
        .unwrap()
        .is_none());
    let again = app
        .store
        .acquire_lease(LEASE, "node-a", 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.fencing_token, a.fencing_token);
    assert!(again.expires_at >= a.expires_at);
    assert!(!app.store.release_lease(LEASE, "node-b").await.unwrap());
    let at = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
    assert!(app
        .store
        .claim_occurrence(LEASE, "retention", at, "node-a", a.fencing_token)
        .await
        .unwrap());
    assert!(
        !app.store
            .claim_occurrence(LEASE, "retention", at, "node-a", a.fencing_token)
            .await
            .unwrap(),
        "an occurrence is claimed once"
    );
    assert!(
        !app.store
            .claim_occurrence(
                LEASE,
                "retention",
                at + TimeDelta::seconds(1),
                "node-b",
                a.fencing_token
            )
            .await
            .unwrap(),
        "only the holder claims"
    );
    assert_eq!(
        app.store
            .prune_claims(Utc::now() + TimeDelta::seconds(5))
            .await
            .unwrap(),
        1
    );
}
both_backends!(the_lease_is_exclusive_and_renewed_in_place);

async fn cycle_status(app: &TestApp, key: &str, id: &str) -> serde_json::Value {
    let list = app.json(key, "/api/v1/learning/cycles").await;
    let items = list
        .as_array()
        .or_else(|| list["items"].as_array())
        .unwrap()
        .clone();
    items.into_iter().find(|c| c["id"] == id).unwrap()["status"].clone()
}

/// A cycle another live node is running (it holds the workspace's cycle
/// lock) stays `running` when a node starts; once the lock is gone, the
/// next start marks it interrupted.
async fn a_starting_node_spares_a_cycle_another_node_runs(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let (ws, k) = app.workspace("busy").await;
    let ws = WorkspaceId(ws.parse().unwrap());
    let cycle = CycleReport {
        id: uuid::Uuid::now_v7(),
        workspace_id: ws,
        status: "running".into(),
        reason: "api".into(),
        started_at: Utc::now(),
        finished_at: None,
        recommendations_processed: 0,
        patterns_discovered: 0,
        patterns_confirmed: 0,
        patterns_retired: 0,
        rules_updated: 0,
        model_accuracy: None,
        coverage: None,
        insights: json!({}),
        error: None,
    };
    app.store.insert_cycle(&cycle).await.unwrap();
    let id = cycle.id.to_string();
    if backend == Backend::Postgres {
        // "Another node" runs it: it holds the workspace's cycle lock.
        let lock = app.store.try_lock_cycle(ws).await.unwrap().unwrap();
        let app = app.restart(|_| {}).await;
        assert_eq!(
            cycle_status(&app, &k, &id).await,
            "running",
            "a live node's cycle was marked"
        );
        lock.release().await;
        let app = app.restart(|_| {}).await;
        assert_eq!(cycle_status(&app, &k, &id).await, "interrupted");
    } else {
        // One SQLite file serves one node: every running cycle is a leftover.
        let app = app.restart(|_| {}).await;
        assert_eq!(cycle_status(&app, &k, &id).await, "interrupted");
    }
}
both_backends!(a_starting_node_spares_a_cycle_another_node_runs);
