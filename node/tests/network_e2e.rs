//! Several real nodes on loopback TCP, real Docker: routed executions with signatures
//! checked end to end, the result outbox, failover, replay and forgery, events across
//! nodes, and starting a service that only another node had.

mod common;

use common::Api;
use mesg_node::network::{self, NetworkConfig};
use mesg_protocol::messages::{RejectCode, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_WORK_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}

/// Wait until `api` sees a provider of `sid` (other than itself) in the network.
async fn wait_provider(api: &Api, sid: &str, providers: usize) -> String {
    for _ in 0..300 {
        let (_, v) = api.get("/v1/network/services").await;
        if let Some(s) = v["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["sid"] == sid))
            && s["providers"].as_array().map_or(0, |p| p.len()) >= providers
        {
            return s["service_hash"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {providers} provider(s) of {sid} announced in time");
}

async fn wait_status(api: &Api, id: &str, status: &str, timeout_ms: u64) -> Value {
    let (_, e) = api
        .get(&format!("/v1/executions/{id}/wait?timeout_ms={timeout_ms}"))
        .await;
    assert_eq!(e["status"], status, "{e}");
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn c_executes_echo_that_only_b_runs_and_gets_a_result_signed_by_b() {
    let b = NodeProcess::start(&[]);
    let c = joined(&b);
    let (api_b, api_c) = (Api::new(&b), Api::new(&c));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_c, "echo", 1).await;

    let inputs = json!({"message": "from C", "count": 7});
    let (status, e) = api_c.exec("echo", "echo", inputs.clone()).await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"], inputs);
    assert_eq!(e["executor"], b.public_key.as_str(), "ran on B");
    assert_eq!(e["requester_node"], c.public_key.as_str());

    // C keeps B's signed result; anyone can check it against B's key.
    let (_, proof) = api_c
        .get(&format!(
            "/v1/executions/{}/result",
            e["id"].as_str().unwrap()
        ))
        .await;
    let signed: Signed<ExecutionResult> = serde_json::from_value(proof).unwrap();
    let result = signed
        .verify(domains::EXECUTION_RESULT, now_ms(), MAX_WORK_MESSAGE)
        .unwrap();
    assert_eq!(result.executor.to_string(), b.public_key);
    assert!(matches!(result.outcome, Outcome::Completed { .. }));
    // B has the execution too, as its executor.
    let (_, on_b) = api_b
        .get(&format!("/v1/executions/{}", e["id"].as_str().unwrap()))
        .await;
    assert_eq!(on_b["status"], "Completed");
    assert_eq!(on_b["requester_node"], c.public_key.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn b_killed_after_accepting_still_delivers_the_result_after_restart() {
    let mut b = NodeProcess::start(&[]);
    let c = joined(&b);
    let (api_b, api_c) = (Api::new(&b), Api::new(&c));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_c, "echo", 1).await;
    let id = api_c.exec_async("echo", "sleep", json!({"ms": 3000})).await;
    // Accepted by B: InProgress on C.
    for _ in 0..100 {
        let (_, e) = api_c.get(&format!("/v1/executions/{id}")).await;
        if e["status"] == "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.start_again();
    let e = wait_status(&api_c, &id, "Completed", 30_000).await;
    assert_eq!(e["outputs"]["slept"], 3000);
    assert_eq!(e["executor"], b.public_key.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_b_stopped_the_next_execution_goes_to_d() {
    let mut b = NodeProcess::start(&[]);
    let c = joined(&b);
    let d = joined(&b);
    let (api_b, api_c, api_d) = (Api::new(&b), Api::new(&c), Api::new(&d));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_d
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_c, "echo", 2).await;
    let (_, e) = api_c.exec("echo", "echo", json!({"count": 1})).await;
    assert_eq!(e["status"], "Completed", "{e}");
    b.kill();
    // C still has B's announcement: the submit to B fails and D gets it.
    for i in 0..3 {
        let (_, e) = api_c.exec("echo", "echo", json!({"count": i})).await;
        assert_eq!(e["status"], "Completed", "{e}");
        assert_eq!(e["executor"], d.public_key.as_str(), "{e}");
    }
}

/// An in-process peer that speaks the work protocol directly, to send what a well-behaved
/// node never would.
async fn rogue_peer(target: &NodeProcess) -> (Keypair, network::NetworkHandle) {
    let key = Keypair::generate().unwrap();
    let (net, mut events) = network::spawn(
        &key,
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![target.p2p_addr().parse().unwrap()],
            ..NetworkConfig::default()
        },
        &mut Default::default(),
        CancellationToken::new(),
    )
    .unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    (key, net)
}

fn request(requester: &Keypair, node: &Keypair, service: ServiceHash) -> ExecutionRequest {
    ExecutionRequest {
        execution_id: ExecutionId::random(),
        service_hash: service,
        task_key: "echo".into(),
        inputs: Json(json!({"message": "x"})),
        requester: requester.public(),
        requester_node: node.public(),
        parent: None,
        process: None,
        tags: vec![],
        timeout_ms: 10_000,
        created_at: now_ms(),
        cause: None,
        idempotency_key: None,
        max_price: None,
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

fn rejected(r: Result<WorkResponse, network::NetError>) -> (RejectCode, String) {
    match r.unwrap() {
        WorkResponse::Rejected(r) => (r.code, r.message),
        other => panic!("not rejected: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_tampered_and_forged_requests_are_rejected_with_a_reason() {
    let mut b = NodeProcess::start(&[]);
    let api_b = Api::new(&b);
    let (service, _) = api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    let service: ServiceHash = service.parse().unwrap();
    let (rogue_key, net) = rogue_peer(&b).await;
    let b_peer: libp2p::PeerId = b.node_info()["peer_id"].as_str().unwrap().parse().unwrap();

    let good = sign(&rogue_key, &request(&rogue_key, &rogue_key, service));
    let mut first = Err(network::NetError::Stopped);
    for _ in 0..50 {
        first = net
            .send_work(b_peer, WorkRequest::Submit(good.clone()))
            .await;
        if first.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(first.unwrap(), WorkResponse::Accepted);

    let (code, msg) = rejected(
        net.send_work(b_peer, WorkRequest::Submit(good.clone()))
            .await,
    );
    assert_eq!(code, RejectCode::Replayed, "{msg}");

    let mut tampered = sign(&rogue_key, &request(&rogue_key, &rogue_key, service));
    tampered.signature.0[10] ^= 1;
    let (code, msg) = rejected(net.send_work(b_peer, WorkRequest::Submit(tampered)).await);
    assert_eq!(code, RejectCode::BadSignature, "{msg}");

    // Claims to come from another account than the key that signed it.
    let other = Keypair::generate().unwrap();
    let forged = sign(&rogue_key, &request(&other, &rogue_key, service));
    let (code, msg) = rejected(net.send_work(b_peer, WorkRequest::Submit(forged)).await);
    assert_eq!(code, RejectCode::BadSignature, "{msg}");
    assert!(msg.contains("claims"), "{msg}");

    // Names another node as the one to answer.
    let misdirected = sign(&rogue_key, &request(&rogue_key, &other, service));
    let (code, _) = rejected(
        net.send_work(b_peer, WorkRequest::Submit(misdirected))
            .await,
    );
    assert_eq!(code, RejectCode::WrongNode);

    // The replay is still refused after B restarts (seen nonces are persisted).
    b.restart();
    let mut after = Err(network::NetError::Stopped);
    for _ in 0..100 {
        after = net
            .send_work(b_peer, WorkRequest::Submit(good.clone()))
            .await;
        if after.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, msg) = rejected(after);
    assert_eq!(code, RejectCode::Replayed, "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_emitted_on_b_reaches_an_sse_subscriber_on_c() {
    let b = NodeProcess::start(&[]);
    let c = joined(&b);
    let (api_b, api_c) = (Api::new(&b), Api::new(&c));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_c, "echo", 1).await;
    let listener = {
        let api = Api {
            base: api_c.base.clone(),
            http: api_c.http.clone(),
        };
        tokio::spawn(async move {
            api.sse_until(
                "/v1/events/stream?service=echo&event=tick",
                "event",
                Duration::from_secs(30),
                |e| e["data"]["value"] == "hello C",
            )
            .await
        })
    };
    // Let the subscription reach B's mesh, then emit (again if the first was too early).
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (_, e) = api_b
            .exec("echo", "tick", json!({"value": "hello C"}))
            .await;
        assert_eq!(e["status"], "Completed");
        if listener.is_finished() {
            break;
        }
    }
    let events = listener.await.unwrap();
    let last = events.last().expect("an event arrived on C");
    assert_eq!(last["data"]["value"], "hello C");
    assert_eq!(last["emitter"], b.public_key.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn d_starts_by_hash_a_service_that_only_b_deployed() {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let (api_b, api_d) = (Api::new(&b), Api::new(&d));
    let (hash, _) = api_b.deploy_and_start(&service_dir("kv"), json!({})).await;
    let (status, _) = api_d.get(&format!("/v1/services/{hash}")).await;
    assert_eq!(status, 404, "D never saw the service");
    wait_provider(&api_d, "kv", 1).await;
    let (status, inst) = api_d.post("/v1/instances", json!({"service": hash})).await;
    assert_eq!(status, 201, "{inst}");
    api_d.wait_connected(inst["hash"].as_str().unwrap()).await;
    let (_, svc) = api_d.get(&format!("/v1/services/{hash}")).await;
    assert_eq!(svc["hash"], hash.as_str());
    assert!(svc["image"].is_string(), "built on D: {svc}");
    // D runs it locally now.
    let (_, e) = api_d
        .exec(&hash, "set", json!({"key": "k", "value": 1}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["executor"], d.public_key.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_that_only_speak_quic_route_executions() {
    let port = mesg_testkit::free_port();
    let quic = format!("/ip4/127.0.0.1/udp/{port}/quic-v1");
    let b = NodeProcess::start(&["--listen", &quic]);
    let c_port = mesg_testkit::free_port();
    let c = NodeProcess::start(&[
        "--listen",
        &format!("/ip4/127.0.0.1/udp/{c_port}/quic-v1"),
        "--bootstrap",
        &quic,
    ]);
    let (api_b, api_c) = (Api::new(&b), Api::new(&c));
    let (_, info) = api_c.get("/v1/node").await;
    assert!(
        info["listen_addrs"][0]
            .as_str()
            .unwrap()
            .contains("/quic-v1/"),
        "{info}"
    );
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_c, "echo", 1).await;
    let (_, e) = api_c
        .exec("echo", "echo", json!({"message": "over quic"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["executor"], b.public_key.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn starting_a_service_known_only_from_the_network_streams_the_fetch_and_the_build() {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let (api_b, api_d) = (Api::new(&b), Api::new(&d));
    let (hash, _) = api_b.deploy_and_start(&service_dir("kv"), json!({})).await;
    wait_provider(&api_d, "kv", 1).await;
    let text = api_d
        .http
        .post(format!("{}/v1/instances?progress=true", api_d.base))
        .json(&json!({"service": hash}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let messages: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "progress")
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    let position = |what: &str| {
        messages
            .iter()
            .position(|m| m.contains(what))
            .unwrap_or_else(|| panic!("no `{what}` step in {messages:#?}"))
    };
    // In order: where it comes from, the bytes, the build, the start.
    assert!(position("fetching package") < position("received"));
    assert!(position("received") < position("building its image"));
    assert!(position("building its image") < position("starting the instance"));
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "done", "{text}");
    assert_eq!(last["instance"]["service"], hash.as_str(), "{last}");
}
