//! Reads that do not wait for other tenants, and batch ingest that waits
//! for room before it sheds (issue 14, item 5).
//!
//! A writer that cannot commit is made with a PostgreSQL `SHARE` lock on
//! `agent_recommendations` (reads go on, inserts wait until the lock's
//! transaction rolls back), as in `poison.rs`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::{
    assert_error, poll_until, postgres_available, spawn_app_with, Backend, TestApp,
};

const WAIT: Duration = Duration::from_secs(30);

/// Holds `SHARE` on agent_recommendations until the connection is dropped.
pub(crate) async fn block_inserts(app: &TestApp) -> PgConnection {
    let mut c = PgConnection::connect(&app.database_url).await.unwrap();
    c.execute("BEGIN").await.unwrap();
    c.execute("LOCK TABLE agent_recommendations IN SHARE MODE")
        .await
        .unwrap();
    c
}

fn batch(workflow: &str, n: usize) -> Value {
    let items: Vec<Value> = (0..n)
        .map(|_| {
            json!({"agent_id": "a1", "correlation_id": "c", "workflow_id": workflow,
                   "recommendation_type": "strategy", "content": {"decision": "go"}, "confidence": 0.5})
        })
        .collect();
    json!({ "items": items })
}

/// The value of a counter without labels in the /metrics text (0 if absent).
async fn counter(app: &TestApp, name: &str) -> u64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v as u64)
}

async fn items(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let v = app
        .json(key, &format!("/api/v1/recommendations?{query}"))
        .await;
    v["items"].as_array().unwrap().clone()
}

/// A tenant whose writes cannot be stored (here: a stuck database; in
/// practice one flooding the writer) does not stall another tenant's reads:
/// a read waits only for its own workspace's acknowledged rows. The stuck
/// tenant's own reads still give up with 503 + Retry-After.
#[actix_web::test]
async fn postgres_a_stuck_tenant_does_not_stall_another_tenants_reads() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.read_flush_timeout_ms = 300;
    })
    .await;
    let (_, key_a) = app.workspace("A").await;
    let (_, key_b) = app.workspace("B").await;
    app.agent(&key_a, "a1").await;
    app.agent(&key_b, "a1").await;
    // A's row is acknowledged, then listed (read-your-writes still holds).
    let mine = app.track(&key_a, "a1", "wf-a", "strategy", 0.5).await;
    assert_eq!(items(&app, &key_a, "").await[0]["id"], mine.as_str());

    let lock = block_inserts(&app).await;
    let stuck = app.track(&key_b, "a1", "wf-b", "strategy", 0.5).await;

    // A answers at once (no 503), with its own row and nothing of B's.
    for path in [
        "/api/v1/recommendations".to_owned(),
        format!("/api/v1/recommendations/{mine}"),
        "/api/v1/learning/agents/a1/metrics".to_owned(),
        "/api/v1/learning/agents/metrics.csv".to_owned(),
        "/api/v1/learning/costs".to_owned(),
    ] {
        let res = app.get(&key_a, &path).await;
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "GET {path} as A while B is stuck"
        );
        let text = res.text().await.unwrap();
        assert!(!text.contains(&stuck), "A sees B's row via {path}: {text}");
    }
    // A's key cannot reach B's row either way.
    let res = app
        .get(&key_a, &format!("/api/v1/recommendations/{stuck}"))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // B's read waits for B's row, which cannot be stored: bounded, 503.
    let res = app.get(&key_b, "/api/v1/recommendations").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "writes_pending", None).await;

    drop(lock);
    let listed = poll_until("B's row stored once the lock is gone", || async {
        let res = app.get(&key_b, "/api/v1/recommendations").await;
        if res.status() == StatusCode::OK {
            Ok(res.json::<Value>().await.unwrap())
        } else {
            Err(res.status())
        }
    })
    .await;
    assert_eq!(listed["items"][0]["id"], stuck.as_str(), "{listed}");
}

