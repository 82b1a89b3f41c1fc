//! [`SchedulerStore`] on SQLite: one file serves the nodes of one machine,
//! so expiries use this process's clock; times are integer microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use swarmwise_actors::ports::{Lease, OccurrenceClaim, SchedulerStore, StoreError};

use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

fn lease_from_row(r: &SqliteRow) -> Result<Lease, StoreError> {
    let get = || -> Result<Lease, anyhow::Error> {
        Ok(Lease {
            name: r.try_get("name")?,
            holder: r.try_get("holder")?,
            fencing_token: r.try_get("fencing_token")?,
            acquired_at: from_micros(r.try_get("acquired_at")?)?,
            expires_at: from_micros(r.try_get("expires_at")?)?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

#[async_trait]
impl SchedulerStore for SqliteStore {
    async fn acquire_lease(
        &self,
        name: &str,
        node: &str,
        ttl_secs: u32,
    ) -> Result<Option<Lease>, StoreError> {
        let now = micros(Utc::now());
        let until = now + i64::from(ttl_secs) * 1_000_000;
        let row = sqlx::query(
            "INSERT INTO scheduler_leases (name, holder, fencing_token, acquired_at, expires_at) \
             VALUES (?1, ?2, 1, ?3, ?4) \
             ON CONFLICT (name) DO UPDATE SET \
               fencing_token = CASE WHEN scheduler_leases.holder = excluded.holder \
                 THEN scheduler_leases.fencing_token ELSE scheduler_leases.fencing_token + 1 END, \
               acquired_at = CASE WHEN scheduler_leases.holder = excluded.holder \
                 THEN scheduler_leases.acquired_at ELSE excluded.acquired_at END, \
               holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE scheduler_leases.holder = excluded.holder OR scheduler_leases.expires_at <= ?3 \
             RETURNING name, holder, fencing_token, acquired_at, expires_at",
        )
        .bind(name)
        .bind(node)
        .bind(now)
        .bind(until)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(lease_from_row).transpose()
    }

    async fn release_lease(&self, name: &str, node: &str) -> Result<bool, StoreError> {
        let now = micros(Utc::now());
        let n = sqlx::query(
            "UPDATE scheduler_leases SET expires_at = ?3 WHERE name = ?1 AND holder = ?2 AND expires_at > ?3",
        )
        .bind(name)
        .bind(node)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n > 0)
    }

    async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let row = sqlx::query(
            "SELECT name, holder, fencing_token, acquired_at, expires_at FROM scheduler_leases WHERE name = ?",
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
        let now = micros(Utc::now());
        let n = sqlx::query(
            "INSERT INTO scheduled_claims (job, scheduled_at, node, fencing_token, claimed_at) \
             SELECT ?2, ?3, ?4, ?5, ?6 FROM scheduler_leases \
             WHERE name = ?1 AND holder = ?4 AND fencing_token = ?5 AND expires_at > ?6 \
             ON CONFLICT (job, scheduled_at) DO NOTHING",
        )
        .bind(lease)
        .bind(job)
        .bind(micros(scheduled_at))
        .bind(node)
        .bind(fencing_token)
        .bind(now)
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
             WHERE job = ? AND scheduled_at >= ? ORDER BY scheduled_at",
        )
        .bind(job)
        .bind(micros(since))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<OccurrenceClaim, anyhow::Error> {
                    Ok(OccurrenceClaim {
                        job: r.try_get("job")?,
                        scheduled_at: from_micros(r.try_get("scheduled_at")?)?,
                        node: r.try_get("node")?,
                        fencing_token: r.try_get("fencing_token")?,
                        claimed_at: from_micros(r.try_get("claimed_at")?)?,
                    })
                };
                get().map_err(StoreError::Unexpected)
            })
            .collect()
    }

    async fn prune_claims(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM scheduled_claims WHERE claimed_at < ?")
                .bind(micros(before))
                .execute(&self.pool)
                .await
                .map_err(unexpected)?
                .rows_affected(),
        )
    }
}
