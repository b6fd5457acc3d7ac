//! Issue 16 (idempotency keys) as an attacker sees them. A keyed request's execution id is
//! derived from requester and key, and an executor that holds a keyed execution answers a
//! duplicate from another node with a copy of the result. So: a keyed request with an id
//! the key does not name is refused (it could run twice under one key); another request
//! under a used key is refused by name and does not run; a rogue node cannot obtain a copy
//! of someone else's keyed result by forwarding their signed request; a request in the
//! previous request format (domain version 1) is refused by name; bad keys on the API are
//! bad requests that leave no record.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::control::idempotent_execution_id;
use mesg_protocol::messages::{RejectCode, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

fn keyed(rogue: &Rogue, service: ServiceHash, key: &str, message: &str) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: idempotent_execution_id(&rogue.public(), key),
        service_hash: service,
        task_key: "echo".into(),
        inputs: Json(json!({ "message": message })),
        requester: rogue.public(),
        requester_node: rogue.public(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 10_000,
        created_at: now_ms(),
        idempotency_key: Some(key.into()),
        cause: None,
        max_price: None,
        verify: None,
    }
}

fn sign(key: &Keypair, domain: &str, req: &ExecutionRequest) -> Signed<ExecutionRequest> {
    Signed::sign(key, domain, req, now_ms(), 60_000, MAX_WORK_MESSAGE).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn keyed_requests_cannot_be_forged_reused_or_hijacked() {
    let v = NodeProcess::start(&[]);
    let api_v = Api::new(&v);
    let (service, _) = rogue::deploy_and_start(&api_v, &service_dir("echo")).await;
    let service: ServiceHash = service.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let v_peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();

    // An id the key does not name: refused, nothing recorded.
    let mut forged = keyed(&rogue, service, "k1", "x");
    forged.execution_id = ExecutionId::random();
    let (code, message) = rogue::refused(
        rogue::submit_until_answered(
            &rogue,
            v_peer,
            sign(&rogue.key, domains::EXECUTION_REQUEST, &forged),
        )
        .await,
    );
    assert_eq!(code, RejectCode::Malformed, "{message}");
    assert!(
        message.contains("does not match the idempotency key"),
        "{message}"
    );
    let gone = api_v
        .get(&format!("/v1/executions/{}", forged.execution_id))
        .await;
    assert_eq!(gone.status, 404);

    // The first request under k2 runs; another request under k2 is refused by name.
    let first = keyed(&rogue, service, "k2", "first");
    assert_eq!(
        rogue::submit_until_answered(
            &rogue,
            v_peer,
            sign(&rogue.key, domains::EXECUTION_REQUEST, &first)
        )
        .await,
        WorkResponse::Accepted
    );
    let other = keyed(&rogue, service, "k2", "second");
    let (code, message) = rogue::refused(
        rogue::submit_until_answered(
            &rogue,
            v_peer,
            sign(&rogue.key, domains::EXECUTION_REQUEST, &other),
        )
        .await,
    );
    assert_eq!(code, RejectCode::IdempotencyKeyReused, "{message}");
    // The same request again, freshly signed by the same node: it is held already.
    let (code, _) = rogue::refused(
        rogue::submit_until_answered(
            &rogue,
            v_peer,
            sign(&rogue.key, domains::EXECUTION_REQUEST, &first),
        )
        .await,
    );
    assert_eq!(code, RejectCode::Replayed);
    let held = api_v
        .get(&format!("/v1/executions/{}", first.execution_id))
        .await;
    assert_eq!(held.body["inputs"]["message"], "first", "{:?}", held.body);

    // A second rogue forwards the first one's signed request to get a copy: the request
    // names another node as its requester node.
    let thief = Rogue::join(&v, OnSubmit::Refuse).await;
    let (code, _) = rogue::refused(
        rogue::submit_until_answered(
            &thief,
            v_peer,
            sign(&rogue.key, domains::EXECUTION_REQUEST, &first),
        )
        .await,
    );
    assert_eq!(code, RejectCode::WrongNode);

    // The previous request format is refused by its domain, not misread.
    let old = keyed(&rogue, service, "k3", "old");
    let (code, message) = rogue::refused(
        rogue::submit_until_answered(
            &rogue,
            v_peer,
            sign(&rogue.key, "mesg/execution-request/1", &old),
        )
        .await,
    );
    assert_eq!(code, RejectCode::BadSignature, "{message}");
    assert!(message.contains("execution-request"), "{message}");

    // The honest work of the victim still completes.
    let e = api_v
        .exec_wait("echo", "echo", json!({"message": "still fine"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_idempotency_keys_on_the_api_are_bad_requests_that_leave_no_record() {
    let v = NodeProcess::start(&[]);
    let api = Api::new(&v);
    api.deploy_and_start(&service_dir("echo")).await;
    let body = json!({"service": "echo", "task": "echo", "inputs": {"message": "m"}});
    let long = "k".repeat(256);
    let cases: Vec<(&str, reqwest::header::HeaderValue)> = vec![
        ("too long", long.parse().unwrap()),
        ("a space", "two words".parse().unwrap()),
        (
            "not ASCII",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        ),
        ("empty", "".parse().unwrap()),
    ];
    for (what, value) in cases {
        let reply = Api::send(
            api.request(reqwest::Method::POST, "/v1/executions")
                .header("Idempotency-Key", value)
                .json(&body),
        )
        .await;
        assert_eq!(reply.status, 400, "{what}: {:?}", reply.body);
    }
    // Header and body disagreeing.
    let mut with_key = body.clone();
    with_key["idempotency_key"] = json!("in-body");
    let reply = Api::send(
        api.request(reqwest::Method::POST, "/v1/executions")
            .header("Idempotency-Key", "in-header")
            .json(&with_key),
    )
    .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let list = api.get("/v1/executions").await;
    assert_eq!(
        list.body["executions"].as_array().map(Vec::len),
        Some(0),
        "{:?}",
        list.body
    );
}
