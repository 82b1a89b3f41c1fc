//! Retention (issue 14, item 6): settled recommendations older than the
//! age go (deleted or archived), in batches, and nothing else: pending rows,
//! newer rows and other ages stay; trust and patterns read the same before
//! and after (the outcome digests); a dry run changes nothing; a removed
//! recommendation answers 404; the CLI prints the counts per workspace.
//! Trust history points older than their own age go in the same run.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use swarmwise_actors::domain::{
    AgentId, Recommendation, RecommendationFilter, RecommendationStatus, Verdict, VerdictUpdate,
    WorkspaceId,
};
use swarmwise_actors::ports::DeadLetter;
use swarmwise_actors::retention::{self, RetentionConfig, RetentionMode};

use crate::both_backends;
use crate::helpers::{spawn_app_with, Backend, OutputWithin, TestApp};

fn old_rec(
    ws: WorkspaceId,
    agent: &str,
    workflow: &str,
    decision: &str,
    at: DateTime<Utc>,
) -> Recommendation {
    Recommendation {
        id: uuid::Uuid::now_v7(),
        workspace_id: ws,
        agent_id: AgentId::parse("agent_id", agent).unwrap(),
        agent_name: format!("Agent {agent}"),
        correlation_id: format!("corr-{workflow}"),
        workflow_id: workflow.into(),
        recommendation_type: "strategy".into(),
        content: json!({"decision": decision, "secret": "old content"}),
        confidence: if agent == "good" { 0.9 } else { 0.6 },
        reasoning: Some("because".into()),
        latency_ms: Some(200),
        deadline_ms: None,
        status: RecommendationStatus::Pending,
        outcome_quality: None,
        feedback: None,
        created_at: at,
        evaluated_at: None,
        usage: Default::default(),
    }
}

/// `n` old evaluated workflows of three agents (good mostly approved, bad
/// mostly rejected, mid partial) and two old pending rows, all created
/// `age_days` ago; returns the ids of the evaluated ones.
async fn seed_old(app: &TestApp, ws: WorkspaceId, n: usize, age_days: i64) -> Vec<uuid::Uuid> {
    let base = Utc::now() - TimeDelta::days(age_days);
    let mut recs = Vec::new();
    let mut verdicts = Vec::new();
    for i in 0..n {
        let at = base + TimeDelta::seconds(i as i64 * 60);
        let wf = format!("old-{ws}-{i}");
        for (agent, verdict) in [
            (
                "good",
                if i % 10 == 0 {
                    Verdict::Rejected
                } else {
                    Verdict::Approved
                },
            ),
            (
                "bad",
                if i % 5 == 0 {
                    Verdict::Approved
                } else {
                    Verdict::Rejected
                },
            ),
            ("mid", Verdict::Partial),
        ] {
            let decision = if agent == "bad" { "stop" } else { "go" };
            let r = old_rec(ws, agent, &wf, decision, at);
            verdicts.push(VerdictUpdate {
                id: r.id,
                verdict,
                quality: match verdict {
                    Verdict::Approved => 85.0,
                    Verdict::Partial => 50.0,
                    Verdict::Rejected => 10.0,
                },
                feedback: None,
                evaluated_at: at + TimeDelta::seconds(30),
            });
            recs.push(r);
        }
    }
    let pending: Vec<_> = (0..2)
        .map(|i| old_rec(ws, "good", &format!("old-pending-{i}"), "go", base))
        .collect();
    recs.extend(pending);
    app.store.insert_recommendations(&recs).await.unwrap();
    app.store.apply_verdicts(ws, &verdicts).await.unwrap();
    verdicts.iter().map(|v| v.id).collect()
}

async fn all_recs(app: &TestApp, ws: WorkspaceId) -> Vec<Recommendation> {
    app.store
        .list_recommendations(
            ws,
            &RecommendationFilter {
                limit: 10_000,
                ..RecommendationFilter::default()
            },
        )
        .await
        .unwrap()
}

/// What trust and the meta-learner read, and what readers see of them.
async fn learned_state(
    app: &TestApp,
    ws: WorkspaceId,
    key: &str,
) -> (Value, Vec<String>, Vec<String>) {
    app.engine.recompute_trust(None).await.unwrap();
    let trust = app.json(key, "/api/v1/learning/trust-scores").await;
    let samples = app.store.outcome_samples(ws, None).await.unwrap();
    let records = app
        .store
        .outcome_records(ws, "decision", None)
        .await
        .unwrap();
    (
        trust,
        samples.iter().map(|s| format!("{s:?}")).collect(),
        records.iter().map(|r| format!("{r:?}")).collect(),
    )
}

