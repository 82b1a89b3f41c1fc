//! [`AlertStore`] on SQLite. A workspace scope adds `workspace_id = ?` to
//! every query; the admin scope reads every row. Times are integer
//! microseconds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use swarmwise_actors::alerts::{Alert, Silence};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::{AlertFilter, AlertInsert, AlertScope, AlertStore, StoreError};
use uuid::Uuid;

use super::{severity_of, status_name, status_of, ALERT_COLUMNS, SILENCE_COLUMNS};
use crate::store::sqlite::{from_micros, micros, SqliteStore};
use crate::store::unexpected;

fn alert_row(r: &SqliteRow) -> Result<Alert, StoreError> {
    let get = || -> anyhow::Result<Alert> {
        let ws: Option<Uuid> = r.try_get("workspace_id")?;
        let severity: String = r.try_get("severity")?;
        let status: String = r.try_get("status")?;
        let opt = |c: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
            let v: Option<i64> = r.try_get(c)?;
            v.map(from_micros).transpose()
        };
        Ok(Alert {
            id: r.try_get("id")?,
            workspace_id: ws.map(WorkspaceId),
            rule: r.try_get("rule")?,
            severity: severity_of(&severity)?,
            subject: r.try_get("subject")?,
            fingerprint: r.try_get("fingerprint")?,
            status: status_of(&status)?,
            value: r.try_get("value")?,
            threshold: r.try_get("threshold")?,
            summary: r.try_get("summary")?,
            action: r.try_get("action")?,
            started_at: from_micros(r.try_get("started_at")?)?,
            fired_at: from_micros(r.try_get("fired_at")?)?,
            resolved_at: opt("resolved_at")?,
            acked_at: opt("acked_at")?,
            acked_by: r.try_get("acked_by")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

fn silence_row(r: &SqliteRow) -> Result<Silence, StoreError> {
    let get = || -> anyhow::Result<Silence> {
        let ws: Option<Uuid> = r.try_get("workspace_id")?;
        let severity: Option<String> = r.try_get("severity")?;
        Ok(Silence {
            id: r.try_get("id")?,
            workspace_id: ws.map(WorkspaceId),
            rule: r.try_get("rule")?,
            subject: r.try_get("subject")?,
            severity: severity.as_deref().map(severity_of).transpose()?,
            starts_at: from_micros(r.try_get("starts_at")?)?,
            ends_at: from_micros(r.try_get("ends_at")?)?,
            created_by: r.try_get("created_by")?,
            comment: r.try_get("comment")?,
        })
    };
    get().map_err(StoreError::Unexpected)
}

/// The workspace a scope is limited to.
fn scope_ws(scope: AlertScope) -> Option<Uuid> {
    match scope {
        AlertScope::Workspace(ws) => Some(ws.0),
        AlertScope::Admin => None,
    }
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn insert_alert(&self, a: &Alert) -> Result<AlertInsert, StoreError> {
        let mut tx = self.pool.begin().await.map_err(unexpected)?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (fingerprint) WHERE status = 'firing' DO NOTHING"
        ))
        .bind(a.id)
        .bind(a.workspace_id.map(|w| w.0))
        .bind(&a.rule)
        .bind(a.severity.as_str())
        .bind(&a.subject)
        .bind(&a.fingerprint)
        .bind(status_name(a.status))
        .bind(a.value)
        .bind(a.threshold)
        .bind(&a.summary)
        .bind(&a.action)
        .bind(micros(a.started_at))
        .bind(micros(a.fired_at))
        .bind(a.resolved_at.map(micros))
        .bind(a.acked_at.map(micros))
        .bind(&a.acked_by)
        .execute(&mut *tx)
        .await
        .map_err(unexpected)?
        .rows_affected();
        let result = if inserted == 1 {
            AlertInsert::Inserted
        } else {
            let row = sqlx::query(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE fingerprint = ? AND status = 'firing'"
            ))
            .bind(&a.fingerprint)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unexpected)?;
            match row {
                Some(r) => AlertInsert::AlreadyFiring(Box::new(alert_row(&r)?)),
                None => {
                    return Err(StoreError::Conflict(format!(
                        "alert {} exists already",
                        a.id
                    )))
                }
            }
        };
        tx.commit().await.map_err(unexpected)?;
        Ok(result)
    }

    async fn resolve_alert(&self, a: &Alert) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE alerts SET status = 'resolved', resolved_at = ?, value = ? WHERE id = ? AND status = 'firing'")
            .bind(micros(a.resolved_at.unwrap_or_else(Utc::now)))
            .bind(a.value)
            .bind(a.id)
            .execute(&self.pool)
            .await
            .map_err(unexpected)?
            .rows_affected();
        Ok(n == 1)
    }

    async fn firing_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE status = 'firing' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(alert_row).collect()
    }

    async fn alert(&self, scope: AlertScope, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let ws = scope_ws(scope);
        let row = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ? AND (? IS NULL OR workspace_id = ?)"
        ))
        .bind(id)
        .bind(ws)
        .bind(ws)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(alert_row).transpose()
    }

    async fn list_alerts(
        &self,
        scope: AlertScope,
        f: &AlertFilter,
    ) -> Result<Vec<Alert>, StoreError> {
        let ws = scope_ws(scope).or(f.workspace.map(|w| w.0));
        let status = f.status.map(status_name);
        let severity = f.severity.map(|s| s.as_str());
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE (? IS NULL OR workspace_id = ?) \
             AND (? IS NULL OR status = ?) AND (? IS NULL OR severity = ?) \
             AND (? IS NULL OR rule = ?) AND (? IS NULL OR subject = ?) \
             AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(ws)
        .bind(ws)
        .bind(status)
        .bind(status)
        .bind(severity)
        .bind(severity)
        .bind(&f.rule)
        .bind(&f.rule)
        .bind(&f.subject)
        .bind(&f.subject)
        .bind(f.before)
        .bind(f.before)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(alert_row).collect()
    }

    async fn ack_alert(
        &self,
        scope: AlertScope,
        id: Uuid,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Alert>, StoreError> {
        let ws = scope_ws(scope);
        let row = sqlx::query(&format!(
            "UPDATE alerts SET acked_at = COALESCE(acked_at, ?), acked_by = COALESCE(acked_by, ?) \
             WHERE id = ? AND (? IS NULL OR workspace_id = ?) RETURNING {ALERT_COLUMNS}"
        ))
        .bind(micros(at))
        .bind(by)
        .bind(id)
        .bind(ws)
        .bind(ws)
        .fetch_optional(&self.pool)
        .await
        .map_err(unexpected)?;
        row.as_ref().map(alert_row).transpose()
    }

    async fn purge_alerts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let n = sqlx::query("DELETE FROM alerts WHERE status = 'resolved' AND resolved_at < ?")
            .bind(micros(before))
            .execute(&self.pool)
            .await
            .map_err(unexpected)?
            .rows_affected();
        Ok(n)
    }

    async fn insert_silence(&self, s: &Silence) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO alert_silences ({SILENCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(s.id)
        .bind(s.workspace_id.map(|w| w.0))
        .bind(&s.rule)
        .bind(&s.subject)
        .bind(s.severity.map(|v| v.as_str()))
        .bind(micros(s.starts_at))
        .bind(micros(s.ends_at))
        .bind(&s.created_by)
        .bind(&s.comment)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?;
        Ok(())
    }

    async fn silences(
        &self,
        scope: AlertScope,
        now: Option<DateTime<Utc>>,
    ) -> Result<Vec<Silence>, StoreError> {
        let ws = scope_ws(scope);
        let now = now.map(micros);
        let rows = sqlx::query(&format!(
            "SELECT {SILENCE_COLUMNS} FROM alert_silences WHERE (? IS NULL OR workspace_id = ?) \
             AND (? IS NULL OR ends_at > ?) ORDER BY id DESC"
        ))
        .bind(ws)
        .bind(ws)
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter().map(silence_row).collect()
    }

    async fn delete_silence(&self, scope: AlertScope, id: Uuid) -> Result<bool, StoreError> {
        let ws = scope_ws(scope);
        let n = sqlx::query(
            "DELETE FROM alert_silences WHERE id = ? AND (? IS NULL OR workspace_id = ?)",
        )
        .bind(id)
        .bind(ws)
        .bind(ws)
        .execute(&self.pool)
        .await
        .map_err(unexpected)?
        .rows_affected();
        Ok(n == 1)
    }
}
