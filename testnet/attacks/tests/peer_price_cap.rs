//! Issue 14 (prices and spending caps) as a rogue peer sees them. The executor checks a
//! request's signed `max_price` against the task's price itself, whatever the requester's
//! node did: a request without a cap, or with a cap below the per-call price, is refused
//! with `PriceAboveCap` naming the price and the cap, and leaves no record; a cap raised
//! after signing breaks the signature; an accepted request is charged at most its cap.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::economy::Cost;
use mesg_protocol::messages::{RejectCode, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_WORK_MESSAGE};
use mesg_protocol::*;
use mesg_testkit::NodeProcess;
use serde_json::json;
use std::time::Duration;

fn request(rogue: &Rogue, service: ServiceHash, cap: Option<u64>) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: service,
        task_key: "echo".into(),
        inputs: Json(json!({ "message": "cheap" })),
        requester: rogue.public(),
        requester_node: rogue.public(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 10_000,
        created_at: now_ms(),
        idempotency_key: None,
        cause: None,
        max_price: cap,
        verify: None,
    }
}

fn sign(key: &Keypair, req: &ExecutionRequest) -> Signed<ExecutionRequest> {
    Signed::sign(
        key,
        domains::EXECUTION_REQUEST,
        req,
        now_ms(),
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_executor_refuses_a_request_over_its_cap_and_charges_at_most_the_cap() {
    let v = NodeProcess::start(&[]);
    let api_v = Api::new(&v);
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2, per_kib: 5}", None);
    let (service, _) = rogue::deploy_and_start(&api_v, dir.path()).await;
    let service: ServiceHash = service.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let v_peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();

    // No cap on a priced task, then a cap below its per-call price: refused by name.
    for (cap, words) in [
        (None, vec!["sets no spending cap", "at least 1000"]),
        (
            Some(999),
            vec!["at least 1000 µc a call", "max_price of 999 µc"],
        ),
    ] {
        let req = request(&rogue, service, cap);
        let (code, message) = rogue::refused(
            rogue::submit_until_answered(&rogue, v_peer, sign(&rogue.key, &req)).await,
        );
        assert_eq!(code, RejectCode::PriceAboveCap, "{message}");
        for w in words {
            assert!(message.contains(w), "{cap:?}: `{w}` not in {message}");
        }
        let gone = api_v
            .get(&format!("/v1/executions/{}", req.execution_id))
            .await;
        assert_eq!(gone.status, 404, "a refusal leaves no record");
    }

    // A cap raised after signing (a relay "topping up" someone's request): the signature
    // covers the cap.
    let low = request(&rogue, service, Some(10));
    let mut forged = sign(&rogue.key, &low);
    let mut raised = low.clone();
    raised.max_price = Some(1_000_000);
    forged.payload = Bytes(wire::encode(&raised, MAX_WORK_MESSAGE).unwrap());
    let (code, message) =
        rogue::refused(rogue::submit_until_answered(&rogue, v_peer, forged).await);
    assert_eq!(code, RejectCode::BadSignature, "{message}");

    // A cap of exactly the per-call price is accepted, and charged no more than that.
    let exact = request(&rogue, service, Some(1000));
    assert_eq!(
        rogue::submit_until_answered(&rogue, v_peer, sign(&rogue.key, &exact)).await,
        WorkResponse::Accepted
    );
    let mut ended = json!(null);
    for _ in 0..100 {
        ended = api_v
            .get(&format!("/v1/executions/{}", exact.execution_id))
            .await
            .body;
        if ended["status"] == "Completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended["status"], "Completed", "{ended}");
    let cost: Cost = serde_json::from_value(ended["cost"].clone()).expect("a cost");
    assert_eq!(cost.amount, 1000, "{cost:?}");
    assert!(
        cost.capped(),
        "the output alone costs more than the cap: {cost:?}"
    );
}
