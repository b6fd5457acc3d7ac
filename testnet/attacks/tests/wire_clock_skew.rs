//! Item 7: a signed request may claim any `created_at`; ten years ahead, its deadline
//! never came. A request (or envelope) dated beyond the tolerated skew is refused, at the
//! API's signed submit (400 `clock_skew`) and from a peer (`Malformed`), while honest
//! work completes.

use mesg_attacks::Api;
use mesg_attacks::wire::{Rogue, deploy_and_start, request, sign};
use mesg_protocol::messages::{RejectCode, WorkResponse};
use mesg_protocol::{Keypair, PublicKey, ServiceHash, now_ms};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

const TEN_YEARS_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

#[tokio::test(flavor = "multi_thread")]
async fn requests_dated_years_ahead_are_refused_and_echo_still_runs() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let (hash, _) = deploy_and_start(&api, &service_dir("echo"), false).await;
    let service: ServiceHash = hash.parse().unwrap();
    let node_key: PublicKey = node.public_key.parse().unwrap();
    let account = Keypair::generate().unwrap();

    // The request claims to be created ten years from now; its envelope is current.
    let ahead = request(&account, node_key, service, "echo", now_ms() + TEN_YEARS_MS);
    let signed = sign(&account, &ahead, now_ms());
    let reply = api
        .post(
            "/v1/executions/signed",
            &serde_json::to_value(&signed).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["code"], "clock_skew", "{}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("clock skew"),
        "{}",
        reply.body
    );
    let id = ahead.execution_id.to_string();
    assert_eq!(api.get(&format!("/v1/executions/{id}")).await.status, 404);

    // The envelope itself issued ten years ahead.
    let now = request(&account, node_key, service, "echo", now_ms());
    let signed = sign(&account, &now, now_ms() + TEN_YEARS_MS);
    let reply = api
        .post(
            "/v1/executions/signed",
            &serde_json::to_value(&signed).unwrap(),
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.body["code"], "clock_skew", "{}", reply.body);

    // The same from a peer.
    let rogue = Rogue::join(&node).await;
    let ahead = rogue.request(service, "echo", now_ms() + TEN_YEARS_MS);
    match rogue.submit(&ahead).await.unwrap() {
        WorkResponse::Rejected(r) => {
            assert_eq!(r.code, RejectCode::Malformed, "{}", r.message);
            assert!(r.message.contains("clock skew"), "{}", r.message);
        }
        other => panic!("a request dated ten years ahead was not refused: {other:?}"),
    }
    // A current request of the same peer is accepted.
    let fine = rogue.request(service, "echo", now_ms());
    assert_eq!(rogue.submit(&fine).await.unwrap(), WorkResponse::Accepted);

    let e = api
        .exec_wait("echo", "echo", json!({"message": "hi"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
}
