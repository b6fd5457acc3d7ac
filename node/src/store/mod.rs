//! The node's durable state, in sled, behind the small [`Store`] trait.
//!
//! Durability rule: sled buffers writes (about 500 ms); anything acknowledged to anyone
//! (an API caller, a container, a peer) must be flushed first. Writers call
//! [`Store::persist`] after their writes; concurrent callers share one flush (group
//! commit), so durability costs one fsync per batch, not one per execution.

use crate::processes::{ProcessRecord, Run};
use futures::future::BoxFuture;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Event, Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus, Hash32,
    InstanceHash, PublicKey, ServiceHash, ServiceRecord,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod sled;

#[cfg(test)]
pub(crate) use self::sled::open_db;
pub use self::sled::{FlushCounters, SledStore};

/// Version of the on-disk layout. A store written by another version is refused.
/// 2: execution records, signed requests and events carry an idempotency key and a cause
/// (issue 16); a version-1 store is refused with a clear message, not misread.
pub const SCHEMA_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] ::sled::Error),
    #[error(
        "the store at {path} has schema version {found}; this build reads version {SCHEMA_VERSION} only: run the mesg-node release that wrote it, or start this one with a new --data-dir"
    )]
    SchemaVersion { path: String, found: u32 },
    #[error("corrupt record in `{tree}`: {message}")]
    Corrupt { tree: &'static str, message: String },
    #[error("{0}")]
    Encode(String),
    #[error("execution {0} not found")]
    UnknownExecution(ExecutionId),
    /// `insert_execution` of an id that is already stored (nothing was written).
    #[error("execution {0} already exists")]
    ExecutionExists(ExecutionId),
    #[error("illegal transition: {0}")]
    Transition(#[from] mesg_protocol::TransitionError),
    #[error("the flusher stopped")]
    FlusherGone,
}

/// A service this node knows: deployed here, or fetched from the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEntry {
    pub record: ServiceRecord,
    /// The record as signed by its publisher (this node, or the node it came from).
    pub signed: Signed<ServiceRecord>,
    /// Docker image built from the package on this node, if any.
    pub image: Option<String>,
    pub deployed_at: u64,
}

// Whether an instance should run: kept in the store, shown by the API (one serde form).
pub use mesg_api_types::DesiredState;

/// An instance this node runs (or ran): what it takes to start it again after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceEntry {
    pub instance_hash: InstanceHash,
    pub service_hash: ServiceHash,
    pub env: BTreeMap<String, String>,
    /// Secret of the instance's containers for the service API; kept so that containers
    /// adopted after a node restart can still authenticate.
    pub token: String,
    pub desired: DesiredState,
    pub created_at: u64,
    /// Resource limits asked for at start (else the node's defaults).
    pub limits: Option<crate::runtime::ResourceLimits>,
}

/// Filters of an execution listing; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub status: Option<ExecutionStatus>,
    pub service: Option<ServiceHash>,
    pub tag: Option<String>,
    pub parent: Option<ExecutionId>,
    pub task: Option<String>,
    /// Only executions created strictly before this (created_at, id): a page cursor.
    pub before: Option<(u64, ExecutionId)>,
    pub limit: usize,
}

/// A result waiting to be delivered to the requester's node (executor side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub result: Signed<ExecutionResult>,
    pub requester_node: PublicKey,
    pub attempts: u32,
    pub next_attempt_at: u64,
}

