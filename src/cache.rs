//! The pattern cache: in Redis when `redis.url` is set (shared by every node
//! on the same database, entries live `redis.pattern_ttl_secs`), in process
//! otherwise. A finished learning cycle deletes its workspace's entry. Redis
//! is an optimisation: every call goes through `crate::redis_link` (its own
//! deadline, `redis.op_timeout_ms`), and when Redis is unavailable, late or
//! failing, reads come from the store and deletes are left to the TTL; the
//! outage is logged once by the link, not per call.

use std::sync::Arc;

use dashmap::DashMap;
use redis::AsyncCommands;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::learner::cycle::StoredPattern;
use swarmwise_actors::ports::StoreError;

use crate::config::RedisSettings;
use crate::redis_link::RedisLink;
use crate::store::AdminStore;

/// Cached pattern lists by workspace.
pub struct PatternCache {
    /// Without Redis: the lists, until a cycle of their workspace finishes.
    local: DashMap<WorkspaceId, Arc<Vec<StoredPattern>>>,
    /// The shared cache (disabled without `redis.url`).
    redis: RedisLink,
    /// `redis.pattern_ttl_secs` (at least 1).
    ttl: u64,
    /// `redis.key_prefix`.
    prefix: String,
    /// Workspaces whose Redis entry could not be deleted (Redis was down
    /// when their cycle finished): deleted when Redis answers again
    /// ([`PatternCache::catch_up`]), so a stale list does not outlive the outage.
    missed: DashMap<WorkspaceId, ()>,
}

impl PatternCache {
    /// A cache over `redis` (never connects by itself, never fails: a node
    /// starts while Redis is down).
    pub fn new(settings: &RedisSettings, redis: RedisLink) -> Self {
        Self {
            local: DashMap::new(),
            redis,
            ttl: settings.pattern_ttl_secs.max(1),
            prefix: settings.key_prefix.clone(),
            missed: DashMap::new(),
        }
    }

    /// The Redis key of a workspace's patterns.
    pub fn key(&self, ws: WorkspaceId) -> String {
        format!("{}patterns:{ws}", self.prefix)
    }

    /// Whether Redis backs the cache.
    pub fn uses_redis(&self) -> bool {
        self.redis.enabled()
    }

    /// The workspace's patterns, from the cache or the store.
    pub async fn get(
        &self,
        store: &dyn AdminStore,
        ws: WorkspaceId,
    ) -> Result<Arc<Vec<StoredPattern>>, StoreError> {
        if !self.redis.enabled() {
            if let Some(p) = self.local.get(&ws) {
                return Ok(Arc::clone(p.value()));
            }
            let loaded = Arc::new(store.patterns(ws).await?);
            self.local.insert(ws, Arc::clone(&loaded));
            return Ok(loaded);
        }
        if !self.missed.is_empty() {
            self.catch_up().await;
        }
        let key = self.key(ws);
        let cached = self
            .redis
            .call("patterns_get", |mut conn| {
                let key = key.clone();
                async move { conn.get::<_, Option<String>>(key).await }
            })
            .await
            .flatten();
        if let Some(json) = cached {
            if let Ok(p) = serde_json::from_str::<Vec<StoredPattern>>(&json) {
                return Ok(Arc::new(p));
            }
        }
        let loaded = store.patterns(ws).await?;
        if self.redis.is_up() {
            if let Ok(json) = serde_json::to_string(&loaded) {
                let ttl = self.ttl;
                self.redis
                    .call("patterns_set", |mut conn| async move {
                        conn.set_ex::<_, _, ()>(key, json, ttl).await
                    })
                    .await;
            }
        }
        Ok(Arc::new(loaded))
    }

    /// Forgets a workspace's patterns (a cycle finished). With Redis down
    /// the entry stays until its TTL (`redis.pattern_ttl_secs`).
    pub async fn invalidate(&self, ws: WorkspaceId) {
        self.local.remove(&ws);
        if !self.redis.enabled() {
            return;
        }
        let key = self.key(ws);
        let deleted = self
            .redis
            .call("patterns_delete", |mut conn| async move {
                conn.del::<_, ()>(key).await
            })
            .await;
        if deleted.is_none() {
            self.missed.insert(ws, ());
        }
    }

    /// Deletes the entries whose invalidation Redis missed (called when Redis
    /// is back, and before a read while some are pending).
    pub async fn catch_up(&self) {
        let pending: Vec<WorkspaceId> = self.missed.iter().map(|e| *e.key()).collect();
        if pending.is_empty() || !self.redis.is_up() {
            return;
        }
        let keys: Vec<String> = pending.iter().map(|ws| self.key(*ws)).collect();
        let done = self
            .redis
            .call("patterns_delete", |mut conn| async move {
                conn.del::<_, ()>(keys).await
            })
            .await;
        if done.is_some() {
            for ws in pending {
                self.missed.remove(&ws);
            }
        }
    }
    /// Forgets everything held in process (events were missed).
    pub fn clear_local(&self) {
        self.local.clear();
    }
}
