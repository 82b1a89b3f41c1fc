//! API keys and the audit log: listing, revoking and rotating keys with the
//! admin key, a revoked key refused at once (and, revoked elsewhere, within
//! the cache TTL), the 401-vs-403 rule on every endpoint, the audit log.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;

use crate::both_backends;
use crate::helpers::{assert_error, spawn_app, spawn_app_with, Backend, TestApp};

/// Polls `check` until it is true; fails the test after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs one statement on the test's database behind the service's back (as
/// another node or an operator's psql would).
async fn execute(app: &TestApp, backend: Backend, sql: &str, ws: &str) {
    let ws = uuid::Uuid::parse_str(ws).unwrap();
    match backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query(sql).bind(ws).execute(&mut c).await.unwrap();
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&app.database_url)
                .await
                .unwrap();
            sqlx::query(sql).bind(ws).execute(&mut c).await.unwrap();
        }
    }
}

async fn status(app: &TestApp, key: &str, path: &str) -> StatusCode {
    app.get(key, path).await.status()
}

async fn keys_are_listed_revoked_and_rotated(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_key.clone();
    let (ws, k1) = app.workspace("A").await;
    let (ws_b, _) = app.workspace("B").await;
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    let k2 = created["api_key"].as_str().unwrap().to_owned();
    let k2_id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["prefix"].as_str().unwrap(), &k2[..10]);

    // The listing: prefix, created_at, revoked_at; never the key or its hash.
    let res = app
        .get(&admin, &format!("/api/v1/workspaces/{ws}/api-keys"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for secret in [
        &k1,
        &k2,
        &swarmwise::auth::hash_key(&k1),
        &swarmwise::auth::hash_key(&k2),
    ] {
        assert!(
            !text.contains(secret.as_str()),
            "listing leaks a key or hash: {text}"
        );
    }
    let list: Value = serde_json::from_str(&text).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        let mut fields: Vec<_> = item.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(
            fields,
            ["created_at", "id", "prefix", "revoked_at"],
            "{item}"
        );
        assert!(item["revoked_at"].is_null());
    }
    let k1_id = items
        .iter()
        .find(|i| k1.starts_with(i["prefix"].as_str().unwrap()))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Revoke k1 while it is cached: the very next request with it is 401.
    assert_eq!(status(&app, &k1, "/api/v1/agents").await, StatusCode::OK);
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/{k1_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let revoked: Value = res.json().await.unwrap();
    assert_eq!(revoked["id"], k1_id.as_str());
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert_error(
        app.get(&k1, "/api/v1/agents").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    )
    .await;
    assert_eq!(status(&app, &k2, "/api/v1/agents").await, StatusCode::OK);
    // Revoking again changes nothing.
    let again: Value = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/{k1_id}/revoke"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);

    // Rotate k2: the new key works, k2 is 401 at once.
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/{k2_id}/rotate"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let rotated: Value = res.json().await.unwrap();
    let k3 = rotated["api_key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["revoked"]["id"], k2_id.as_str());
    assert!(rotated["revoked"]["revoked_at"].is_string());
    assert_ne!(k3, k2);
    assert_error(
        app.get(&k2, "/api/v1/agents").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        None,
    )
    .await;
    assert_eq!(status(&app, &k3, "/api/v1/agents").await, StatusCode::OK);
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/{k2_id}/rotate"),
            &json!({}),
        )
        .await;
    assert_error(res, StatusCode::CONFLICT, "api_key_revoked", None).await;
    let list = app
        .json(&admin, &format!("/api/v1/workspaces/{ws}/api-keys"))
        .await;
    let states: Vec<bool> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["revoked_at"].is_null())
        .collect();
    assert_eq!(
        states,
        [false, false, true],
        "k1, k2 revoked; k3 valid: {list}"
    );

    // Wrong ids.
    let other = uuid::Uuid::now_v7();
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/{other}/revoke"),
            &json!({}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "api_key_not_found", None).await;
    // A key of A named under B is not B's.
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws_b}/api-keys/{k1_id}/rotate"),
            &json!({}),
        )
        .await;
    assert_error(res, StatusCode::NOT_FOUND, "api_key_not_found", None).await;
    assert_error(
        app.get(&admin, &format!("/api/v1/workspaces/{other}/api-keys"))
            .await,
        StatusCode::NOT_FOUND,
        "workspace_not_found",
        None,
    )
    .await;
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws}/api-keys/nope/revoke"),
            &json!({}),
        )
        .await;
    assert_error(
        res,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("key_id"),
    )
    .await;

    // The admin lists workspaces, a page at a time.
    let page = app.json(&admin, "/api/v1/workspaces?limit=1").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page2 = app
        .json(
            &admin,
            &format!("/api/v1/workspaces?limit=1&cursor={cursor}"),
        )
        .await;
    let mut names = vec![
        page["items"][0]["name"].clone(),
        page2["items"][0]["name"].clone(),
    ];
    names.sort_by_key(|n| n.to_string());
    assert_eq!(names, [json!("A"), json!("B")]);
    assert!(page2["next_cursor"].is_null());
    app.stop().await.unwrap();
}
both_backends!(keys_are_listed_revoked_and_rotated);