/// The mined figures of every pattern after a fresh cycle.
async fn pattern_figures(app: &TestApp, key: &str) -> Vec<Value> {
    let res = app.post(key, "/api/v1/learning/cycles", &json!({})).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let list = app.json(key, "/api/v1/learning/patterns").await;
    let items = list
        .as_array()
        .or_else(|| list["items"].as_array())
        .or_else(|| list["patterns"].as_array())
        .unwrap()
        .clone();
    let mut out: Vec<Value> = items
        .iter()
        .map(|p| {
            json!([
                p["category"],
                p["pattern_name"]
                    .clone()
                    .as_str()
                    .map_or(p["name"].clone(), |s| json!(s)),
                p["support"],
                p["success_rate"],
                p["ci_low"],
                p["ci_high"]
            ])
        })
        .collect();
    out.sort_by_key(|v| v.to_string());
    out
}

async fn dead_letter(app: &TestApp, ws: WorkspaceId, at: DateTime<Utc>) {
    let r = old_rec(ws, "good", "dead", "go", at);
    app.store
        .insert_dead_letters(&[DeadLetter::of(&r, "refused", at)])
        .await
        .unwrap();
}

/// Runs retention for real and records the progress reported for `kind`
/// (`recommendations` or `trust history points`): (workspace, done, todo)
/// after each batch.
async fn run_recording(
    store: &dyn swarmwise_actors::ports::Store,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    kind: &str,
) -> (retention::RetentionReport, Vec<(WorkspaceId, u64, u64)>) {
    let batches = std::sync::Mutex::new(Vec::new());
    let report = retention::run(
        store,
        config,
        "decision",
        now,
        false,
        &|ws, k, done, todo| {
            if k == kind {
                batches.lock().unwrap().push((ws, done, todo));
            }
        },
    )
    .await
    .unwrap();
    (report, batches.into_inner().unwrap())
}

