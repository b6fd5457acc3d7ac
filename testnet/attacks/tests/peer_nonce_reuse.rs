//! Issue 12, low (`Replayed`): a submit whose (signer, nonce) was seen before was answered
//! `Replayed` even when it was a different request, and the requester takes `Replayed` to
//! mean "it runs there". A rogue submits a request, then another request signed with the
//! same nonce: the second gets the distinct `NonceReused` (and does not run), the exact
//! resend still gets `Replayed`, and honest work completes.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::time::Duration;

fn request(rogue: &Rogue, service: ServiceHash, message: &str) -> ExecutionRequest {
    rogue.echo_request(service, message)
}

#[tokio::test(flavor = "multi_thread")]
async fn another_request_with_a_used_nonce_is_refused_as_nonce_reused() {
    let v = NodeProcess::start(&[]);
    let api_v = Api::new(&v);
    let (service, _) = rogue::deploy_and_start(&api_v, &service_dir("echo")).await;
    let service: ServiceHash = service.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let v_peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();

    let first = request(&rogue, service, "first");
    let nonce = envelope::Nonce([7; 16]);
    let signed = rogue::sign_with_nonce(&rogue.key, domains::EXECUTION_REQUEST, &first, nonce);
    let mut answer = Err(mesg_node::network::NetError::Stopped);
    for _ in 0..50 {
        answer = rogue
            .net
            .send_work(v_peer, WorkRequest::Submit(signed.clone()))
            .await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer.unwrap(), WorkResponse::Accepted);

    let second = request(&rogue, service, "second");
    let reused = rogue::sign_with_nonce(&rogue.key, domains::EXECUTION_REQUEST, &second, nonce);
    match rogue
        .net
        .send_work(v_peer, WorkRequest::Submit(reused))
        .await
        .unwrap()
    {
        WorkResponse::Rejected(r) => {
            assert_eq!(r.code, RejectCode::NonceReused, "{}", r.message);
            assert!(r.message.contains("fresh nonce"), "{}", r.message);
        }
        other => panic!("{other:?}"),
    }
    let unknown = api_v
        .get(&format!("/v1/executions/{}", second.execution_id))
        .await;
    assert_eq!(unknown.status, 404, "the second request must not run");

    match rogue
        .net
        .send_work(v_peer, WorkRequest::Submit(signed))
        .await
        .unwrap()
    {
        WorkResponse::Rejected(r) => assert_eq!(r.code, RejectCode::Replayed, "{}", r.message),
        other => panic!("{other:?}"),
    }
    let done = api_v
        .exec_wait("echo", "echo", json!({"message": "honest"}))
        .await;
    assert_eq!(done["status"], "Completed", "{done}");
    rogue.shutdown().await;
}
