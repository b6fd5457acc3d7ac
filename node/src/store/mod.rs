//! The node's durable state, in sled, behind the small [`Store`] trait.
//!
//! Durability rule: sled buffers writes (about 500 ms); anything acknowledged to anyone
//! (an API caller, a container, a peer) must be flushed first. Writers call
//! [`Store::persist`] after their writes; concurrent callers share one flush (group
//! commit), so durability costs one fsync per batch, not one per execution.

use futures::future::BoxFuture;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Event, Execution, ExecutionId, ExecutionRequest, ExecutionResult, ExecutionStatus,
    InstanceHash, PublicKey, ServiceHash, ServiceRecord,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod sled_store;

pub use sled_store::SledStore;

/// Version of the on-disk layout. A store written by another version is refused.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sled::Error),
    #[error(
        "the store at {path} has schema version {found}; this build reads version {SCHEMA_VERSION} only"
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    Running,
    Stopped,
}

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

/// A raw key and value of a blob tree.
pub type KeyValue = (Vec<u8>, Vec<u8>);

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
    /// Wait until every write made before this call is on disk.
    fn persist(&self) -> BoxFuture<'static, Result<(), StoreError>>;

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
    fn prune_executions(&self, keep: usize, batch: usize) -> Result<usize, StoreError>;

    /// The signed result of a finished execution (kept by both executor and requester).
    fn put_result(
        &self,
        result: &Signed<ExecutionResult>,
        id: &ExecutionId,
    ) -> Result<(), StoreError>;
    fn result(&self, id: &ExecutionId) -> Result<Option<Signed<ExecutionResult>>, StoreError>;

    fn put_outbox(&self, id: &ExecutionId, entry: &OutboxEntry) -> Result<(), StoreError>;
    fn outbox_entry(&self, id: &ExecutionId) -> Result<Option<OutboxEntry>, StoreError>;
    fn remove_outbox(&self, id: &ExecutionId) -> Result<(), StoreError>;
    fn outbox(&self) -> Result<Vec<(ExecutionId, OutboxEntry)>, StoreError>;

    /// Record an event; keeps the newest `keep` events.
    fn put_event(&self, event: &Event, keep: usize) -> Result<(), StoreError>;
    /// Newest first.
    fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StoreError>;

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

    /// Small named blobs for other modules (processes, network state).
    fn put_blob(&self, tree: &'static str, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn blob(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn blobs(&self, tree: &'static str) -> Result<Vec<KeyValue>, StoreError>;
    fn delete_blob(&self, tree: &'static str, key: &[u8]) -> Result<(), StoreError>;
}
