//! Loops between processes and services, on real nodes with real containers: a process
//! whose task emits the event that triggers it, and two processes on two nodes that
//! trigger each other, each stop at the depth limit with the refusal recorded (on the
//! process, in `/metrics`, in one log line), and the nodes keep answering. A burst of
//! events beyond a process's `rate_limit` is refused the same way, with reason "rate".

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn create_process(api: &Api, yaml: &str) -> String {
    let (status, p) = api.post("/v1/processes", json!({"definition": yaml})).await;
    assert_eq!(status, 201, "{p}");
    p["id"].as_str().unwrap().to_string()
}

async fn process(api: &Api, id: &str) -> Value {
    let (status, p) = api.get(&format!("/v1/processes/{id}")).await;
    assert_eq!(status, 200, "{p}");
    p
}

async fn runs(api: &Api, id: &str) -> Vec<Value> {
    let (_, r) = api
        .get(&format!("/v1/processes/{id}/runs?limit=1000"))
        .await;
    r["runs"].as_array().cloned().unwrap_or_default()
}

/// Runs of a process whose step `step` ran (the others were filtered).
async fn runs_with(api: &Api, id: &str, step: &str) -> Vec<Value> {
    runs(api, id)
        .await
        .into_iter()
        .filter(|r| r["steps"].get(step).is_some())
        .collect()
}

