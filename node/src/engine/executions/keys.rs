//! Idempotency keys at the ledger: what an execution already recorded under a key means
//! for a new request with that key (the execution id is derived from requester and key,
//! so "recorded under the key" is "recorded under that id").
//!
//! Learned from Stripe and the IETF idempotency-key draft: the same key and the same
//! request (service, task, canonical inputs) answer the existing execution, running or
//! finished, marked as a replay; the same key with another request is refused; a key
//! lives at least the node's TTL, after which it may name a new execution.

use super::ExecutionLedger;
use crate::engine::error::EngineError;
use mesg_protocol::control::request_fingerprint;
use mesg_protocol::{Execution, ExecutionId, Json, ServiceHash, now_ms};

/// What a keyed request finds.
#[derive(Debug)]
pub enum Keyed {
    /// Nothing live under the key: accept the request as new.
    New,
    /// The key names this execution, asked for with the same request.
    Replay(Execution),
}

/// What a keyed request asks for, to compare with what its key first asked for.
#[derive(Debug, Clone, Copy)]
pub struct KeyedRequest<'a> {
    pub id: ExecutionId,
    pub key: &'a str,
    pub service: ServiceHash,
    pub task: &'a str,
    pub inputs: &'a Json,
}

/// The decision, apart from the store.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    New,
    /// The key expired with its finished execution: forget it, then accept anew.
    ForgetThenNew,
    Replay,
    Conflict(String),
}

pub(super) fn decide(
    existing: Option<&Execution>,
    request: &KeyedRequest<'_>,
    ttl_ms: u64,
    now: u64,
) -> Decision {
    let Some(e) = existing else {
        return Decision::New;
    };
    let Some(first_key) = &e.idempotency_key else {
        return Decision::Conflict(format!(
            "execution id {} is already used by a request without an idempotency key",
            e.id
        ));
    };
    if first_key != request.key {
        // Two keys deriving the same id: a hash collision, or a crafted id.
        return Decision::Conflict(format!(
            "execution id {} already belongs to another idempotency key",
            e.id
        ));
    }
    if e.status.is_final() && e.created_at.saturating_add(ttl_ms) <= now {
        return Decision::ForgetThenNew;
    }
    let first = request_fingerprint(&e.service_hash, &e.task_key, &e.inputs);
    let this = request_fingerprint(&request.service, request.task, request.inputs);
    if first == this {
        Decision::Replay
    } else {
        Decision::Conflict(format!(
            "idempotency key `{}` was first used for task `{}` of service {} with other inputs (execution {}); a different request needs a new key",
            request.key, e.task_key, e.service_hash, e.id
        ))
    }
}

impl ExecutionLedger {
    /// What the key of `request` names here (see the module). An expired key's finished
    /// execution is removed, so the id can name the new one.
    pub fn keyed(&self, request: &KeyedRequest<'_>, ttl_ms: u64) -> Result<Keyed, EngineError> {
        let existing = self.find(&request.id)?;
        match decide(existing.as_ref(), request, ttl_ms, now_ms()) {
            Decision::New => Ok(Keyed::New),
            Decision::Replay => Ok(Keyed::Replay(existing.expect("decided on a record"))),
            Decision::Conflict(m) => Err(EngineError::IdempotencyKeyReused(m)),
            Decision::ForgetThenNew => match self.store.remove_execution(&request.id) {
                Ok(()) => {
                    tracing::debug!(execution_id = %request.id, "idempotency key expired: its execution is forgotten");
                    Ok(Keyed::New)
                }
                // Still owed to a node: the key stays live until that is done.
                Err(_) => Ok(Keyed::Replay(existing.expect("decided on a record"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesg_protocol::{ExecutionRequest, Hash32, Keypair};
    use serde_json::json;

    fn recorded(key: &str, inputs: serde_json::Value, created_at: u64) -> Execution {
        let node = Keypair::generate().unwrap().public();
        let req = ExecutionRequest {
            execution_id: mesg_protocol::control::idempotent_execution_id(&node, key),
            service_hash: ServiceHash(Hash32::sha256(b"svc")),
            task_key: "t".into(),
            inputs: Json(inputs),
            requester: node,
            requester_node: node,
            parent: None,
            process: None,
            tags: vec![],
            timeout_ms: 1000,
            created_at,
            idempotency_key: Some(key.into()),
            cause: None,
            max_price: None,
            verify: None,
        };
        Execution::from_request(&req)
    }

    fn ask<'a>(e: &Execution, key: &'a str, inputs: &'a Json) -> KeyedRequest<'a> {
        KeyedRequest {
            id: e.id,
            key,
            service: e.service_hash,
            task: "t",
            inputs,
        }
    }

    #[test]
    fn the_same_request_under_a_live_key_is_a_replay_running_or_finished() {
        let mut e = recorded("k", json!({"a": 1, "b": 2}), 1_000);
        let same = Json(json!({"b": 2, "a": 1}));
        assert_eq!(
            decide(Some(&e), &ask(&e, "k", &same), 10_000, 5_000),
            Decision::Replay
        );
        e.transition(mesg_protocol::ExecutionStatus::InProgress, 2_000)
            .unwrap();
        e.complete(Json(json!({})), 3_000).unwrap();
        assert_eq!(
            decide(Some(&e), &ask(&e, "k", &same), 10_000, 5_000),
            Decision::Replay
        );
    }

    #[test]
    fn another_request_under_a_live_key_is_refused_with_what_the_key_names() {
        let e = recorded("k", json!({"a": 1}), 1_000);
        let other = Json(json!({"a": 2}));
        match decide(Some(&e), &ask(&e, "k", &other), 10_000, 5_000) {
            Decision::Conflict(m) => assert!(m.contains("was first used for task `t`"), "{m}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn an_expired_key_names_a_new_execution_once_the_old_one_ended() {
        let mut e = recorded("k", json!({"a": 1}), 1_000);
        let other = Json(json!({"a": 2}));
        // Expired but still running: the key stays live.
        assert!(matches!(
            decide(Some(&e), &ask(&e, "k", &other), 10_000, 20_000),
            Decision::Conflict(_)
        ));
        e.fail("x", 2_000).unwrap();
        assert_eq!(
            decide(Some(&e), &ask(&e, "k", &other), 10_000, 20_000),
            Decision::ForgetThenNew
        );
        assert_eq!(
            decide(None, &ask(&e, "k", &other), 10_000, 20_000),
            Decision::New
        );
    }

    #[test]
    fn an_id_taken_without_a_key_is_never_a_replay() {
        let mut e = recorded("k", json!({}), 1_000);
        e.idempotency_key = None;
        let same = Json(json!({}));
        assert!(matches!(
            decide(Some(&e), &ask(&e, "k", &same), 10_000, 5_000),
            Decision::Conflict(_)
        ));
    }
}
