//! One node, real Docker: deploy, start, execute, events, failures, restarts.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn deploy_start_and_echo_returns_the_same_inputs() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let (done, progress) = api.deploy(&service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");
    assert!(
        progress.iter().any(|p| p.contains("Step")),
        "build progress streamed: {progress:?}"
    );
    let (status, inst) = api.post("/v1/instances", json!({"service": "echo"})).await;
    assert_eq!(status, 201, "{inst}");
    api.wait_connected(inst["hash"].as_str().unwrap()).await;

    let inputs = json!({"message": "hello", "count": 3, "data": {"nested": [1, true, null]}});
    let (status, e) = api.exec("echo", "echo", inputs.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"], inputs);
    assert_eq!(e["executor"], node.public_key.as_str());

    // The result is signed by this node and binds the execution.
    let (status, proof) = api
        .get(&format!(
            "/v1/executions/{}/result",
            e["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    let signed: mesg_protocol::Signed<mesg_protocol::ExecutionResult> =
        serde_json::from_value(proof).unwrap();
    let result = signed
        .verify(
            mesg_protocol::types::domains::EXECUTION_RESULT,
            mesg_protocol::now_ms(),
            1 << 22,
        )
        .unwrap();
    assert_eq!(result.execution_id.to_string(), e["id"].as_str().unwrap());
    assert_eq!(result.executor.to_string(), node.public_key);

    // Listing by service and status finds it.
    let (_, list) = api
        .get("/v1/executions?service=echo&status=Completed")
        .await;
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_are_rejected_with_their_json_path_and_nothing_runs() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let (status, err) = api.exec("echo", "echo", json!({"message": 42})).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "invalid_inputs");
    assert!(
        err["details"][0]
            .as_str()
            .unwrap()
            .contains("inputs.message: expected String, got Number"),
        "{err}"
    );
    let (status, err) = api.exec("echo", "nope", json!({})).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("unknown_task")),
        "{err}"
    );
    let (_, list) = api.get("/v1/executions").await;
    assert_eq!(
        list["executions"].as_array().unwrap().len(),
        0,
        "nothing was recorded"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tick_event_reaches_an_sse_subscriber() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let listener = {
        let api = Api {
            base: api.base.clone(),
            http: api.http.clone(),
        };
        tokio::spawn(async move {
            api.sse_until(
                "/v1/events/stream?service=echo&event=tick",
                "event",
                Duration::from_secs(20),
                |_| true,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, e) = api.exec("echo", "tick", json!({"value": "ping"})).await;
    assert_eq!(e["status"], "Completed", "{e}");
    let events = listener.await.unwrap();
    assert_eq!(events.len(), 1, "one tick event");
    assert_eq!(events[0]["key"], "tick");
    assert_eq!(events[0]["data"]["value"], "ping");
    assert_eq!(events[0]["data"]["count"], e["outputs"]["count"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn faulty_outputs_errors_and_hangs_fail_with_reasons() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("faulty"), json!({}))
        .await;

    let (_, e) = api.exec("faulty", "bad_output", json!({})).await;
    assert_eq!(e["status"], "Failed", "{e}");
    let reason = e["error"].as_str().unwrap();
    assert!(
        reason.contains("outputs.count: expected Number, got String"),
        "{reason}"
    );

    let (_, e) = api.exec("faulty", "fail", json!({"message": "boom"})).await;
    assert_eq!(
        (e["status"].as_str(), e["error"].as_str()),
        (Some("Failed"), Some("boom"))
    );

    // `hang` has `timeout: 2s` in its definition.
    let started = std::time::Instant::now();
    let (_, e) = api.exec("faulty", "hang", json!({})).await;
    assert_eq!(e["status"], "Failed", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 2000 ms"),
        "{e}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));

    // A per-request timeout overrides the task's.
    let (status, e) = api
        .post(
            "/v1/executions?wait=true",
            json!({"service": "faulty", "task": "hang", "timeout_ms": 300}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("timed out after 300 ms"),
        "{e}"
    );

    // Cancelling a running execution fails it; cancelling again is a conflict.
    let id = api.exec_async("faulty", "hang", json!({})).await;
    let (status, e) = api
        .post(
            &format!("/v1/executions/{id}/cancel"),
            json!({"reason": "enough"}),
        )
        .await;
    assert_eq!((status, e["status"].as_str()), (200, Some("Failed")), "{e}");
    assert_eq!(e["error"], "cancelled: enough");
    let (status, _) = api
        .post(&format!("/v1/executions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_container_fails_its_executions_with_a_clear_reason() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("faulty"), json!({}))
        .await;
    let hang = api.exec_async("faulty", "hang", json!({})).await;
    let (_, e) = api.exec("faulty", "crash", json!({})).await;
    assert_eq!(e["status"], "Failed", "{e}");
    let reason = e["error"].as_str().unwrap();
    assert!(reason.contains("container exited (code 4)"), "{reason}");
    let (_, h) = api.get(&format!("/v1/executions/{hang}")).await;
    assert_eq!(
        h["status"], "Failed",
        "the other in-flight execution fails too: {h}"
    );
    assert!(h["error"].as_str().unwrap().contains("exited"), "{h}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_restart_keeps_completed_executions_and_finishes_the_running_ones() {
    let mut node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let mut completed = Vec::new();
    for i in 0..20 {
        let (_, e) = api.exec("echo", "echo", json!({"count": i})).await;
        assert_eq!(e["status"], "Completed");
        completed.push(e["id"].as_str().unwrap().to_string());
    }
    // Tasks still running when the node dies.
    let mut running = Vec::new();
    for _ in 0..5 {
        running.push(api.exec_async("echo", "sleep", json!({"ms": 1500})).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.kill();
    node.start_again();
    for id in &completed {
        let (status, e) = api.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(
            (status, e["status"].as_str()),
            (200, Some("Completed")),
            "{e}"
        );
    }
    // The adopted container re-posts its results to the restarted node.
    for id in &running {
        let (_, e) = api
            .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
            .await;
        assert_eq!(e["status"], "Completed", "{e}");
        assert_eq!(e["outputs"]["slept"], 1500);
    }
    let (_, list) = api.get("/v1/executions?status=InProgress").await;
    assert_eq!(list["executions"].as_array().unwrap().len(), 0);
    // And the node still executes new work.
    let (_, e) = api.exec("echo", "echo", json!({"message": "after"})).await;
    assert_eq!(e["outputs"]["message"], "after");
}

#[tokio::test(flavor = "multi_thread")]
async fn resource_limits_can_be_overridden_at_start_and_the_rest_keep_defaults() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    let (done, _) = api.deploy(&service_dir("echo")).await;
    assert_eq!(done["type"], "done", "{done}");
    let (status, inst) = api
        .post(
            "/v1/instances",
            json!({"service": "echo", "limits": {"memory": 268_435_456}}),
        )
        .await;
    assert_eq!(status, 201, "{inst}");
    let hash = inst["hash"].as_str().unwrap();
    let id = node
        .container_of(hash, "service")
        .expect("the main container runs");
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "268435456 512 1000000000",
        "docker inspect {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
