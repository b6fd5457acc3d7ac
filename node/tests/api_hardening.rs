//! The Application and service APIs under hostile use (issue 12): waiters removed on every
//! path, resource limits validated before anything is stored, duplicate execution ids,
//! the service API authenticating before it reads a body, connection floods, bounded
//! error lists. One real node, real Docker.

mod common;

use common::Api;
use mesg_protocol::envelope::Signed;
use mesg_protocol::types::domains;
use mesg_protocol::{ExecutionId, ExecutionRequest, Json, now_ms};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread")]
async fn wait_leaves_no_waiter_behind_on_any_path() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let (done, _) = api.deploy(&service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");

    // Unknown executions: not_found, nothing registered.
    for _ in 0..100 {
        let (status, e) = api
            .get(&format!(
                "/v1/executions/{}/wait?timeout_ms=10",
                ExecutionId::random()
            ))
            .await;
        assert_eq!(status, 404, "{e}");
    }
    assert_eq!(api.metric("mesg_execution_waiters").await, Some(0.0));

    // No instance runs: the execution stays Created; waits that time out or whose
    // client goes away are removed too.
    let (status, e) = api
        .post(
            "/v1/executions",
            json!({"service": "echo", "task": "echo", "inputs": {}, "timeout_ms": 3000}),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();
    for _ in 0..20 {
        let (status, e) = api
            .get(&format!("/v1/executions/{id}/wait?timeout_ms=10"))
            .await;
        assert_eq!((status, e["status"].as_str()), (200, Some("Created")));
    }
    let gone = api
        .http
        .get(format!(
            "{}/v1/executions/{id}/wait?timeout_ms=60000",
            api.base
        ))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err(), "the client gave up");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.metric("mesg_execution_waiters").await, Some(0.0));

    // Finished: answered at once, nothing registered.
    let (_, e) = api
        .get(&format!("/v1/executions/{id}/wait?timeout_ms=10000"))
        .await;
    assert_eq!(e["status"], "Failed", "{e}");
    for _ in 0..100 {
        let (status, _) = api
            .get(&format!("/v1/executions/{id}/wait?timeout_ms=10000"))
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(api.metric("mesg_execution_waiters").await, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_resource_limits_are_refused_and_nothing_is_stored() {
    let node = NodeProcess::start(&["--max-instance-memory", "268435456"]);
    let api = Api::new(&node);
    let (done, _) = api.deploy(&service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");
    for (limits, field) in [
        (json!({"memory": 0}), "memory"),
        (json!({"memory": -1}), "memory"),
        (json!({"nano_cpus": 0}), "nano_cpus"),
        (json!({"pids": 0}), "pids"),
        (json!({"pids": -1}), "pids"),
        (json!({"memory": 4096}), "memory"),
    ] {
        let (status, e) = api
            .post(
                "/v1/instances",
                json!({"service": "echo", "limits": limits}),
            )
            .await;
        assert_eq!(status, 400, "{limits}: {e}");
        assert_eq!(e["code"], "invalid_limits", "{e}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(&format!("limits.{field}")), "{message}");
        assert!(message.contains("too small"), "{message}");
    }
    let (_, list) = api.get("/v1/instances").await;
    assert_eq!(list["instances"], json!([]), "nothing stored on refusal");

    // Above the operator's maximum: lowered to it, and the instance runs.
    let (status, inst) = api
        .post(
            "/v1/instances",
            json!({"service": "echo", "limits": {"memory": 1_i64 << 40}}),
        )
        .await;
    assert_eq!(status, 201, "{inst}");
    api.wait_connected(inst["hash"].as_str().unwrap()).await;
    let (_, e) = api.exec("echo", "echo", json!({"message": "hi"})).await;
    assert_eq!(e["status"], "Completed", "{e}");
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=mesg.instance={}", inst["hash"].as_str().unwrap()),
            "--filter",
            &format!("label=mesg.node={}", node.public_key),
            "--filter",
            "label=mesg.key=service",
        ])
        .output()
        .unwrap();
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.Memory}}", &id])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "268435456");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_execution_id_answers_the_same_request_and_409_for_another() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let (service, _) = api.deploy_and_start(&service_dir("echo"), json!({})).await;

    // A race of identical creates: every one gets the same execution, none a 500.
    let id = ExecutionId::random().to_string();
    let body =
        json!({"service": "echo", "task": "echo", "inputs": {"message": "a"}, "execution_id": id});
    let calls = (0..16).map(|_| api.post("/v1/executions", body.clone()));
    for (status, e) in futures::future::join_all(calls).await {
        assert_eq!(status, 201, "{e}");
        assert_eq!(e["id"], id.as_str());
    }
    // The same id for a different request: 409 with what to do.
    let (status, e) = api
        .post(
            "/v1/executions",
            json!({"service": "echo", "task": "echo", "inputs": {"message": "b"}, "execution_id": id}),
        )
        .await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["code"], "conflict");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("choose another execution_id"),
        "{e}"
    );

    // A signed request reusing that id (a fresh nonce, so not a replay): 409, not 500.
    let account = mesg_protocol::keys::Keypair::generate().unwrap();
    let request = ExecutionRequest {
        execution_id: id.parse().unwrap(),
        service_hash: service.parse().unwrap(),
        task_key: "echo".into(),
        inputs: Json(json!({"message": "c"})),
        requester: account.public(),
        requester_node: node.public_key.parse().unwrap(),
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
    let sign = |r: &ExecutionRequest| {
        let s = Signed::sign(
            &account,
            domains::EXECUTION_REQUEST,
            r,
            now_ms(),
            60_000,
            1 << 22,
        )
        .unwrap();
        serde_json::to_value(s).unwrap()
    };
    let (status, e) = api.post("/v1/executions/signed", sign(&request)).await;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["code"], "conflict");

    // A signed request sent twice with two nonces (a retry): the same execution.
    let fresh = ExecutionRequest {
        execution_id: ExecutionId::random(),
        ..request
    };
    let (status, first) = api
        .post("/v1/executions/signed?wait=true", sign(&fresh))
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = api.post("/v1/executions/signed", sign(&fresh)).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["outputs"]["message"], "c", "{again}");
}

