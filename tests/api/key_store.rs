//! The key and audit store (`KeyStore`), written once and run against both
//! backends: what the key endpoints and the audit log rely on.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{fresh_database, Backend};

/// The key store, written once, against both backends: what the endpoints
/// rely on, including two rotations of one key racing (exactly one wins).
async fn key_store_conformance(backend: Backend) {
    use swarmwise::auth::{generate_key, hash_key};
    use swarmwise::store::{AuditEntry, AuditFilter, KeyChange};
    use swarmwise_actors::domain::{to_micros, WorkspaceId};

    let (url, _dir) = fresh_database(backend).await;
    let settings = swarmwise::config::DatabaseSettings {
        url,
        ..Default::default()
    };
    let store = swarmwise::store::connect(&settings).await.unwrap();
    let now = || to_micros(chrono::Utc::now());
    let mut wss = Vec::new();
    for name in ["one", "two", "three"] {
        let ws = WorkspaceId(uuid::Uuid::now_v7());
        let (_, k) = generate_key("swk_");
        store.create_workspace(ws, name, &k, now()).await.unwrap();
        wss.push((ws, k));
    }
    let (a, a_key) = wss[0].clone();
    let (b, _) = wss[1].clone();

    // Workspaces by id, paged.
    let first = store.workspaces(None, 2).await.unwrap();
    let rest = store.workspaces(Some(first[1].id), 10).await.unwrap();
    let names: Vec<_> = first.iter().chain(&rest).map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["one", "two", "three"]);
    assert_eq!(store.workspace(a).await.unwrap().unwrap().name, "one");
    assert!(store
        .workspace(WorkspaceId(uuid::Uuid::now_v7()))
        .await
        .unwrap()
        .is_none());

    // Revoke: done, then already revoked; unknown or another workspace's key: not found.
    let keys = store.api_keys(a).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, a_key.id);
    assert_eq!(keys[0].prefix, a_key.prefix);
    assert_eq!(
        store.revoke_api_key(b, a_key.id, now()).await.unwrap(),
        KeyChange::NotFound
    );
    let at = now();
    let KeyChange::Done(k) = store.revoke_api_key(a, a_key.id, at).await.unwrap() else {
        panic!("not revoked");
    };
    assert_eq!(k.revoked_at, Some(at));
    assert!(matches!(
        store.revoke_api_key(a, a_key.id, now()).await.unwrap(),
        KeyChange::AlreadyRevoked(k) if k.revoked_at == Some(at)
    ));
    assert_eq!(
        store.workspace_for_key(&a_key.key_hash).await.unwrap(),
        None
    );
    assert_eq!(store.api_keys(a).await.unwrap()[0].revoked_at, Some(at));

    // Rotate: a revoked key is not rotated (and its replacement not added).
    let (_, unused) = generate_key("swk_");
    assert!(matches!(
        store
            .rotate_api_key(a, a_key.id, &unused, now())
            .await
            .unwrap(),
        KeyChange::AlreadyRevoked(_)
    ));
    assert_eq!(
        store.workspace_for_key(&unused.key_hash).await.unwrap(),
        None
    );
    // Two rotations of one valid key race: exactly one wins.
    let (plain, live) = generate_key("swk_");
    store.add_api_key(a, &live, now()).await.unwrap();
    let (_, n1) = generate_key("swk_");
    let (_, n2) = generate_key("swk_");
    let (r1, r2) = tokio::join!(
        store.rotate_api_key(a, live.id, &n1, now()),
        store.rotate_api_key(a, live.id, &n2, now())
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    let wins = [&r1, &r2]
        .iter()
        .filter(|r| matches!(r, KeyChange::Done(_)))
        .count();
    assert_eq!(wins, 1, "{r1:?} {r2:?}");
    let mut resolved = 0;
    for n in [&n1, &n2] {
        if store.workspace_for_key(&n.key_hash).await.unwrap() == Some(a) {
            resolved += 1;
        }
    }
    assert_eq!(resolved, 1, "exactly the winner's new key is valid");
    assert_eq!(
        store.workspace_for_key(&hash_key(&plain)).await.unwrap(),
        None
    );

    // The audit log: newest first, filters, the cursor, JSON details kept.
    let mut ids = Vec::new();
    for (i, (ws, action)) in [
        (Some(a), "api_key.create"),
        (Some(b), "api_key.revoke"),
        (None, "workspace.create"),
        (Some(a), "api_key.revoke"),
    ]
    .into_iter()
    .enumerate()
    {
        let e = AuditEntry {
            id: uuid::Uuid::now_v7(),
            at: now(),
            actor: "admin".into(),
            action: action.into(),
            workspace_id: ws,
            target: format!("t{i}"),
            details: json!({"i": i, "nested": {"list": [1, "two"]}}),
        };
        store.insert_audit(&e).await.unwrap();
        ids.push(e);
    }
    let all = store
        .audit(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(all, newest_first);
    let of_a = store
        .audit(&AuditFilter {
            workspace_id: Some(a),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        of_a.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(),
        ["t3", "t0"]
    );
    let revokes = store
        .audit(&AuditFilter {
            action: Some("api_key.revoke".into()),
            before: Some(ids[3].id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        revokes
            .iter()
            .map(|e| e.target.as_str())
            .collect::<Vec<_>>(),
        ["t1"]
    );
}
both_backends!(key_store_conformance);
