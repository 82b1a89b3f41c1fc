//! [`IdempotencyStore`] on PostgreSQL. A workspace scope sets
//! `app.workspace_id`; the admin scope (admin-key requests and the expiry
//! purge) sets `app.idempotency_admin = 'on'` (both transaction-local),
//! which the table's policy reads. A claim runs in one transaction: insert
//! (`ON CONFLICT DO NOTHING`: of two racing inserts the second waits for the
//! first to commit, then sees its row), else read the row `FOR UPDATE` and
//! take it over only if it lapsed or expired.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use swarmwise_actors::ports::StoreError;
use uuid::Uuid;

use super::{
    headers_json, ClaimOutcome, Existing, IdempotencyClaim, IdempotencyScope, IdempotencyStore,
    StoredResponse, STATE_COMPLETED, STATE_IN_PROGRESS,
};
use crate::store::postgres::{set_workspace, PgStore};
use crate::store::unexpected;

/// The scope's unique-index value (NULL workspace = the admin's scope).
const SCOPE: &str = "COALESCE(workspace_id, '00000000-0000-0000-0000-000000000000'::uuid) \
     = COALESCE($1::uuid, '00000000-0000-0000-0000-000000000000'::uuid)";

impl PgStore {
    async fn idempotency_tx(
        &self,
        scope: IdempotencyScope,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        match scope {
            IdempotencyScope::Workspace(ws) => set_workspace(&mut tx, ws).await?,
            IdempotencyScope::Admin => {
                sqlx::query("SELECT set_config('app.idempotency_admin', 'on', true)")
                    .execute(&mut *tx)
                    .await
                    .map_err(unexpected)?;
            }
        }
        Ok(tx)
    }
}

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn claim_idempotency_key(
        &self,
        c: &IdempotencyClaim,
    ) -> Result<ClaimOutcome, StoreError> {
        let ws = c.scope.workspace().map(|w| w.0);
        let mut tx = self.idempotency_tx(c.scope).await?;
        // A row deleted between the insert and the read (released, purged)
        // frees the key: insert again. Bounded, so contention cannot spin.
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (claim_token, workspace_id, endpoint, idem_key, fingerprint, state, \
                 owner_node, lease_until, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(c.token)
            .bind(ws)
            .bind(&c.endpoint)
            .bind(&c.key)
            .bind(&c.fingerprint)
            .bind(STATE_IN_PROGRESS)
            .bind(&c.node)
            .bind(c.lease_until)
            .bind(c.now)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(unexpected)?
            .rows_affected();
            if inserted == 1 {
                tx.commit().await.map_err(unexpected)?;
                return Ok(ClaimOutcome::Claimed);
            }
            let row = sqlx::query(&format!(
                "SELECT claim_token, fingerprint, state, lease_until, expires_at, status, headers::text AS headers, body \
                 FROM idempotency_keys WHERE {SCOPE} AND endpoint = $2 AND idem_key = $3 FOR UPDATE"
            ))
            .bind(ws)
            .bind(&c.endpoint)
            .bind(&c.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
            let Some(r) = row else { continue };
            let existing = Existing {
                token: r.try_get("claim_token").map_err(unexpected)?,
                fingerprint: r.try_get("fingerprint").map_err(unexpected)?,
                state: r.try_get("state").map_err(unexpected)?,
                lease_until: r.try_get("lease_until").map_err(unexpected)?,
                expires_at: r.try_get("expires_at").map_err(unexpected)?,
                status: r.try_get("status").map_err(unexpected)?,
                headers: r.try_get("headers").map_err(unexpected)?,
                body: r.try_get("body").map_err(unexpected)?,
            };
            if !existing.is_free_for(c) {
                tx.commit().await.map_err(unexpected)?;
                return existing.outcome(c);
            }
            sqlx::query(
                "UPDATE idempotency_keys SET claim_token = $2, fingerprint = $3, state = $4, owner_node = $5, \
                 lease_until = $6, status = NULL, headers = NULL, body = NULL, created_at = $7, completed_at = NULL, \
                 expires_at = $8 WHERE claim_token = $1",
            )
            .bind(existing.token)
            .bind(c.token)
            .bind(&c.fingerprint)
            .bind(STATE_IN_PROGRESS)
            .bind(&c.node)
            .bind(c.lease_until)
            .bind(c.now)
            .bind(c.expires_at)
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
        let mut tx = self.idempotency_tx(scope).await?;
        let n = sqlx::query(&format!(
            "UPDATE idempotency_keys SET lease_until = $3 WHERE {SCOPE} AND claim_token = $2 AND state = $4"
        ))
        .bind(scope.workspace().map(|w| w.0))
        .bind(token)
        .bind(lease_until)
        .bind(STATE_IN_PROGRESS)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
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
        let mut tx = self.idempotency_tx(scope).await?;
        let n = sqlx::query(&format!(
            "UPDATE idempotency_keys SET state = $3, status = $4, headers = $5::jsonb, body = $6, completed_at = $7 \
             WHERE {SCOPE} AND claim_token = $2 AND state = $8"
        ))
        .bind(scope.workspace().map(|w| w.0))
        .bind(token)
        .bind(STATE_COMPLETED)
        .bind(i32::from(response.status))
        .bind(headers)
        .bind(&response.body)
        .bind(at)
        .bind(STATE_IN_PROGRESS)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n == 1)
    }

    async fn release_idempotency_key(
        &self,
        scope: IdempotencyScope,
        token: Uuid,
    ) -> Result<bool, StoreError> {
        let mut tx = self.idempotency_tx(scope).await?;
        let n = sqlx::query(&format!(
            "DELETE FROM idempotency_keys WHERE {SCOPE} AND claim_token = $2 AND state = $3"
        ))
        .bind(scope.workspace().map(|w| w.0))
        .bind(token)
        .bind(STATE_IN_PROGRESS)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n == 1)
    }

    async fn purge_idempotency_keys(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.idempotency_tx(IdempotencyScope::Admin).await?;
        // A claim still running keeps its row, however old.
        let n = sqlx::query(
            "DELETE FROM idempotency_keys WHERE expires_at <= $1 \
             AND NOT (state = $2 AND lease_until > $1)",
        )
        .bind(before)
        .bind(STATE_IN_PROGRESS)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        tx.commit().await.map_err(unexpected)?;
        Ok(n)
    }
}
