//! Group commit: many callers, one transaction.
//!
//! Callers [`GroupCommit::submit`] an item and wait for its own answer; one
//! task takes the first queued item, then everything else already queued (at
//! most `max_batch` items), waiting up to `max_wait` for more while the batch
//! is smaller than `max_batch`, hands the batch to a [`BatchProcess`] (one
//! transaction) and answers each caller. With `max_wait = 0` a batch is what
//! queued while the previous one was committing: a lone caller pays no added
//! latency, and under load batches grow by themselves (the classic group
//! commit of database logs; Gray & Reuter, *Transaction Processing*, §9.4.7).
//!
//! A caller is answered only after its batch was processed, so "answered"
//! means "committed" when the processor commits. A processor that panics
//! fails only its batch: those callers get [`Closed`], the task carries on.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// Processes one batch; returns one answer per item, in order.
#[async_trait]
pub trait BatchProcess: Send + 'static {
    /// What callers submit.
    type Item: Send + 'static;
    /// What each caller gets back.
    type Answer: Send + 'static;
    /// Processes `items` (at least one) as one batch. Must return exactly
    /// one answer per item, in order; a shorter vector answers the rest
    /// with [`Closed`].
    async fn process(&mut self, items: Vec<Self::Item>) -> Vec<Self::Answer>;
}

/// The batch task is gone (runtime shutting down) or its processor panicked
/// on the caller's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the group-commit task stopped before answering (shutting down?)")]
pub struct Closed;

/// Sizing of a [`GroupCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Largest batch, in items (at least 1).
    pub max_batch: usize,
    /// Longest wait for more items once one is queued; zero: take what is
    /// queued.
    pub max_wait: Duration,
}

type Envelope<P> = (
    <P as BatchProcess>::Item,
    oneshot::Sender<<P as BatchProcess>::Answer>,
);

/// Handle to a group-commit task; cheap to clone.
pub struct GroupCommit<P: BatchProcess> {
    tx: mpsc::UnboundedSender<Envelope<P>>,
}

impl<P: BatchProcess> Clone for GroupCommit<P> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<P: BatchProcess> GroupCommit<P> {
    /// Spawns the task on the current tokio runtime. `name` labels the
    /// counters `swarmwise_group_commit_batches_total{queue}` and
    /// `swarmwise_group_commit_items_total{queue}` (their ratio is the mean
    /// batch size) and the log line of a panicking batch.
    pub fn spawn(name: &'static str, batching: Batching, processor: P) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(name, batching, processor, rx));
        Self { tx }
    }

    /// Queues `item` at once (items are batched in the order of these
    /// calls) and returns a future that waits for its batch to be processed.
    ///
    /// # Errors
    /// [`Closed`] when the task stopped or panicked on this batch.
    pub fn submit(
        &self,
        item: P::Item,
    ) -> impl std::future::Future<Output = Result<P::Answer, Closed>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let sent = self.tx.send((item, reply)).is_ok();
        async move {
            if !sent {
                return Err(Closed);
            }
            answer.await.map_err(|_| Closed)
        }
    }
}

async fn run<P: BatchProcess>(
    name: &'static str,
    batching: Batching,
    mut processor: P,
    mut rx: mpsc::UnboundedReceiver<Envelope<P>>,
) {
    let max = batching.max_batch.max(1);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        if batch.len() < max && !batching.max_wait.is_zero() {
            let deadline = tokio::time::Instant::now() + batching.max_wait;
            while batch.len() < max {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(more)) => batch.push(more),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        metrics::counter!("swarmwise_group_commit_batches_total", "queue" => name).increment(1);
        metrics::counter!("swarmwise_group_commit_items_total", "queue" => name)
            .increment(batch.len() as u64);
        let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let n = items.len();
        match std::panic::AssertUnwindSafe(processor.process(items))
            .catch_unwind()
            .await
        {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Err(_) => {
                tracing::error!(
                    queue = name,
                    items = n,
                    "a group-commit batch panicked; its callers get an error, later batches go on"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use std::sync::{Arc, Mutex};

    /// Doubles each item; records batch sizes; the gate holds the first batch
    /// until released so that later submissions queue behind it.
    struct Doubler {
        sizes: Arc<Mutex<Vec<usize>>>,
        started: Option<oneshot::Sender<()>>,
        gate: Option<oneshot::Receiver<()>>,
    }

    #[async_trait]
    impl BatchProcess for Doubler {
        type Item = u32;
        type Answer = u32;
        async fn process(&mut self, items: Vec<u32>) -> Vec<u32> {
            if let Some(s) = self.started.take() {
                let _ = s.send(());
            }
            if let Some(g) = self.gate.take() {
                let _ = g.await;
            }
            if items.contains(&666) {
                panic!("poison item");
            }
            self.sizes.lock().unwrap().push(items.len());
            items.into_iter().map(|i| i * 2).collect()
        }
    }

    #[tokio::test]
    async fn items_queued_behind_a_batch_commit_together_and_each_gets_its_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = oneshot::channel();
        let (tell, started) = oneshot::channel();
        let gc = GroupCommit::spawn(
            "test",
            Batching {
                max_batch: 4,
                max_wait: Duration::ZERO,
            },
            Doubler {
                sizes: Arc::clone(&sizes),
                started: Some(tell),
                gate: Some(gate),
            },
        );
        let first = gc.submit(1);
        // The first batch is in hand; the next six queue behind it.
        tokio::time::timeout(Duration::from_secs(10), started)
            .await
            .expect("the task took the first item")
            .unwrap();
        let rest: Vec<_> = (2..=7).map(|i| gc.submit(i)).collect();
        open.send(()).unwrap();
        assert_eq!(first.await, Ok(2));
        for (i, h) in (2..=7).zip(rest) {
            assert_eq!(h.await, Ok(i * 2));
        }
        // 1 alone, then at most max_batch (4) at a time: 4 and 2.
        assert_eq!(*sizes.lock().unwrap(), vec![1, 4, 2]);
    }

    #[tokio::test]
    async fn a_panicking_batch_fails_only_its_callers() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gc = GroupCommit::spawn(
            "test",
            Batching {
                max_batch: 1,
                max_wait: Duration::ZERO,
            },
            Doubler {
                sizes: Arc::clone(&sizes),
                started: None,
                gate: None,
            },
        );
        assert_eq!(gc.submit(666).await, Err(Closed));
        assert_eq!(gc.submit(3).await, Ok(6));
    }

    #[tokio::test]
    async fn a_full_batch_closes_without_waiting_out_max_wait() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gc = GroupCommit::spawn(
            "test",
            Batching {
                max_batch: 3,
                // Long enough that the batch fills up well before it ends.
                max_wait: Duration::from_secs(30),
            },
            Doubler {
                sizes: Arc::clone(&sizes),
                started: None,
                gate: None,
            },
        );
        let hs: Vec<_> = (1..=3).map(|i| gc.submit(i)).collect();
        for (i, h) in (1..=3).zip(hs) {
            let got = tokio::time::timeout(Duration::from_secs(10), h)
                .await
                .expect("answered once the batch was full, not after max_wait");
            assert_eq!(got, Ok(i * 2));
        }
        assert_eq!(*sizes.lock().unwrap(), vec![3]);
    }
}
