//! Issue 15 (bans): a node's operator bans a peer (`PUT /v1/peers/{key}/ban`), e.g. after
//! it returned wrong results. The peer's submits are then refused with the distinct
//! `Banned` code and the reason, before any other check and without creating anything;
//! the ban is listed in `GET /v1/peers`; lifting it lets the peer's next submit run; and
//! honest work is unaffected throughout.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::messages::{RejectCode, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

fn request(rogue: &Rogue, service: ServiceHash, message: &str) -> Signed<ExecutionRequest> {
    let req = rogue.echo_request(service, message);
    Signed::sign(
        &rogue.key,
        domains::EXECUTION_REQUEST,
        &req,
        now_ms(),
        60_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_peers_submits_are_refused_until_the_ban_is_lifted() {
    let v = NodeProcess::start(&[]);
    let api_v = Api::new(&v);
    let (service, _) = rogue::deploy_and_start(&api_v, &service_dir("echo")).await;
    let service: ServiceHash = service.parse().unwrap();
    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let v_peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();
    let key = rogue.public().to_string();

    let ban = Api::send(
        api_v
            .request(reqwest::Method::PUT, &format!("/v1/peers/{key}/ban"))
            .json(&json!({"reason": "returned wrong outputs"})),
    )
    .await;
    assert_eq!(ban.status, 200, "{}", ban.body);
    assert_eq!(ban.body["banned"], true);

    let refused = request(&rogue, service, "while banned");
    let id = refused
        .payload_unverified(MAX_WORK_MESSAGE)
        .unwrap()
        .execution_id;
    let (code, message) =
        rogue::refused(rogue::submit_until_answered(&rogue, v_peer, refused).await);
    assert_eq!(code, RejectCode::Banned, "{message}");
    assert!(message.contains("banned"), "{message}");
    assert!(message.contains("returned wrong outputs"), "{message}");
    let unknown = api_v.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(unknown.status, 404, "nothing is created for a banned peer");

    let peers = api_v.get("/v1/peers").await;
    let listed = peers.body["reputation"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["node"] == key.as_str()).cloned())
        .expect("the banned peer is listed");
    assert_eq!(listed["banned"], true, "{listed}");
    assert_eq!(listed["ban_reason"], "returned wrong outputs");

    // Honest work goes on.
    let done = api_v
        .exec_wait("echo", "echo", json!({"message": "honest"}))
        .await;
    assert_eq!(done["status"], "Completed", "{done}");

    let unban =
        Api::send(api_v.request(reqwest::Method::DELETE, &format!("/v1/peers/{key}/ban"))).await;
    assert_eq!(unban.status, 200, "{}", unban.body);
    let answer =
        rogue::submit_until_answered(&rogue, v_peer, request(&rogue, service, "after")).await;
    assert_eq!(answer, WorkResponse::Accepted, "unbanned: served again");
    rogue.shutdown().await;
}
