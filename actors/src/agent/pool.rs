//! A shared provider pool: a fixed number of slots (e.g. one rate-limited
//! LLM provider) shared by several agents, granted in priority order with the
//! same classes and aging as the agents' mailboxes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::queue::PriorityQueue;
use crate::domain::Priority;

/// Holds one slot of a pool; dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub struct PoolPermit {
    pool: Arc<Inner>,
}

impl Drop for PoolPermit {
    fn drop(&mut self) {
        self.pool.release();
    }
}

#[derive(Debug)]
struct State {
    free: usize,
    waiting: PriorityQueue<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    state: Mutex<State>,
}

impl Inner {
    fn release(&self) {
        let Ok(mut s) = self.state.lock() else { return };
        let now = Instant::now();
        // Hand the slot to the best waiter still waiting; else keep it free.
        while let Some((tx, _)) = s.waiting.pop(now) {
            if tx.send(()).is_ok() {
                return;
            }
        }
        s.free += 1;
    }
}

/// A priority semaphore shared by the agents of one provider.
#[derive(Debug, Clone)]
pub struct ProviderPool {
    inner: Arc<Inner>,
}

impl ProviderPool {
    /// A pool with `slots` concurrent calls and the given aging step.
    pub fn new(name: &str, slots: usize, aging: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                state: Mutex::new(State {
                    free: slots.max(1),
                    waiting: PriorityQueue::new(aging),
                }),
            }),
        }
    }

    /// The pool's name (config key).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Waits for a slot; higher classes are served first.
    pub async fn acquire(&self, class: Priority) -> PoolPermit {
        let rx = {
            let Ok(mut s) = self.inner.state.lock() else {
                return PoolPermit {
                    pool: Arc::clone(&self.inner),
                };
            };
            if s.free > 0 {
                s.free -= 1;
                return PoolPermit {
                    pool: Arc::clone(&self.inner),
                };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.push(tx, class, Instant::now());
            rx
        };
        // The sender is only dropped when the pool is; then proceed anyway.
        let _ = rx.await;
        PoolPermit {
            pool: Arc::clone(&self.inner),
        }
    }

    /// Waiters queued for a slot.
    pub fn waiting(&self) -> usize {
        self.inner.state.lock().map_or(0, |s| s.waiting.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[tokio::test]
    async fn high_priority_waiter_gets_the_slot_first() {
        let pool = ProviderPool::new("llm", 1, Duration::from_secs(60));
        let held = pool.acquire(Priority::Normal).await;
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        let p = pool.clone();
        let tx = order_tx.clone();
        let low = tokio::spawn(async move {
            let _permit = p.acquire(Priority::Low).await;
            let _ = tx.send("low");
        });
        while pool.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let p = pool.clone();
        let tx = order_tx.clone();
        let critical = tokio::spawn(async move {
            let _permit = p.acquire(Priority::Critical).await;
            let _ = tx.send("critical");
        });
        while pool.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        drop(held);
        critical.await.unwrap();
        low.await.unwrap();
        assert_eq!(order_rx.recv().await, Some("critical"));
        assert_eq!(order_rx.recv().await, Some("low"));
    }
}