/// Backpressure: with the write buffer full, a batch waits for room and is
/// taken once the store catches up (201, every row stored).
#[actix_web::test]
async fn postgres_batch_ingest_waits_for_room_then_succeeds() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.batch_size = 1;
        s.tracking.max_pending = 2;
        s.tracking.max_pending_wait_ms = 60_000;
        s.tracking.read_flush_timeout_ms = 30_000;
    })
    .await;
    let (_, key) = app.workspace("A").await;
    app.agent(&key, "a1").await;
    let lock = block_inserts(&app).await;
    app.track(&key, "a1", "wf-1", "strategy", 0.5).await;
    app.track(&key, "a1", "wf-1", "strategy", 0.5).await;
    let before = counter(&app, "swarmwise_tracker_backpressure_waits_total").await;

    let request = {
        let client = app.client.clone();
        let url = app.url("/api/v1/recommendations/batch");
        let key = key.clone();
        tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(key)
                .json(&batch("wf-2", 2))
                .send()
                .await
                .unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        })
    };
    poll_until("the batch waiting for room", || async {
        let now = counter(&app, "swarmwise_tracker_backpressure_waits_total").await;
        if now > before {
            Ok(())
        } else {
            Err(format!("waits {now}"))
        }
    })
    .await;
    assert!(
        !request.is_finished(),
        "the batch was answered while the buffer was full"
    );

    drop(lock);
    let (status, body) = tokio::time::timeout(WAIT, request)
        .await
        .expect("the batch is answered once the store catches up")
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(items(&app, &key, "workflow_id=wf-2").await.len(), 2);
    assert_eq!(items(&app, &key, "").await.len(), 4);
}

/// Past `tracking.max_pending_wait_ms` the batch is shed: 503 `overloaded`
/// with Retry-After, and none of its rows is stored.
#[actix_web::test]
async fn postgres_batch_ingest_sheds_with_503_and_stores_nothing() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.tracking.batch_size = 1;
        s.tracking.max_pending = 2;
        s.tracking.max_pending_wait_ms = 200;
        s.tracking.read_flush_timeout_ms = 30_000;
    })
    .await;
    let (_, key) = app.workspace("A").await;
    app.agent(&key, "a1").await;
    let lock = block_inserts(&app).await;
    app.track(&key, "a1", "wf-1", "strategy", 0.5).await;
    app.track(&key, "a1", "wf-1", "strategy", 0.5).await;

    let res = app
        .post(&key, "/api/v1/recommendations/batch", &batch("wf-shed", 2))
        .await;
    let retry_after = res.headers().get("retry-after").cloned();
    let body = assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "overloaded", None).await;
    assert!(retry_after.is_some(), "no Retry-After: {body}");
    // A single track is shed the same way.
    let res = app
        .post(
            &key,
            "/api/v1/recommendations",
            &batch("wf-shed", 1)["items"][0],
        )
        .await;
    assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "overloaded", None).await;

    drop(lock);
    // Once the two acknowledged rows are stored, nothing of the shed
    // requests is.
    assert_eq!(items(&app, &key, "workflow_id=wf-1").await.len(), 2);
    assert!(items(&app, &key, "workflow_id=wf-shed").await.is_empty());
    assert_eq!(items(&app, &key, "").await.len(), 2);
}

/// The filter shapes of `GET /recommendations` (the SQL of
/// `src/store/recommendations/{sqlite,postgres}.rs`: `workspace_id` always,
/// each filter an equality, `id < cursor`, newest first) and the index each
/// must walk.
const LIST_SHAPES: &[(&str, &str)] = &[
    ("", "idx_recommendations_workspace_id"),
    (" AND agent_id = 'a1'", "idx_recommendations_agent"),
    (
        " AND workflow_id = 'wf-1'",
        "idx_recommendations_workflow_id",
    ),
    (
        " AND outcome_status = 'approved'",
        "idx_recommendations_status",
    ),
    (
        " AND recommendation_type = 'risk'",
        "idx_recommendations_type",
    ),
    (
        " AND agent_id = 'a1' AND recommendation_type = 'risk'",
        "idx_recommendations_",
    ),
    (
        " AND agent_id = 'a1' AND outcome_status = 'pending'",
        "idx_recommendations_",
    ),
];

