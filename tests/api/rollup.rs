//! The per-agent rollup (`recommendation_rollup`,
//! `recommendation_usage_rollup`): after any mix of writes it equals a
//! fresh count of the rows (`helpers::assert_rollup_matches`), one
//! tenant's writes never move another's figures, and the rollup and the
//! rows commit together (a failed write changes neither).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{Connection, Executor};
use swarmwise::auth::generate_key;
use swarmwise::config::DatabaseSettings;
use swarmwise::store::{connect, AdminStore};
use swarmwise_actors::domain::{
    to_micros, AgentId, Recommendation, RecommendationStatus, TokenUsage, Verdict, VerdictUpdate,
    WorkspaceId,
};
use swarmwise_actors::ports::{AgentUsage, VerdictGroup};
use uuid::Uuid;

use crate::helpers::{assert_rollup_matches, fresh_database, Backend};

async fn open(backend: Backend) -> (Arc<dyn AdminStore>, Option<tempfile::TempDir>, String) {
    let (url, dir) = fresh_database(backend).await;
    let settings = DatabaseSettings {
        url: url.clone(),
        ..DatabaseSettings::default()
    };
    (connect(&settings).await.expect("connect"), dir, url)
}

async fn new_workspace(store: &Arc<dyn AdminStore>, name: &str) -> WorkspaceId {
    let ws = WorkspaceId(Uuid::now_v7());
    let (_, stored) = generate_key("swk_");
    store
        .create_workspace(ws, name, &stored, to_micros(Utc::now()))
        .await
        .unwrap();
    ws
}

/// A recommendation of `agent`, created `age_days` ago, with one of three
/// kinds of usage: none, priced tokens, tokens without a price.
fn rec(ws: WorkspaceId, agent: &str, age_days: i64, usage: u8, confidence: f64) -> Recommendation {
    let usage = match usage {
        0 => TokenUsage::default(),
        1 => TokenUsage {
            model: Some("m".into()),
            prompt_tokens: Some(120),
            completion_tokens: Some(30),
            cost_usd: Some(0.000_123_4),
        },
        _ => TokenUsage {
            model: Some("unpriced".into()),
            prompt_tokens: Some(7),
            completion_tokens: None,
            cost_usd: None,
        },
    };
    Recommendation {
        id: Uuid::now_v7(),
        workspace_id: ws,
        agent_id: AgentId::parse("a", agent).unwrap(),
        agent_name: format!("Agent {agent}"),
        correlation_id: "corr".into(),
        workflow_id: "wf".into(),
        recommendation_type: "strategy".into(),
        content: json!({"decision": "go"}),
        confidence,
        reasoning: None,
        latency_ms: Some(5),
        deadline_ms: None,
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: to_micros(Utc::now() - TimeDelta::days(age_days)),
        evaluated_at: None,
        usage,
    }
}

fn verdict(id: Uuid, v: Verdict, quality: f64) -> VerdictUpdate {
    VerdictUpdate {
        id,
        verdict: v,
        quality,
        feedback: None,
        evaluated_at: to_micros(Utc::now()),
    }
}

/// What a workspace's API shows: counts by agent and status, all-time usage.
type Figures = (Vec<(AgentId, RecommendationStatus, u64)>, Vec<AgentUsage>);

async fn figures(store: &Arc<dyn AdminStore>, ws: WorkspaceId) -> Figures {
    let mut counts = store.status_counts(ws).await.unwrap();
    counts.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    (counts, store.usage_totals(ws, None, None).await.unwrap())
}

