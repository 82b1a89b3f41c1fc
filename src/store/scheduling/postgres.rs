//! [`SchedulerStore`] on PostgreSQL: expiries on the database's clock
//! (`clock_timestamp()`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use swarmwise_actors::ports::{Lease, OccurrenceClaim, SchedulerStore, StoreError};

use crate::store::postgres::PgStore;
use crate::store::unexpected;

fn lease_from_row(r: &PgRow) -> Result<Lease, StoreError> {
    let get = || -> Result<Lease, sqlx::Error> {
        Ok(Lease {
            name: r.try_get("name")?,
            holder: r.try_get("holder")?,
            fencing_token: r.try_get("fencing_token")?,
            acquired_at: r.try_get("acquired_at")?,
            expires_at: r.try_get("expires_at")?,
        })
    };
    get().map_err(unexpected)
}

#[async_trait]
impl SchedulerStore for PgStore {
    async fn acquire_lease(
        &self,
        name: &str,
        node: &str,
        ttl_secs: u32,
    ) -> Result<Option<Lease>, StoreError> {
        // One statement: take it when absent, renew it when ours, take it
        // over (token + 1) when expired; otherwise no row comes back.
        let row = sqlx::query(
            "INSERT INTO scheduler_leases (name, holder, fencing_token, acquired_at, expires_at) \
             VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE SET \
               fencing_token = CASE WHEN scheduler_leases.holder = EXCLUDED.holder \
                 THEN scheduler_leases.fencing_token ELSE scheduler_leases.fencing_token + 1 END, \
               acquired_at = CASE WHEN scheduler_leases.holder = EXCLUDED.holder \
                 THEN scheduler_leases.acquired_at ELSE EXCLUDED.acquired_at END, \
               holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE scheduler_leases.holder = EXCLUDED.holder OR scheduler_leases.expires_at <= clock_timestamp() \
             RETURNING name, holder, fencing_token, acquired_at, expires_at",
        )
        .bind(name)
        .bind(node)
        .bind(f64::from(ttl_secs))
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn release_lease(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        // Expire it rather than delete it: the fencing token must never
        // start again from 1.
        let n = sqlx::query(
            "UPDATE scheduler_leases SET expires_at = clock_timestamp() WHERE name = $1 AND holder = $2 AND expires_at > clock_timestamp()",
        )
        .bind(name)
        .bind(node)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query(
            "SELECT name, holder, fencing_token, acquired_at, expires_at FROM scheduler_leases WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn claim_occurrence(
        &self,
        lease: &str,
        job: &str,
        scheduled_at: DateTime<Utc>,
        node: &str,
        fencing_token: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO scheduled_claims (job, scheduled_at, node, fencing_token, claimed_at) \
             SELECT $2, $3, $4, $5, clock_timestamp() FROM scheduler_leases \
             WHERE name = $1 AND holder = $4 AND fencing_token = $5 AND expires_at > clock_timestamp() \
             ON CONFLICT (job, scheduled_at) DO NOTHING",
        )
        .bind(lease)
        .bind(job)
        .bind(scheduled_at)
        .bind(node)
        .bind(fencing_token)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n == 1)
    }

    async fn occurrence_claims(
        &self,
        job: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<OccurrenceClaim>, StoreError> {
        let rows = sqlx::query(
            "SELECT job, scheduled_at, node, fencing_token, claimed_at FROM scheduled_claims \
             WHERE job = $1 AND scheduled_at >= $2 ORDER BY scheduled_at",
        )
        .bind(job)
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                Ok(OccurrenceClaim {
                    job: r.try_get("job").map_err(unexpected)?,
                    scheduled_at: r.try_get("scheduled_at").map_err(unexpected)?,
                    node: r.try_get("node").map_err(unexpected)?,
                    fencing_token: r.try_get("fencing_token").map_err(unexpected)?,
                    claimed_at: r.try_get("claimed_at").map_err(unexpected)?,
                })
            })
            .collect()
    }

    async fn prune_claims(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM scheduled_claims WHERE claimed_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(unexpected)?
                .rows_affected(),
        )
    }
}
