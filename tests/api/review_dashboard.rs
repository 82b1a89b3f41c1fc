//! A hostile review of the dashboards (issue 11): what a workspace key could
//! do past the limits the API already had. Each test failed before its fix.

use reqwest::header::{COOKIE, RETRY_AFTER};
use reqwest::StatusCode;

use crate::dashboard::{browserless, sign_in};
use crate::helpers::{assert_error, spawn_app_with, Backend};

/// One workspace cannot hold more than `limits.max_event_streams_per_workspace`
/// event streams open (API and dashboard together): every open stream is
/// woken by every event of the server, so unbounded streams of one tenant
/// slow every other tenant. Another workspace still gets its stream.
#[actix_web::test]
async fn event_streams_are_capped_per_workspace() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.max_event_streams_per_workspace = 2;
    })
    .await;
    let (_, a) = app.workspace("A").await;
    let (_, b) = app.workspace("B").await;
    let first = app.get(&a, "/api/v1/events").await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookie = sign_in(&app, &a).await;
    let second = browserless()
        .get(app.url("/learning/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::OK);

    let third = app.get(&a, "/api/v1/events").await;
    assert!(third.headers().contains_key(RETRY_AFTER));
    assert_error(
        third,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_streams",
        None,
    )
    .await;
    let page = browserless()
        .get(app.url("/learning/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers().contains_key(RETRY_AFTER));
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("max_event_streams_per_workspace"));

    let other = app.get(&b, "/api/v1/events").await;
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another workspace is not affected"
    );
    drop((first, second, other));
}

/// Dashboard pages and CSV exports spend the session key's request budget
/// (`limits.key_requests_per_second`) like the API: a session was a way
/// around the per-key limit. Another workspace's session is not affected.
#[actix_web::test]
async fn dashboard_requests_spend_the_key_budget() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.key_requests_per_second = 1;
        s.limits.key_burst = 1;
    })
    .await;
    let (_, a) = app.workspace("A").await;
    let (_, b) = app.workspace("B").await;
    let cookie_a = sign_in(&app, &a).await;
    let cookie_b = sign_in(&app, &b).await;
    let mut limited = None;
    for _ in 0..20 {
        let res = browserless()
            .get(app.url("/learning/export/agents.csv"))
            .header(COOKIE, &cookie_a)
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::OK);
    }
    let limited = limited.expect("20 requests at 1/s: the key's budget runs out");
    assert!(limited.headers().contains_key(RETRY_AFTER));
    assert!(limited
        .text()
        .await
        .unwrap()
        .contains("key_requests_per_second"));
    let res = browserless()
        .get(app.url("/learning/trust-scores"))
        .header(COOKIE, &cookie_b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "workspace B keeps its own budget"
    );
}
