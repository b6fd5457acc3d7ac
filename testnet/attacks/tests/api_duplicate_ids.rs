//! Issue 12, item 14: a reused execution id answered 500 (a race of two creates, or a
//! signed request reusing an id). Now the same request gets the existing execution and
//! a different one gets 409 `conflict`.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, start_echo};
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::{ExecutionId, ExecutionRequest, Json, now_ms};
use mesg_testkit::NodeProcess;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn racing_and_reused_ids_never_answer_500() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;
    let id = ExecutionId::random();
    let body = json!({"service": "echo", "task": "echo", "inputs": {"message": "one"}, "execution_id": id.to_string()});
    let race = (0..32).map(|_| {
        let api = api.clone();
        let body = body.clone();
        async move { api.post("/v1/executions", &body).await }
    });
    for r in futures::future::join_all(race).await {
        assert_eq!(r.status, 201, "{}", r.body);
        assert_eq!(r.body["id"], id.to_string());
    }

    // A signed request from another account reusing the id.
    let service = api.get("/v1/services/echo").await.body["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    let account = mesg_protocol::Keypair::generate().expect("key");
    let request = ExecutionRequest {
        execution_id: id,
        service_hash: service.parse().expect("hash"),
        task_key: "echo".into(),
        inputs: Json(json!({"message": "hijack"})),
        requester: account.public(),
        requester_node: node.public_key.parse().expect("node key"),
        parent: None,
        process: None,
        tags: Vec::new(),
        timeout_ms: 10_000,
        created_at: now_ms(),
        cause: None,
        idempotency_key: None,
        max_price: None,
        verify: None,
    };
    let signed = Signed::sign(
        &account,
        domains::EXECUTION_REQUEST,
        &request,
        now_ms(),
        60_000,
        1 << 22,
    )
    .expect("sign");
    let r = api
        .post(
            "/v1/executions/signed",
            &serde_json::to_value(signed).expect("json"),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.body["code"], "conflict");
    // The original execution is untouched.
    let e = api
        .get(&format!("/v1/executions/{id}/wait?timeout_ms=10000"))
        .await
        .body;
    assert_eq!(e["outputs"]["message"], "one", "{e}");
    honest_echo(&api, "ids are safe").await;
}
