//! The execution ledger: every execution record of this node and its transitions
//! (accept, start, route noted, accepted by a provider, finish), the signed results, the
//! executions broadcast, the waiters and the deadlines.
//!
//! It sits at the bottom of the engine and depends only on the store: whatever has to
//! happen elsewhere when an execution ends (the result owed to a peer queued in the
//! outbox in the same flush, the route's load released, the instance's slot freed)
//! reaches the components that care through [`EndHook`], which they implement and the
//! assembly registers. Only legal transitions are stored (`Execution::transition`);
//! everything acknowledged to anyone is flushed first (see `crate::store`).

mod accept;
pub mod deadlines;
mod finish;
mod keys;
mod terms;
#[cfg(test)]
mod tests;
mod waiters;

pub use accept::{AcceptError, Origin, Placement, same_or_conflict, same_request};
pub use keys::{Keyed, KeyedRequest};

use super::error::EngineError;
use super::metrics::EngineMetrics;
use crate::store::{ExecutionFilter, Store, StoreError};
use deadlines::Deadlines;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionRequest, ExecutionResult, Keypair, PublicKey,
};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use waiters::Waiters;

/// What other components do when an execution ends. Called once per end, in this order:
/// `ended_before_flush` after the end and its signed result are written and before the
/// flush that makes them durable (so what it writes is durable with the end: the outbox
/// entry of a result owed to a peer), then `ended_after_flush`.
pub trait EndHook: Send + Sync {
    fn ended_before_flush(&self, execution: &Execution);
    fn ended_after_flush(&self, execution: &Execution);
}

/// Owns execution records and their transitions. Cheap to share behind an `Arc`.
pub struct ExecutionLedger {
    key: Keypair,
    store: Arc<dyn Store>,
    metrics: EngineMetrics,
    broadcast: broadcast::Sender<Execution>,
    waiters: Waiters,
    deadlines: Deadlines,
    /// Weak: the components holding the ledger are the hooks; no cycle of `Arc`s.
    hooks: RwLock<Vec<Weak<dyn EndHook>>>,
    /// Task prices by (service hash, task), read once from the stored definition: a
    /// price is part of its service hash, so an entry never goes stale, and the end of a
    /// priced execution costs no decoding of the whole service record (`finish.rs`).
    prices: std::sync::Mutex<terms::PriceCache>,
    /// Each service's economy and record signer, read once (`terms.rs`).
    terms: std::sync::Mutex<terms::TermsCache>,
}

impl std::fmt::Debug for ExecutionLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionLedger")
            .field("node", &self.key.public())
            .finish_non_exhaustive()
    }
}

impl ExecutionLedger {
    /// The ledger, and the receiver of executions whose deadline passed (the assembly
    /// decides what that means: see `Router::expire`).
    pub fn new(
        key: Keypair,
        store: Arc<dyn Store>,
        metrics: EngineMetrics,
    ) -> (ExecutionLedger, mpsc::Receiver<ExecutionId>) {
        let (deadlines, expired) = Deadlines::start();
        let ledger = ExecutionLedger {
            key,
            store,
            waiters: Waiters::new(metrics.waiters.clone()),
            metrics,
            broadcast: broadcast::channel(4096).0,
            deadlines,
            hooks: RwLock::new(Vec::new()),
            prices: Default::default(),
            terms: Default::default(),
        };
        (ledger, expired)
    }

    /// Register a component to be told of every end (see [`EndHook`]).
    pub fn add_end_hook(&self, hook: Weak<dyn EndHook>) {
        self.hooks.write().expect("hooks lock").push(hook);
    }

    fn hooks(&self) -> Vec<Arc<dyn EndHook>> {
        self.hooks
            .read()
            .expect("hooks lock")
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    pub fn node(&self) -> PublicKey {
        self.key.public()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// An execution by id, or `not_found`.
    pub fn get(&self, id: &ExecutionId) -> Result<Execution, EngineError> {
        self.store
            .execution(id)?
            .ok_or_else(|| EngineError::NotFound {
                what: "execution",
                id: id.to_string(),
            })
    }

    /// An execution by id, if this node has it.
    pub fn find(&self, id: &ExecutionId) -> Result<Option<Execution>, StoreError> {
        self.store.execution(id)
    }

    /// The signed request an execution came from.
    pub fn request(
        &self,
        id: &ExecutionId,
    ) -> Result<Option<Signed<ExecutionRequest>>, StoreError> {
        self.store.request(id)
    }

    /// The executor's signed result of a finished execution.
    pub fn result_proof(&self, id: &ExecutionId) -> Result<Signed<ExecutionResult>, EngineError> {
        self.store.result(id)?.ok_or_else(|| EngineError::NotFound {
            what: "result of execution",
            id: id.to_string(),
        })
    }

    pub fn list(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, EngineError> {
        Ok(self.store.list_executions(filter)?)
    }

    /// Executions not yet Completed or Failed (recovery after a restart).
    pub fn unfinished(&self) -> Result<Vec<Execution>, StoreError> {
        self.store.unfinished_executions()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Execution> {
        self.broadcast.subscribe()
    }

    /// Tell subscribers (and, for an end, waiters) about a stored state.
    pub fn notify(&self, execution: &Execution) {
        let _ = self.broadcast.send(execution.clone());
        if execution.status.is_final() {
            self.waiters.wake(execution);
        }
    }

    /// Have the deadline of a stored execution watched.
    pub async fn watch_deadline(&self, execution: &Execution) {
        self.deadlines
            .watch(execution.id, execution.deadline())
            .await;
    }

    /// Wait until the execution is Completed or Failed, or `timeout` passes (then the
    /// current state is returned). An unknown execution is `not_found` and a finished one
    /// answers at once, both without registering a waiter; a registered waiter is removed
    /// however the wait ends (end, timeout, or the caller going away).
    pub async fn wait(
        &self,
        id: &ExecutionId,
        timeout: Duration,
    ) -> Result<Execution, EngineError> {
        let current = self.get(id)?;
        if current.status.is_final() {
            return Ok(current);
        }
        let (_guard, rx) = self.waiters.register(*id);
        // Registered first, then checked again: an end between the two is not missed.
        let current = self.get(id)?;
        if current.status.is_final() {
            return Ok(current);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(e)) => Ok(e),
            _ => self.get(id),
        }
    }

    /// How many waits are registered right now (a gauge on `/metrics`).
    pub fn waiter_count(&self) -> usize {
        self.waiters.count()
    }
}
