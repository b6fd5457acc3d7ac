//! Prices and spending caps on real nodes and real Docker (issue 14, first slice): the
//! echo service with a price on its `echo` task (a temporary copy of its directory).
//! A priced task needs a cap of at least its per-call price, is charged at most the cap,
//! and its cost (usage, price, amount) is shown on the executor's node; a free task
//! works exactly as before, without a cap and without a cost.

mod common;

use common::Api;
use mesg_protocol::economy::{Cost, Price, canonical_size};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};

const PRICE: Price = Price {
    call: 1000,
    per_ms: 2,
    per_kib: 5,
};

async fn exec_capped(api: &Api, task: &str, cap: Option<u64>) -> (u16, Value) {
    let inputs = match task {
        "tick" => json!({"value": "free"}),
        _ => json!({"message": "pay me"}),
    };
    api.post(
        "/v1/executions?wait=true",
        json!({"service": "echo", "task": task, "inputs": inputs, "max_price": cap}),
    )
    .await
}

/// The cost recorded on `api`'s node for execution `e`, checked against the price.
async fn cost_of(api: &Api, e: &Value) -> Option<Cost> {
    let (status, got) = api
        .get(&format!("/v1/executions/{}", e["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200, "{got}");
    serde_json::from_value(got["cost"].clone()).unwrap()
}

fn check_cost(cost: &Cost, e: &Value, cap: u64) {
    let outputs = Json(e["outputs"].clone());
    assert_eq!(cost.price, PRICE);
    assert_eq!(cost.max_price, Some(cap));
    assert_eq!(cost.usage.calls, 1);
    assert_eq!(cost.usage.bytes_out, canonical_size(&outputs));
    let ran = e["finished_at"].as_u64().unwrap() - e["started_at"].as_u64().unwrap();
    assert_eq!(cost.usage.duration_ms, ran, "run time on the executor");
    let due = PRICE.amount(&cost.usage).unwrap();
    assert_eq!(cost.amount, due.min(cap));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_priced_task_needs_a_sufficient_cap_is_charged_at_most_the_cap_and_shows_its_cost() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2, per_kib: 5}", None);
    api.deploy_and_start(dir.path(), json!({})).await;

    // No cap: refused before anything is recorded, telling the caller what to set.
    let (status, refused) = exec_capped(&api, "echo", None).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "price_above_cap", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("sets no spending cap") && message.contains("at least 1000"),
        "{message}"
    );
    // A cap below the per-call price: refused, naming the price and the cap.
    let (status, refused) = exec_capped(&api, "echo", Some(999)).await;
    assert_eq!(status, 400, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("at least 1000 µc a call") && message.contains("max_price of 999 µc"),
        "{message}"
    );
    let (_, list) = api.get("/v1/executions").await;
    assert_eq!(list["executions"], json!([]), "refusals record nothing");

    // A sufficient cap: it runs, and its cost is recorded with its end.
    let (status, e) = exec_capped(&api, "echo", Some(1_000_000)).await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["max_price"], 1_000_000);
    let cost = cost_of(&api, &e)
        .await
        .expect("a priced execution has a cost");
    check_cost(&cost, &e, 1_000_000);
    assert!(!cost.capped());

    // A cap of exactly the per-call price: the output alone costs more, the cap is charged.
    let (status, e) = exec_capped(&api, "echo", Some(1000)).await;
    assert_eq!(status, 201, "{e}");
    let cost = cost_of(&api, &e).await.unwrap();
    check_cost(&cost, &e, 1000);
    assert_eq!(cost.amount, 1000);
    assert!(cost.capped(), "{cost:?}");

    // A free task of the same service: no cap needed, no cost.
    let (status, free) = exec_capped(&api, "tick", None).await;
    assert_eq!(status, 201, "{free}");
    assert_eq!(free["status"], "Completed");
    assert_eq!(cost_of(&api, &free).await, None);
    assert_eq!(free["max_price"], Value::Null);

    // The service shows its price.
    let (_, services) = api.get("/v1/services").await;
    let listed = services.to_string();
    assert!(
        listed.contains(r#""price":{"call":1000,"per_kib":5,"per_ms":2}"#)
            || listed.contains(r#""price":{"call":1000,"per_ms":2,"per_kib":5}"#),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_free_service_works_exactly_as_before() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let (status, e) = api.exec("echo", "echo", json!({"message": "free"})).await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["outputs"]["message"], "free");
    assert_eq!((&e["cost"], &e["max_price"]), (&Value::Null, &Value::Null));
    // A cap on a free task is accepted and changes nothing.
    let (status, e) = exec_capped(&api, "echo", Some(5)).await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["cost"], Value::Null);
}

/// An account's request of echo's `echo` task through `node`, with `cap`, signed now.
fn signed_request(account: &Keypair, node: &str, service: ServiceHash, cap: Option<u64>) -> Value {
    let request = ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: service,
        task_key: "echo".into(),
        inputs: Json(json!({"message": "routed"})),
        requester: account.public(),
        requester_node: node.parse().unwrap(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 20_000,
        created_at: now_ms(),
        idempotency_key: None,
        cause: None,
        max_price: cap,
        verify: None,
    };
    let signed = Signed::sign(
        account,
        domains::EXECUTION_REQUEST,
        &request,
        now_ms(),
        120_000,
        MAX_WORK_MESSAGE,
    )
    .unwrap();
    serde_json::to_value(signed).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn routed_the_cap_is_signed_checked_at_the_requester_and_the_cost_is_on_the_executor() {
    let provider = NodeProcess::start(&[]);
    let requester = NodeProcess::start(&["--bootstrap", &provider.p2p_addr()]);
    let (api_p, api_r) = (Api::new(&provider), Api::new(&requester));
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2, per_kib: 5}", None);
    api_p.deploy_and_start(dir.path(), json!({})).await;
    let service = api_r.provider_of("echo").await;
    let account = Keypair::generate().unwrap();

    // Signed by an account with a cap below the price: the requester's node refuses it
    // at submit, with the reason (the executor never sees it).
    let (status, refused) = api_r
        .post(
            "/v1/executions/signed?wait=true",
            signed_request(&account, &requester.public_key, service, Some(10)),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "price_above_cap", "{refused}");

    // With a sufficient cap it runs on the provider.
    let (status, e) = api_r
        .post(
            "/v1/executions/signed?wait=true",
            signed_request(&account, &requester.public_key, service, Some(50_000)),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["executor"], provider.public_key.as_str());
    let (_, on_provider) = api_p
        .get(&format!("/v1/executions/{}", e["id"].as_str().unwrap()))
        .await;
    let cost: Cost = serde_json::from_value(on_provider["cost"].clone()).expect("a cost");
    check_cost(&cost, &on_provider, 50_000);
    assert_eq!(on_provider["max_price"], 50_000, "the cap travelled signed");
    // The receipt travelled with the result: once the requester accepted it, its copy
    // shows the same cost.
    let mut on_requester = None;
    for _ in 0..100 {
        on_requester = cost_of(&api_r, &e).await;
        if on_requester.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        on_requester,
        Some(cost),
        "the requester's copy shows the cost it accepted"
    );
}

/// A process step on the priced task, with `cap` (`max_price:` left out when None).
fn priced_process(cap: Option<u64>) -> String {
    let cap = cap.map(|c| format!(", max_price: {c}")).unwrap_or_default();
    format!(
        "name: pay-per-tick\nsteps:\n  - key: tick\n    trigger: {{service: echo, event: tick}}\n  - key: pay\n    task: {{service: echo, task: echo, inputs: {{message: {{step: tick, path: value}}}}{cap}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_step_on_a_priced_task_needs_a_cap_at_creation_and_pays_with_it() {
    let provider = NodeProcess::start(&[]);
    let requester = NodeProcess::start(&["--bootstrap", &provider.p2p_addr()]);
    let (api_p, api_r) = (Api::new(&provider), Api::new(&requester));
    let dir = mesg_testkit::priced_echo("{call: 1000, per_ms: 2, per_kib: 5}", None);
    api_p.deploy_and_start(dir.path(), json!({})).await;
    api_r.provider_of("echo").await;

    // Without a cap, or with one below the call price: refused when the process is
    // created, at the step's line, saying what to set. Nothing is created.
    let (status, refused) = api_r
        .post("/v1/processes", json!({"definition": priced_process(None)}))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "invalid_process", "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("5:5: steps[1] (pay).task.max_price")
            && text.contains("sets no spending cap")
            && text.contains("at least 1000"),
        "{text}"
    );
    let (status, refused) = api_r
        .post(
            "/v1/processes",
            json!({"definition": priced_process(Some(999))}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused.to_string().contains("max_price of 999 µc"),
        "{refused}"
    );
    let (_, list) = api_r.get("/v1/processes").await;
    assert_eq!(list["processes"], json!([]), "{list}");

    // With a cap: each run's step signs it into its request; the provider runs the
    // task and charges within it.
    let (status, p) = api_r
        .post(
            "/v1/processes",
            json!({"definition": priced_process(Some(50_000))}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let process = p["id"].as_str().unwrap().to_string();
    let mut run = None;
    for _ in 0..40 {
        // Gossip subscriptions take a moment to reach the provider: tick until a run.
        let (_, e) = api_p.exec("echo", "tick", json!({"value": "paid"})).await;
        assert_eq!(e["status"], "Completed", "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let (_, runs) = api_r.get(&format!("/v1/processes/{process}/runs")).await;
        if let Some(id) = runs["runs"][0]["id"].as_str() {
            run = Some(id.to_string());
            break;
        }
    }
    let run = run.expect("no run of the process started");
    let mut ended = Value::Null;
    for _ in 0..300 {
        let (_, r) = api_r.get(&format!("/v1/runs/{run}")).await;
        if r["status"] != "running" {
            ended = r;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ended["status"], "completed", "{ended:#}");
    let id = ended["steps"]["pay"]["attempts"][0]["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, on_requester) = api_r.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(on_requester["max_price"], 50_000, "{on_requester}");
    assert_eq!(on_requester["outputs"]["message"], "paid");
    let (_, on_provider) = api_p.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(on_provider["executor"], provider.public_key.as_str());
    assert_eq!(on_provider["max_price"], 50_000, "the cap travelled signed");
    let cost: Cost = serde_json::from_value(on_provider["cost"].clone()).expect("a cost");
    check_cost(&cost, &on_provider, 50_000);
}
