//! How an execution's payloads are kept apart from its record: the record without its
//! inputs and outputs, each payload encoded (and written) once, and the marker that says
//! large inputs are those of the stored request.

use super::codec::{dec, enc};
use crate::store::StoreError;
use mesg_protocol::Execution;

/// An execution as stored: the record without its inputs and outputs, which are kept
/// apart and written once each, so the status changes of an execution with large
/// payloads rewrite a few hundred bytes instead of the payloads.
pub(super) struct StoredExecution {
    pub(super) record: Vec<u8>,
    pub(super) inputs: Option<Vec<u8>>,
    pub(super) outputs: Option<Vec<u8>>,
}

/// The record of `e`, and its payloads encoded only where `inputs` and `outputs` say they
/// are to be written (they are written once: re-encoding a 1 MiB payload at every status
/// change only to drop it was a JSON serialisation per transition).
pub(super) fn split_payloads(
    e: &Execution,
    inputs: bool,
    outputs: bool,
) -> Result<StoredExecution, StoreError> {
    // Field by field, so the payloads are not copied only to be dropped.
    let head = Execution {
        id: e.id,
        service_hash: e.service_hash,
        task_key: e.task_key.clone(),
        inputs: mesg_protocol::Json::null(),
        requester: e.requester,
        requester_node: e.requester_node,
        executor: e.executor,
        instance_hash: e.instance_hash,
        status: e.status,
        outputs: None,
        error: e.error.clone(),
        parent: e.parent,
        process: e.process.clone(),
        tags: e.tags.clone(),
        timeout_ms: e.timeout_ms,
        created_at: e.created_at,
        started_at: e.started_at,
        finished_at: e.finished_at,
        idempotency_key: e.idempotency_key.clone(),
        cause: e.cause,
        max_price: e.max_price,
        cost: e.cost,
    };
    let outputs = match &e.outputs {
        Some(o) if outputs => Some(enc(o)?),
        _ => None,
    };
    Ok(StoredExecution {
        record: enc(&head)?,
        inputs: inputs.then(|| enc(&e.inputs)).transpose()?,
        outputs,
    })
}

/// What `exec_inputs` holds when the inputs are those of the stored request (large ones
/// only). Never a valid encoding of a JSON text, which starts with its non-zero length.
pub(super) const IN_REQUEST: &[u8] = b"\0mesg-inputs-in-request/1\0";

/// Put the outputs back into a stored record. A record written before payloads were
/// kept apart still holds them itself: then there is no separate entry and it stays as it
/// is.
pub(super) fn join_outputs(e: &mut Execution, outputs: Option<&[u8]>) -> Result<(), StoreError> {
    if let Some(b) = outputs {
        e.outputs = Some(dec("exec_outputs", b)?);
    }
    Ok(())
}
