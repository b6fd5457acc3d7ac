//! "Why isn't my execution running?" on real nodes: an execution of a service nobody
//! provides, one whose only provider is frozen (SIGSTOP), and a process run stuck on a
//! step; each `why` names the cause.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;

fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}

/// Wait until `api` knows `n` other nodes (from their announcements).
async fn wait_nodes(api: &Api, n: usize) {
    for _ in 0..300 {
        let (_, v) = api.get("/v1/peers").await;
        if v["nodes"].as_array().map_or(0, Vec::len) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{n} node(s) never announced");
}

/// Wait until `api` sees a provider of `sid` in the network.
async fn wait_provider(api: &Api, sid: &str) {
    for _ in 0..300 {
        let (_, v) = api.get("/v1/network/services").await;
        if v["services"].as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s["sid"] == sid && s["providers"].as_array().is_some_and(|p| !p.is_empty())
            })
        }) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sid} never announced");
}

/// Ask `why` until `done` holds (within `within`); the last diagnosis.
async fn why_until(api: &Api, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + within;
    loop {
        let (status, d) = api.get(&format!("/v1/executions/{id}/why")).await;
        assert_eq!(status, 200, "{d}");
        if done(&d) || std::time::Instant::now() >= end {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_of_a_service_nobody_provides_says_so_then_fails_with_the_reason() {
    let a = NodeProcess::start(&[]);
    let b = joined(&a);
    let (api_a, _api_b) = (Api::new(&a), Api::new(&b));
    // A knows the service (deployed) but nobody runs it.
    let (done, _) = api_a.deploy(&service_dir("kv")).await;
    assert_eq!(done["type"], "done", "{done}");
    let hash = done["service"]["hash"].as_str().unwrap().to_string();
    wait_nodes(&api_a, 1).await;

    let (status, e) = api_a
        .post(
            "/v1/executions",
            json!({"service": "kv", "task": "get", "inputs": {"key": "k"}, "timeout_ms": 8000}),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_string();

    let d = why_until(&api_a, &id, Duration::from_secs(3), |d| {
        d["attempts"].as_u64() >= Some(1)
    })
    .await;
    let summary = d["summary"].as_str().unwrap();
    assert_eq!(d["state"], "routing", "{d:#}");
    assert_eq!(d["status"], "Created", "{d:#}");
    assert!(
        summary.starts_with(&format!(
            "no node provides service {hash} (sid kv): 0 known providers among 1 peers; attempt "
        )),
        "{summary}"
    );
    assert!(summary.contains("gives up in"), "{summary}");
    assert_eq!(d["peers"], json!([]), "{d:#}");
    assert_eq!(d["known_nodes"], 1);
    assert_eq!(d["without_service"], 1);
    // Patience: half the 8 s timeout, from when the route started.
    let patience = d["patience_until"].as_u64().unwrap() - e["created_at"].as_u64().unwrap();
    assert!((4_000..5_000).contains(&patience), "{d:#}");

    // The execution's record carries it while it waits; never stored with it.
    let (_, shown) = api_a.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(shown["status"], "Created", "{shown:#}");
    assert!(
        shown["diagnosis"]["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("no node provides service")),
        "{shown:#}"
    );

    // Patience over: it fails with the reason, and `why` says it ended.
    let (_, ended) = api_a
        .get(&format!("/v1/executions/{id}/wait?timeout_ms=15000"))
        .await;
    assert_eq!(ended["status"], "Failed", "{ended:#}");
    let (_, d) = api_a.get(&format!("/v1/executions/{id}/why")).await;
    assert_eq!(d["state"], "finished", "{d:#}");
    assert!(
        d["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("failed: no node in the network runs service")),
        "{d:#}"
    );
    let (_, shown) = api_a.get(&format!("/v1/executions/{id}")).await;
    assert!(shown.get("diagnosis").is_none(), "{shown:#}");

    let (status, _) = api_a
        .get("/v1/executions/0000000000000000000000000000000a/why")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_its_only_provider_frozen_why_names_that_provider_and_that_it_does_not_answer() {
    let b = NodeProcess::start(&[]);
    let a = joined(&b);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_a, "echo").await;
    let b_peer = b.node_info()["peer_id"].as_str().unwrap().to_string();

    b.pause();
    let id = api_a
        .exec_async("echo", "echo", json!({"message": "anyone?"}))
        .await;
    // B does not answer the submit (after 3 s it is shown so; the submit itself fails
    // once opening the stream times out, after 10 s): B is passed over.
    let d = why_until(&api_a, &id, Duration::from_secs(9), |d| {
        d["peers"][0]["verdict"] == "not_answering" || d["peers"][0]["verdict"] == "unreachable"
    })
    .await;
    b.resume();
    assert_eq!(d["state"], "routing", "{d:#}");
    assert_eq!(d["peers"].as_array().unwrap().len(), 1, "{d:#}");
    let peer = &d["peers"][0];
    let verdict = peer["verdict"].as_str().unwrap();
    assert!(
        verdict == "not_answering" || verdict == "unreachable",
        "{d:#}"
    );
    assert_eq!(peer["peer_id"], b_peer.as_str());
    assert_eq!(peer["node"], b.public_key.as_str());
    assert!(
        peer["detail"].as_str().is_some_and(|s| !s.is_empty()),
        "{d:#}"
    );
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("0/1 nodes are available: 1 not answering (no answer for ")
            || summary.starts_with("0/1 nodes are available: 1 unreachable ("),
        "{summary}"
    );
    // The execution's record carries the same diagnosis.
    let (_, shown) = api_a.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(
        shown["diagnosis"]["peers"][0]["node"],
        b.public_key.as_str(),
        "{shown:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_run_stuck_on_a_step_shows_why_the_step_waits() {
    let a = NodeProcess::start(&[]);
    let api = Api::new(&a);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let (done, _) = api.deploy(&service_dir("kv")).await;
    assert_eq!(done["type"], "done", "{done}");
    let yaml = "name: stuck\nsteps:\n  - key: said\n    trigger: {service: echo, result: echo}\n  - key: store\n    task: {service: kv, task: set, inputs: {key: k, value: {step: said, path: message}}}\n";
    let (status, p) = api.post("/v1/processes", json!({"definition": yaml})).await;
    assert_eq!(status, 201, "{p}");
    let process = p["id"].as_str().unwrap().to_string();
    let (_, e) = api.exec("echo", "echo", json!({"message": "hi"})).await;
    assert_eq!(e["status"], "Completed", "{e}");

    let mut seen = Value::Null;
    for _ in 0..50 {
        let (_, runs) = api.get(&format!("/v1/processes/{process}/runs")).await;
        seen = runs["runs"][0].clone();
        if seen["steps"]["store"]["waiting"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let waiting = seen["steps"]["store"]["waiting"]
        .as_str()
        .unwrap_or_else(|| panic!("{seen:#}"));
    assert!(waiting.starts_with("no node provides service"), "{waiting}");
    let (_, run) = api
        .get(&format!("/v1/runs/{}", seen["id"].as_str().unwrap()))
        .await;
    assert_eq!(run["steps"]["store"]["status"], "running", "{run:#}");
    assert!(run["steps"]["store"]["waiting"].is_string(), "{run:#}");
}
