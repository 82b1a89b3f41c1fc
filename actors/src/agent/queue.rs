//! The priority mailbox of an agent: four classes, FIFO within a class, and
//! aging so that nothing starves. Pure data structure; the caller passes the
//! time, so the tests are deterministic.
//!
//! Aging: a task that has waited `k · aging` counts as `k` classes higher
//! (capped at CRITICAL). Only the head of each class can be the oldest of its
//! class, so `pop` compares four heads: highest effective class first, then
//! the older task.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::domain::Priority;

const CLASSES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Critical,
];

fn index(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}

#[derive(Debug)]
struct Entry<T> {
    item: T,
    enqueued_at: Instant,
    seq: u64,
}

/// A priority queue with aging.
#[derive(Debug)]
pub struct PriorityQueue<T> {
    classes: [VecDeque<Entry<T>>; 4],
    seq: u64,
    aging: Duration,
}

impl<T> PriorityQueue<T> {
    /// An empty queue; `aging` is the wait that promotes a task by one class
    /// (zero disables aging).
    pub fn new(aging: Duration) -> Self {
        Self {
            classes: Default::default(),
            seq: 0,
            aging,
        }
    }

    /// Enqueues at `class`.
    pub fn push(&mut self, item: T, class: Priority, now: Instant) {
        self.seq += 1;
        if let Some(q) = self.classes.get_mut(index(class)) {
            q.push_back(Entry {
                item,
                enqueued_at: now,
                seq: self.seq,
            });
        }
    }

    /// The class a task of `class` enqueued at `at` counts as at `now`.
    pub fn effective(&self, class: Priority, at: Instant, now: Instant) -> Priority {
        if self.aging.is_zero() {
            return class;
        }
        let steps =
            (now.saturating_duration_since(at).as_nanos() / self.aging.as_nanos().max(1)) as usize;
        CLASSES
            .get((index(class) + steps).min(3))
            .copied()
            .unwrap_or(Priority::Critical)
    }

    /// Takes the task to run next, with the class it ran at.
    pub fn pop(&mut self, now: Instant) -> Option<(T, Priority)> {
        let mut best: Option<(usize, Priority, u64)> = None;
        for (i, q) in self.classes.iter().enumerate() {
            let Some(head) = q.front() else { continue };
            let class = CLASSES.get(i).copied().unwrap_or(Priority::Normal);
            let eff = self.effective(class, head.enqueued_at, now);
            let better = match best {
                None => true,
                Some((_, b_eff, b_seq)) => eff > b_eff || (eff == b_eff && head.seq < b_seq),
            };
            if better {
                best = Some((i, eff, head.seq));
            }
        }
        let (i, eff, _) = best?;
        self.classes.get_mut(i)?.pop_front().map(|e| (e.item, eff))
    }

    /// Removes every task for which `expired` is true (e.g. past its deadline).
    pub fn drain_where(&mut self, mut expired: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut out = Vec::new();
        for q in &mut self.classes {
            let mut keep = VecDeque::with_capacity(q.len());
            for e in q.drain(..) {
                if expired(&e.item) {
                    out.push(e.item);
                } else {
                    keep.push_back(e);
                }
            }
            *q = keep;
        }
        out
    }

    /// Tasks waiting.
    pub fn len(&self) -> usize {
        self.classes.iter().map(VecDeque::len).sum()
    }

    /// No task waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_overtakes_waiting_low_tasks() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::new(Duration::from_secs(30));
        q.push("low-1", Priority::Low, t0);
        q.push("low-2", Priority::Low, t0);
        q.push("critical", Priority::Critical, t0);
        assert_eq!(q.pop(t0).map(|x| x.0), Some("critical"));
        assert_eq!(q.pop(t0).map(|x| x.0), Some("low-1"), "FIFO within a class");
        assert_eq!(q.pop(t0).map(|x| x.0), Some("low-2"));
        assert!(q.pop(t0).is_none());
    }

    #[test]
    fn aged_low_task_runs_before_newer_normal_ones() {
        let t0 = Instant::now();
        let aging = Duration::from_secs(10);
        let mut q = PriorityQueue::new(aging);
        q.push("old-low", Priority::Low, t0);
        let later = t0 + Duration::from_secs(25); // two aging steps: LOW → HIGH
        q.push("normal-1", Priority::Normal, later);
        q.push("normal-2", Priority::Normal, later);
        assert_eq!(q.pop(later), Some(("old-low", Priority::High)));
        assert_eq!(q.pop(later).map(|x| x.0), Some("normal-1"));
        // Without enough waiting, class order holds.
        let mut q = PriorityQueue::new(aging);
        q.push("low", Priority::Low, t0);
        q.push("normal", Priority::Normal, t0 + Duration::from_secs(5));
        assert_eq!(
            q.pop(t0 + Duration::from_secs(6)).map(|x| x.0),
            Some("normal")
        );
    }

    #[test]
    fn equal_effective_class_prefers_the_older_task() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::new(Duration::from_secs(10));
        q.push("low-aged", Priority::Low, t0);
        q.push("normal-new", Priority::Normal, t0 + Duration::from_secs(10));
        // At t0+10 s the LOW task counts as NORMAL and is older.
        assert_eq!(
            q.pop(t0 + Duration::from_secs(10)).map(|x| x.0),
            Some("low-aged")
        );
    }

    #[test]
    fn drain_where_removes_expired() {
        let t0 = Instant::now();
        let mut q = PriorityQueue::new(Duration::ZERO);
        for i in 0..6 {
            q.push(
                i,
                if i % 2 == 0 {
                    Priority::Low
                } else {
                    Priority::High
                },
                t0,
            );
        }
        let gone = q.drain_where(|i| *i >= 4);
        assert_eq!(gone.len(), 2);
        assert_eq!(q.len(), 4);
        assert_eq!(q.pop(t0).map(|x| x.0), Some(1));
    }
}