/// The shape of a page of combined filters (`RecommendationFilter.window`):
/// the leading filter's newest rows below the cursor, at most a window of
/// PostgreSQL's `EXPLAIN` of `sql` (a statement starting with `EXPLAIN`)
/// on `c`, its lines joined with " | ".
async fn pg_plan(c: &mut PgConnection, sql: &str) -> String {
    let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(c).await.unwrap();
    rows.iter()
        .map(|r| r.0.as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// them, then the other filter, without sorting the window again.
fn windowed_sql(placeholder: &str, cursor: &str) -> String {
    format!(
        "SELECT id FROM (SELECT id, recommendation_type FROM agent_recommendations \
         WHERE workspace_id = {placeholder} AND agent_id = 'a1' AND id < {cursor} \
         ORDER BY id DESC LIMIT 10000) AS w WHERE recommendation_type = 'risk'"
    )
}

fn list_sql(filter: &str, placeholder: &str, cursor: &str) -> String {
    format!(
        "SELECT id FROM agent_recommendations WHERE workspace_id = {placeholder}{filter} \
         AND id < {cursor} ORDER BY id DESC LIMIT 51"
    )
}

/// SQLite: every list shape walks an index in order (no full scan, no
/// sort of the matching rows in a temporary b-tree), so a page costs the
/// same at a million rows as at ten.
#[actix_web::test]
async fn sqlite_every_list_filter_walks_an_index_in_order() {
    use sqlx::sqlite::SqliteConnection;
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let mut c = SqliteConnection::connect(&app.database_url).await.unwrap();
    for (filter, index) in LIST_SHAPES {
        let sql = format!("EXPLAIN QUERY PLAN {}", list_sql(filter, "?", "?"));
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&sql)
            .bind(uuid::Uuid::nil())
            .bind(uuid::Uuid::max())
            .fetch_all(&mut c)
            .await
            .unwrap();
        let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        let text = plan.join(" | ");
        assert!(
            plan.iter()
                .any(|d| d.contains("USING") && d.contains(index)),
            "{filter:?} does not use {index}: {text}"
        );
        assert!(!text.contains("TEMP B-TREE"), "{filter:?} sorts: {text}");
        assert!(
            !plan
                .iter()
                .any(|d| d.starts_with("SCAN") && !d.contains("INDEX")),
            "{filter:?} scans the table: {text}"
        );
    }
    // A windowed page: the window is a co-routine walking the leading
    // filter's index, read in its order (no sort, which would read the
    // whole window before the first row), so the page stops once full.
    let sql = format!("EXPLAIN QUERY PLAN {} LIMIT 51", windowed_sql("?", "?"));
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(&sql)
        .bind(uuid::Uuid::nil())
        .bind(uuid::Uuid::max())
        .fetch_all(&mut c)
        .await
        .unwrap();
    let text = crate::helpers::plan_detail(&rows);
    assert!(text.contains("CO-ROUTINE"), "{text}");
    assert!(text.contains("idx_recommendations_agent"), "{text}");
    assert!(!text.contains("TEMP B-TREE"), "{text}");
}

/// PostgreSQL: with sequential scans priced out (the test tables are
/// empty, so the planner would rightly prefer them), every list shape has
/// an index that yields its rows in order: no Sort node. (Which index the
/// planner picks depends on statistics; SQLite's choice is checked by name.)
#[actix_web::test]
async fn postgres_every_list_filter_has_an_index_in_order() {
    if !postgres_available().await {
        crate::helpers::skipped(module_path!());
        return;
    }
    let app = spawn_app_with(Backend::Postgres, |_| {}).await;
    let mut c = PgConnection::connect(&app.database_url).await.unwrap();
    c.execute("SET enable_seqscan = off").await.unwrap();
    c.execute("SET enable_bitmapscan = off").await.unwrap();
    for (filter, _) in LIST_SHAPES {
        let sql = format!(
            "EXPLAIN {}",
            list_sql(
                filter,
                "'00000000-0000-0000-0000-000000000000'::uuid",
                "'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid"
            )
        );
        let text = pg_plan(&mut c, &sql).await;
        assert!(text.contains("Index"), "{filter:?} uses no index: {text}");
        assert!(!text.contains("Sort"), "{filter:?} sorts: {text}");
    }
    // A windowed page keeps the window's order: its outer ORDER BY adds no
    // Sort node, so the plan stops reading once the page is full.
    let sql = format!(
        "EXPLAIN {} ORDER BY id DESC LIMIT 51",
        windowed_sql(
            "'00000000-0000-0000-0000-000000000000'::uuid",
            "'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid"
        )
    );
    let text = pg_plan(&mut c, &sql).await;
    assert!(text.contains("Index"), "windowed: {text}");
    assert!(!text.contains("Sort"), "windowed: {text}");
}

/// Cursors are opaque and bound to their workspace: another workspace's
/// cursor and a tampered one are refused (422 `invalid_field` naming
/// `cursor`, as a malformed cursor always was on this endpoint), and reveal
/// nothing; the owner pages on with it.
async fn cursors_are_bound_to_their_workspace(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let (_, key_a) = app.workspace("A").await;
    let (_, key_b) = app.workspace("B").await;
    app.agent(&key_a, "a1").await;
    app.agent(&key_b, "a1").await;
    let older = app.track(&key_a, "a1", "wf-1", "strategy", 0.5).await;
    let newer = app.track(&key_a, "a1", "wf-2", "strategy", 0.5).await;
    app.track(&key_b, "a1", "wf-1", "strategy", 0.5).await;

    let first = app
        .json(&key_a, "/api/v1/recommendations?agent_id=a1&limit=1")
        .await;
    assert_eq!(first["items"][0]["id"], newer.as_str());
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    // The cursor carries a tag bound to the workspace and the row: the row's
    // id alone (its first 32 hex digits) is not a cursor.
    let bare = cursor.get(..32).unwrap_or_default();
    assert_eq!(bare, newer.replace('-', ""), "{cursor}");
    let res = app
        .get(
            &key_a,
            &format!("/api/v1/recommendations?agent_id=a1&limit=1&cursor={bare}"),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a bare id as cursor"
    );
    let second = app
        .json(
            &key_a,
            &format!("/api/v1/recommendations?agent_id=a1&limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(second["items"][0]["id"], older.as_str(), "{second}");

    // B replays A's cursor: refused, not paged from.
    let res = app
        .get(&key_b, &format!("/api/v1/recommendations?cursor={cursor}"))
        .await;
    let body = assert_error(
        res,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("cursor"),
    )
    .await;
    assert!(!body.to_string().contains(&newer), "{body}");
    // A tampered cursor (one digit of the id changed), a bare id, junk.
    let flipped = {
        let mut c: Vec<char> = cursor.chars().collect();
        c[5] = if c[5] == '0' { '1' } else { '0' };
        c.into_iter().collect::<String>()
    };
    for bad in [flipped, newer.clone(), "zzz".to_owned()] {
        let res = app
            .get(&key_a, &format!("/api/v1/recommendations?cursor={bad}"))
            .await;
        assert_error(
            res,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("cursor"),
        )
        .await;
    }
}
crate::both_backends!(cursors_are_bound_to_their_workspace);

/// SQLite: the per-agent counts by status and the all-time usage totals
/// read the rollup by its primary key (a few rows per agent, never the
/// recommendations); usage over a time range reads only an index, in group
/// order (no table rows, no temporary b-tree).
#[actix_web::test]
async fn sqlite_aggregates_read_the_rollup_or_an_index() {
    use sqlx::sqlite::SqliteConnection;
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let mut c = SqliteConnection::connect(&app.database_url).await.unwrap();
    for (table, sql) in [
        (
            "recommendation_rollup",
            "EXPLAIN QUERY PLAN SELECT agent_id, outcome_status, n FROM recommendation_rollup \
             WHERE workspace_id = ? AND n > 0",
        ),
        (
            "recommendation_usage_rollup",
            "EXPLAIN QUERY PLAN SELECT agent_id, n, prompt_tokens AS prompt, completion_tokens AS completion, \
             max(cost_usd, 0.0) AS cost, unpriced FROM recommendation_usage_rollup \
             WHERE workspace_id = ? AND n > 0 ORDER BY agent_id",
        ),
    ] {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql)
            .bind(uuid::Uuid::nil())
            .fetch_all(&mut c)
            .await
            .unwrap();
        let text = crate::helpers::plan_detail(&rows);
        assert!(
            text.contains(&format!("SEARCH {table} USING PRIMARY KEY (workspace_id=?)")),
            "{text}"
        );
        assert!(!text.contains("agent_recommendations"), "{text}");
        assert!(!text.contains("TEMP B-TREE"), "{text}");
    }
    // Token and cost totals over a time range (the SQL of usage_totals
    // with a range): an index-only scan.
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT agent_id, count(*) AS n, \
         COALESCE(SUM(prompt_tokens), 0) AS prompt, COALESCE(SUM(completion_tokens), 0) AS completion, \
         COALESCE(SUM(cost_usd), 0.0) AS cost, \
         SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced \
         FROM agent_recommendations WHERE workspace_id = ?1 \
         AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3) \
         AND (prompt_tokens IS NOT NULL OR completion_tokens IS NOT NULL) \
         GROUP BY agent_id ORDER BY agent_id",
    )
    .bind(uuid::Uuid::nil())
    .bind(None::<i64>)
    .bind(None::<i64>)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let text = crate::helpers::plan_detail(&rows);
    assert!(
        text.contains("COVERING INDEX idx_recommendations_usage"),
        "{text}"
    );
    assert!(!text.contains("TEMP B-TREE"), "{text}");
}

