//! Control of work carried in signed requests and events: the idempotency key that makes a
//! retried submission the same execution everywhere, and the causal chain that lets any
//! node stop an event loop between processes and services without seeing the whole loop.

use crate::hash::Hash32;
use crate::keys::PublicKey;
use crate::types::{EventId, ExecutionId};
use crate::value::Json;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest idempotency key (Stripe's limit; a UUID needs 36).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Why an idempotency key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    #[error("the idempotency key is empty")]
    Empty,
    #[error("the idempotency key is {0} bytes long; at most {MAX_IDEMPOTENCY_KEY_LEN}")]
    TooLong(usize),
    #[error("the idempotency key must be printable ASCII (no spaces or control characters)")]
    NotPrintable,
    #[error(
        "execution_id {got} does not match the idempotency key: a keyed request's id is derived from its requester and key ({expected})"
    )]
    WrongId {
        got: ExecutionId,
        expected: ExecutionId,
    },
}

/// Check a key: 1 to 255 printable ASCII characters, no spaces (it travels in an HTTP
/// header and in logs).
pub fn check_idempotency_key(key: &str) -> Result<(), IdempotencyKeyError> {
    if key.is_empty() {
        return Err(IdempotencyKeyError::Empty);
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(IdempotencyKeyError::TooLong(key.len()));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IdempotencyKeyError::NotPrintable);
    }
    Ok(())
}

/// The execution id of a keyed request: a function of the requester and the key only, so
/// every node that sees the request (the requester's, another one the Application retried
/// through, the executor) names it the same and recognises a duplicate on its own.
pub fn idempotent_execution_id(requester: &PublicKey, key: &str) -> ExecutionId {
    let h = Hash32::domain("mesg-idempotency-key-v1", &[&requester.0, key.as_bytes()]);
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.as_bytes()[..16]);
    ExecutionId(id)
}

/// What a keyed request asked for: service, task and canonical inputs. The same key with
/// another fingerprint is a different request and is refused.
pub fn request_fingerprint(service: &crate::ServiceHash, task: &str, inputs: &Json) -> Hash32 {
    let canonical = crate::canonical::to_canonical_json(&inputs.0);
    Hash32::domain(
        "mesg-request-fingerprint-v1",
        &[service.as_bytes(), task.as_bytes(), &canonical],
    )
}

/// Check a request's key and that its execution id is the one the key names (a request
/// whose id differs could run twice under one key, once per id).
pub fn check_keyed_request(req: &crate::ExecutionRequest) -> Result<(), IdempotencyKeyError> {
    let Some(key) = &req.idempotency_key else {
        return Ok(());
    };
    check_idempotency_key(key)?;
    let expected = idempotent_execution_id(&req.requester, key);
    if req.execution_id != expected {
        return Err(IdempotencyKeyError::WrongId {
            got: req.execution_id,
            expected,
        });
    }
    Ok(())
}

/// Something that can start a chain of work: an execution or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CauseRef {
    Execution(ExecutionId),
    Event(EventId),
}

impl fmt::Display for CauseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CauseRef::Execution(id) => write!(f, "execution {id}"),
            CauseRef::Event(id) => write!(f, "event {id}"),
        }
    }
}

/// Where a request or an event sits in a causal chain. Absent on what an Application
/// asked for directly (depth 0). Each process run inherits the depth of what triggered it
/// plus one, each execution and event the depth of what caused it; beyond a limit a node
/// refuses to trigger (see docs/processes.md, "Loops").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cause {
    /// Process triggers between the Application's request (or a service's own event) and this.
    pub depth: u32,
    /// What started the chain.
    pub root: CauseRef,
    /// What caused this directly.
    pub parent: CauseRef,
}

impl Cause {
    /// The cause of something `parent` (itself caused by `cause`, if anything) led to,
    /// at `depth_step` (1 across a process trigger, 0 from an execution to its event).
    pub fn after(cause: Option<&Cause>, parent: CauseRef, depth_step: u32) -> Cause {
        match cause {
            Some(c) => Cause {
                depth: c.depth.saturating_add(depth_step),
                root: c.root,
                parent,
            },
            None => Cause {
                depth: depth_step,
                root: parent,
                parent,
            },
        }
    }

    /// Depth of an optional cause (0 for none).
    pub fn depth_of(cause: Option<&Cause>) -> u32 {
        cause.map_or(0, |c| c.depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;

    #[test]
    fn a_key_names_the_same_execution_for_one_requester_only() {
        let (a, b) = (
            Keypair::generate().unwrap().public(),
            Keypair::generate().unwrap().public(),
        );
        assert_eq!(
            idempotent_execution_id(&a, "order-1"),
            idempotent_execution_id(&a, "order-1")
        );
        assert_ne!(
            idempotent_execution_id(&a, "order-1"),
            idempotent_execution_id(&a, "order-2")
        );
        assert_ne!(
            idempotent_execution_id(&a, "order-1"),
            idempotent_execution_id(&b, "order-1")
        );
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_idempotency_key("3f2a-uuid_like.key:1").is_ok());
        assert_eq!(check_idempotency_key(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            check_idempotency_key("a b"),
            Err(IdempotencyKeyError::NotPrintable)
        );
        assert_eq!(
            check_idempotency_key("é"),
            Err(IdempotencyKeyError::NotPrintable)
        );
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1);
        assert_eq!(
            check_idempotency_key(&long),
            Err(IdempotencyKeyError::TooLong(256))
        );
    }

    #[test]
    fn the_fingerprint_ignores_key_order_but_not_values() {
        let s = crate::ServiceHash(Hash32::sha256(b"svc"));
        let a = Json(serde_json::json!({"x": 1, "y": [1, 2]}));
        let b = Json(serde_json::json!({"y": [1, 2], "x": 1}));
        let c = Json(serde_json::json!({"x": 2, "y": [1, 2]}));
        assert_eq!(
            request_fingerprint(&s, "t", &a),
            request_fingerprint(&s, "t", &b)
        );
        assert_ne!(
            request_fingerprint(&s, "t", &a),
            request_fingerprint(&s, "t", &c)
        );
        assert_ne!(
            request_fingerprint(&s, "t", &a),
            request_fingerprint(&s, "u", &a)
        );
    }

    #[test]
    fn depth_grows_across_triggers_and_keeps_its_root() {
        let root = CauseRef::Execution(ExecutionId([1; 16]));
        let first = Cause::after(None, root, 1);
        assert_eq!((first.depth, first.root, first.parent), (1, root, root));
        let event = CauseRef::Event(EventId([2; 16]));
        let second = Cause::after(Some(&first), event, 0);
        assert_eq!((second.depth, second.root, second.parent), (1, root, event));
        assert_eq!(Cause::after(Some(&second), event, 1).depth, 2);
        assert_eq!(Cause::depth_of(None), 0);
    }
}