/// A seeded random mix of inserts, verdicts (first ones and revisions,
/// repeated ids, ids of the other workspace, unknown ids, group commits),
/// retention runs in both modes and failed writes, in two workspaces; after
/// every step the rollup equals a fresh count, and the workspace not
/// written shows the same figures as before. Then a workspace is deleted.
async fn rollup_follows_every_write(backend: Backend) {
    let (store, _dir, url) = open(backend).await;
    let a = new_workspace(&store, "A").await;
    let b = new_workspace(&store, "B").await;
    let mut rng = StdRng::seed_from_u64(0x14_05);
    let mut ids: HashMap<WorkspaceId, Vec<Uuid>> = HashMap::new();
    let verdicts = [Verdict::Approved, Verdict::Partial, Verdict::Rejected];
    let (mut failed_inserts, mut failed_verdicts, mut retired) = (0, 0, 0u64);
    for step in 0..80 {
        let (ws, other) = if rng.gen_bool(0.5) { (a, b) } else { (b, a) };
        let others_before = figures(&store, other).await;
        let mine_before = figures(&store, ws).await;
        match rng.gen_range(0..10) {
            0..=3 => {
                let n = rng.gen_range(1..40);
                let batch: Vec<_> = (0..n)
                    .map(|_| {
                        let agent = format!("agent-{}", rng.gen_range(0..4));
                        rec(ws, &agent, rng.gen_range(0..20), rng.gen_range(0..3), 0.5)
                    })
                    .collect();
                ids.entry(ws)
                    .or_default()
                    .extend(batch.iter().map(|r| r.id));
                store.insert_recommendations(&batch).await.unwrap();
            }
            4..=6 => {
                // Any of its rows (evaluated ones again: revisions), one id
                // twice, one of the other workspace's, one unknown.
                let mine = ids.get(&ws).cloned().unwrap_or_default();
                let mut updates: Vec<VerdictUpdate> = (0..rng.gen_range(1..25))
                    .filter_map(|_| {
                        let id = *mine.get(rng.gen_range(0..mine.len().max(1)))?;
                        let v = verdicts[rng.gen_range(0..3)];
                        Some(verdict(id, v, rng.gen_range(0.0..100.0)))
                    })
                    .collect();
                if let Some(first) = updates.first().cloned() {
                    updates.push(verdict(first.id, Verdict::Rejected, 10.0));
                }
                if let Some(theirs) = ids.get(&other).and_then(|v| v.first()) {
                    updates.push(verdict(*theirs, Verdict::Approved, 99.0));
                }
                updates.push(verdict(Uuid::now_v7(), Verdict::Approved, 99.0));
                if rng.gen_bool(0.5) {
                    store.apply_verdicts(ws, &updates).await.unwrap();
                } else {
                    // Group commit, the second group also inserting rows
                    // already judged (a workflow run's last stage).
                    let half = updates.len() / 2;
                    let judged: Vec<_> = (0..rng.gen_range(1..6))
                        .map(|_| {
                            let agent = format!("agent-{}", rng.gen_range(0..4));
                            let mut r =
                                rec(ws, &agent, rng.gen_range(0..20), rng.gen_range(0..3), 0.5);
                            r.status = verdicts[rng.gen_range(0..3)].status();
                            r.outcome_quality = Some(rng.gen_range(0.0..100.0));
                            r.evaluated_at = Some(Utc::now());
                            r
                        })
                        .collect();
                    // A group inserting a row of another workspace is
                    // refused whole: nothing of the batch is written.
                    let foreign = [VerdictGroup {
                        workspace: other,
                        updates: Vec::new(),
                        inserts: judged.clone(),
                    }];
                    assert!(store.apply_verdict_groups(&foreign).await.is_err());
                    assert_eq!(figures(&store, other).await, others_before, "step {step}");
                    assert_eq!(figures(&store, ws).await, mine_before, "step {step}");
                    ids.entry(ws)
                        .or_default()
                        .extend(judged.iter().map(|r| r.id));
                    let groups = [
                        VerdictGroup {
                            workspace: ws,
                            updates: updates.get(..half).unwrap().to_vec(),
                            inserts: Vec::new(),
                        },
                        VerdictGroup {
                            workspace: ws,
                            updates: updates.get(half..).unwrap().to_vec(),
                            inserts: judged,
                        },
                    ];
                    store.apply_verdict_groups(&groups).await.unwrap();
                }
            }
            7 => {
                let archive = rng.gen_bool(0.5);
                retired += store
                    .retire_recommendations(
                        ws,
                        Utc::now() - TimeDelta::days(5),
                        "decision",
                        archive,
                        rng.gen_range(1..30),
                        Utc::now(),
                    )
                    .await
                    .unwrap();
            }
            8 => {
                // A batch with one row the database refuses: nothing of it
                // is stored, rows or rollup.
                let mut batch = vec![rec(ws, "agent-0", 1, 1, 0.5), rec(ws, "agent-9", 1, 1, 0.5)];
                batch.push(rec(ws, "agent-0", 1, 1, 2.0));
                assert!(store.insert_recommendations(&batch).await.is_err());
                assert_eq!(figures(&store, ws).await, mine_before, "step {step}");
                failed_inserts += 1;
            }
            _ => {
                // Verdicts with one the database refuses (quality > 100),
                // after a valid one in the same transaction, on two fresh
                // rows (which retention cannot have removed).
                let fresh = [rec(ws, "agent-1", 0, 1, 0.5), rec(ws, "agent-2", 0, 0, 0.5)];
                store.insert_recommendations(&fresh).await.unwrap();
                ids.entry(ws)
                    .or_default()
                    .extend(fresh.iter().map(|r| r.id));
                let stored = figures(&store, ws).await;
                let updates = vec![
                    verdict(fresh[0].id, Verdict::Approved, 90.0),
                    verdict(fresh[1].id, Verdict::Rejected, 150.0),
                ];
                assert!(store.apply_verdicts(ws, &updates).await.is_err());
                let groups = [VerdictGroup {
                    workspace: ws,
                    updates,
                    inserts: Vec::new(),
                }];
                assert!(store.apply_verdict_groups(&groups).await.is_err());
                assert_eq!(figures(&store, ws).await, stored, "step {step}");
                failed_verdicts += 1;
            }
        }
        assert_rollup_matches(&url).await;
        assert_eq!(
            figures(&store, other).await,
            others_before,
            "step {step}: a write of one workspace moved the other's figures"
        );
    }
    // The mix did what it claims (the seed is fixed, so these hold).
    assert!(failed_inserts > 0 && failed_verdicts > 0 && retired > 0);
    let (counts, usage) = figures(&store, a).await;
    assert!(counts.iter().any(|c| c.1 == RecommendationStatus::Pending));
    assert!(counts.iter().any(|c| c.1 == RecommendationStatus::Rejected));
    assert!(usage.iter().any(|u| u.unpriced > 0 && u.cost_usd > 0.0));

    // Deleting a workspace takes its rollup along; the other keeps its own.
    let a_before = figures(&store, a).await;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute("PRAGMA foreign_keys = ON").await.unwrap();
        sqlx::query("DELETE FROM workspaces WHERE id = ?")
            .bind(b.0)
            .execute(&mut c)
            .await
            .unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("DELETE FROM workspaces WHERE id = $1")
            .bind(b.0)
            .execute(&mut c)
            .await
            .unwrap();
    }
    assert_rollup_matches(&url).await;
    assert_eq!(figures(&store, b).await, (vec![], vec![]));
    assert_eq!(figures(&store, a).await, a_before);
}
crate::both_backends!(rollup_follows_every_write);

