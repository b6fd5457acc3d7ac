//! Group commit: writers ask for a flush after their writes, and everyone waiting when a
//! flush starts shares it, so durability costs one fsync per batch, not one per write.

use super::spill::{self, Spill};
use crate::store::StoreError;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// How many times the flusher yields to ready tasks before it flushes.
const FLUSH_GATHER_YIELDS: usize = 3;

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// What the flusher did: flushes, and the waiters they served (their ratio says how
/// well writers share flushes). Shown in /metrics (`mesg_store_flushes_total`).
#[derive(Debug, Clone, Default)]
pub struct FlushCounters {
    pub flushes: prometheus_client::metrics::counter::Counter,
    pub waiters: prometheus_client::metrics::counter::Counter,
}

/// The task that flushes the database for everyone waiting.
#[derive(Debug)]
pub(super) struct Flusher {
    requests: mpsc::Sender<FlushWaiter>,
    task: tokio::task::JoinHandle<()>,
    counters: FlushCounters,
}

impl Flusher {
    /// Start flushing `db` on request. Must be called inside a tokio runtime.
    pub(super) fn spawn(db: sled::Db, spill: Arc<Spill>) -> Flusher {
        let (requests, mut rx) = mpsc::channel::<FlushWaiter>(4096);
        let counters = FlushCounters::default();
        let counted = counters.clone();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Everyone already waiting shares this flush: their writes happened before
                // they asked, so before the flush starts.
                let mut waiters = vec![first];
                // Let the tasks that are ready run first: under load, more writers ask
                // for a flush within microseconds and share this one. When nothing else
                // is ready, the yields return at once and a lone writer does not wait.
                for _ in 0..FLUSH_GATHER_YIELDS {
                    while let Ok(w) = rx.try_recv() {
                        waiters.push(w);
                    }
                    tokio::task::yield_now().await;
                }
                while let Ok(w) = rx.try_recv() {
                    waiters.push(w);
                }
                // Spilled files are named on disk before the flush makes their markers
                // durable; those whose markers went are deleted once it did.
                let result = match spill.before_flush() {
                    Ok(doomed) => {
                        // On tokio's blocking pool, not sled's `flush_async`: sled's I/O
                        // pool wakes every one of its idle threads (7) for each job it is
                        // given, so each flush cost a dozen context switches more than the
                        // flush itself (docs/benchmarks.md, "Context switches").
                        let db = db.clone();
                        let flushed = match tokio::task::spawn_blocking(move || db.flush()).await {
                            Ok(done) => done.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(format!("the flush did not finish: {e}")),
                        };
                        if flushed.is_ok() {
                            doomed.iter().for_each(|p| spill::delete(p));
                        }
                        flushed
                    }
                    Err(e) => Err(format!("cannot sync the spilled values' directory: {e}")),
                };
                counted.flushes.inc();
                counted.waiters.inc_by(waiters.len() as u64);
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        Flusher {
            requests,
            task,
            counters,
        }
    }

    pub(super) fn counters(&self) -> FlushCounters {
        self.counters.clone()
    }

    /// Wait until every write made before this call is on disk.
    pub(super) fn persist(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let tx = self.requests.clone();
        async move {
            let (done, wait) = oneshot::channel();
            tx.send(done).await.map_err(|_| StoreError::FlusherGone)?;
            wait.await
                .map_err(|_| StoreError::FlusherGone)?
                .map_err(|e| StoreError::Db(sled::Error::Io(std::io::Error::other(e))))
        }
        .boxed()
    }

    /// Stop the flusher once the flushes asked for are done.
    pub(super) async fn stop(self) {
        let Flusher { requests, task, .. } = self;
        drop(requests);
        let _ = task.await;
    }
}