/// A tenant tries to list, add, revoke and rotate keys (its own and another
/// workspace's), list workspaces and read the audit log: 403 each time, and
/// nothing changes.
async fn tenants_cannot_manage_keys_or_read_the_audit_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ws_a, key_a) = app.workspace("A").await;
    let (ws_b, key_b) = app.workspace("B").await;
    let keys_a = app
        .json(
            &app.admin_key,
            &format!("/api/v1/workspaces/{ws_a}/api-keys"),
        )
        .await;
    let key_a_id = keys_a["items"][0]["id"].as_str().unwrap().to_owned();
    for ws in [&ws_a, &ws_b] {
        assert_error(
            app.get(&key_b, &format!("/api/v1/workspaces/{ws}/api-keys"))
                .await,
            StatusCode::FORBIDDEN,
            "admin_key_required",
            None,
        )
        .await;
        let res = app
            .post(
                &key_b,
                &format!("/api/v1/workspaces/{ws}/api-keys"),
                &json!({}),
            )
            .await;
        assert_error(res, StatusCode::FORBIDDEN, "admin_key_required", None).await;
    }
    for action in ["revoke", "rotate"] {
        let res = app
            .post(
                &key_b,
                &format!("/api/v1/workspaces/{ws_a}/api-keys/{key_a_id}/{action}"),
                &json!({}),
            )
            .await;
        assert_error(res, StatusCode::FORBIDDEN, "admin_key_required", None).await;
    }
    for path in [
        "/api/v1/audit",
        "/api/v1/workspaces",
        &format!("/api/v1/audit?workspace_id={ws_b}"),
    ] {
        assert_error(
            app.get(&key_b, path).await,
            StatusCode::FORBIDDEN,
            "admin_key_required",
            None,
        )
        .await;
    }
    // Nothing changed: A's key works, A still has one key, no key was added.
    assert_eq!(status(&app, &key_a, "/api/v1/agents").await, StatusCode::OK);
    for ws in [&ws_a, &ws_b] {
        let keys = app
            .json(&app.admin_key, &format!("/api/v1/workspaces/{ws}/api-keys"))
            .await;
        assert_eq!(keys["items"].as_array().unwrap().len(), 1, "{keys}");
        assert!(keys["items"][0]["revoked_at"].is_null());
    }
    app.stop().await.unwrap();
}
both_backends!(tenants_cannot_manage_keys_or_read_the_audit_log);

/// Every operation of the OpenAPI document: an invalid credential is 401
/// (even with a malformed body); a workspace key on an admin operation and
/// the admin key on a workspace operation are 403.
async fn invalid_credentials_are_401_and_wrong_keys_403_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let (ws, key) = app.workspace("A").await;
    let doc = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    let mut admin_ops = 0;
    let mut tenant_ops = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let schemes: Vec<String> = op["security"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .flat_map(|r| r.as_object().unwrap().keys().cloned())
                        .collect()
                })
                .unwrap_or_default();
            if schemes.is_empty() {
                continue; // public: health, metrics
            }
            let url = path
                .replace("{workspace_id}", &ws)
                .replace("{agent_id}", "some-agent")
                .replace("{workflow_id}", "some-workflow")
                .replace("{key_id}", &id)
                .replace("{run_id}", &id)
                .replace("{id}", &id);
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |bearer: Option<&str>| {
                let mut req = app
                    .client
                    .request(method.clone(), app.url(&url))
                    .header("Content-Type", "application/json")
                    .body("{\"malformed\":");
                if let Some(b) = bearer {
                    req = req.bearer_auth(b);
                }
                req.send()
            };
            let what = format!("{method} {url}");
            for bad in [
                None,
                Some("swk_0000"),
                Some("not a key at all"),
                Some(&*format!("{key}x")),
            ] {
                let res = send(bad).await.unwrap();
                let got = res.status();
                let body: Value = res.json().await.unwrap_or_default();
                assert_eq!(got, StatusCode::UNAUTHORIZED, "{what} with {bad:?}: {body}");
                assert_eq!(body["error"], "unauthorized", "{what}: {body}");
            }
            let admin_only = schemes.iter().all(|s| s == "admin_key");
            let tenant_only = schemes.iter().all(|s| s == "api_key");
            if admin_only {
                admin_ops += 1;
                let res = send(Some(&key)).await.unwrap();
                assert_error(res, StatusCode::FORBIDDEN, "admin_key_required", None).await;
            } else if tenant_only {
                tenant_ops += 1;
                let res = send(Some(&app.admin_key)).await.unwrap();
                assert_error(res, StatusCode::FORBIDDEN, "workspace_key_required", None).await;
            }
        }
    }
    assert!(admin_ops >= 7, "only {admin_ops} admin operations found");
    assert!(
        tenant_ops >= 20,
        "only {tenant_ops} tenant operations found"
    );
    app.stop().await.unwrap();
}
both_backends!(invalid_credentials_are_401_and_wrong_keys_403_everywhere);