/// A page of combined filters examines a bounded window of rows
/// (`limits.list_scan_rows`), so a tenant cannot make one request walk the
/// whole workspace with two filters that rarely match together: a short
/// page (even an empty one) carries a cursor that continues below the
/// window, and following the cursors until null lists exactly the matches.
/// Another workspace's rows never show, and its key cannot follow A's
/// cursor.
async fn combined_filters_page_through_bounded_windows(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.limits.list_scan_rows = 10).await;
    let (_, key_a) = app.workspace("A").await;
    let (_, key_b) = app.workspace("B").await;
    app.agent(&key_a, "a1").await;
    app.agent(&key_b, "a1").await;
    // The one `risk` row is A's oldest; 30 `strategy` rows are newer, with
    // B's rows of the same agent and type interleaved.
    let risk = app.track(&key_a, "a1", "wf-r", "risk", 0.5).await;
    for i in 0..30 {
        app.track(&key_a, "a1", &format!("wf-{i}"), "strategy", 0.5)
            .await;
        if i % 10 == 0 {
            app.track(&key_b, "a1", &format!("wf-b{i}"), "risk", 0.5)
                .await;
        }
    }
    let query = "agent_id=a1&recommendation_type=risk&limit=5";
    let first = app
        .json(&key_a, &format!("/api/v1/recommendations?{query}"))
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 0, "{first}");
    let mut cursor = first["next_cursor"]
        .as_str()
        .expect("an empty window page still continues")
        .to_owned();
    // B cannot follow A's cursor.
    let res = app
        .get(
            &key_b,
            &format!("/api/v1/recommendations?{query}&cursor={cursor}"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut found = Vec::new();
    let mut pages = 1;
    loop {
        let page = app
            .json(
                &key_a,
                &format!("/api/v1/recommendations?{query}&cursor={cursor}"),
            )
            .await;
        pages += 1;
        assert!(pages <= 10, "the cursors do not end: {page}");
        for item in page["items"].as_array().unwrap() {
            found.push(item["id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(
        found,
        std::slice::from_ref(&risk),
        "exactly A's one match, once"
    );
    // Dense matches: full pages come from the window in one query; paging
    // through them with a small limit lists every match once, newest first.
    let mut dense = vec![risk.clone()];
    for i in 0..7 {
        dense.push(
            app.track(&key_a, "a1", &format!("wf-d{i}"), "risk", 0.5)
                .await,
        );
    }
    dense.reverse();
    let query = "agent_id=a1&recommendation_type=risk&limit=3";
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/recommendations?{query}&cursor={c}"),
            None => format!("/api/v1/recommendations?{query}"),
        };
        let page = app.json(&key_a, &path).await;
        for item in page["items"].as_array().unwrap() {
            listed.push(item["id"].as_str().unwrap().to_owned());
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert!(cursor.is_none(), "the cursors do not end");
    assert_eq!(listed, dense, "every match once, newest first");
    // A single filter is one index walk: full pages, as before.
    let page = app
        .json(&key_a, "/api/v1/recommendations?agent_id=a1&limit=5")
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5, "{page}");
}

crate::both_backends!(combined_filters_page_through_bounded_windows);
