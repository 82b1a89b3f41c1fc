//! [`ChangeFeed`] on PostgreSQL: rows are read across workspaces only
//! through the migration's SECURITY DEFINER functions, ordered by
//! `(txid, seq)` and limited to transactions older than every running one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::ports::StoreError;

use super::{parse_agents, Change, ChangeFeed, ChangeKind, FeedPosition};
use crate::store::postgres::PgStore;
use crate::store::unexpected;

/// Appends a feed row inside `tx` (already scoped to `ws`), so it commits
/// with the change it announces.
pub(crate) async fn append(
    tx: &mut Transaction<'static, Postgres>,
    origin: &str,
    ws: WorkspaceId,
    kind: ChangeKind,
    agents: &[String],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO change_feed (workspace_id, origin, kind, agents) VALUES ($1, $2, $3, $4)",
    )
    .bind(ws.0)
    .bind(origin)
    .bind(kind.as_str())
    .bind(agents)
    .execute(&mut **tx)
    .await
    .map_err(unexpected)?;
    Ok(())
}

#[async_trait]
impl ChangeFeed for PgStore {
    fn origin(&self) -> &str {
        &self.origin
    }

    async fn feed_head(&self) -> Result<FeedPosition, StoreError> {
        let (txid, seq): (i64, i64) =
            sqlx::query_as("SELECT txid, seq FROM swarmwise_change_feed_head()")
                .fetch_one(&self.pool)
                .await
                .map_err(unexpected)?;
        Ok(FeedPosition { txid, seq })
    }

    async fn feed_since(&self, after: FeedPosition, limit: u32) -> Result<Vec<Change>, StoreError> {
        let rows = sqlx::query(
            "SELECT txid, seq, workspace_id, origin, kind, agents, at FROM swarmwise_change_feed($1, $2, $3)",
        )
        .bind(after.txid)
        .bind(after.seq)
        .bind(i32::try_from(limit).unwrap_or(i32::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unexpected)?;
        rows.iter()
            .map(|r| {
                let get = || -> Result<Change, sqlx::Error> {
                    let kind: String = r.try_get("kind")?;
                    Ok(Change {
                        position: FeedPosition {
                            txid: r.try_get("txid")?,
                            seq: r.try_get("seq")?,
                        },
                        workspace: WorkspaceId(r.try_get("workspace_id")?),
                        origin: r.try_get("origin")?,
                        kind: ChangeKind::parse(&kind),
                        agents: parse_agents(r.try_get("agents")?),
                        at: r.try_get("at")?,
                    })
                };
                get().map_err(unexpected)
            })
            .collect()
    }

    async fn prune_feed(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT swarmwise_prune_change_feed($1)")
            .bind(before)
            .fetch_one(&self.pool)
            .await
            .map_err(unexpected)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