/// The rows and the rollup commit together the other way round too: when
/// the rollup's upsert fails (a trigger refuses one agent's group), the
/// batch's rows are not stored either, nor the verdicts' statuses.
async fn a_failed_rollup_write_stores_no_rows(backend: Backend) {
    let (store, _dir, url) = open(backend).await;
    let ws = new_workspace(&store, "A").await;
    let ok = rec(ws, "agent-0", 0, 1, 0.5);
    store
        .insert_recommendations(std::slice::from_ref(&ok))
        .await
        .unwrap();
    let before = figures(&store, ws).await;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON recommendation_rollup \
             WHEN NEW.agent_id = 'poison' OR NEW.outcome_status = 'partial' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .await
        .unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        c.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
             CREATE TRIGGER refuse_poison BEFORE INSERT ON recommendation_rollup FOR EACH ROW \
             WHEN (NEW.agent_id = 'poison' OR NEW.outcome_status = 'partial') \
             EXECUTE FUNCTION refuse_poison();",
        )
        .await
        .unwrap();
    }
    // Inserts: a good agent's rows beside the refused group's.
    let batch = [rec(ws, "agent-0", 0, 1, 0.5), rec(ws, "poison", 0, 1, 0.5)];
    assert!(store.insert_recommendations(&batch).await.is_err());
    for r in &batch {
        assert!(store.recommendation(ws, r.id).await.unwrap().is_none());
    }
    // Verdicts: moving a row to 'partial' needs that group's upsert.
    let partial = [verdict(ok.id, Verdict::Partial, 50.0)];
    assert!(store.apply_verdicts(ws, &partial).await.is_err());
    let stored = store.recommendation(ws, ok.id).await.unwrap().unwrap();
    assert_eq!(stored.status, RecommendationStatus::Pending);
    assert_eq!(figures(&store, ws).await, before);
    assert_rollup_matches(&url).await;
    // What the trigger lets through still commits, rows and rollup.
    store
        .apply_verdicts(ws, &[verdict(ok.id, Verdict::Approved, 80.0)])
        .await
        .unwrap();
    let (counts, _) = figures(&store, ws).await;
    assert_eq!(
        counts,
        [(
            AgentId::parse("a", "agent-0").unwrap(),
            RecommendationStatus::Approved,
            1
        )]
    );
    assert_rollup_matches(&url).await;
}
crate::both_backends!(a_failed_rollup_write_stores_no_rows);

