//! One conformance suite, written once, run against both stores; plus the
//! proof that PostgreSQL's row-level security alone hides other workspaces.

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use serde_json::json;
use swarmwise::auth::generate_key;
use swarmwise::config::DatabaseSettings;
use swarmwise::store::{connect, AdminStore, PgStore};
use swarmwise_actors::domain::{
    to_micros, Agent, AgentFailure, AgentId, FailureKind, Recommendation, RecommendationFilter,
    RecommendationStatus, Verdict, VerdictUpdate, WorkspaceId,
};
use swarmwise_actors::ports::{StoreError, TrustRow};
use swarmwise_actors::trust::{TrustParams, WorkspaceTrust};
use uuid::Uuid;

use crate::both_backends;
use crate::helpers::{fresh_database, Backend};

async fn open(backend: Backend) -> (Arc<dyn AdminStore>, Option<tempfile::TempDir>, String) {
    let (url, dir) = fresh_database(backend).await;
    let settings = DatabaseSettings {
        url: url.clone(),
        ..DatabaseSettings::default()
    };
    (connect(&settings).await.expect("connect"), dir, url)
}

fn agent(id: &str) -> Agent {
    Agent {
        id: AgentId::parse("id", id).unwrap(),
        name: format!("Agent {id}"),
        kind: "external".into(),
        config: json!({"k": 1}),
        enabled: true,
        created_at: to_micros(Utc::now()),
        quarantine: None,
        override_grace: None,
    }
}

fn rec(
    ws: WorkspaceId,
    agent: &str,
    workflow: &str,
    rtype: &str,
    confidence: f64,
) -> Recommendation {
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: ws,
        agent_id: AgentId::parse("a", agent).unwrap(),
        agent_name: format!("Agent {agent}"),
        correlation_id: "corr".into(),
        workflow_id: workflow.into(),
        recommendation_type: rtype.into(),
        content: json!({"decision": "go", "n": [1, 2]}),
        confidence,
        reasoning: Some("because".into()),
        latency_ms: Some(42),
        deadline_ms: Some(60_000),
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now()),
        evaluated_at: None,
        usage: Default::default(),
    }
}

async fn new_workspace(store: &Arc<dyn AdminStore>, name: &str) -> (WorkspaceId, String) {
    let ws = WorkspaceId(Uuid::now_v7());
    let (key, stored) = generate_key("swk_");
    store
        .create_workspace(ws, name, &stored, to_micros(Utc::now()))
        .await
        .unwrap();
    (ws, key)
}

