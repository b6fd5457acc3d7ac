//! Callers blocked until an execution ends (`GET /v1/executions/{id}/wait`): registered
//! per execution, woken by the ledger when it records an end, and removed however the
//! wait ends (end, timeout, or the caller going away) so none leaks.

use mesg_protocol::{Execution, ExecutionId};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

/// One caller of a wait: its number (to remove it) and where to send the end.
type Waiter = (u64, oneshot::Sender<Execution>);

#[derive(Debug)]
pub struct Waiters {
    by_execution: Mutex<HashMap<ExecutionId, Vec<Waiter>>>,
    seq: AtomicU64,
    gauge: Gauge,
}

impl Waiters {
    pub fn new(gauge: Gauge) -> Self {
        Waiters {
            by_execution: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            gauge,
        }
    }

    /// Register a waiter of `id`; it is removed when the returned guard drops.
    pub fn register(&self, id: ExecutionId) -> (WaiterGuard<'_>, oneshot::Receiver<Execution>) {
        let (tx, rx) = oneshot::channel();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(id).or_default().push((seq, tx));
        self.gauge.inc();
        (
            WaiterGuard {
                waiters: self,
                id,
                seq,
            },
            rx,
        )
    }

    /// Wake every waiter of an execution that ended.
    pub fn wake(&self, execution: &Execution) {
        let waiters = self.lock().remove(&execution.id).unwrap_or_default();
        self.gauge.dec_by(waiters.len() as i64);
        for (_, w) in waiters {
            let _ = w.send(execution.clone());
        }
    }

    pub fn count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Vec<Waiter>>> {
        self.by_execution.lock().expect("waiters lock")
    }
}

/// Removes its waiter when a wait ends, whichever way.
#[derive(Debug)]
pub struct WaiterGuard<'a> {
    waiters: &'a Waiters,
    id: ExecutionId,
    seq: u64,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        let mut all = self.waiters.lock();
        if let Some(list) = all.get_mut(&self.id) {
            let before = list.len();
            list.retain(|(seq, _)| *seq != self.seq);
            if list.len() < before {
                self.waiters.gauge.dec();
            }
            if list.is_empty() {
                all.remove(&self.id);
            }
        }
    }
}