/// The node's durable state. Reads and writes are synchronous and fast (sled); call
/// [`Store::persist`] before acknowledging anything that was written.
pub trait Store: Send + Sync + 'static {
    /// The tree named `name` of the same database, for a component that keeps its own
    /// records with multi-record transactions (the economy's ledger): one flush
    /// ([`Store::persist`]) makes them durable with the rest.
    fn tree(&self, name: &'static str) -> Result<::sled::Tree, StoreError>;

    /// Wait until every write made before this call is on disk.
    fn persist(&self) -> BoxFuture<'static, Result<(), StoreError>>;

    /// The flusher's counters (flushes, waiters served), for /metrics.
    fn flush_counters(&self) -> FlushCounters;

    fn put_service(&self, entry: &ServiceEntry) -> Result<(), StoreError>;
    fn service(&self, hash: &ServiceHash) -> Result<Option<ServiceEntry>, StoreError>;
    /// The service most recently deployed under `sid`.
    fn service_by_sid(&self, sid: &str) -> Result<Option<ServiceEntry>, StoreError>;
    fn services(&self) -> Result<Vec<ServiceEntry>, StoreError>;
    fn delete_service(&self, hash: &ServiceHash) -> Result<bool, StoreError>;

    fn put_instance(&self, entry: &InstanceEntry) -> Result<(), StoreError>;
    fn instance(&self, hash: &InstanceHash) -> Result<Option<InstanceEntry>, StoreError>;
    fn instances(&self) -> Result<Vec<InstanceEntry>, StoreError>;
    fn delete_instance(&self, hash: &InstanceHash) -> Result<bool, StoreError>;

    /// Insert a new execution with the signed request it came from.
    fn insert_execution(
        &self,
        execution: &Execution,
        request: &Signed<ExecutionRequest>,
    ) -> Result<(), StoreError>;
    fn execution(&self, id: &ExecutionId) -> Result<Option<Execution>, StoreError>;
    fn request(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionRequest>>, StoreError>;
    /// Apply `change` to an execution atomically, keeping the indexes in step. `change`
    /// may refuse (e.g. an illegal transition); nothing is written then. Returns the new
    /// state.
    fn update_execution(
        &self,
        id: &ExecutionId,
        change: &mut dyn FnMut(&mut Execution) -> Result<(), StoreError>,
    ) -> Result<Execution, StoreError>;
    /// Newest first.
    fn list_executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError>;
    /// Executions not yet Completed or Failed.
    fn unfinished_executions(&self) -> Result<Vec<Execution>, StoreError>;
    /// Remove the oldest finished executions, with their request, result and index
    /// entries, until at most `keep` executions remain; at most `batch` in one call.
    /// Executions that have not ended, and those whose result is still owed to their
    /// requester (outbox), are kept. Returns how many were removed.
    /// Executions created with an idempotency key at or after `keyed_kept_since` are kept
    /// too (their key must still answer).
    fn prune_executions(
        &self,
        keep: usize,
        batch: usize,
        keyed_kept_since: u64,
    ) -> Result<usize, StoreError>;
    /// Remove one finished execution (an idempotency key's, once the key expired and is
    /// used again). Refused for an execution still running or whose result is owed.
    fn remove_execution(&self, id: &ExecutionId) -> Result<(), StoreError>;

    /// The signed result of a finished execution (kept by both executor and requester).
    fn put_result(
        &self,
        result: &Signed<ExecutionResult>,
        id: &ExecutionId,
    ) -> Result<(), StoreError>;
    fn result(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionResult>>, StoreError>;

    /// One entry per execution and requester node (`entry.requester_node`).
    fn put_outbox(&self, id: &ExecutionId, entry: &OutboxEntry) -> Result<(), StoreError>;
    fn outbox_entry(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
    ) -> Result<Option<OutboxEntry>, StoreError>;
    fn remove_outbox(&self, id: &ExecutionId, node: &PublicKey) -> Result<(), StoreError>;
    fn outbox(&self) -> Result<Vec<(ExecutionId, OutboxEntry)>, StoreError>;
    /// Another node asked for this execution (same requester and idempotency key, same
    /// request) while it was under way here: it is owed a copy of the result, signed for
    /// its own request (`request_digest`), when the execution ends.
    fn add_owed_copy(
        &self,
        id: &ExecutionId,
        node: &PublicKey,
        request_digest: &Hash32,
    ) -> Result<(), StoreError>;
    /// The nodes owed a copy of this execution's result; forgets them.
    fn take_owed_copies(&self, id: &ExecutionId) -> Result<Vec<(PublicKey, Hash32)>, StoreError>;

    /// Record an event; keeps the newest `keep` events.
    fn put_event(&self, event: &Event, keep: usize) -> Result<(), StoreError>;
    /// Newest first.
    fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StoreError>;

    /// Keep an event this node emitted, signed, in the catch-up log (by service and
    /// `event.seq`; at most `MAX_LOGGED_PER_SERVICE` per service).
    fn log_event(&self, event: &Event, signed: &Signed<Event>) -> Result<(), StoreError>;
    /// The logged events of `service` after sequence number `after`, in order, at most
    /// `limit` of them and `max_bytes` encoded.
    fn logged_events(
        &self,
        service: &ServiceHash,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Signed<Event>>, StoreError>;
    /// The last sequence number logged for `service` (0: none).
    fn last_event_seq(&self, service: &ServiceHash) -> Result<u64, StoreError>;
    /// Forget logged events created before `before`; returns how many.
    fn prune_event_log(&self, before: u64) -> Result<usize, StoreError>;

    /// Record (signer, nonce) until `expires_at`. Returns false if it was already seen:
    /// the message is a replay.
    fn record_nonce(
        &self,
        signer: &PublicKey,
        nonce: &[u8; 16],
        expires_at: u64,
    ) -> Result<bool, StoreError>;
    /// Forget nonces whose envelopes expired before `now`; returns how many.
    fn purge_nonces(&self, now: u64) -> Result<usize, StoreError>;

    /// Store a process record (replacing the one with its id).
    fn put_process(&self, record: &ProcessRecord) -> Result<(), StoreError>;
    fn process(&self, id: &str) -> Result<Option<ProcessRecord>, StoreError>;
    /// Every stored process. A record that does not decode is logged and left out, so
    /// one bad record does not stop the others from running.
    fn processes(&self) -> Result<Vec<ProcessRecord>, StoreError>;
    fn delete_process(&self, id: &str) -> Result<(), StoreError>;
    /// Store a run (replacing the one with its id) and list it under its process.
    fn put_run(&self, run: &Run) -> Result<(), StoreError>;
    fn run(&self, id: &str) -> Result<Option<Run>, StoreError>;
    /// Runs still running (to resume them after a restart); unreadable ones are left out.
    fn running_runs(&self) -> Result<Vec<Run>, StoreError>;
    /// Runs of a process, newest first, at most `limit`; unreadable ones are left out.
    fn process_runs(&self, process: &str, limit: usize) -> Result<Vec<Run>, StoreError>;

    /// Small named trees of raw bytes, for modules without typed trees (name pins and
    /// publisher claims).
    fn put_blob(&self, tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn blob(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}