async fn retention_removes_exactly_the_old_rows_and_keeps_what_was_learned(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.scheduler.enabled = false;
        s.learning.cycle_every_outcomes = 0;
        s.agents.disable_below_trust = 0.0;
    })
    .await;
    let (a, ka) = app.workspace("a").await;
    let (b, kb) = app.workspace("b").await;
    let (a, b) = (
        WorkspaceId(a.parse().unwrap()),
        WorkspaceId(b.parse().unwrap()),
    );
    let old_a = seed_old(&app, a, 40, 100).await;
    // B's rows are younger than the age: they stay.
    seed_old(&app, b, 5, 10).await;
    dead_letter(&app, a, Utc::now() - TimeDelta::days(100)).await;
    dead_letter(&app, a, Utc::now() - TimeDelta::days(1)).await;
    // New rows through the API: evaluated and pending.
    app.agent(&ka, "good").await;
    let fresh = app.track(&ka, "good", "new-1", "strategy", 0.7).await;
    app.outcome(&ka, "new-1", 90.0).await;
    let fresh_pending = app.track(&ka, "good", "new-2", "strategy", 0.7).await;
    app.engine.flush().await.unwrap();

    let before = learned_state(&app, a, &ka).await;
    let before_b = learned_state(&app, b, &kb).await;
    let patterns_before = pattern_figures(&app, &ka).await;
    assert!(
        !patterns_before.is_empty(),
        "the seed should yield patterns"
    );
    let rows_a = all_recs(&app, a).await.len();
    let rows_b = all_recs(&app, b).await.len();
    assert_eq!(rows_a, 40 * 3 + 2 + 2);

    let config = RetentionConfig {
        enabled: true,
        max_age_days: 30,
        batch_size: 7,
        mode: if backend == Backend::Postgres {
            RetentionMode::Archive
        } else {
            RetentionMode::Delete
        },
        ..RetentionConfig::default()
    };
    let store: Arc<dyn swarmwise_actors::ports::Store> = app.store.clone();
    // Dry run: the counts, and nothing changes.
    let dry = retention::run(
        store.as_ref(),
        &config,
        "decision",
        Utc::now(),
        true,
        &|_, _, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(dry.recommendations, 120);
    assert_eq!(dry.dead_letters, 1);
    assert_eq!(dry.workspaces.len(), 1);
    assert_eq!(dry.workspaces[0].workspace_id, a);
    assert_eq!(all_recs(&app, a).await.len(), rows_a);
    assert_eq!(
        app.store
            .count_retirable(a, config.cutoff(Utc::now()))
            .await
            .unwrap(),
        120
    );

    let (report, batches) =
        run_recording(store.as_ref(), &config, Utc::now(), "recommendations").await;
    assert_eq!(report.recommendations, 120);
    assert_eq!(report.dead_letters, 1);
    assert_eq!(batches.len(), 120usize.div_ceil(7), "{batches:?}");
    assert_eq!(batches.last().unwrap(), &(a, 120, 120));

    // Exactly the old settled rows of A went.
    let left: Vec<_> = all_recs(&app, a).await;
    let mut left_ids: Vec<String> = left.iter().map(|r| r.id.to_string()).collect();
    left_ids.sort();
    assert_eq!(left.len(), 4, "{left_ids:?}");
    assert!(left_ids.contains(&fresh) && left_ids.contains(&fresh_pending));
    assert_eq!(
        left.iter()
            .filter(|r| r.workflow_id.starts_with("old-pending"))
            .count(),
        2
    );
    assert!(old_a.iter().all(|id| !left_ids.contains(&id.to_string())));
    assert_eq!(
        all_recs(&app, b).await.len(),
        rows_b,
        "B's younger rows stay"
    );
    // A second run finds nothing.
    let again = retention::run(
        store.as_ref(),
        &config,
        "decision",
        Utc::now(),
        false,
        &|_, _, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(again.recommendations + again.dead_letters, 0);

    // Trust, what it folds and what mining reads: unchanged.
    let after = learned_state(&app, a, &ka).await;
    assert_eq!(after.1, before.1, "outcome samples changed");
    assert_eq!(after.2, before.2, "outcome records changed");
    assert_eq!(after.0, before.0, "trust changed");
    assert_eq!(learned_state(&app, b, &kb).await, before_b);
    assert_eq!(
        pattern_figures(&app, &ka).await,
        patterns_before,
        "patterns changed"
    );

    // A removed recommendation is gone from the API (404, not a 500), also for feedback.
    let gone = old_a[0];
    assert_eq!(
        app.get(&ka, &format!("/api/v1/recommendations/{gone}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let res = app
        .post(
            &ka,
            &format!("/api/v1/recommendations/{gone}/feedback"),
            &json!({"status": "approved"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Another workspace's key cannot see A's removed or remaining rows.
    assert_eq!(
        app.get(&kb, &format!("/api/v1/recommendations/{fresh}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Archive mode keeps the whole rows, content included, in the archive table.
    if backend == Backend::Postgres {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&app.database_url)
            .await
            .unwrap();
        let (n, content): (i64, Option<String>) = sqlx::query_as(
            "SELECT count(*), max(content ->> 'secret') FROM agent_recommendations_archive WHERE workspace_id = $1",
        )
        .bind(a.0)
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert_eq!((n, content.as_deref()), (120, Some("old content")));
    }
}
both_backends!(retention_removes_exactly_the_old_rows_and_keeps_what_was_learned);

/// `swarmwise retention --dry-run` counts per workspace and changes nothing;
/// without it, the rows go and it says how many.
#[actix_web::test]
async fn retention_command_prints_counts_and_dry_run_changes_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.scheduler.enabled = false).await;
    let (a, _) = app.workspace("cli").await;
    let a = WorkspaceId(a.parse().unwrap());
    seed_old(&app, a, 4, 100).await;
    let url = app.database_url.clone();
    app.engine.flush().await.unwrap();
    let run = |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"));
        cmd.arg("retention")
            .env("SWARMWISE__DATABASE__URL", &url)
            .env("SWARMWISE__RETENTION__MAX_AGE_DAYS", "30")
            .env("SWARMWISE__RETENTION__BATCH_SIZE", "5");
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.output_within().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(true);
    assert!(
        text.contains(&format!("workspace {a}: would remove 12 recommendations")),
        "{text}"
    );
    assert!(text.contains("trust history points"), "{text}");
    assert_eq!(all_recs(&app, a).await.len(), 14);
    let text = run(false);
    assert!(text.contains("total: deleted 12 recommendations"), "{text}");
    assert_eq!(all_recs(&app, a).await.len(), 2);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_swarmwise"))
        .arg("retention")
        .env("SWARMWISE__DATABASE__URL", &url)
        .env("SWARMWISE__RETENTION__MAX_AGE_DAYS", "0")
        .output_within()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("retention.max_age_days"));
}

/// Trust history points recorded more than `trust_history_max_age_days`
/// ago go, in batches, per workspace; younger points, the other
/// workspace's young points and the trust cards stay; a dry run counts and
/// changes nothing; a second run finds nothing.
async fn retention_prunes_old_trust_history_points(backend: Backend) {
    use swarmwise_actors::domain::to_micros;
    use swarmwise_actors::ports::TrustRow;
    use swarmwise_actors::trust::{TrustParams, WorkspaceTrust};
    let app = spawn_app_with(backend, |s| {
        s.scheduler.enabled = false;
        s.learning.cycle_every_outcomes = 0;
    })
    .await;
    let (a, _) = app.workspace("history-a").await;
    let (b, _) = app.workspace("history-b").await;
    let (a, b) = (
        WorkspaceId(a.parse().unwrap()),
        WorkspaceId(b.parse().unwrap()),
    );
    let agent = AgentId::parse("agent_id", "charted").unwrap();
    let row = TrustRow {
        agent_id: agent.clone(),
        recommendation_type: None,
        card: WorkspaceTrust::from_samples(Vec::new(), &TrustParams::default())
            .snapshot(&TrustParams::default())
            .default_card
            .clone(),
    };
    let now = to_micros(Utc::now());
    let save = |ws: WorkspaceId, days: i64| {
        let row = row.clone();
        let store = app.store.clone();
        async move {
            store
                .save_trust(ws, &[row], now - TimeDelta::days(days))
                .await
                .unwrap();
        }
    };
    // B's old point first: a purge of A that ignored the workspace would
    // take it (the oldest by id) in A's first batch.
    save(b, 100).await;
    for _ in 0..5 {
        save(a, 100).await;
    }
    save(a, 40).await;
    save(a, 1).await;
    save(b, 2).await;
    let points = |ws: WorkspaceId| {
        let store = app.store.clone();
        let agent = agent.clone();
        async move { store.trust_history(ws, &agent, 100).await.unwrap() }
    };
    assert_eq!(points(a).await.len(), 7);
    let config = RetentionConfig {
        enabled: true,
        trust_history_max_age_days: 30,
        batch_size: 2,
        ..RetentionConfig::default()
    };
    let store: Arc<dyn swarmwise_actors::ports::Store> = app.store.clone();
    let dry = retention::run(
        store.as_ref(),
        &config,
        "decision",
        now,
        true,
        &|_, _, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(dry.trust_history, 7, "{dry:?}");
    assert_eq!(points(a).await.len(), 7, "a dry run changes nothing");
    let (report, batches) =
        run_recording(store.as_ref(), &config, now, "trust history points").await;
    assert_eq!(report.trust_history, 7);
    assert_eq!(report.recommendations, 0);
    let per_ws: Vec<(WorkspaceId, u64)> = report
        .workspaces
        .iter()
        .map(|w| (w.workspace_id, w.trust_history))
        .collect();
    assert!(
        per_ws.contains(&(a, 6)) && per_ws.contains(&(b, 1)),
        "{per_ws:?}"
    );
    assert_eq!(
        batches.iter().filter(|(ws, _, _)| *ws == a).count(),
        3,
        "six points of A in batches of two: {batches:?}"
    );
    let left_a: Vec<i64> = points(a)
        .await
        .iter()
        .map(|p| (now - p.recorded_at).num_days())
        .collect();
    assert_eq!(left_a, vec![1], "only A's young point stays");
    assert_eq!(points(b).await.len(), 1, "B's young point stays");
    let again = retention::run(
        store.as_ref(),
        &config,
        "decision",
        now,
        false,
        &|_, _, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(again.trust_history, 0);
}
both_backends!(retention_prunes_old_trust_history_points);

/// SQLite: a batch of the trust history purge walks
/// `idx_trust_history_recorded` in order (no scan of the workspace's whole
/// history, no sort), so a batch costs the same however long the history.
#[actix_web::test]
async fn sqlite_trust_history_purge_walks_its_index() {
    use sqlx::Connection;
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let mut c = sqlx::SqliteConnection::connect(&app.database_url)
        .await
        .unwrap();
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT id FROM agent_trust_score_history \
         WHERE workspace_id = ? AND recorded_at < ? ORDER BY recorded_at, id LIMIT ?",
    )
    .bind(uuid::Uuid::nil())
    .bind(0_i64)
    .bind(10_i64)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let text = crate::helpers::plan_detail(&rows);
    assert!(text.contains("idx_trust_history_recorded"), "{text}");
    assert!(!text.contains("TEMP B-TREE"), "{text}");
}
