//! Issue 15 (k-of-n verification) as a rogue peer sees it: a request's `verify` spec is a
//! new peer-facing input. The executor checks it itself: a spec on a task that is not
//! deterministic is refused (`Malformed`, "not deterministic") and leaves no record; a
//! spec outside `1 <= quorum <= replicas <= max_total <= 16`, even validly signed, is
//! refused as undecodable; a spec changed after signing breaks the signature; a valid one
//! on a deterministic task is accepted and the execution completes.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::messages::{RejectCode, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::{self, MAX_WORK_MESSAGE};
use mesg_protocol::*;
use mesg_testkit::NodeProcess;
use serde_json::json;
use std::time::Duration;

fn request(rogue: &Rogue, service: ServiceHash, verify: Option<&str>) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: service,
        task_key: "echo".into(),
        inputs: Json(json!({ "message": "check me" })),
        requester: rogue.public(),
        requester_node: rogue.public(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 10_000,
        created_at: now_ms(),
        idempotency_key: None,
        cause: None,
        max_price: None,
        verify: verify.map(|v| v.parse().unwrap()),
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

/// Put `payload` in `signed` and sign it again (what a signer of hand-made bytes does).
fn resign(key: &Keypair, signed: &mut Signed<ExecutionRequest>, payload: Vec<u8>) {
    signed.payload = Bytes(payload);
    let mut msg = b"mesg-envelope-v1\0".to_vec();
    msg.extend_from_slice(&wire::encode(&signed.header, 4096).unwrap());
    msg.extend_from_slice(&signed.payload.0);
    signed.signature = Bytes(key.sign(&msg).to_vec());
}

/// A copy of echo whose `echo` task is declared deterministic (it is: it returns its
/// inputs).
fn deterministic_echo() -> std::path::PathBuf {
    mesg_testkit::service_variant(
        "echo",
        "deterministic",
        &[
            ("sid: echo\n", "sid: echo-deterministic\n"),
            (
                "    description: Return the inputs unchanged.\n",
                "    description: Return the inputs unchanged.\n    deterministic: true\n",
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_executor_checks_a_requests_verification_spec() {
    let v = NodeProcess::start(&[]);
    let api_v = Api::new(&v);
    let (plain, _) = rogue::deploy_and_start(&api_v, &mesg_testkit::service_dir("echo")).await;
    let plain: ServiceHash = plain.parse().unwrap();
    let det_dir = deterministic_echo();
    let (det, _) = rogue::deploy_and_start(&api_v, &det_dir).await;
    let det: ServiceHash = det.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let v_peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();

    // Verification of a task that is not deterministic: refused by name, no record.
    let req = request(&rogue, plain, Some("2/3"));
    let (code, message) =
        rogue::refused(rogue::submit_until_answered(&rogue, v_peer, sign(&rogue.key, &req)).await);
    assert_eq!(code, RejectCode::Malformed, "{message}");
    assert!(message.contains("not deterministic"), "{message}");
    let gone = api_v
        .get(&format!("/v1/executions/{}", req.execution_id))
        .await;
    assert_eq!(gone.status, 404, "a refusal leaves no record");

    // A spec out of range, validly signed over hand-made bytes (the extended tail, with
    // quorum 5 of 2 replicas): refused as undecodable, naming the rule.
    let req = request(&rogue, det, None);
    let mut bytes = wire::encode(&req, MAX_WORK_MESSAGE).unwrap();
    assert_eq!(
        bytes.pop(),
        Some(0),
        "no cap and no spec: the old None tag is last"
    );
    bytes.extend_from_slice(&[2, 0, 1, 2, 5, 1, 6]);
    let mut crafted = sign(&rogue.key, &req);
    resign(&rogue.key, &mut crafted, bytes);
    let (code, message) =
        rogue::refused(rogue::submit_until_answered(&rogue, v_peer, crafted).await);
    assert_eq!(code, RejectCode::BadSignature, "{message}");
    assert!(
        message.contains("quorum 5 is more than replicas 2"),
        "{message}"
    );

    // A spec lowered after signing (a relay turning 3/3 into 1/3): the signature covers it.
    let req = request(&rogue, det, Some("3/3"));
    let mut forged = sign(&rogue.key, &req);
    let mut lowered = req.clone();
    lowered.verify = Some("1/3".parse().unwrap());
    forged.payload = Bytes(wire::encode(&lowered, MAX_WORK_MESSAGE).unwrap());
    let (code, message) =
        rogue::refused(rogue::submit_until_answered(&rogue, v_peer, forged).await);
    assert_eq!(code, RejectCode::BadSignature, "{message}");

    // A valid spec on the deterministic task: accepted, and the execution completes.
    let ok = request(&rogue, det, Some("2/3"));
    assert_eq!(
        rogue::submit_until_answered(&rogue, v_peer, sign(&rogue.key, &ok)).await,
        WorkResponse::Accepted
    );
    let mut ended = json!(null);
    for _ in 0..100 {
        ended = api_v
            .get(&format!("/v1/executions/{}", ok.execution_id))
            .await
            .body;
        if ended["status"] == "Completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended["status"], "Completed", "{ended}");
    assert_eq!(ended["outputs"]["message"], "check me", "{ended}");
    let _ = std::fs::remove_dir_all(det_dir);
}
