//! Checks of an execution request that do not depend on where it came from (an
//! Application here, a peer's submit, a signed request from an account), and the request
//! an Application's create call becomes.

use super::config::{DEFAULT_TIMEOUT_MS, MAX_TAG_LEN, MAX_TAGS, MAX_TIMEOUT_MS};
use super::error::EngineError;
use super::views::CreateExecution;
use crate::store::ServiceEntry;
use mesg_protocol::control::{check_keyed_request, idempotent_execution_id};
use mesg_protocol::definition::TaskDefinition;
use mesg_protocol::{
    ExecutionId, ExecutionRequest, Json, PublicKey, ServiceDefinition, ServiceHash, now_ms,
};

pub fn task_of<'d>(
    service: ServiceHash,
    definition: &'d ServiceDefinition,
    task: &str,
) -> Result<&'d TaskDefinition, EngineError> {
    definition
        .task(task)
        .ok_or_else(|| EngineError::UnknownTask {
            service,
            task: task.to_string(),
            known: definition
                .tasks
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Checks that do not depend on where the request came from.
pub fn validate_request(
    definition: &ServiceDefinition,
    request: &ExecutionRequest,
) -> Result<(), EngineError> {
    let task = task_of(request.service_hash, definition, &request.task_key)?;
    check_keyed_request(request).map_err(|e| EngineError::BadRequest(e.to_string()))?;
    check_price(request, task)?;
    check_verify(request, task)?;
    mesg_protocol::schema::validate(&task.inputs, &request.inputs.0, "inputs")
        .map_err(EngineError::InvalidInputs)?;
    if request.timeout_ms == 0 || request.timeout_ms > MAX_TIMEOUT_MS {
        return Err(EngineError::BadRequest(format!(
            "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        )));
    }
    if request.tags.len() > MAX_TAGS
        || request
            .tags
            .iter()
            .any(|t| t.is_empty() || t.len() > MAX_TAG_LEN || t.chars().any(char::is_control))
    {
        return Err(EngineError::BadRequest(format!(
            "at most {MAX_TAGS} tags of 1 to {MAX_TAG_LEN} printable characters"
        )));
    }
    Ok(())
}

/// A priced task needs a spending cap of at least its least cost (its `call` price): a
/// cap can be required rather than defaulted because it is the requester's signed
/// consent to pay; a node choosing one for it would spend on its behalf. A free task
/// takes any cap, or none. Above its least cost the cap only bounds the amount charged.
pub fn check_price(request: &ExecutionRequest, task: &TaskDefinition) -> Result<(), EngineError> {
    let Some(price) = task.price else {
        return Ok(());
    };
    match request.max_price {
        Some(cap) if cap >= price.minimum() => Ok(()),
        max_price => Err(EngineError::PriceAboveCap {
            service: request.service_hash,
            task: request.task_key.clone(),
            price,
            max_price,
        }),
    }
}

/// Verification is asked only of a deterministic task: executors' results can agree only
/// when the same inputs give the same outputs. Not of a priced one yet: each executor
/// would issue its usage receipt with its result, before any verdict (docs/verification.md).
pub fn check_verify(request: &ExecutionRequest, task: &TaskDefinition) -> Result<(), EngineError> {
    match request.verify {
        Some(spec) if !task.deterministic => Err(EngineError::BadRequest(format!(
            "task `{}` is not deterministic, so its executions cannot be verified ({spec} asked): only a task whose mesg.yml says `deterministic: true` can be",
            request.task_key
        ))),
        Some(spec) if task.price.is_some_and(|p| !p.is_free()) => {
            Err(EngineError::BadRequest(format!(
                "task `{}` is priced: verified executions ({spec} asked) of priced tasks are not supported yet, as receipts are booked per executor before the verdict",
                request.task_key
            )))
        }
        Some(spec) => spec
            .check()
            .map_err(|e| EngineError::BadRequest(format!("verify: {e}"))),
        None => Ok(()),
    }
}

/// The request an Application's create call asks for, made by this node (`node`).
pub fn build_request(
    node: PublicKey,
    service: &ServiceEntry,
    req: CreateExecution,
) -> Result<ExecutionRequest, EngineError> {
    let definition = &service.record.definition;
    let task = task_of(service.record.service_hash, definition, &req.task)?;
    let timeout_ms = req
        .timeout_ms
        .or(task.timeout_ms)
        .unwrap_or(DEFAULT_TIMEOUT_MS);
    let request = ExecutionRequest {
        execution_id: match (&req.idempotency_key, req.execution_id) {
            (Some(key), _) => idempotent_execution_id(&node, key),
            (None, Some(id)) => id,
            (None, None) => ExecutionId::random(),
        },
        service_hash: service.record.service_hash,
        task_key: req.task,
        inputs: Json(req.inputs),
        requester: node,
        requester_node: node,
        parent: req.parent,
        process: req.process,
        tags: req.tags,
        timeout_ms,
        created_at: now_ms(),
        idempotency_key: req.idempotency_key,
        cause: req.cause,
        max_price: req.max_price,
        // Asked for, else the task's default (checked against the task below).
        // A priced task's default is not applied (see `check_verify`).
        verify: req.verify.or(task
            .verify
            .filter(|_| task.price.is_none_or(|p| p.is_free()))),
    };
    validate_request(definition, &request)?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::{Hash32, Keypair};

    fn request(verify: Option<&str>) -> ExecutionRequest {
        let key = Keypair::from_secret_bytes([3; 32]).public();
        ExecutionRequest {
            execution_id: ExecutionId::random(),
            service_hash: ServiceHash(Hash32::sha256(b"calc")),
            task_key: "sum".into(),
            inputs: Json(serde_json::json!({})),
            requester: key,
            requester_node: key,
            parent: None,
            process: None,
            tags: vec![],
            timeout_ms: 1000,
            created_at: now_ms(),
            idempotency_key: None,
            cause: None,
            max_price: None,
            verify: verify.map(|v| v.parse().unwrap()),
        }
    }

    #[test]
    fn verification_is_asked_only_of_a_deterministic_task() {
        let def = ServiceDefinition::from_yaml(
            "name: calc\ntasks:\n  sum:\n    deterministic: true\n  guess: {}\n",
        )
        .unwrap();
        validate_request(&def, &request(Some("2/3"))).unwrap();
        validate_request(&def, &request(None)).unwrap();
        let mut guess = request(Some("2/3"));
        guess.task_key = "guess".into();
        match validate_request(&def, &guess) {
            Err(EngineError::BadRequest(m)) => assert!(m.contains("not deterministic"), "{m}"),
            other => panic!("{other:?}"),
        }
        guess.verify = None;
        validate_request(&def, &guess).unwrap();
    }
}