async fn conformance(backend: Backend) {
    let (store, _dir, _) = open(backend).await;
    store.ready().await.expect("ready after migrations");
    let (a, key_a) = new_workspace(&store, "A").await;
    let (b, _) = new_workspace(&store, "B").await;

    // Keys resolve to their workspace only.
    let found = store
        .workspace_for_key(&swarmwise::auth::hash_key(&key_a))
        .await
        .unwrap();
    assert_eq!(found, Some(a));
    assert_eq!(store.workspace_for_key("nope").await.unwrap(), None);
    let ids = store.workspace_ids().await.unwrap();
    assert!(ids.contains(&a) && ids.contains(&b));

    // Agents: create, conflict, list, enable/disable, isolation.
    store.create_agent(a, &agent("x")).await.unwrap();
    store.create_agent(a, &agent("y")).await.unwrap();
    assert!(matches!(
        store.create_agent(a, &agent("x")).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .create_agent(b, &agent("x"))
        .await
        .expect("same id in another workspace is fine");
    let listed = store.agents(a).await.unwrap();
    assert_eq!(
        listed.iter().map(|g| g.id.as_str()).collect::<Vec<_>>(),
        ["x", "y"]
    );
    assert_eq!(listed[0].config, json!({"k": 1}));
    let off = store
        .set_agent_enabled(a, &AgentId::parse("i", "y").unwrap(), false)
        .await
        .unwrap()
        .unwrap();
    assert!(!off.enabled);
    assert!(store
        .agent(b, &AgentId::parse("i", "y").unwrap())
        .await
        .unwrap()
        .is_none());
    assert!(store
        .set_agent_enabled(b, &AgentId::parse("i", "y").unwrap(), false)
        .await
        .unwrap()
        .is_none());

    // Recommendations: a batch across workspaces, read back exactly.
    let mut recs = Vec::new();
    for i in 0..7 {
        let agent = if i % 2 == 0 { "x" } else { "y" };
        let rtype = if i < 4 { "strategy" } else { "risk" };
        recs.push(rec(a, agent, "wf-1", rtype, 0.1 * f64::from(i)));
    }
    let other = rec(b, "x", "wf-1", "strategy", 0.5);
    let mut all = recs.clone();
    all.push(other.clone());
    store.insert_recommendations(&all).await.unwrap();
    let got = store.recommendation(a, recs[3].id).await.unwrap().unwrap();
    assert_eq!(got, recs[3]);
    assert!(
        store.recommendation(b, recs[3].id).await.unwrap().is_none(),
        "B must not read A's row"
    );
    assert!(store.recommendation(a, other.id).await.unwrap().is_none());

    // Listing: newest first, filters, cursor.
    let page = |before: Option<Uuid>| RecommendationFilter {
        before,
        limit: 3,
        ..RecommendationFilter::default()
    };
    let p1 = store.list_recommendations(a, &page(None)).await.unwrap();
    assert_eq!(
        p1.iter().map(|r| r.id).collect::<Vec<_>>(),
        [recs[6].id, recs[5].id, recs[4].id]
    );
    let p2 = store
        .list_recommendations(a, &page(Some(p1[2].id)))
        .await
        .unwrap();
    assert_eq!(
        p2.iter().map(|r| r.id).collect::<Vec<_>>(),
        [recs[3].id, recs[2].id, recs[1].id]
    );
    let only_y = RecommendationFilter {
        agent_id: Some(AgentId::parse("a", "y").unwrap()),
        recommendation_type: Some("strategy".into()),
        limit: 10,
        ..RecommendationFilter::default()
    };
    let ys = store.list_recommendations(a, &only_y).await.unwrap();
    assert_eq!(
        ys.iter().map(|r| r.id).collect::<Vec<_>>(),
        [recs[3].id, recs[1].id]
    );
    assert_eq!(
        store
            .workflow_recommendations(a, "wf-1")
            .await
            .unwrap()
            .len(),
        7
    );
    assert_eq!(
        store
            .workflow_recommendations(b, "wf-1")
            .await
            .unwrap()
            .len(),
        1
    );

    // Verdicts and outcome samples in fold order.
    let t0 = to_micros(Utc::now());
    let updates: Vec<VerdictUpdate> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| VerdictUpdate {
            id: r.id,
            verdict: [Verdict::Approved, Verdict::Partial, Verdict::Rejected][i % 3],
            quality: 10.0 * i as f64,
            feedback: (i == 0).then(|| "nice".to_owned()),
            evaluated_at: t0 + TimeDelta::microseconds(7 - i as i64),
        })
        .collect();
    store.apply_verdicts(a, &updates).await.unwrap();
    // B applying verdicts to A's ids changes nothing.
    store
        .apply_verdicts(
            b,
            &[VerdictUpdate {
                verdict: Verdict::Rejected,
                ..updates[0].clone()
            }],
        )
        .await
        .unwrap();
    let first = store.recommendation(a, recs[0].id).await.unwrap().unwrap();
    assert_eq!(first.status, RecommendationStatus::Approved);
    assert_eq!(first.feedback.as_deref(), Some("nice"));
    assert_eq!(first.evaluated_at, Some(updates[0].evaluated_at));
    let samples = store.outcome_samples(a, None).await.unwrap();
    assert_eq!(samples.len(), 7);
    let keys: Vec<_> = samples.iter().map(|s| s.key()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "samples come in fold order");
    assert_eq!(samples[0].id, recs[6].id, "latest id was evaluated first");
    let xs = store
        .outcome_samples(a, Some(&AgentId::parse("a", "x").unwrap()))
        .await
        .unwrap();
    assert_eq!(xs.len(), 4);
    assert!(store.outcome_samples(b, None).await.unwrap().is_empty());
    let counts = store.status_counts(a).await.unwrap();
    let total: u64 = counts.iter().map(|c| c.2).sum();
    assert_eq!(total, 7);
    assert!(counts.iter().all(|c| c.1 != RecommendationStatus::Pending));

    // Failed executions: stored in fold order, per workspace, per agent.
    let t0 = to_micros(Utc::now());
    let failures: Vec<AgentFailure> = [
        ("x", FailureKind::Timeout, 2),
        ("y", FailureKind::Error, 0),
        ("x", FailureKind::Invalid, 1),
    ]
    .iter()
    .map(|(agent, kind, dt)| AgentFailure {
        id: uuid::Uuid::now_v7(),
        workspace_id: a,
        agent_id: AgentId::parse("a", agent).unwrap(),
        agent_name: format!("Agent {agent}"),
        workflow_id: "wf-1".into(),
        recommendation_type: "strategy".into(),
        kind: *kind,
        message: "it broke".into(),
        occurred_at: t0 + TimeDelta::milliseconds(*dt),
    })
    .collect();
    store.insert_failures(a, &failures).await.unwrap();
    let back = store.agent_failures(a, None).await.unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(back[0], failures[1], "fold order: by time");
    assert_eq!(back[2], failures[0]);
    let xs = store
        .agent_failures(a, Some(&AgentId::parse("a", "x").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        xs.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [FailureKind::Invalid, FailureKind::Timeout]
    );
    assert!(store.agent_failures(b, None).await.unwrap().is_empty());

    // Trust rows: upsert, history, idempotent initialisation.
    let params = TrustParams::default();
    let snap = WorkspaceTrust::from_samples(samples, &params).snapshot(&params);
    let x = AgentId::parse("a", "x").unwrap();
    let rows = vec![TrustRow {
        agent_id: x.clone(),
        recommendation_type: None,
        card: snap.agents[&x].overall.clone(),
    }];
    store
        .save_trust(a, &rows, to_micros(Utc::now()))
        .await
        .unwrap();
    store
        .save_trust(a, &rows, to_micros(Utc::now()))
        .await
        .unwrap();
    assert_eq!(store.trust_history(a, &x, 10).await.unwrap().len(), 2);
    assert!(store.trust_history(b, &x, 10).await.unwrap().is_empty());
    let y_row = TrustRow {
        agent_id: AgentId::parse("a", "y").unwrap(),
        recommendation_type: None,
        card: snap.default_card.clone(),
    };
    let both = vec![rows[0].clone(), y_row];
    assert_eq!(
        store.initialize_trust(a, &both, Utc::now()).await.unwrap(),
        1,
        "only y was missing"
    );
    assert_eq!(
        store.initialize_trust(a, &both, Utc::now()).await.unwrap(),
        0,
        "idempotent"
    );
}
both_backends!(conformance);

/// Row-level security on its own: with the app role and the workspace set
/// per transaction, a query without any WHERE clause sees only that
/// workspace's rows, and cannot write rows of another.
#[actix_web::test]
async fn postgres_rls_hides_other_workspaces() {
    if !crate::helpers::postgres_available().await {
        crate::helpers::skipped("store::postgres_rls_hides_other_workspaces");
        return;
    }
    let (url, _) = fresh_database(Backend::Postgres).await;
    let pg = PgStore::connect(&DatabaseSettings {
        url,
        ..DatabaseSettings::default()
    })
    .await
    .unwrap();
    let store: Arc<dyn AdminStore> = Arc::new(pg.clone());
    let (a, _) = new_workspace(&store, "A").await;
    let (b, _) = new_workspace(&store, "B").await;
    store
        .insert_recommendations(&[
            rec(a, "x", "w", "t", 0.5),
            rec(a, "x", "w", "t", 0.5),
            rec(b, "x", "w", "t", 0.5),
        ])
        .await
        .unwrap();

    let pool = pg.pool();
    let (superuser, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        !superuser && !bypass,
        "the service role must not bypass RLS"
    );

    async fn count_as(pool: &sqlx::PgPool, ws: Option<WorkspaceId>, table: &str) -> i64 {
        let mut tx = pool.begin().await.unwrap();
        if let Some(ws) = ws {
            sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
                .bind(ws.0.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        n
    }
    assert_eq!(count_as(pool, Some(a), "agent_recommendations").await, 2);
    assert_eq!(count_as(pool, Some(b), "agent_recommendations").await, 1);
    assert_eq!(
        count_as(pool, None, "agent_recommendations").await,
        0,
        "no workspace set: nothing visible"
    );
    // The rollup (one row per agent and status) is held to the same policy.
    assert_eq!(count_as(pool, Some(a), "recommendation_rollup").await, 1);
    assert_eq!(count_as(pool, Some(b), "recommendation_rollup").await, 1);
    assert_eq!(count_as(pool, None, "recommendation_rollup").await, 0);
    assert_eq!(count_as(pool, Some(a), "workspaces").await, 1);
    assert_eq!(count_as(pool, Some(a), "api_keys").await, 1);

    // Writing A's row while set to B is refused by the policy's WITH CHECK.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
        .bind(b.0.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = sqlx::query(
        "INSERT INTO agents (workspace_id, id, name, kind) VALUES ($1, 'evil', 'Evil', 'external')",
    )
    .bind(a.0)
    .execute(&mut *tx)
    .await
    .expect_err("RLS must refuse a row of another workspace");
    assert!(err.to_string().contains("row-level security"), "{err}");
    drop(tx);
    // And updates through B's session cannot touch A's rows.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('app.workspace_id', $1, true)")
        .bind(b.0.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let changed = sqlx::query("UPDATE agent_recommendations SET outcome_status = 'rejected'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(changed.rows_affected(), 1, "only B's own row");
    // A's rows read back one by one: still pending. (Outcome samples would
    // not do: they need `evaluated_at`, which the UPDATE above leaves null,
    // so they stay empty even if it had reached A's rows.)
    let listed = store
        .list_recommendations(
            a,
            &RecommendationFilter {
                limit: 10,
                ..RecommendationFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|r| r.status == RecommendationStatus::Pending),
        "A's rows untouched: {:?}",
        listed.iter().map(|r| r.status).collect::<Vec<_>>()
    );
}

fn alert(ws: Option<WorkspaceId>, rule: &str, subject: &str) -> swarmwise_actors::alerts::Alert {
    use swarmwise_actors::alerts::{Alert, AlertStatus, Severity};
    let now = to_micros(Utc::now());
    Alert {
        id: Uuid::now_v7(),
        workspace_id: ws,
        rule: rule.into(),
        severity: Severity::Critical,
        subject: subject.into(),
        fingerprint: Alert::fingerprint_of(ws, rule, subject),
        status: AlertStatus::Firing,
        value: 0.2,
        threshold: 0.3,
        summary: format!("{rule} {subject}"),
        action: Some("quarantine".into()),
        started_at: now,
        fired_at: now,
        resolved_at: None,
        acked_at: None,
        acked_by: None,
    }
}

/// The alert store on both backends: one firing alert per fingerprint (the
/// second insert returns the first), resolve once, keyset pages with
/// filters, acknowledgements, silences, and scopes: a workspace sees only
/// its own rows, the admin scope every row including node-level ones.
async fn alert_conformance(backend: Backend) {
    use swarmwise_actors::alerts::{AlertStatus, Severity, Silence};
    use swarmwise_actors::ports::{AlertFilter, AlertInsert, AlertScope};
    let (store, _dir, _) = open(backend).await;
    let (a, _) = new_workspace(&store, "A").await;
    let (b, _) = new_workspace(&store, "B").await;
    let first = alert(Some(a), "agent_trust_low", "x");
    assert_eq!(
        store.insert_alert(&first).await.unwrap(),
        AlertInsert::Inserted
    );
    // Another node raises the same fingerprint: refused, the first returned.
    let dup = alert(Some(a), "agent_trust_low", "x");
    match store.insert_alert(&dup).await.unwrap() {
        AlertInsert::AlreadyFiring(existing) => assert_eq!(*existing, first),
        other => panic!("{other:?}"),
    }
    let node = alert(None, "database_errors", "");
    store.insert_alert(&node).await.unwrap();
    let other = alert(Some(b), "agent_trust_low", "x");
    store.insert_alert(&other).await.unwrap();
    let mut firing = store.firing_alerts().await.unwrap();
    firing.sort_by_key(|x| x.id);
    assert_eq!(firing, vec![first.clone(), node.clone(), other.clone()]);

    // Scopes: A sees its alert only; the admin sees all three.
    let page = |status: Option<AlertStatus>, limit: u32| AlertFilter {
        status,
        limit,
        ..AlertFilter::default()
    };
    let seen_a = store
        .list_alerts(AlertScope::Workspace(a), &page(None, 10))
        .await
        .unwrap();
    assert_eq!(seen_a, vec![first.clone()]);
    assert_eq!(
        store
            .list_alerts(AlertScope::Admin, &page(None, 10))
            .await
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        store
            .alert(AlertScope::Workspace(b), first.id)
            .await
            .unwrap(),
        None,
        "B cannot read A's alert by id"
    );
    assert_eq!(
        store
            .alert(AlertScope::Workspace(a), node.id)
            .await
            .unwrap(),
        None,
        "a workspace cannot read node-level alerts"
    );
    assert_eq!(
        store.alert(AlertScope::Admin, node.id).await.unwrap(),
        Some(node.clone())
    );
    // Ack: B cannot; A can, and the first ack is kept.
    let at = to_micros(Utc::now());
    assert_eq!(
        store
            .ack_alert(AlertScope::Workspace(b), first.id, "workspace:b", at)
            .await
            .unwrap(),
        None
    );
    let acked = store
        .ack_alert(AlertScope::Workspace(a), first.id, "workspace:a", at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (acked.acked_at, acked.acked_by.as_deref()),
        (Some(at), Some("workspace:a"))
    );
    let again = store
        .ack_alert(
            AlertScope::Admin,
            first.id,
            "admin",
            at + TimeDelta::seconds(5),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.acked_by.as_deref(), Some("workspace:a"));

    // Resolve once; a second node's resolve changes nothing; then a new
    // alert for the fingerprint may fire.
    let mut done = acked.clone();
    done.status = AlertStatus::Resolved;
    done.resolved_at = Some(to_micros(Utc::now()));
    done.value = 0.45;
    assert!(store.resolve_alert(&done).await.unwrap());
    assert!(!store.resolve_alert(&done).await.unwrap());
    let read = store
        .alert(AlertScope::Workspace(a), first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, done);
    let second = alert(Some(a), "agent_trust_low", "x");
    assert_eq!(
        store.insert_alert(&second).await.unwrap(),
        AlertInsert::Inserted
    );

    // Filters and keyset pages, newest first.
    for i in 0..5 {
        let mut x = alert(Some(a), "agent_approval_low", &format!("s{i}"));
        x.severity = Severity::Warning;
        store.insert_alert(&x).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let got = store
            .list_alerts(
                AlertScope::Workspace(a),
                &AlertFilter {
                    severity: Some(Severity::Warning),
                    before,
                    limit: 2,
                    ..AlertFilter::default()
                },
            )
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        before = got.last().map(|x| x.id);
        seen.extend(got);
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let by_rule = store
        .list_alerts(
            AlertScope::Workspace(a),
            &AlertFilter {
                rule: Some("agent_trust_low".into()),
                subject: Some("x".into()),
                limit: 10,
                ..AlertFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        by_rule.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![second.id, first.id]
    );
    let resolved = store
        .list_alerts(
            AlertScope::Workspace(a),
            &page(Some(AlertStatus::Resolved), 10),
        )
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1);
    let only_b = store
        .list_alerts(
            AlertScope::Admin,
            &AlertFilter {
                workspace: Some(b),
                limit: 10,
                ..AlertFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(only_b, vec![other.clone()]);

    // Silences: scoped like alerts; expired ones only when asked.
    let now = to_micros(Utc::now());
    let silence = |ws: Option<WorkspaceId>, ends: TimeDelta| Silence {
        id: Uuid::now_v7(),
        workspace_id: ws,
        rule: Some("agent_trust_low".into()),
        subject: None,
        severity: Some(Severity::Critical),
        starts_at: now - TimeDelta::hours(2),
        ends_at: now + ends,
        created_by: "workspace:x".into(),
        comment: "maintenance".into(),
    };
    let live = silence(Some(a), TimeDelta::hours(1));
    let ended = silence(Some(a), TimeDelta::hours(-1));
    let theirs = silence(Some(b), TimeDelta::hours(1));
    let admin = silence(None, TimeDelta::hours(1));
    for s in [&live, &ended, &theirs, &admin] {
        store.insert_silence(s).await.unwrap();
    }
    assert_eq!(
        store
            .silences(AlertScope::Workspace(a), Some(now))
            .await
            .unwrap(),
        vec![live.clone()]
    );
    assert_eq!(
        store
            .silences(AlertScope::Workspace(a), None)
            .await
            .unwrap(),
        vec![ended.clone(), live.clone()]
    );
    assert_eq!(
        store
            .silences(AlertScope::Admin, Some(now))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(live.matches(&second, now));
    assert!(
        !live.matches(&other, now),
        "A's silence never matches B's alert"
    );
    assert!(!store
        .delete_silence(AlertScope::Workspace(b), live.id)
        .await
        .unwrap());
    assert!(store
        .delete_silence(AlertScope::Workspace(a), live.id)
        .await
        .unwrap());
    assert!(!store
        .delete_silence(AlertScope::Workspace(a), live.id)
        .await
        .unwrap());

    // Retention deletes resolved alerts only.
    let purged = store
        .purge_alerts(Utc::now() + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(store.firing_alerts().await.unwrap().len(), 8);
}

both_backends!(alert_conformance);

/// Admission rows (`agent_quarantine`): compare-and-set on the version, the
/// audit entry in the same transaction, the operator's switch, refusal of a
/// disabled or unknown agent, isolation between workspaces, and removal
/// with the agent.
async fn admission_conformance(backend: Backend) {
    use swarmwise::store::AuditFilter;
    use swarmwise_actors::admission::{
        Admission, AdmissionChange, AuditNote, ChangeOutcome, OverrideGrace, Quarantine,
        QuarantineState,
    };
    let (store, _dir, _) = open(backend).await;
    let (a, _) = new_workspace(&store, "A").await;
    let (b, _) = new_workspace(&store, "B").await;
    store.create_agent(a, &agent("x")).await.unwrap();
    store.create_agent(a, &agent("y")).await.unwrap();
    store.create_agent(b, &agent("x")).await.unwrap();
    let x = AgentId::parse("id", "x").unwrap();
    let now = to_micros(Utc::now());
    let alert = Uuid::now_v7();
    let q = Quarantine {
        state: QuarantineState::Quarantined,
        reason: "trust 0.12 < 0.30 after 40 outcomes".into(),
        since: now,
        alert_id: alert,
        until: Some(now + TimeDelta::seconds(3600)),
        probations: 0,
        outcomes_at_start: 40,
        hold: false,
    };
    let note = |action: &'static str| {
        Some(AuditNote {
            actor: "alerter".into(),
            action,
            details: json!({"reason": "r", "alert_id": alert}),
            at: now,
        })
    };
    let change = |expected: Option<i64>, next: Option<Admission>| AdmissionChange {
        agent_id: x.clone(),
        expected_version: expected,
        next,
        set_enabled: None,
        require_enabled: true,
        audit: note("agent.quarantine"),
    };
    let audits = |ws: WorkspaceId| {
        let store = store.clone();
        async move {
            store
                .audit(&AuditFilter {
                    workspace_id: Some(ws),
                    action: None,
                    target: None,
                    before: None,
                    limit: 100,
                })
                .await
                .unwrap()
        }
    };
    assert!(store.admission_workspaces().await.unwrap().is_empty());

    // Quarantine A's x: applied, with its audit entry.
    let first = change(None, Some(Admission::Quarantine(q.clone())));
    assert_eq!(
        store.change_admission(a, &first).await.unwrap(),
        ChangeOutcome::Applied
    );
    let row = store.admission(a, &x).await.unwrap().expect("row");
    assert_eq!(row.version, 1);
    assert_eq!(row.admission, Admission::Quarantine(q.clone()));
    let got = store.agent(a, &x).await.unwrap().unwrap();
    assert_eq!(
        got.quarantine.as_ref(),
        Some(&q),
        "the agent row carries it"
    );
    assert!(got.enabled, "quarantine never flips the operator's switch");
    let listed = store.agents(a).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed[1].quarantine.is_none(), "y has none");
    let entries = audits(a).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "agent.quarantine");
    assert_eq!(entries[0].actor, "alerter");
    assert_eq!(entries[0].target, "x");
    assert_eq!(entries[0].details["alert_id"], alert.to_string());

    // The same decision again (no row expected) is stale: nothing written.
    assert_eq!(
        store.change_admission(a, &first).await.unwrap(),
        ChangeOutcome::Stale
    );
    assert_eq!(audits(a).await.len(), 1, "a refused change audits nothing");
    // Another workspace's x is untouched and invisible.
    assert!(store.admission(b, &x).await.unwrap().is_none());
    assert!(store
        .agent(b, &x)
        .await
        .unwrap()
        .unwrap()
        .quarantine
        .is_none());
    assert!(store.admissions(b).await.unwrap().is_empty());
    assert_eq!(store.admission_workspaces().await.unwrap(), vec![a]);

    // Probation at version 1 → version 2.
    let p = Quarantine {
        state: QuarantineState::Probation,
        until: None,
        ..q.clone()
    };
    let step = AdmissionChange {
        require_enabled: false,
        audit: note("agent.probation"),
        ..change(Some(1), Some(Admission::Quarantine(p.clone())))
    };
    assert_eq!(
        store.change_admission(a, &step).await.unwrap(),
        ChangeOutcome::Applied
    );
    let rows = store.admissions(a).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].version, &rows[0].admission),
        (2, &Admission::Quarantine(p))
    );

    // The operator re-enables: grace row and switch in one change.
    store.set_agent_enabled(a, &x, false).await.unwrap();
    let g = OverrideGrace {
        since: now,
        by: "admin".into(),
        outcomes_at_start: 45,
        until_outcomes: 65,
    };
    let over = AdmissionChange {
        set_enabled: Some(true),
        require_enabled: false,
        audit: note("agent.readmit"),
        ..change(Some(2), Some(Admission::Grace(g.clone())))
    };
    assert_eq!(
        store.change_admission(a, &over).await.unwrap(),
        ChangeOutcome::Applied
    );
    let got = store.agent(a, &x).await.unwrap().unwrap();
    assert!(got.enabled);
    assert!(got.quarantine.is_none());
    assert_eq!(got.override_grace, Some(g));

    // A disabled agent is not quarantined (operator hold); an unknown one is not found.
    store.set_agent_enabled(a, &x, false).await.unwrap();
    assert_eq!(
        store
            .change_admission(a, &change(Some(3), None))
            .await
            .unwrap(),
        ChangeOutcome::Disabled
    );
    let ghost = AdmissionChange {
        agent_id: AgentId::parse("id", "ghost").unwrap(),
        ..change(None, Some(Admission::Quarantine(q.clone())))
    };
    assert_eq!(
        store.change_admission(a, &ghost).await.unwrap(),
        ChangeOutcome::NotFound
    );
    // B cannot reach A's row through its own x (versions are per workspace).
    assert_eq!(
        store
            .change_admission(
                b,
                &AdmissionChange {
                    require_enabled: false,
                    ..change(Some(3), None)
                }
            )
            .await
            .unwrap(),
        ChangeOutcome::Stale
    );
    assert!(store.admission(a, &x).await.unwrap().is_some());
    assert_eq!(audits(a).await.len(), 3);
    assert!(audits(b).await.is_empty());

    // Removing the agent removes its row.
    assert!(store.delete_agent(a, &x).await.unwrap());
    assert!(store.admission(a, &x).await.unwrap().is_none());
    assert!(store.admission_workspaces().await.unwrap().is_empty());
}

both_backends!(admission_conformance);

/// A running run of `ws` leased to "node-a" with `fencing` until `until`.
fn leased_run(
    ws: WorkspaceId,
    fencing: i64,
    until: chrono::DateTime<Utc>,
) -> swarmwise_actors::workflow::WorkflowRun {
    use swarmwise_actors::workflow::{RunLease, RunStatus, WorkflowRun};
    let now = to_micros(Utc::now());
    WorkflowRun {
        id: Uuid::now_v7(),
        workspace_id: ws,
        workflow: "w".into(),
        status: RunStatus::Running,
        priority: swarmwise_actors::domain::Priority::Normal,
        input: json!({"n": 1}),
        result: None,
        error: None,
        created_at: now,
        finished_at: None,
        progress: None,
        approval_deadline: None,
        lease: Some(RunLease {
            owner: "node-a".into(),
            fencing,
            until,
        }),
    }
}

/// Durable runs' leases: a claim after expiry bumps the fencing token, and
/// the old owner's writes (progress, pause, end) are refused from then on;
/// two claimers never get the same run; a paused run takes exactly one
/// decision; another workspace never sees the run.
async fn run_lease_conformance(backend: Backend) {
    use swarmwise_actors::workflow::RunStatus;
    let (store, _dir, _) = open(backend).await;
    let (ws, _) = new_workspace(&store, "leases").await;
    let (other, _) = new_workspace(&store, "other").await;
    let now = to_micros(Utc::now());
    let run = leased_run(ws, 1, now - TimeDelta::seconds(1));
    store.insert_run(&run).await.unwrap();
    assert!(
        store.run(other, run.id).await.unwrap().is_none(),
        "another workspace sees nothing"
    );
    // Nobody claims a live lease; an expired one is claimed once.
    let live = store
        .claim_runs(
            "node-b",
            now - TimeDelta::seconds(5),
            now + TimeDelta::seconds(10),
            None,
            10,
        )
        .await
        .unwrap();
    assert!(live.is_empty());
    let until = now + TimeDelta::seconds(10);
    let (b, c) = tokio::join!(
        store.claim_runs("node-b", now, until, None, 10),
        store.claim_runs("node-c", now, until, None, 10)
    );
    let (b, c) = (b.unwrap(), c.unwrap());
    assert_eq!(b.len() + c.len(), 1, "claimed exactly once: {b:?} {c:?}");
    let claimed = b.into_iter().chain(c).next().unwrap();
    let lease = claimed.lease.clone().unwrap();
    assert_eq!(lease.fencing, 2);
    // The old owner's writes are refused now.
    let mut zombie = run.clone();
    zombie.progress = Some(json!({"stages": []}));
    assert!(!store.save_progress(&zombie).await.unwrap());
    assert!(!store.pause_run(&zombie).await.unwrap());
    zombie.status = RunStatus::Succeeded;
    zombie.finished_at = Some(now);
    assert!(!store.finish_run(&zombie).await.unwrap());
    // The new owner's are accepted; renewal covers only its own runs.
    let mut owned = claimed.clone();
    owned.progress = Some(json!({"stages": [], "evaluated": false}));
    assert!(store.save_progress(&owned).await.unwrap());
    assert_eq!(
        store
            .renew_leases("node-a", until, &[run.id])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .renew_leases(&lease.owner, until, &[run.id])
            .await
            .unwrap(),
        1
    );
    // Paused: one decision wins, the second (same fencing token) is refused.
    owned.approval_deadline = Some(now - TimeDelta::seconds(1));
    assert!(store.pause_run(&owned).await.unwrap());
    let due = store.due_approvals(now, 10).await.unwrap();
    assert_eq!(due, vec![(ws, run.id)]);
    let paused = store.run(ws, run.id).await.unwrap().unwrap();
    assert_eq!(paused.status, RunStatus::AwaitingApproval);
    let mut decided = paused.clone();
    decided.status = RunStatus::Rejected;
    decided.lease = None;
    decided.finished_at = Some(now);
    let fencing = paused.lease.as_ref().unwrap().fencing;
    assert!(store.decide_run(&decided, fencing).await.unwrap());
    assert!(!store.decide_run(&decided, fencing).await.unwrap());
    let end = store.run(ws, run.id).await.unwrap().unwrap();
    assert_eq!(end.status, RunStatus::Rejected);
    assert!(store.due_approvals(now, 10).await.unwrap().is_empty());
}
both_backends!(run_lease_conformance);

/// A finished run's report repeats its progress's stages; the store keeps
/// them once (in `progress`) and every read gives the report back whole. A
/// report whose stages differ from the progress's (here: one stage fewer)
/// is stored as given.
async fn a_finished_runs_stages_are_stored_once(backend: Backend) {
    use swarmwise_actors::workflow::RunStatus;
    let (store, _dir, url) = open(backend).await;
    let (ws, _) = new_workspace(&store, "stages").await;
    let now = to_micros(Utc::now());
    let stages = json!([
        {"name": "s1", "agents": [{"agent_id": "a", "answer": {"content": {"d": 1}}}]},
        {"name": "s2", "agents": []}
    ]);
    let mut ends = Vec::new();
    for (name, report_stages) in [("same", stages.clone()), ("fewer", json!([stages[0]]))] {
        let mut run = leased_run(ws, 1, now + TimeDelta::seconds(30));
        store.insert_run(&run).await.unwrap();
        run.progress = Some(json!({"stages": stages, "evaluated": true}));
        run.result = Some(json!({"run_id": run.id, "status": "succeeded",
            "result": {"decision": name}, "stages": report_stages, "error": null}));
        run.status = RunStatus::Succeeded;
        run.finished_at = Some(now);
        assert!(store.finish_run(&run).await.unwrap());
        let read = store.run(ws, run.id).await.unwrap().unwrap();
        assert_eq!(
            read.result, run.result,
            "{name}: the report reads back whole"
        );
        assert_eq!(read.progress, run.progress, "{name}");
        ends.push((name, run.id));
    }
    // What the column holds (PostgreSQL: as the owner, past row-level
    // security).
    for (name, id) in ends {
        let stored: String = match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                sqlx::query_scalar("SELECT result FROM workflow_runs WHERE id = ?")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query_scalar("SELECT result::text FROM workflow_runs WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            stored.get("stages").is_some(),
            name == "fewer",
            "{name}: {stored}"
        );
    }
}
both_backends!(a_finished_runs_stages_are_stored_once);

/// A restarted node tells its previous process's runs (leftovers) from its
/// own: renewal names the runs this process executes, so a leftover is not
/// kept alive; a claim of its own node's runs takes only those whose lease
/// ends before this process's first lease could (`own_before`), and never
/// another node's live run.
async fn own_claims_take_leftovers_not_this_process_runs(backend: Backend) {
    let (store, _dir, _) = open(backend).await;
    let (ws, _) = new_workspace(&store, "own").await;
    let now = to_micros(Utc::now());
    let first_lease_end = now + TimeDelta::seconds(15);
    let leftover = leased_run(ws, 1, now + TimeDelta::seconds(5));
    let live = leased_run(ws, 1, first_lease_end);
    let mut elsewhere = leased_run(ws, 1, now + TimeDelta::seconds(5));
    if let Some(l) = elsewhere.lease.as_mut() {
        l.owner = "node-b".into();
    }
    for r in [&leftover, &live, &elsewhere] {
        store.insert_run(r).await.unwrap();
    }
    let until = now + TimeDelta::seconds(20);
    assert_eq!(
        store
            .renew_leases("node-a", until, &[live.id, elsewhere.id])
            .await
            .unwrap(),
        1,
        "only this process's run is renewed, never another node's"
    );
    let kept = store.run(ws, leftover.id).await.unwrap().unwrap();
    assert_eq!(kept.lease.unwrap().until, now + TimeDelta::seconds(5));
    let claimed = store
        .claim_runs("node-a", now, until, Some(first_lease_end), 10)
        .await
        .unwrap();
    let ids: Vec<Uuid> = claimed.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![leftover.id], "only the leftover is claimed");
    assert_eq!(claimed[0].lease.as_ref().unwrap().fencing, 2);
    // This process's run keeps its token: its end is accepted.
    let mut done = live.clone();
    done.status = swarmwise_actors::workflow::RunStatus::Succeeded;
    done.finished_at = Some(now);
    assert!(store.finish_run(&done).await.unwrap());
}
both_backends!(own_claims_take_leftovers_not_this_process_runs);

/// Group commit: `run_writes` and `apply_verdict_groups` write many
/// workspaces' rows in one transaction, answer per write as the single calls
/// do (fenced writes `false`), are all-or-none, and a group never touches
/// another workspace's rows even when it names their ids.
async fn group_commit_conformance(backend: Backend) {
    use swarmwise_actors::ports::{RunWrite, VerdictGroup};
    use swarmwise_actors::workflow::RunStatus;
    let (store, _dir, _) = open(backend).await;
    let (a, _) = new_workspace(&store, "group-a").await;
    let (b, _) = new_workspace(&store, "group-b").await;
    for ws in [a, b] {
        store.create_agent(ws, &agent("x")).await.unwrap();
    }
    let now = to_micros(Utc::now());
    let run = |ws: WorkspaceId, fencing: i64| leased_run(ws, fencing, now + TimeDelta::seconds(30));
    // Runs of two workspaces created, checkpointed and finished in one
    // transaction; a write with a stale fencing token answers false.
    let ra = run(a, 1);
    let rb = run(b, 1);
    let mut pa = ra.clone();
    pa.progress = Some(json!({"stages": [], "evaluated": false}));
    let mut stale = rb.clone();
    stale.lease.as_mut().unwrap().fencing = 7;
    stale.progress = Some(json!({"stages": ["zombie"]}));
    let mut fb = rb.clone();
    fb.status = RunStatus::Succeeded;
    fb.finished_at = Some(now);
    fb.result = Some(json!({"ok": true}));
    let applied = store
        .run_writes(&[
            RunWrite::Insert(Arc::new(ra.clone())),
            RunWrite::Insert(Arc::new(rb.clone())),
            RunWrite::Progress(Arc::new(pa.clone())),
            RunWrite::Progress(Arc::new(stale)),
            RunWrite::Finish(Arc::new(fb)),
        ])
        .await
        .unwrap();
    assert_eq!(applied, vec![true, true, true, false, true]);
    let got_a = store.run(a, ra.id).await.unwrap().unwrap();
    assert_eq!(got_a.progress, pa.progress);
    assert_eq!(got_a.status, RunStatus::Running);
    let got_b = store.run(b, rb.id).await.unwrap().unwrap();
    assert_eq!(got_b.status, RunStatus::Succeeded);
    assert_eq!(
        got_b.progress, None,
        "the fenced-out checkpoint wrote nothing"
    );
    assert!(store.run(b, ra.id).await.unwrap().is_none());
    // All or none: a duplicate insert fails the whole batch, so the new run
    // written before it in the same batch is not there either.
    let rc = run(a, 1);
    let err = store
        .run_writes(&[
            RunWrite::Insert(Arc::new(rc.clone())),
            RunWrite::Insert(Arc::new(ra.clone())),
        ])
        .await;
    assert!(err.is_err(), "a duplicate run id is refused: {err:?}");
    assert!(store.run(a, rc.id).await.unwrap().is_none(), "rolled back");

    // Verdicts of two workspaces in one transaction.
    let xa = rec(a, "x", "wf-a", "t", 0.9);
    let xb = rec(b, "x", "wf-b", "t", 0.4);
    store
        .insert_recommendations(&[xa.clone(), xb.clone()])
        .await
        .unwrap();
    let both = store
        .workflows_recommendations(a, &["wf-a".into(), "wf-b".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(
        both.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![xa.id],
        "workspace a reads only its own workflow"
    );
    let update = |id: Uuid, verdict: Verdict| VerdictUpdate {
        id,
        verdict,
        quality: 80.0,
        feedback: None,
        evaluated_at: now,
    };
    store
        .apply_verdict_groups(&[
            VerdictGroup {
                workspace: a,
                updates: vec![update(xa.id, Verdict::Approved)],
                inserts: Vec::new(),
            },
            VerdictGroup {
                workspace: b,
                updates: vec![update(xb.id, Verdict::Rejected)],
                inserts: Vec::new(),
            },
            // Workspace a naming b's row: nothing happens to it.
            VerdictGroup {
                workspace: a,
                updates: vec![update(xb.id, Verdict::Approved)],
                inserts: Vec::new(),
            },
        ])
        .await
        .unwrap();
    let got = store.recommendation(a, xa.id).await.unwrap().unwrap();
    assert_eq!(got.status, RecommendationStatus::Approved);
    let got = store.recommendation(b, xb.id).await.unwrap().unwrap();
    assert_eq!(
        got.status,
        RecommendationStatus::Rejected,
        "b's row keeps b's verdict; a's group could not reach it"
    );
}
both_backends!(group_commit_conformance);

/// The SQLite compiled in is built with `.cargo/config.toml`'s
/// `LIBSQLITE3_FLAGS` (docs/operations.md, "SQLite build"): no shared page
/// cache group and no memory statistics, the two process-wide mutexes the
/// list endpoint's profile found contended. A build that lost the flags
/// (run outside this workspace, or the file changed) fails here.
#[tokio::test]
async fn sqlite_is_built_without_shared_cache_mutexes() {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .unwrap();
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
}

/// A list page and a single read return the same recommendation, field by
/// field: SQLite reads a page's rows positionally (a JSON array per row), so
/// two neighbouring fields of one type swapped would still deserialise;
/// every field here is distinct and set, then every nullable one is NULL.
async fn list_rows_match_single_reads(backend: Backend) {
    let (store, _dir, _) = open(backend).await;
    let (ws, _) = new_workspace(&store, "fields").await;
    let mut full = rec(ws, "agent-f", "wf-fields", "type-f", 0.1 + 0.2);
    full.agent_name = "name-f".into();
    full.correlation_id = "corr-f".into();
    full.reasoning = Some("reason-f".into());
    full.latency_ms = Some(11);
    full.deadline_ms = Some(22);
    full.usage = swarmwise_actors::domain::TokenUsage {
        model: Some("model-f".into()),
        prompt_tokens: Some(33),
        completion_tokens: Some(44),
        cost_usd: Some(0.000_123_456_789_012_345),
    };
    let mut bare = rec(ws, "agent-b", "wf-bare", "type-b", 0.5);
    bare.reasoning = None;
    bare.latency_ms = None;
    bare.deadline_ms = None;
    store
        .insert_recommendations(&[full.clone(), bare.clone()])
        .await
        .unwrap();
    let page = store
        .list_recommendations(
            ws,
            &RecommendationFilter {
                limit: 10,
                ..RecommendationFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    for listed in &page {
        let single = store.recommendation(ws, listed.id).await.unwrap().unwrap();
        assert_eq!(listed, &single);
    }
    let listed_full = page.iter().find(|r| r.id == full.id).unwrap();
    assert_eq!(listed_full, &full, "every field as inserted");
    let listed_bare = page.iter().find(|r| r.id == bare.id).unwrap();
    assert_eq!(listed_bare, &bare, "every NULL as inserted");
}
both_backends!(list_rows_match_single_reads);

/// The write-ahead log is checkpointed by the store's background task
/// (`database.sqlite_checkpoint_interval_ms`), not by the commits: SQLite's
/// own checkpoint is pushed back to 10,000 pages, so the few hundred pages
/// written here reach the database file only through the task. With the
/// interval at 0, SQLite's default (1,000 pages) is left alone.
#[tokio::test]
async fn sqlite_checkpoints_the_wal_in_the_background() {
    use swarmwise::store::SqliteStore;
    let (url, dir) = fresh_database(Backend::Sqlite).await;
    let dir = dir.expect("a SQLite database lives in a folder");
    // A store on `url` with the interval `ms`, and its connections'
    // `wal_autocheckpoint` (pages).
    let open = |url: String, ms: u64| async move {
        let store = SqliteStore::connect(&DatabaseSettings {
            url,
            sqlite_checkpoint_interval_ms: ms,
            ..DatabaseSettings::default()
        })
        .await
        .unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(store.pool())
            .await
            .unwrap();
        (store, pages)
    };
    let (_off, pages) = open(format!("sqlite://{}/off.db", dir.path().display()), 0).await;
    assert_eq!(pages, 1000, "interval 0 keeps SQLite's own checkpoint");
    let (sqlite, pages) = open(url, 10).await;
    assert_eq!(pages, 10_000, "the commits' checkpoint is only a backstop");
    let store: Arc<dyn AdminStore> = Arc::new(sqlite.clone());
    let (ws, _) = new_workspace(&store, "wal").await;
    // About 1.2 MB of rows (some 300 pages, fewer than either threshold),
    // in 10 gated transactions.
    for batch in 0..10 {
        let recs: Vec<Recommendation> = (0..100)
            .map(|i| {
                let mut r = rec(ws, "agent-w", &format!("wf-{batch}-{i}"), "t", 0.5);
                r.reasoning = Some("x".repeat(1_000));
                r
            })
            .collect();
        store.insert_recommendations(&recs).await.unwrap();
    }
    let file = dir.path().join("swarmwise.db");
    crate::helpers::poll_until("the database file holds every committed page", || {
        let (pool, file) = (sqlite.pool().clone(), file.clone());
        async move {
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&pool)
                .await
                .map_err(|e| e.to_string())?;
            let size: i64 = sqlx::query_scalar("PRAGMA page_size")
                .fetch_one(&pool)
                .await
                .map_err(|e| e.to_string())?;
            let on_disk = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();
            let committed = u64::try_from(pages * size).unwrap_or(u64::MAX);
            if pages > 250 && on_disk >= committed {
                Ok(())
            } else {
                Err(format!(
                    "{pages} pages committed, {on_disk} bytes in the file"
                ))
            }
        }
    })
    .await;
}

/// An in-memory database (`sqlite::memory:`) is one database for the whole
/// store: the connection that makes gated writes and the pool that reads
/// share it, so what one writes the other lists.
#[tokio::test]
async fn sqlite_in_memory_is_one_database_for_writer_and_readers() {
    let store = connect(&DatabaseSettings {
        url: "sqlite::memory:".into(),
        ..DatabaseSettings::default()
    })
    .await
    .expect("connect");
    let (ws, _) = new_workspace(&store, "memory").await;
    let recs = vec![rec(ws, "agent-m", "wf-m", "t", 0.5)];
    store.insert_recommendations(&recs).await.unwrap();
    let filter = RecommendationFilter {
        limit: 10,
        ..Default::default()
    };
    let listed = store.list_recommendations(ws, &filter).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    // No WAL, so no checkpointer: SQLite's setting is left alone.
    let memory = swarmwise::store::SqliteStore::connect(&DatabaseSettings {
        url: "sqlite::memory:".into(),
        ..DatabaseSettings::default()
    })
    .await
    .unwrap();
    let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(memory.pool())
        .await
        .unwrap();
    assert_eq!(pages, 1000);
}
