//! The pattern cache: in Redis when `redis.url` is set (shared by every node
//! on the same database, entries live `redis.pattern_ttl_secs`), in process
//! otherwise. A finished learning cycle deletes its workspace's entry. Redis
//! is an optimisation: when it fails, reads fall back to the store and a
//! warning is logged.

use std::sync::Arc;

use dashmap::DashMap;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use swarmwise_actors::domain::WorkspaceId;
use swarmwise_actors::learner::cycle::StoredPattern;
use swarmwise_actors::ports::StoreError;

use crate::config::RedisSettings;
use crate::store::AdminStore;

/// Cached pattern lists by workspace.
pub struct PatternCache {
    local: DashMap<WorkspaceId, Arc<Vec<StoredPattern>>>,
    redis: Option<ConnectionManager>,
    ttl: u64,
    prefix: String,
}

impl PatternCache {
    /// Connects to Redis when configured.
    pub async fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let redis = if settings.url.is_empty() {
            None
        } else {
            let client = redis::Client::open(settings.url.as_str())?;
            let manager = ConnectionManager::new(client).await.map_err(|e| {
                anyhow::anyhow!(
                    "could not connect to Redis at {} ({e}); start it or set redis.url = \"\"",
                    settings.url
                )
            })?;
            Some(manager)
        };
        Ok(Self {
            local: DashMap::new(),
            redis,
            ttl: settings.pattern_ttl_secs.max(1),
            prefix: settings.key_prefix.clone(),
        })
    }

    /// The Redis key of a workspace's patterns.
    pub fn key(&self, ws: WorkspaceId) -> String {
        format!("{}patterns:{ws}", self.prefix)
    }

    /// Whether Redis backs the cache.
    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// The workspace's patterns, from the cache or the store.
    pub async fn get(
        &self,
        store: &dyn AdminStore,
        ws: WorkspaceId,
    ) -> Result<Arc<Vec<StoredPattern>>, StoreError> {
        let Some(redis) = &self.redis else {
            if let Some(p) = self.local.get(&ws) {
                return Ok(Arc::clone(p.value()));
            }
            let loaded = Arc::new(store.patterns(ws).await?);
            self.local.insert(ws, Arc::clone(&loaded));
            return Ok(loaded);
        };
        let mut conn = redis.clone();
        let key = self.key(ws);
        match conn.get::<_, Option<String>>(&key).await {
            Ok(Some(json)) => {
                if let Ok(p) = serde_json::from_str::<Vec<StoredPattern>>(&json) {
                    return Ok(Arc::new(p));
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Redis read failed; reading patterns from the store")
            }
        }
        let loaded = store.patterns(ws).await?;
        if let Ok(json) = serde_json::to_string(&loaded) {
            if let Err(e) = conn.set_ex::<_, _, ()>(&key, json, self.ttl).await {
                tracing::warn!(error = %e, "Redis write failed; patterns are not cached");
            }
        }
        Ok(Arc::new(loaded))
    }

    /// Forgets a workspace's patterns (a cycle finished).
    pub async fn invalidate(&self, ws: WorkspaceId) {
        self.local.remove(&ws);
        if let Some(redis) = &self.redis {
            let mut conn = redis.clone();
            if let Err(e) = conn.del::<_, ()>(self.key(ws)).await {
                tracing::warn!(error = %e, "Redis delete failed; the entry expires with its TTL");
            }
        }
    }

    /// Forgets everything held in process (events were missed).
    pub fn clear_local(&self) {
        self.local.clear();
    }
}