/// A key revoked directly in the database (by another node, or an operator)
/// is refused within `auth.cache_ttl_secs`; so is an agent deleted there.
async fn revoked_elsewhere_is_refused_within_the_ttl(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.cache_ttl_secs = 1).await;
    let (ws, key) = app.workspace("A").await;
    app.agent(&key, "alpha").await;
    // Cache the key and the agent.
    app.track(&key, "alpha", "wf-1", "strategy", 0.5).await;
    assert_eq!(status(&app, &key, "/api/v1/agents").await, StatusCode::OK);

    execute(
        &app,
        backend,
        "DELETE FROM agents WHERE workspace_id = $1 AND id = 'alpha'",
        &ws,
    )
    .await;
    let track = json!({"agent_id": "alpha", "correlation_id": "c", "workflow_id": "wf-2",
        "recommendation_type": "strategy", "content": {}, "confidence": 0.5});
    eventually(Duration::from_secs(15), "deleted agent refused", || async {
        let res = app.post(&key, "/api/v1/recommendations", &track).await;
        res.status() == StatusCode::UNPROCESSABLE_ENTITY
    })
    .await;

    let now = match backend {
        Backend::Postgres => "now()".to_owned(),
        Backend::Sqlite => chrono::Utc::now().timestamp_micros().to_string(),
    };
    execute(
        &app,
        backend,
        &format!("UPDATE api_keys SET revoked_at = {now} WHERE workspace_id = $1"),
        &ws,
    )
    .await;
    eventually(
        Duration::from_secs(15),
        "key revoked in the database refused",
        || async { status(&app, &key, "/api/v1/agents").await == StatusCode::UNAUTHORIZED },
    )
    .await;
    app.stop().await.unwrap();
}
both_backends!(revoked_elsewhere_is_refused_within_the_ttl);

async fn admin_actions_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.admin_key.clone();
    let (ws_a, key_a) = app.workspace("A").await;
    let (ws_b, _) = app.workspace("B").await;
    let added: Value = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws_a}/api-keys"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let added_id = added["id"].as_str().unwrap().to_owned();
    let rotated: Value = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws_a}/api-keys/{added_id}/rotate"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_id = rotated["id"].as_str().unwrap().to_owned();
    let res = app
        .post(
            &admin,
            &format!("/api/v1/workspaces/{ws_a}/api-keys/{new_id}/revoke"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = app.get(&admin, "/api/v1/audit").await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    for secret in [
        &key_a,
        rotated["api_key"].as_str().unwrap(),
        added["api_key"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "the audit log holds a key: {text}");
    }
    let log: Value = serde_json::from_str(&text).unwrap();
    let items = log["items"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = items
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["workspace_id"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, w: &str, t: &str| (a.to_owned(), w.to_owned(), t.to_owned());
    assert_eq!(
        summary,
        [
            s("api_key.revoke", &ws_a, &new_id),
            s("api_key.rotate", &ws_a, &added_id),
            s("api_key.create", &ws_a, &added_id),
            s("workspace.create", &ws_b, &ws_b),
            s("workspace.create", &ws_a, &ws_a),
        ],
        "newest first: {log}"
    );
    for e in items {
        assert_eq!(e["actor"], "admin");
        assert!(
            e["at"].is_string() && e["id"].is_string() && e["details"].is_object(),
            "{e}"
        );
    }
    assert_eq!(items[1]["details"]["new_key_id"], new_id.as_str());
    assert_eq!(items[4]["details"]["name"], "A");

    // Filters and pagination.
    let only = app
        .json(&admin, "/api/v1/audit?action=workspace.create")
        .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 2);
    let only = app
        .json(&admin, &format!("/api/v1/audit?workspace_id={ws_b}"))
        .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    let only = app
        .json(
            &admin,
            &format!("/api/v1/audit?workspace_id={ws_a}&action=api_key.rotate"),
        )
        .await;
    assert_eq!(only["items"].as_array().unwrap().len(), 1);
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/v1/audit?limit=2&cursor={c}"),
            None => "/api/v1/audit?limit=2".to_owned(),
        };
        let page = app.json(&admin, &path).await;
        walked.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let all: Vec<Value> = items.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(walked, all);
    assert_error(
        app.get(&admin, "/api/v1/audit?cursor=nope").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("cursor"),
    )
    .await;
    assert_error(
        app.get(&admin, "/api/v1/audit?workspace_id=nope").await,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("workspace_id"),
    )
    .await;
    assert_error(
        app.get(&admin, "/api/v1/audit?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
        Some("limit"),
    )
    .await;
    app.stop().await.unwrap();
}
both_backends!(admin_actions_are_audited);
