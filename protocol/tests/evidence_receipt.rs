//! A priced execution's usage receipt checked as evidence after the fact (what
//! `mesg executions verify` does with the receipt a node keeps): signed by the executor
//! that signed the result, for that very result, and charging exactly the price applied to
//! the usage within the request's cap.

use mesg_protocol::economy::{MAX_RECEIPT_BYTES, Price, Usage, UsageReceipt};
use mesg_protocol::evidence::{receipt_mismatches, verify_receipt};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::{
    ExecutionId, ExecutionResult, Hash32, Json, Keypair, Outcome, ServiceHash, Signed,
};

const NOW: u64 = 1_780_000_000_000;

struct Case {
    executor: Keypair,
    result: Signed<ExecutionResult>,
    receipt: UsageReceipt,
}

fn case() -> Case {
    let executor = Keypair::generate().unwrap();
    let requester = Keypair::generate().unwrap();
    let id = ExecutionId::random();
    let service_hash = ServiceHash(Hash32::sha256(b"priced echo"));
    let result = ExecutionResult {
        execution_id: id,
        request_digest: Hash32::sha256(b"request"),
        service_hash,
        task_key: "echo".into(),
        executor: executor.public(),
        instance_hash: None,
        outcome: Outcome::Completed {
            outputs: Json(serde_json::json!({"message": "hi"})),
        },
        started_at: Some(NOW - 1_500),
        finished_at: NOW,
    };
    let result = Signed::sign(
        &executor,
        domains::EXECUTION_RESULT,
        &result,
        NOW,
        3_600_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    let price = Price {
        call: 1000,
        per_ms: 2,
        per_kib: 5,
    };
    let usage = Usage {
        calls: 1,
        duration_ms: 1_500,
        bytes_out: 3_000,
    };
    let receipt = UsageReceipt {
        execution_id: id,
        request_digest: Hash32::sha256(b"request"),
        result_digest: result.digest(),
        service_hash,
        task_key: "echo".into(),
        usage,
        price,
        amount: 4_015,
        sequence: 1,
        prev: Hash32::default(),
        cumulative: 4_015,
        executor: executor.public(),
        requester: requester.public(),
    };
    Case {
        executor,
        result,
        receipt,
    }
}

fn sign(key: &Keypair, r: &UsageReceipt) -> Signed<UsageReceipt> {
    Signed::sign(key, domains::RECEIPT, r, NOW, 60_000, MAX_RECEIPT_BYTES).unwrap()
}

#[test]
fn an_honest_receipt_verifies_now_and_a_year_later_and_matches_its_result() {
    let c = case();
    let signed = sign(&c.executor, &c.receipt);
    let now = verify_receipt(&signed, NOW + 1);
    assert_eq!(now.result.as_ref().unwrap(), &c.receipt);
    assert!(now.note.is_none());
    let later = verify_receipt(&signed, NOW + 365 * 86_400_000);
    assert!(later.result.is_ok(), "{:?}", later.result);
    assert!(
        later.note.is_some(),
        "outside its window, checked as of issue"
    );
    assert_eq!(
        receipt_mismatches(&c.receipt, &c.result, None),
        Vec::<String>::new()
    );
}

#[test]
fn a_receipt_signed_with_another_key_does_not_verify() {
    let c = case();
    let stranger = Keypair::generate().unwrap();
    let forged = sign(&stranger, &c.receipt);
    let v = verify_receipt(&forged, NOW + 1);
    assert!(
        v.result.is_err(),
        "signed by a key other than the executor it names"
    );
}

#[test]
fn an_overcharge_another_result_or_an_amount_above_the_cap_is_named() {
    let c = case();
    let mut over = c.receipt.clone();
    over.amount = 9_999;
    let p = receipt_mismatches(&over, &c.result, None);
    assert!(
        p.iter()
            .any(|p| p.contains("charges 9999 µc") && p.contains("4015")),
        "{p:?}"
    );

    let other = case();
    let p = receipt_mismatches(&c.receipt, &other.result, None);
    assert!(
        p.iter().any(|p| p.contains("another signed result")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("charges for execution")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.contains("signed by")), "{p:?}");

    // The request capped the call at 2,500 µc: the honest charge is the cap.
    let execution = record(&c, 2_500);
    let p = receipt_mismatches(&c.receipt, &c.result, Some(&execution));
    assert!(
        p.iter().any(|p| p.contains("above the request's cap")),
        "{p:?}"
    );
    let mut capped = c.receipt.clone();
    capped.amount = 2_500;
    assert_eq!(
        receipt_mismatches(&capped, &c.result, Some(&execution)),
        Vec::<String>::new()
    );
}

fn record(c: &Case, cap: u64) -> mesg_protocol::Execution {
    let r = c.result.payload_unverified(MAX_WORK_MESSAGE).unwrap();
    let mut e: mesg_protocol::Execution = serde_json::from_value(serde_json::json!({
        "id": r.execution_id, "service_hash": r.service_hash, "task_key": "echo",
        "inputs": {}, "requester": c.receipt.requester, "requester_node": c.receipt.requester,
        "executor": c.executor.public(), "instance_hash": null, "status": "Completed",
        "outputs": null, "error": null, "parent": null, "process": null, "tags": [],
        "timeout_ms": 1000, "created_at": NOW, "started_at": null, "finished_at": null,
        "idempotency_key": null, "cause": null, "max_price": null, "cost": null,
    }))
    .unwrap();
    e.max_price = Some(cap);
    e
}
