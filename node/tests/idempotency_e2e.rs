//! Idempotency keys on real nodes and real Docker: a retried submission runs its task
//! once, whether it is retried on the same node or, signed by the same account, through
//! another node after the first one died; another request under a key is refused; keys
//! expire.
//!
//! The proof that nothing ran twice is echo's `tick` task: its output `count` grows by one
//! each time the task runs in an instance, so a fresh tick after the retries tells how
//! many times it ran.

mod common;

use common::Api;
use mesg_protocol::control::idempotent_execution_id;
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;

fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}

/// POST an execution with an `Idempotency-Key` header and `?wait=true`: (status,
/// replayed header, body).
async fn exec_keyed(api: &Api, key: &str, task: &str, inputs: Value) -> (u16, bool, Value) {
    let r = api
        .http
        .post(format!("{}/v1/executions?wait=true", api.base))
        .header("Idempotency-Key", key)
        .json(&json!({"service": "echo", "task": task, "inputs": inputs}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

/// How many ticks the instance has run so far, read by running one more (unkeyed).
async fn ticks_so_far(api: &Api) -> u64 {
    let (status, e) = api.exec("echo", "tick", json!({})).await;
    assert_eq!(status, 201, "{e}");
    e["outputs"]["count"].as_u64().expect("a count") - 1
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_key_twice_on_one_node_runs_the_task_once_and_another_payload_is_refused() {
    let mut node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;

    let (status, replayed, first) = exec_keyed(&api, "order-1", "tick", json!({"value": 1})).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    assert_eq!(first["status"], "Completed", "{first}");
    assert_eq!(first["idempotency_key"], "order-1");

    // The Application retries (its first answer was lost): same execution, marked.
    let (status, replayed, again) = exec_keyed(&api, "order-1", "tick", json!({"value": 1})).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["outputs"], first["outputs"]);

    // Another payload under the key: refused, and nothing recorded.
    let (status, _, refused) = exec_keyed(&api, "order-1", "tick", json!({"value": 2})).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["code"], "idempotency_key_reused", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("first used for task `tick`"),
        "{refused}"
    );
    // A key that is not printable ASCII is a bad request, not a new execution.
    let (status, _, bad) = exec_keyed(&api, "with space", "tick", json!({})).await;
    assert_eq!(status, 400, "{bad}");

    assert_eq!(
        ticks_so_far(&api).await,
        first["outputs"]["count"].as_u64().unwrap(),
        "the retry and the refused request ran nothing"
    );
    let (_, list) = api.get("/v1/executions?limit=100").await;
    let n = list["executions"].as_array().unwrap().len();
    assert_eq!(n, 2, "one keyed execution and the counting one: {list}");

    // The key survives a restart of the node.
    node.restart();
    let api = Api::new(&node);
    let (status, replayed, after) = exec_keyed(&api, "order-1", "tick", json!({"value": 1})).await;
    assert_eq!((status, replayed), (200, true), "{after}");
    assert_eq!(after["outputs"], first["outputs"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_expires_after_the_nodes_ttl_and_then_names_a_new_execution() {
    let node = NodeProcess::start(&["--idempotency-ttl", "2s"]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;

    let (status, _, first) = exec_keyed(&api, "k", "echo", json!({"message": "a"})).await;
    assert_eq!(status, 201, "{first}");
    let (status, _, _) = exec_keyed(&api, "k", "echo", json!({"message": "b"})).await;
    assert_eq!(status, 422, "live key, other payload");

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (status, replayed, second) = exec_keyed(&api, "k", "echo", json!({"message": "b"})).await;
    assert_eq!((status, replayed), (201, false), "{second}");
    assert_eq!(second["status"], "Completed", "{second}");
    assert_eq!(second["outputs"]["message"], "b", "a new execution ran");
    assert_eq!(second["id"], first["id"], "the key names the same id again");
}

/// An account's keyed request for `node` (the requester's node), signed now.
fn keyed_request(
    account: &Keypair,
    node: &str,
    service: ServiceHash,
    key: &str,
) -> Signed<ExecutionRequest> {
    let request = ExecutionRequest {
        execution_id: idempotent_execution_id(&account.public(), key),
        service_hash: service,
        task_key: "tick".into(),
        inputs: Json(json!({"value": "once"})),
        requester: account.public(),
        requester_node: node.parse().unwrap(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 20_000,
        created_at: now_ms(),
        idempotency_key: Some(key.into()),
        cause: None,
        max_price: None,
        verify: None,
    };
    Signed::sign(
        account,
        domains::EXECUTION_REQUEST,
        &request,
        now_ms(),
        120_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_through_b_after_a_died_the_provider_runs_it_once_and_b_gets_the_result() {
    // P provides echo; A and B are two nodes an Application could talk to.
    let provider = NodeProcess::start(&[]);
    let mut a = joined(&provider);
    let b = joined(&provider);
    let (api_p, api_a, api_b) = (Api::new(&provider), Api::new(&a), Api::new(&b));
    api_p
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    let service = api_a.provider_of("echo").await;
    api_b.provider_of("echo").await;
    let account = Keypair::generate().unwrap();

    let (status, first) = api_a
        .post(
            "/v1/executions/signed?wait=true",
            serde_json::to_value(keyed_request(&account, &a.public_key, service, "pay-42"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "Completed", "{first}");
    assert_eq!(first["executor"], provider.public_key.as_str());

    // A dies; the Application retries the same request through B (a fresh signature).
    a.kill();
    let (status, second) = api_b
        .post(
            "/v1/executions/signed?wait=true",
            serde_json::to_value(keyed_request(&account, &b.public_key, service, "pay-42"))
                .unwrap(),
        )
        .await;
    assert_eq!(status, 201, "B had never seen the key: {second}");
    assert_eq!(second["id"], first["id"], "the same execution everywhere");
    assert_eq!(second["status"], "Completed", "{second}");
    assert_eq!(
        second["outputs"], first["outputs"],
        "the first run's result"
    );
    assert_eq!(second["requester_node"], b.public_key.as_str());

    // B holds a result the provider signed for B's own request.
    let id = second["id"].as_str().unwrap();
    let (_, proof) = api_b.get(&format!("/v1/executions/{id}/result")).await;
    let signed: Signed<ExecutionResult> = serde_json::from_value(proof).unwrap();
    let result = signed
        .verify(domains::EXECUTION_RESULT, now_ms(), MAX_WORK_MESSAGE)
        .unwrap();
    assert_eq!(result.executor.to_string(), provider.public_key);

    assert_eq!(
        ticks_so_far(&api_p).await,
        first["outputs"]["count"].as_u64().unwrap(),
        "the provider ran the task once"
    );
    let metrics = api_p.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("mesg_idempotent_replays_total 1")),
        "{metrics}"
    );
}
