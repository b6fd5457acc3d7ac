//! Events across a restart of the subscriber: B emits a steady stream of `tick` events;
//! a process on A runs once per tick. A is SIGKILLed in the middle of the stream and
//! started again on its data dir: the ticks emitted before, while A was down, and after
//! each start exactly one run (A catches up from B's event log by sequence number, and
//! a tick delivered twice finds its run).

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const COUNT_TICKS: &str = r#"
name: count-ticks
steps:
  - key: tick
    trigger: {service: echo, event: tick}
  - key: seen
    map:
      count: {step: tick, path: count}
"#;

/// The event id each run of `process` was started by (its cause's parent).
async fn runs_by_event(api: &Api, process: &str) -> Vec<String> {
    let (status, runs) = api
        .get(&format!("/v1/processes/{process}/runs?limit=1000"))
        .await;
    assert_eq!(status, 200, "{runs}");
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["cause"]["parent"]["event"]
                .as_str()
                .unwrap_or_else(|| panic!("a run started by an event: {r:#}"))
                .to_string()
        })
        .collect()
}

/// B's tick events created at or after `since` (ms), by id.
async fn ticks_since(api: &Api, since: u64) -> HashMap<String, Value> {
    let (_, events) = api.get("/v1/events?event=tick&limit=10000").await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["created_at"].as_u64().unwrap() >= since)
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_whose_node_is_killed_and_restarted_runs_once_per_event() {
    let b = NodeProcess::start(&[]);
    let mut a = NodeProcess::start(&["--bootstrap", &b.p2p_addr()]);
    let (api_a, api_b) = (Api::new(&a), Api::new(&b));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_a.wait_announced("echo").await;
    let (status, p) = api_a
        .post("/v1/processes", json!({"definition": COUNT_TICKS}))
        .await;
    assert_eq!(status, 201, "{p}");
    let process = p["id"].as_str().unwrap().to_string();

    // A steady stream: one tick every 100 ms from B's own API, until told to stop.
    let streaming = Arc::new(AtomicBool::new(true));
    let stream = {
        let streaming = streaming.clone();
        let api_b = Api::new(&b);
        tokio::spawn(async move {
            let mut n = 0u64;
            while streaming.load(Ordering::SeqCst) {
                let (status, e) = api_b.exec("echo", "tick", json!({"value": n})).await;
                assert_eq!(e["status"], "Completed", "tick {n}: {status} {e}");
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };

    // The process is subscribed once its first run starts: from then on, every tick counts.
    let mut first_run_event = None;
    for _ in 0..100 {
        if let Some(id) = runs_by_event(&api_a, &process).await.last() {
            first_run_event = Some(id.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first_run_event.expect("a first run on A");
    let since = ticks_since(&api_b, 0).await[&first]["created_at"]
        .as_u64()
        .unwrap();

    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill();
    // Down for a while: B keeps emitting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.start_again();
    tokio::time::sleep(Duration::from_secs(4)).await;
    streaming.store(false, Ordering::SeqCst);
    let emitted_total = stream.await.unwrap();

    let ticks = ticks_since(&api_b, since).await;
    assert!(
        ticks.len() >= 50,
        "a steady stream before, during and after the restart ({} ticks of {emitted_total})",
        ticks.len()
    );
    let expected: HashSet<&String> = ticks.keys().collect();
    // A catches up within its poll period at worst.
    let mut runs = Vec::new();
    for _ in 0..150 {
        runs = runs_by_event(&api_a, &process).await;
        let started: HashSet<&String> = runs.iter().collect();
        if expected.is_subset(&started) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut per_event: HashMap<&String, usize> = HashMap::new();
    for id in &runs {
        *per_event.entry(id).or_default() += 1;
    }
    let missing: Vec<u64> = ticks
        .iter()
        .filter(|(id, _)| !per_event.contains_key(id))
        .map(|(_, e)| e["seq"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} ticks started no run on A (their seq: {missing:?})",
        missing.len(),
        ticks.len()
    );
    let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ticks that started more than one run: {twice:?}"
    );
    // And nothing else started a run: every run is one of B's ticks.
    let all_ticks = ticks_since(&api_b, 0).await;
    let strangers: Vec<_> = runs
        .iter()
        .filter(|id| !all_ticks.contains_key(*id))
        .collect();
    assert!(
        strangers.is_empty(),
        "runs started by events B did not emit: {strangers:?}"
    );
    let caught_up = api_a.metric("mesg_events_caught_up_total").await;
    assert!(
        caught_up.is_some_and(|n| n > 0.0),
        "the ticks of the downtime came from B's event log (caught up: {caught_up:?})"
    );
}