/// The migration's backfill: rows stored before the rollup existed are
/// counted once it does. Simulated by emptying the rollup and running the
/// migration's backfill SQL again.
async fn the_backfill_counts_rows_stored_before_the_rollup(backend: Backend) {
    let (store, _dir, url) = open(backend).await;
    let a = new_workspace(&store, "A").await;
    let b = new_workspace(&store, "B").await;
    let batch: Vec<_> = (0..30)
        .map(|i| {
            let ws = if i % 3 == 0 { b } else { a };
            rec(ws, &format!("agent-{}", i % 4), 0, (i % 3) as u8, 0.5)
        })
        .collect();
    store.insert_recommendations(&batch).await.unwrap();
    let first: Vec<_> = batch
        .iter()
        .filter(|r| r.workspace_id == a)
        .take(5)
        .map(|r| verdict(r.id, Verdict::Approved, 90.0))
        .collect();
    store.apply_verdicts(a, &first).await.unwrap();
    let (a_before, b_before) = (figures(&store, a).await, figures(&store, b).await);
    let (dir, name) = match backend {
        Backend::Sqlite => ("sqlite", "20261201000010_recommendation_rollup.sql"),
        Backend::Postgres => ("postgres", "20261201000010_recommendation_rollup.sql"),
    };
    let sql = std::fs::read_to_string(format!(
        "{}/migrations/{dir}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let backfill = match backend {
        Backend::Sqlite => sql.get(sql.find("INSERT INTO recommendation_rollup").unwrap()..),
        Backend::Postgres => sql.get(sql.find("DO $$").unwrap()..),
    }
    .unwrap()
    .to_owned();
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute("DELETE FROM recommendation_rollup; DELETE FROM recommendation_usage_rollup")
            .await
            .unwrap();
        assert_eq!(figures(&store, a).await, (vec![], vec![]));
        c.execute(backfill.as_str()).await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = c.begin().await.unwrap();
        tx.execute("DELETE FROM recommendation_rollup; DELETE FROM recommendation_usage_rollup")
            .await
            .unwrap();
        tx.execute(backfill.as_str()).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_rollup_matches(&url).await;
    assert_eq!(figures(&store, a).await, a_before);
    assert_eq!(figures(&store, b).await, b_before);
}
crate::both_backends!(the_backfill_counts_rows_stored_before_the_rollup);

/// SQLite: the verdicts' read of each row's status before (grouped moves)
/// looks every row up by primary key, never a scan of the workspace.
#[actix_web::test]
async fn sqlite_verdict_moves_look_rows_up_by_key() {
    let (_store, _dir, url) = open(Backend::Sqlite).await;
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT r.agent_id, r.outcome_status, v.column2, count(*), max(r.evaluated_at IS NOT NULL) \
         FROM (VALUES (?, ?), (?, ?)) AS v CROSS JOIN agent_recommendations AS r \
         ON r.id = v.column1 AND +r.workspace_id = ? GROUP BY r.agent_id, r.outcome_status, v.column2",
    )
    .bind(Uuid::now_v7())
    .bind("approved")
    .bind(Uuid::now_v7())
    .bind("rejected")
    .bind(Uuid::nil())
    .fetch_all(&mut c)
    .await
    .unwrap();
    let text = crate::helpers::plan_detail(&rows);
    assert!(
        text.contains("SEARCH r USING INDEX sqlite_autoindex_agent_recommendations_1 (id=?)"),
        "{text}"
    );
    assert!(!text.contains("SCAN r"), "{text}");
}

/// Verdicts on the same rows from several connections at once (an
/// evaluation batch and feedback racing): each transaction counts the move
/// from the status the row had when it took it, so the rollup still equals
/// a fresh count. (On PostgreSQL a plain self-join would read the
/// statement's snapshot and count moves from a status already overwritten.)
async fn concurrent_verdicts_keep_the_rollup_exact(backend: Backend) {
    let (store, _dir, url) = open(backend).await;
    let ws = new_workspace(&store, "A").await;
    let recs: Vec<_> = (0..100)
        .map(|i| rec(ws, &format!("agent-{}", i % 3), 0, 0, 0.5))
        .collect();
    store.insert_recommendations(&recs).await.unwrap();
    let ids: Arc<Vec<Uuid>> = Arc::new(recs.iter().map(|r| r.id).collect());
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let (store, ids) = (store.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(t);
            for _ in 0..15 {
                let updates: Vec<_> = ids
                    .iter()
                    .map(|id| {
                        let v = [Verdict::Approved, Verdict::Partial, Verdict::Rejected]
                            [rng.gen_range(0..3)];
                        verdict(*id, v, 50.0)
                    })
                    .collect();
                store.apply_verdicts(ws, &updates).await.unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(120), t)
            .await
            .expect("verdict writers finish")
            .unwrap();
    }
    assert_rollup_matches(&url).await;
    let (counts, _) = figures(&store, ws).await;
    assert_eq!(counts.iter().map(|c| c.2).sum::<u64>(), 100);
}
crate::both_backends!(concurrent_verdicts_keep_the_rollup_exact);
