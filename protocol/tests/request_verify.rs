//! The `verify` spec of an execution request: signed with it, and added so that a request
//! without it keeps its bytes (older nodes still take it, older requests still decode),
//! while one with it is refused by the older layout rather than misread.

use mesg_protocol::envelope::Signed;
use mesg_protocol::hash::{Hash32, ServiceHash};
use mesg_protocol::keys::Keypair;
use mesg_protocol::types::{ExecutionId, ExecutionRequest, ProcessStepRef, domains};
use mesg_protocol::value::Json;
use mesg_protocol::wire::{self, MAX_WORK_MESSAGE};
use mesg_protocol::{Cause, PublicKey};
use serde::{Deserialize, Serialize};

/// The request as it was serialized before `verify` existed.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct OldRequest {
    execution_id: ExecutionId,
    service_hash: ServiceHash,
    task_key: String,
    inputs: Json,
    requester: PublicKey,
    requester_node: PublicKey,
    parent: Option<ExecutionId>,
    process: Option<ProcessStepRef>,
    tags: Vec<String>,
    timeout_ms: u64,
    created_at: u64,
    idempotency_key: Option<String>,
    cause: Option<Cause>,
    max_price: Option<u64>,
}

fn request(key: &Keypair, max_price: Option<u64>) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: ExecutionId([3; 16]),
        service_hash: ServiceHash(Hash32::sha256(b"svc")),
        task_key: "sum".into(),
        inputs: Json(serde_json::json!({"a": 1, "b": [2, 3]})),
        requester: key.public(),
        requester_node: key.public(),
        parent: Some(ExecutionId([4; 16])),
        process: Some(ProcessStepRef {
            process: "p".into(),
            run: "r".into(),
            step: "s".into(),
        }),
        tags: vec!["x".into()],
        timeout_ms: 5000,
        created_at: 1_800_000_000_000,
        idempotency_key: Some("k".into()),
        cause: None,
        max_price,
        verify: None,
    }
}

fn old(r: &ExecutionRequest) -> OldRequest {
    OldRequest {
        execution_id: r.execution_id,
        service_hash: r.service_hash,
        task_key: r.task_key.clone(),
        inputs: r.inputs.clone(),
        requester: r.requester,
        requester_node: r.requester_node,
        parent: r.parent,
        process: r.process.clone(),
        tags: r.tags.clone(),
        timeout_ms: r.timeout_ms,
        created_at: r.created_at,
        idempotency_key: r.idempotency_key.clone(),
        cause: r.cause,
        max_price: r.max_price,
    }
}

#[test]
fn a_request_without_verify_keeps_its_bytes_both_ways() {
    let key = Keypair::from_secret_bytes([1; 32]);
    for cap in [None, Some(0), Some(250), Some(u64::MAX)] {
        let r = request(&key, cap);
        let new_bytes = wire::encode(&r, MAX_WORK_MESSAGE).unwrap();
        let old_bytes = wire::encode(&old(&r), MAX_WORK_MESSAGE).unwrap();
        assert_eq!(new_bytes, old_bytes, "cap {cap:?}");
        assert_eq!(
            wire::decode::<ExecutionRequest>(&old_bytes, MAX_WORK_MESSAGE).unwrap(),
            r
        );
        assert_eq!(
            wire::decode::<OldRequest>(&new_bytes, MAX_WORK_MESSAGE).unwrap(),
            old(&r)
        );
    }
}

#[test]
fn a_request_with_verify_is_signed_with_it_and_refused_by_the_old_layout() {
    let key = Keypair::from_secret_bytes([1; 32]);
    for cap in [None, Some(9)] {
        let mut r = request(&key, cap);
        r.verify = Some("2/3".parse().unwrap());
        let bytes = wire::encode(&r, MAX_WORK_MESSAGE).unwrap();
        assert_eq!(
            wire::decode::<ExecutionRequest>(&bytes, MAX_WORK_MESSAGE).unwrap(),
            r
        );
        assert!(wire::decode::<OldRequest>(&bytes, MAX_WORK_MESSAGE).is_err());
        let signed = Signed::sign(
            &key,
            domains::EXECUTION_REQUEST,
            &r,
            r.created_at,
            60_000,
            MAX_WORK_MESSAGE,
        )
        .unwrap();
        let back = signed
            .verify(domains::EXECUTION_REQUEST, r.created_at, MAX_WORK_MESSAGE)
            .unwrap();
        assert_eq!(back.verify, r.verify);
        // Changing the spec breaks the signature: it is part of what was signed.
        let mut tampered = signed.clone();
        let mut other = r.clone();
        other.verify = Some("1/3".parse().unwrap());
        tampered.payload.0 = wire::encode(&other, MAX_WORK_MESSAGE).unwrap();
        assert!(
            tampered
                .verify(domains::EXECUTION_REQUEST, r.created_at, MAX_WORK_MESSAGE)
                .is_err()
        );
    }
}

#[test]
fn json_leaves_verify_out_when_unset() {
    let key = Keypair::from_secret_bytes([1; 32]);
    let mut r = request(&key, Some(5));
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("verify").is_none(), "{json}");
    assert_eq!(serde_json::from_value::<ExecutionRequest>(json).unwrap(), r);
    r.verify = Some("2/2".parse().unwrap());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["verify"]["quorum"], 2);
    assert_eq!(serde_json::from_value::<ExecutionRequest>(json).unwrap(), r);
}

#[test]
fn an_invalid_spec_on_the_wire_is_refused() {
    let key = Keypair::from_secret_bytes([1; 32]);
    let r = request(&key, None);
    // The old layout with tag 2 (extended) and quorum above replicas, written by hand.
    let mut bytes = wire::encode(&old(&r), MAX_WORK_MESSAGE).unwrap();
    assert_eq!(bytes.pop(), Some(0), "the old None tag is last");
    bytes.extend_from_slice(&[2, 0, 1, 2, 5, 1, 6]);
    let e = wire::decode::<ExecutionRequest>(&bytes, MAX_WORK_MESSAGE).unwrap_err();
    assert!(
        e.to_string().contains("quorum 5 is more than replicas 2"),
        "{e}"
    );
}