/// Raw HTTP/1.1 on loopback: the request head, then (maybe) nothing more.
async fn head_only(port: u16, head: &str) -> (Duration, String) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .map(|r| r.unwrap_or(0))
        .unwrap_or(0);
    (
        started.elapsed(),
        String::from_utf8_lossy(&buf[..n]).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_api_refuses_an_unauthenticated_body_before_reading_it() {
    let node = NodeProcess::start(&[]);
    let port = node.service_port;
    for path in ["/v1/service/results", "/v1/service/events"] {
        for auth in ["", "Authorization: Bearer not-a-token\r\n"] {
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}content-type: application/json\r\ncontent-length: 4194304\r\n\r\n"
            );
            let (took, answer) = head_only(port, &head).await;
            assert!(
                answer.starts_with("HTTP/1.1 401"),
                "{path} {auth:?}: {answer:?}"
            );
            assert!(answer.contains("\"code\":\"unauthorized\""), "{answer}");
            assert!(took < Duration::from_secs(2), "answered after {took:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_socket_flood_leaves_the_api_answering() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let mut flood = Vec::new();
    for _ in 0..1100 {
        flood.push(
            tokio::net::TcpStream::connect(("127.0.0.1", node.api_port))
                .await
                .unwrap(),
        );
    }
    for _ in 0..5 {
        let (status, info) = api.get("/v1/node").await;
        assert_eq!(status, 200, "{info}");
    }
    // The node holds no more than its per-address cap of the idle sockets.
    let mut open = 0;
    for s in &mut flood {
        let mut b = [0u8; 1];
        if tokio::time::timeout(Duration::from_millis(5), s.read(&mut b))
            .await
            .is_err()
        {
            open += 1;
        }
    }
    assert!(
        open <= mesg_node::api::serve::MAX_CONNECTIONS_PER_IP,
        "{open} idle sockets held"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_invalid_request_gets_a_bounded_error() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let (done, _) = api.deploy(&service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");
    // 20,000 undeclared input fields: 20,000 validation errors.
    let inputs: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("field_{i:05}_{}", "x".repeat(40)), json!(i)))
        .collect();
    let r = api
        .http
        .post(format!("{}/v1/executions", api.base))
        .json(&json!({"service": "echo", "task": "echo", "inputs": inputs}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 400, "{text:.300}");
    assert!(text.len() < 16 * 1024, "{} bytes of error", text.len());
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["code"], "invalid_inputs");
    let details = e["details"].as_array().unwrap();
    assert_eq!(details.len(), mesg_node::api::MAX_ERROR_DETAILS + 1);
    assert!(
        details
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("19980 more errors"),
        "{details:?}"
    );
}
