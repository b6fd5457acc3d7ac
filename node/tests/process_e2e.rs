//! Processes across real nodes: an event on B triggers a process on A that filters it,
//! maps it and runs tasks on C and B; filters, retries, error branches, and a restart of
//! A in the middle of a run.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;

fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}

async fn create_process(api: &Api, yaml: &str) -> String {
    let (status, p) = api.post("/v1/processes", json!({"definition": yaml})).await;
    assert_eq!(status, 201, "{p}");
    p["id"].as_str().unwrap().to_string()
}

/// Emit ticks on B until the process on A has `n` runs (gossip subscriptions take a
/// moment to reach B), then wait for the newest run to end.
async fn trigger_until_run(api_a: &Api, api_b: &Api, process: &str, value: &str) -> Value {
    for _ in 0..40 {
        let (_, e) = api_b.exec("echo", "tick", json!({"value": value})).await;
        assert_eq!(e["status"], "Completed", "{e}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, runs) = api_a.get(&format!("/v1/processes/{process}/runs")).await;
        if let Some(run) = runs["runs"].as_array().and_then(|r| r.first()) {
            return wait_run_end(api_a, run["id"].as_str().unwrap()).await;
        }
    }
    panic!("no run of {process} started");
}

async fn wait_run_end(api: &Api, run: &str) -> Value {
    for _ in 0..300 {
        let (_, r) = api.get(&format!("/v1/runs/{run}")).await;
        if r["status"] != "running" {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} did not end");
}

async fn execution(api: &Api, id: &Value) -> Value {
    api.get(&format!("/v1/executions/{}", id.as_str().unwrap()))
        .await
        .1
}

const PIPELINE: &str = r#"
name: tick-pipeline
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: only-go
    filter: {path: value, eq: go}
  - key: payload
    map:
      key: last
      value: {step: tick, path: count}
  - key: store
    task: {service: kv, task: set, inputs: {step: payload}}
  - key: confirm
    task: {service: kv, task: get, inputs: {key: {step: payload, path: key}}}
  - key: announce
    task: {service: echo, task: echo, inputs: {count: {step: confirm, path: value}}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_event_on_b_runs_a_process_on_a_with_tasks_on_c_and_b() {
    let b = NodeProcess::start(&[]);
    let a = joined(&b);
    let c = joined(&b);
    let (api_a, api_b, api_c) = (Api::new(&a), Api::new(&b), Api::new(&c));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_c.deploy_and_start(&service_dir("kv"), json!({})).await;
    api_a.wait_announced("echo").await;
    api_a.wait_announced("kv").await;
    let process = create_process(&api_a, PIPELINE).await;

    let run = trigger_until_run(&api_a, &api_b, &process, "go").await;
    assert_eq!(run["status"], "completed", "{run:#}");
    let steps = &run["steps"];
    assert_eq!(steps["only-go"]["status"], "done");
    let tick_count = steps["tick"]["output"]["count"].clone();
    assert_eq!(
        steps["payload"]["output"],
        json!({"key": "last", "value": tick_count})
    );
    let store = execution(&api_a, &steps["store"]["attempts"][0]["execution_id"]).await;
    assert_eq!(
        store["executor"],
        c.public_key.as_str(),
        "kv runs on C: {store}"
    );
    assert_eq!(store["process"]["step"], "store");
    let confirm = execution(&api_a, &steps["confirm"]["attempts"][0]["execution_id"]).await;
    assert_eq!(confirm["outputs"]["value"], tick_count, "C's result");
    assert_eq!(confirm["parent"], store["id"], "parent link");
    let announce = execution(&api_a, &steps["announce"]["attempts"][0]["execution_id"]).await;
    assert_eq!(announce["executor"], b.public_key.as_str());
    assert_eq!(
        announce["outputs"]["count"], tick_count,
        "fed by C's result"
    );

    // A tick that the filter drops runs nothing.
    let (_, before) = api_a.get("/v1/executions?limit=1000").await;
    let before = before["executions"].as_array().unwrap().len();
    let (_, e) = api_b.exec("echo", "tick", json!({"value": "stop"})).await;
    assert_eq!(e["status"], "Completed");
    let mut filtered = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (_, runs) = api_a.get(&format!("/v1/processes/{process}/runs")).await;
        let newest = runs["runs"][0].clone();
        if newest["steps"]["only-go"]["status"] == "filtered" {
            filtered = Some(wait_run_end(&api_a, newest["id"].as_str().unwrap()).await);
            break;
        }
    }
    let filtered = filtered.expect("a run whose filter did not match");
    assert_eq!(filtered["status"], "completed");
    assert!(filtered["steps"].get("store").is_none(), "{filtered:#}");
    let (_, after) = api_a.get("/v1/executions?limit=1000").await;
    assert_eq!(
        after["executions"].as_array().unwrap().len(),
        before,
        "no execution"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_task_retries_with_backoff_then_takes_its_error_branch() {
    let b = NodeProcess::start(&[]);
    let a = joined(&b);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_b
        .deploy_and_start(&service_dir("faulty"), json!({}))
        .await;
    api_a.wait_announced("echo").await;
    api_a.wait_announced("faulty").await;
    let process = create_process(
        &api_a,
        r#"
name: retry-then-alert
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: flaky
    task:
      service: faulty
      task: fail
      inputs: {message: "boom"}
      retries: 2
      backoff: 300ms
      on_error: alert
  - key: never
    task: {service: echo, task: echo, inputs: {message: "not reached"}}
  - key: alert
    task: {service: echo, task: echo, inputs: {message: {step: flaky, path: error}}}
"#,
    )
    .await;
    let run = trigger_until_run(&api_a, &api_b, &process, "x").await;
    assert_eq!(
        run["status"], "completed",
        "the error branch handled it: {run:#}"
    );
    let flaky = &run["steps"]["flaky"];
    assert_eq!(flaky["status"], "failed");
    let attempts = flaky["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "1 try + 2 retries: {flaky:#}");
    let starts: Vec<u64> = attempts
        .iter()
        .map(|a| a["started_at"].as_u64().unwrap())
        .collect();
    assert!(starts[1] - starts[0] >= 300, "first backoff: {starts:?}");
    assert!(starts[2] - starts[1] >= 600, "doubled: {starts:?}");
    assert!(
        run["steps"].get("never").is_none(),
        "the normal successor did not run"
    );
    let alert = execution(
        &api_a,
        &run["steps"]["alert"]["attempts"][0]["execution_id"],
    )
    .await;
    assert_eq!(alert["outputs"]["message"], "boom");
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_a_mid_run_completes_the_run_without_running_the_acknowledged_step_twice() {
    let b = NodeProcess::start(&[]);
    let mut a = joined(&b);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_a.wait_announced("echo").await;
    let process = create_process(
        &api_a,
        r#"
name: slow
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - filter: {path: value, eq: slow}
  - key: wait
    task: {service: echo, task: sleep, inputs: {ms: 3000}}
  - key: after
    task: {service: echo, task: echo, inputs: {count: {step: wait, path: slept}}}
"#,
    )
    .await;
    // Trigger until the slow step runs on B (acknowledged: InProgress on A).
    let mut run_id = None;
    for _ in 0..40 {
        api_b.exec("echo", "tick", json!({"value": "slow"})).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (_, runs) = api_a.get(&format!("/v1/processes/{process}/runs")).await;
        if let Some(r) = runs["runs"].as_array().and_then(|r| r.first()) {
            run_id = Some(r["id"].as_str().unwrap().to_string());
            break;
        }
    }
    let run_id = run_id.expect("a run started");
    let mut acked = false;
    for _ in 0..100 {
        let (_, r) = api_a.get(&format!("/v1/runs/{run_id}")).await;
        if let Some(id) = r["steps"]["wait"]["attempts"][0]["execution_id"].as_str() {
            let (_, e) = api_a.get(&format!("/v1/executions/{id}")).await;
            if e["status"] == "InProgress" {
                acked = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(acked, "the slow step was accepted by B");
    a.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.start_again();
    let run = wait_run_end(&api_a, &run_id).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    assert_eq!(
        run["steps"]["wait"]["attempts"].as_array().unwrap().len(),
        1,
        "{run:#}"
    );
    assert_eq!(run["steps"]["after"]["output"]["count"], 3000);
    // B ran exactly one sleep.
    let (_, sleeps) = api_b.get("/v1/executions?task=sleep&limit=100").await;
    assert_eq!(
        sleeps["executions"].as_array().unwrap().len(),
        1,
        "{sleeps:#}"
    );
}
