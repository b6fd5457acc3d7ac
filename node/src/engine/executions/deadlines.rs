//! Execution deadlines: one task keeps a heap of (deadline, execution) and reports each
//! one that passes. The engine decides what a passed deadline means (usually: fail the
//! execution if it is still running).

use mesg_protocol::{ExecutionId, now_ms};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct Deadlines {
    tx: mpsc::Sender<(u64, ExecutionId)>,
}

impl Deadlines {
    /// Start the scheduler; every expired execution id is sent on the returned receiver.
    pub fn start() -> (Deadlines, mpsc::Receiver<ExecutionId>) {
        let (tx, mut rx) = mpsc::channel::<(u64, ExecutionId)>(65_536);
        let (expired_tx, expired_rx) = mpsc::channel(65_536);
        tokio::spawn(async move {
            let mut heap: BinaryHeap<Reverse<(u64, ExecutionId)>> = BinaryHeap::new();
            loop {
                let now = now_ms();
                while let Some(Reverse((at, _))) = heap.peek() {
                    if *at > now {
                        break;
                    }
                    let Some(Reverse((_, id))) = heap.pop() else {
                        break;
                    };
                    if expired_tx.send(id).await.is_err() {
                        return;
                    }
                }
                let sleep = heap
                    .peek()
                    .map(|Reverse((at, _))| Duration::from_millis(at.saturating_sub(now)))
                    .unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(entry) => heap.push(Reverse(entry)),
                        None => return,
                    },
                    _ = tokio::time::sleep(sleep) => {}
                }
            }
        });
        (Deadlines { tx }, expired_rx)
    }

    /// Report `id` when `deadline_ms` (Unix milliseconds) passes.
    pub async fn watch(&self, id: ExecutionId, deadline_ms: u64) {
        // The scheduler only stops with the engine; nothing to report then.
        let _ = self.tx.send((deadline_ms, id)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deadlines_fire_in_order() {
        let (d, mut rx) = Deadlines::start();
        let (a, b, c) = (
            ExecutionId([1; 16]),
            ExecutionId([2; 16]),
            ExecutionId([3; 16]),
        );
        let now = now_ms();
        d.watch(a, now + 200).await;
        d.watch(b, now + 50).await;
        d.watch(c, now.saturating_sub(10)).await;
        assert_eq!(rx.recv().await, Some(c));
        assert_eq!(rx.recv().await, Some(b));
        assert_eq!(rx.recv().await, Some(a));
        assert!(now_ms() >= now + 200);
    }
}
