//! [`KeyStore`] on PostgreSQL. Key rows are read and changed in a
//! transaction scoped to their workspace, so the `api_keys` policy applies;
//! workspaces are listed through `swarmwise_workspaces()` (SECURITY
//! DEFINER); `audit_log` is append-only for the service role.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row, Transaction};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{StoreError, WorkspaceStore};
use uuid::Uuid;

use super::{ApiKeyInfo, AuditEntry, AuditFilter, KeyChange, KeyStore, WorkspaceInfo};
use crate::store::postgres::PgStore;
use crate::store::{unexpected, NewApiKey};

fn key_from_row(row: &PgRow) -> Result<ApiKeyInfo, sqlx::Error> {
    Ok(ApiKeyInfo {
        id: row.try_get("id")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn workspace_from_row(row: &PgRow) -> Result<WorkspaceInfo, sqlx::Error> {
    Ok(WorkspaceInfo {
        id: WorkspaceId(row.try_get("id")?),
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The key, locked for the rest of the transaction.
async fn lock_key(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    key_id: Uuid,
) -> Result<Option<ApiKeyInfo>, StoreError> {
    let row = sqlx::query(
        "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE workspace_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(ws.0)
    .bind(key_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(unexpected)?;
    row.as_ref()
        .map(key_from_row)
        .transpose()
        .map_err(unexpected)
}

/// Revokes a locked, valid key.
async fn mark_revoked(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    mut key: ApiKeyInfo,
    at: DateTime<Utc>,
) -> Result<ApiKeyInfo, StoreError> {
    sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE workspace_id = $1 AND id = $2")
        .bind(ws.0)
        .bind(key.id)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
    key.revoked_at = Some(at);
    Ok(key)
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_workspace(
        &self,
        ws: WorkspaceId,
        name: &str,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(ws.0)
            .bind(name)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn add_api_key(
        &self,
        ws: WorkspaceId,
        key: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.scoped(ws).await?;
        insert_key(&mut tx, ws, key, at).await?;
        tx.commit().await.map_err(unexpected)
    }

    async fn workspace_for_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>, StoreError> {
        let id: Option<Uuid> = sqlx::query_scalar("SELECT swarmwise_workspace_for_key($1)")
            .bind(key_hash)
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(id.map(WorkspaceId))
    }

    async fn workspaces(
        &self,
        after: Option<WorkspaceId>,
        limit: u32,
    ) -> Result<Vec<WorkspaceInfo>, StoreError> {
        let rows = sqlx::query("SELECT id, name, created_at FROM swarmwise_workspaces($1, $2)")
            .bind(after.map(|w| w.0))
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(unexpected)?;
        rows.iter()
            .map(workspace_from_row)
            .collect::<Result<_, _>>()
            .map_err(unexpected)
    }

    async fn workspace(&self, ws: WorkspaceId) -> Result<Option<WorkspaceInfo>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let row = sqlx::query("SELECT id, name, created_at FROM workspaces WHERE id = $1")
            .bind(ws.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        row.as_ref()
            .map(workspace_from_row)
            .transpose()
            .map_err(unexpected)
    }

    async fn api_keys(&self, ws: WorkspaceId) -> Result<Vec<ApiKeyInfo>, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let rows = sqlx::query(
            "SELECT id, prefix, created_at, revoked_at FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id",
        )
        .bind(ws.0)
        .fetch_all(&mut *tx)
        .await
        .map_err(unexpected)?;
        tx.commit().await.map_err(unexpected)?;
        rows.iter()
            .map(key_from_row)
            .collect::<Result<_, _>>()
            .map_err(unexpected)
    }

    async fn revoke_api_key(
        &self,
        ws: WorkspaceId,
        key_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<KeyChange, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let change = match lock_key(&mut tx, ws, key_id).await? {
            None => KeyChange::NotFound,
            Some(k) if k.revoked_at.is_some() => KeyChange::AlreadyRevoked(k),
            Some(k) => KeyChange::Done(mark_revoked(&mut tx, ws, k, at).await?),
        };
        if matches!(change, KeyChange::Done(_)) {
            crate::store::changes::pg_append(
                &mut tx,
                &self.origin,
                ws,
                crate::store::ChangeKind::Keys,
                &[],
            )
            .await?;
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(change)
    }

    async fn rotate_api_key(
        &self,
        ws: WorkspaceId,
        key_id: Uuid,
        new: &NewApiKey,
        at: DateTime<Utc>,
    ) -> Result<KeyChange, StoreError> {
        let mut tx = self.scoped(ws).await?;
        let change = match lock_key(&mut tx, ws, key_id).await? {
            None => KeyChange::NotFound,
            Some(k) if k.revoked_at.is_some() => KeyChange::AlreadyRevoked(k),
            Some(k) => {
                let old = mark_revoked(&mut tx, ws, k, at).await?;
                insert_key(&mut tx, ws, new, at).await?;
                KeyChange::Done(old)
            }
        };
        if matches!(change, KeyChange::Done(_)) {
            crate::store::changes::pg_append(
                &mut tx,
                &self.origin,
                ws,
                crate::store::ChangeKind::Keys,
                &[],
            )
            .await?;
        }
        tx.commit().await.map_err(unexpected)?;
        Ok(change)
    }

    async fn insert_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, workspace_id, target, details) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id)
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(e.workspace_id.map(|w| w.0))
        .bind(&e.target)
        .bind(&e.details)
        .execute(self.pool())
        .await
        .map_err(unexpected)?;
        Ok(())
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT id, at, actor, action, workspace_id, target, details FROM audit_log WHERE true",
        );
        if let Some(ws) = f.workspace_id {
            q.push(" AND workspace_id = ").push_bind(ws.0);
        }
        if let Some(action) = &f.action {
            q.push(" AND action = ").push_bind(action.clone());
        }
        if let Some(target) = &f.target {
            q.push(" AND target = ").push_bind(target.clone());
        }
        if let Some(before) = f.before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(f.limit));
        let rows = q.build().fetch_all(self.pool()).await.map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    workspace_id: r
                        .try_get::<Option<Uuid>, _>("workspace_id")?
                        .map(WorkspaceId),
                    target: r.try_get("target")?,
                    details: r.try_get("details")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(unexpected)
    }
}

async fn insert_key(
    tx: &mut Transaction<'static, Postgres>,
    ws: WorkspaceId,
    key: &NewApiKey,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO api_keys (id, workspace_id, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(key.id)
        .bind(ws.0)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(unexpected)?;
    Ok(())
}

#[async_trait]
impl WorkspaceStore for PgStore {
    async fn workspace_ids(&self) -> Result<Vec<WorkspaceId>, StoreError> {
        let ids: Vec<Uuid> = sqlx::query_scalar("SELECT swarmwise_workspace_ids()")
            .fetch_all(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(ids.into_iter().map(WorkspaceId).collect())
    }
}
