//! [`IdempotencyStore`] on SQLite. Every query names its scope
//! (`COALESCE(workspace_id, X'')`, the unique index's expression: NULL is
//! the admin's scope). A claim runs in one transaction that writes first, so
//! it holds SQLite's write lock from its first statement: two claims of one
//! key are serialised. Times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use swarmwise_actors::ports::StoreError;
use uuid::Uuid;

use super::{
    headers_json, ClaimOutcome, Existing, IdempotencyClaim, IdempotencyScope, IdempotencyStore,
    StoredResponse, STATE_COMPLETED, STATE_IN_PROGRESS,
};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

/// The scope's unique-index value (NULL workspace = the admin's scope).
const SCOPE: &str = "COALESCE(workspace_id, X'') = COALESCE(?, X'')";

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        c: &IdempotencyClaim,
    ) -> Result<ClaimOutcome, StoreError> {
        let ws = c.scope.workspace().map(|w| w.0);
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (claim_token, workspace_id, endpoint, idem_key, fingerprint, state, \
                 owner_node, lease_until, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(c.token)
            .bind(ws)
            .bind(&c.endpoint)
            .bind(&c.key)
            .bind(&c.fingerprint)
            .bind(STATE_IN_PROGRESS)
            .bind(&c.node)
            .bind(micros(c.lease_until))
            .bind(micros(c.now))
            .bind(micros(c.expires_at))
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
            if inserted == 1 {
                tx.commit().await.map_err(unexpected)?;
                return Ok(ClaimOutcome::Claimed);
            }
            let row = sqlx::query(&format!(
                "SELECT claim_token, fingerprint, state, lease_until, expires_at, status, headers, body \
                 FROM idempotency_keys WHERE {SCOPE} AND endpoint = ? AND idem_key = ?"
            ))
            .bind(ws)
            .bind(&c.endpoint)
            .bind(&c.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
            let Some(r) = row else { continue };
            let read = || -> anyhow::Result<Existing> {
                Ok(Existing {
                    token: r.try_get("claim_token")?,
                    fingerprint: r.try_get("fingerprint")?,
                    state: r.try_get("state")?,
                    lease_until: from_micros(r.try_get("lease_until")?)?,
                    expires_at: from_micros(r.try_get("expires_at")?)?,
                    status: r.try_get("status")?,
                    headers: r.try_get("headers")?,
                    body: r.try_get("body")?,
                })
            };
            let existing = read().map_err(StoreError::Unexpected)?;
            if !existing.is_free_for(c) {
                tx.commit().await.map_err(unexpected)?;
                return existing.outcome(c);
            }
            sqlx::query(
                "UPDATE idempotency_keys SET claim_token = ?, fingerprint = ?, state = ?, owner_node = ?, \
                 lease_until = ?, status = NULL, headers = NULL, body = NULL, created_at = ?, completed_at = NULL, \
                 expires_at = ? WHERE claim_token = ?",
            )
            .bind(c.token)
            .bind(&c.fingerprint)
            .bind(STATE_IN_PROGRESS)
            .bind(&c.node)
            .bind(micros(c.lease_until))
            .bind(micros(c.now))
            .bind(micros(c.expires_at))
            .bind(existing.token)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?;
            tx.commit().await.map_err(unexpected)?;
            return Ok(ClaimOutcome::Claimed);
        }
        Err(StoreError::Unavailable(
            "the idempotency key changed hands three times during one claim; retry".into(),
        ))
    }

    async fn renew_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(&format!(
            "UPDATE idempotency_keys SET lease_until = ? WHERE {SCOPE} AND claim_token = ? AND state = ?"
        ))
        .bind(micros(lease_until))
        .bind(scope.workspace().map(|w| w.0))
        .bind(token)
        .bind(STATE_IN_PROGRESS)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn complete_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
        response: &StoredResponse,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let headers = headers_json(response)?;
        let n = sqlx::query(&format!(
            "UPDATE idempotency_keys SET state = ?, status = ?, headers = ?, body = ?, completed_at = ? \
             WHERE {SCOPE} AND claim_token = ? AND state = ?"
        ))
        .bind(STATE_COMPLETED)
        .bind(i32::from(response.status))
        .bind(headers)
        .bind(&response.body)
        .bind(micros(at))
        .bind(scope.workspace().map(|w| w.0))
        .bind(token)
        .bind(STATE_IN_PROGRESS)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn release_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(&format!(
            "DELETE FROM idempotency_keys WHERE {SCOPE} AND claim_token = ? AND state = ?"
        ))
        .bind(scope.workspace().map(|w| w.0))
        .bind(token)
        .bind(STATE_IN_PROGRESS)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let before = micros(before);
        let n = sqlx::query(
            "DELETE FROM idempotency_keys WHERE expires_at <= ? AND NOT (state = ? AND lease_until > ?)",
        )
        .bind(before)
        .bind(STATE_IN_PROGRESS)
        .bind(before)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n)
    }
}
