//! Accepting an execution: one path for an Application's request made on this node and
//! for a peer's submit. The caller has checked the request (signature, schema, replay)
//! and chosen where it goes; the ledger records it durably before anyone hears of it.

use super::ExecutionLedger;
use crate::engine::error::EngineError;
use crate::store::StoreError;
use mesg_protocol::envelope::Signed;
use mesg_protocol::{
    Execution, ExecutionId, ExecutionRequest, ExecutionStatus, InstanceHash, PublicKey, now_ms,
};

/// Where an accepted execution goes, decided by the router before it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// A local instance runs it: recorded as already handed to it, in the same flush, so
    /// a crash can never leave a task that reached a container recorded as not started
    /// (which a restart would run again).
    Local(InstanceHash),
    /// It goes to the network: the provider it is offered to first, if one is known
    /// (noted in the same flush, so routing it costs no flush of its own).
    Remote(Option<PublicKey>),
}

/// Who asked: counted apart on `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An Application of this node (API, CLI, a process).
    Local,
    /// Another node's submit: this node is the executor.
    Peer,
}

/// Why an execution was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Its id is already recorded (nothing was written).
    #[error("execution {0} already exists")]
    Exists(ExecutionId),
    #[error(transparent)]
    Store(StoreError),
}

impl ExecutionLedger {
    /// Record a new execution received at `received_at` (its deadline counts from there),
    /// placed as `placement`; flushed, announced and its deadline watched before it
    /// returns.
    pub async fn accept(
        &self,
        request: &ExecutionRequest,
        signed: &Signed<ExecutionRequest>,
        received_at: u64,
        placement: Placement,
        origin: Origin,
    ) -> Result<Execution, AcceptError> {
        let mut execution = Execution::received(request, received_at);
        match placement {
            Placement::Local(instance) => {
                if execution
                    .transition(ExecutionStatus::InProgress, now_ms())
                    .is_ok()
                {
                    execution.executor = Some(self.node());
                    execution.instance_hash = Some(instance);
                }
            }
            Placement::Remote(first) => execution.executor = first,
        }
        match self.store.insert_execution(&execution, signed) {
            Ok(()) => {}
            Err(StoreError::ExecutionExists(id)) => return Err(AcceptError::Exists(id)),
            Err(e) => return Err(AcceptError::Store(e)),
        }
        self.store.persist().await.map_err(AcceptError::Store)?;
        match origin {
            Origin::Local => self.metrics.executions_created.inc(),
            Origin::Peer => self.metrics.executions_accepted_from_peers.inc(),
        };
        self.notify(&execution);
        self.watch_deadline(&execution).await;
        tracing::debug!(execution_id = %execution.id, task = %execution.task_key, ?origin, "execution accepted");
        Ok(execution)
    }
}

/// The stored execution when `same` says the new request is the one that created it (an
/// idempotent retry); `conflict` otherwise.
pub fn same_or_conflict(
    existing: Execution,
    same: impl FnOnce(&Execution) -> bool,
) -> Result<Execution, EngineError> {
    if same(&existing) {
        Ok(existing)
    } else {
        Err(EngineError::Conflict(format!(
            "execution id {} is already used by a different request (service {}, task `{}`); choose another execution_id",
            existing.id, existing.service_hash, existing.task_key
        )))
    }
}

/// Whether `request` asks for what `e` records (its time of creation aside).
pub fn same_request(e: &Execution, request: &ExecutionRequest) -> bool {
    e.service_hash == request.service_hash
        && e.task_key == request.task_key
        && e.inputs == request.inputs
        && e.requester == request.requester
        && e.requester_node == request.requester_node
        && e.parent == request.parent
        && e.process == request.process
        && e.tags == request.tags
        && e.timeout_ms == request.timeout_ms
}