/// Wait until a process has refused at least `n` triggers; its view then.
async fn wait_refused(api: &Api, id: &str, n: u64, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let p = process(api, id).await;
        if p["triggers_refused"].as_u64().unwrap_or(0) >= n {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{id} refused fewer than {n} triggers: {p:#}\nruns: {}",
            runs(api, id).await.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until no run of the process is running, and the count of runs stayed the same
/// for a second (nothing more is coming).
async fn wait_settled(api: &Api, id: &str) -> Vec<Value> {
    let mut last = usize::MAX;
    let mut all = Vec::new();
    for _ in 0..100 {
        all = runs(api, id).await;
        let running = all.iter().any(|r| r["status"] == "running");
        if !running && all.len() == last {
            return all;
        }
        last = all.len();
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    panic!("the runs of {id} never settled: {all:#?}");
}

/// The node answers its API at once and runs an unrelated task.
async fn assert_responsive(api: &Api) {
    let t = Instant::now();
    let (status, _) = api.get("/v1/node").await;
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "GET /v1/node took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let (_, e) = api
        .exec("echo", "echo", json!({"message": "still here"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["outputs"]["message"], "still here");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "an unrelated task took {:?}",
        t.elapsed()
    );
}

/// The node's log without colours.
fn plain_log(node: &NodeProcess) -> String {
    let mut out = String::new();
    let log = node.log();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn refusal_lines(node: &NodeProcess, name: &str) -> usize {
    plain_log(node)
        .lines()
        .filter(|l| {
            l.contains("WARN") && l.contains(&format!("process `{name}` refused a trigger"))
        })
        .count()
}

const SELF_LOOP: &str = r#"
name: self-loop
max_depth: 4
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: again
    task: {service: echo, task: tick, inputs: {value: {step: tick, path: value}}}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_process_that_triggers_itself_stops_at_its_depth_limit() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let id = create_process(&api, SELF_LOOP).await;
    assert_eq!(process(&api, &id).await["max_depth"], 4);

    let (_, first) = api.exec("echo", "tick", json!({"value": "loop"})).await;
    assert_eq!(first["status"], "Completed", "{first}");
    let p = wait_refused(&api, &id, 1, Duration::from_secs(60)).await;
    let refusal = &p["last_refusal"];
    assert_eq!(refusal["reason"], "depth", "{p:#}");
    assert_eq!(
        (refusal["depth"].as_u64(), refusal["limit"].as_u64()),
        (Some(5), Some(4))
    );
    assert_eq!(
        refusal["root"],
        json!({"execution": first["id"]}),
        "{refusal}"
    );
    assert!(refusal["parent"]["event"].is_string(), "{refusal}");
    assert!(
        refusal["message"]
            .as_str()
            .unwrap()
            .contains("beyond the limit 4"),
        "{refusal}"
    );

    // Runs at depths 1 to 4, each one's task carrying its run's depth, its chain and its
    // idempotency key; none after.
    let all = wait_settled(&api, &id).await;
    let mut depths: Vec<u64> = all
        .iter()
        .map(|r| r["cause"]["depth"].as_u64().unwrap())
        .collect();
    depths.sort_unstable();
    assert_eq!(depths, [1, 2, 3, 4], "{all:#?}");
    for run in &all {
        assert_eq!(run["status"], "completed", "{run:#}");
        assert_eq!(run["cause"]["root"], json!({"execution": first["id"]}));
        let attempt = &run["steps"]["again"]["attempts"][0]["execution_id"];
        let (_, e) = api
            .get(&format!("/v1/executions/{}", attempt.as_str().unwrap()))
            .await;
        assert_eq!(e["cause"], run["cause"], "the step runs at its run's depth");
        assert_eq!(
            e["idempotency_key"],
            format!("process/{id}/{}/again/1", run["id"].as_str().unwrap()),
        );
    }
    assert_eq!(process(&api, &id).await["triggers_refused"], 1);
    let text = api.metrics().await;
    assert!(
        text.contains("mesg_process_triggers_refused_total{reason=\"depth\"} 1"),
        "{text}"
    );
    assert_eq!(refusal_lines(&node, "self-loop"), 1, "{}", node.log());
    let line = plain_log(&node)
        .lines()
        .find(|l| l.contains("refused a trigger"))
        .unwrap()
        .to_string();
    for part in [
        id.as_str(),
        "depth=5",
        "limit=4",
        first["id"].as_str().unwrap(),
    ] {
        assert!(line.contains(part), "`{part}` missing from: {line}");
    }
    assert_responsive(&api).await;

    // A second chain is refused too; the log says so at most once per interval.
    let (_, second) = api.exec("echo", "tick", json!({"value": "again"})).await;
    let p = wait_refused(&api, &id, 2, Duration::from_secs(60)).await;
    assert_eq!(
        p["last_refusal"]["root"],
        json!({"execution": second["id"]})
    );
    let gap = p["last_refusal"]["at"].as_u64().unwrap() - refusal["at"].as_u64().unwrap();
    let expected = if gap < 5_000 { 1 } else { 2 };
    assert_eq!(
        refusal_lines(&node, "self-loop"),
        expected,
        "refusals {gap} ms apart"
    );
    assert_eq!(wait_settled(&api, &id).await.len(), 8);
    assert_responsive(&api).await;
}

/// P_A on A answers a `ping` tick with a `pong` tick; P_B on B answers `pong` with
/// `ping`. Each node sees only its half of the loop; the depth in the requests and events
/// they exchange stops it on A, whose limit is the lower.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_two_nodes_that_trigger_each_other_stop_at_the_limit() {
    let a = NodeProcess::start(&[]);
    let b = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_a.wait_announced("echo").await;
    let p_a = create_process(
        &api_a,
        r#"
name: ping-to-pong
max_depth: 5
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - filter: {path: value, eq: ping}
  - key: answer
    task: {service: echo, task: tick, inputs: {value: pong}}
"#,
    )
    .await;
    let p_b = create_process(
        &api_b,
        r#"
name: pong-to-ping
max_depth: 8
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - filter: {path: value, eq: pong}
  - key: answer
    task: {service: echo, task: tick, inputs: {value: ping}}
"#,
    )
    .await;
    // Until A hears B's events (its subscription takes a moment to reach B), ticks that
    // neither process answers.
    let mut heard = false;
    for _ in 0..60 {
        api_b
            .exec("echo", "tick", json!({"value": "warm-up"}))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !runs(&api_a, &p_a).await.is_empty() {
            heard = true;
            break;
        }
    }
    assert!(heard, "A never heard B's events");

    let (_, ping) = api_b.exec("echo", "tick", json!({"value": "ping"})).await;
    assert_eq!(ping["status"], "Completed", "{ping}");
    let root = json!({"execution": ping["id"]});
    let p = wait_refused(&api_a, &p_a, 1, Duration::from_secs(90)).await;
    let refusal = &p["last_refusal"];
    assert_eq!(refusal["reason"], "depth", "{p:#}");
    assert_eq!(refusal["limit"], 5);
    assert!(refusal["depth"].as_u64().unwrap() > 5, "{refusal}");
    assert_eq!(refusal["root"], root, "{refusal}");

    // Depths 1, 3, 5 answered on A; 2, 4, 6 on B; then nothing.
    wait_settled(&api_a, &p_a).await;
    wait_settled(&api_b, &p_b).await;
    let depths = |runs: Vec<Value>| {
        let mut d: Vec<u64> = runs
            .iter()
            .filter(|r| r["cause"]["root"] == root)
            .map(|r| r["cause"]["depth"].as_u64().unwrap())
            .collect();
        d.sort_unstable();
        d
    };
    assert_eq!(depths(runs_with(&api_a, &p_a, "answer").await), [1, 3, 5]);
    assert_eq!(depths(runs_with(&api_b, &p_b, "answer").await), [2, 4, 6]);
    assert_eq!(
        process(&api_b, &p_b).await["triggers_refused"],
        0,
        "B's limit (8) was never reached"
    );
    // A refused pong@5 (depth 6, it would have been filtered) and ping@6 (depth 7).
    assert_eq!(process(&api_a, &p_a).await["triggers_refused"], 2);
    let lines = refusal_lines(&a, "ping-to-pong");
    assert!((1..=2).contains(&lines), "{lines} lines:\n{}", a.log());
    assert_responsive(&api_a).await;
    assert_responsive(&api_b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_events_beyond_the_rate_limit_is_refused_with_reason_rate() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let id = create_process(
        &api,
        r#"
name: limited
rate_limit: {per_second: 0.2, burst: 2}
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: seen
    map: {count: {step: tick, path: count}}
"#,
    )
    .await;
    let view = process(&api, &id).await;
    assert_eq!(
        view["definition"]["rate_limit"],
        json!({"per_second": 0.2, "burst": 2})
    );
    let start = Instant::now();
    for i in 0..6 {
        let (_, e) = api.exec("echo", "tick", json!({"value": i})).await;
        assert_eq!(e["status"], "Completed", "{e}");
    }
    // 2 at once, then one every 5 s: at most 3 runs if the burst took under 5 s.
    let elapsed = start.elapsed();
    let p = wait_refused(&api, &id, 3, Duration::from_secs(30)).await;
    let all = wait_settled(&api, &id).await;
    let refused = process(&api, &id).await["triggers_refused"]
        .as_u64()
        .unwrap();
    assert_eq!(
        all.len() as u64 + refused,
        6,
        "every tick ran or was refused"
    );
    if elapsed < Duration::from_secs(5) {
        assert_eq!(all.len(), 2, "the burst");
    }
    let refusal = &p["last_refusal"];
    assert_eq!(refusal["reason"], "rate", "{p:#}");
    assert_eq!(refusal["limit"], 2);
    assert_eq!(refusal["depth"], 1);
    let text = api.metrics().await;
    assert!(
        text.contains(&format!(
            "mesg_process_triggers_refused_total{{reason=\"rate\"}} {refused}"
        )),
        "{text}"
    );
    if elapsed < Duration::from_secs(5) {
        assert_eq!(refusal_lines(&node, "limited"), 1, "{}", node.log());
    }
}
