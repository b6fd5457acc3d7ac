//! SIGTERM under load: the node ends in bounded time with exit status 0, and after a
//! restart on the same data dir every execution its API acknowledged (2xx) is there and
//! ends (completed, or failed with a reason): none lost, none stuck. Once with the
//! service on the node itself, once with the executions routed to another node.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Executions kept in flight: one per load task.
const IN_FLIGHT: usize = 16;
/// How long the node may take from SIGTERM to its exit.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// Ids the API acknowledged, shared by the load tasks.
type Acked = Arc<Mutex<Vec<String>>>;

/// [`IN_FLIGHT`] tasks, each submitting `sleep` executions one after the other until
/// `stop` or until the node stops answering; half of them submit with `?wait=true`.
/// Every id answered with a 2xx is recorded.
fn start_load(
    api: &Api,
    acked: &Acked,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..IN_FLIGHT)
        .map(|worker| {
            let http = api.http.clone();
            let base = api.base.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let wait = worker % 2 == 0;
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    let ms = 100 + (worker as u64 * 37 + round * 53) % 400;
                    let url = if wait {
                        format!("{base}/v1/executions?wait=true")
                    } else {
                        format!("{base}/v1/executions")
                    };
                    let sent = http
                        .post(url)
                        .timeout(Duration::from_secs(15))
                        .json(&json!({"service": "echo", "task": "sleep", "inputs": {"ms": ms}}))
                        .send()
                        .await;
                    let Ok(response) = sent else { return };
                    let ok = response.status().is_success();
                    let Ok(body) = response.json::<Value>().await else {
                        return;
                    };
                    let Some(id) = body["id"].as_str().filter(|_| ok) else {
                        // Refused while stopping (503) or an error answer: not acknowledged.
                        continue;
                    };
                    acked.lock().unwrap().push(id.to_string());
                    if !wait {
                        // One in flight per task: wait for this one before the next.
                        let waited = http
                            .get(format!("{base}/v1/executions/{id}/wait?timeout_ms=10000"))
                            .timeout(Duration::from_secs(15))
                            .send()
                            .await;
                        if waited.is_err() {
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Run the load against `api` for a while, SIGTERM `node`, and check that it exits in
/// time with status 0. Returns the acknowledged ids.
async fn load_then_sigterm(node: &mut NodeProcess, api: &Api) -> Vec<String> {
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(api, &acked, &stop);
    // Let the load reach its pace: every task has had executions acknowledged.
    let started = Instant::now();
    while acked.lock().unwrap().len() < 3 * IN_FLIGHT {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the load never got going: {} acknowledged",
            acked.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let status = tokio::task::block_in_place(|| node.terminate(EXIT_BOUND));
    let took = asked.elapsed();
    stop.store(true, Ordering::SeqCst);
    let status = status.unwrap_or_else(|| {
        panic!(
            "the node still ran {EXIT_BOUND:?} after SIGTERM:\n{}",
            node.log()
        )
    });
    assert!(
        status.success(),
        "the node exited with {status} after SIGTERM:\n{}",
        node.log()
    );
    eprintln!("exited with {status} {took:?} after SIGTERM");
    for task in load {
        task.await.expect("load task");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 3 * IN_FLIGHT);
    acked
}

/// Every acknowledged execution is known to the restarted node and ends: completed, or
/// failed with a reason.
async fn assert_all_present_and_ending(api: &Api, acked: &[String], within: Duration) {
    let deadline = Instant::now() + within;
    let (mut completed, mut failed) = (0, 0);
    for id in acked {
        let (status, e) = api.get(&format!("/v1/executions/{id}")).await;
        assert_eq!(status, 200, "acknowledged execution {id} lost: {e}");
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, e) = api
            .get(&format!(
                "/v1/executions/{id}/wait?timeout_ms={}",
                left.as_millis().max(1)
            ))
            .await;
        match e["status"].as_str() {
            Some("Completed") => completed += 1,
            Some("Failed") => {
                let reason = e["error"].as_str().unwrap_or_default();
                assert!(!reason.is_empty(), "failed without a reason: {e}");
                failed += 1;
            }
            _ => panic!("acknowledged execution {id} stuck after the restart: {e}"),
        }
    }
    eprintln!(
        "{} acknowledged: {completed} completed, {failed} failed with a reason",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_exits_in_time_and_every_acknowledged_execution_survives() {
    let mut node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;

    let acked = load_then_sigterm(&mut node, &api).await;

    node.start_again();
    assert_all_present_and_ending(&api, &acked, Duration::from_secs(60)).await;
    // And the node still executes new work.
    let (_, e) = api.exec("echo", "echo", json!({"message": "after"})).await;
    assert_eq!(e["outputs"]["message"], "after", "{e}");
}

/// Wait until `api` sees a provider of `sid` other than itself.
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
    panic!("no provider of {sid} announced in time");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_of_the_requester_under_routed_load_keeps_every_acknowledged_execution() {
    let provider = NodeProcess::start(&[]);
    let mut requester = NodeProcess::start(&["--bootstrap", &provider.p2p_addr()]);
    let (api_provider, api_requester) = (Api::new(&provider), Api::new(&requester));
    api_provider
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    wait_provider(&api_requester, "echo").await;

    let acked = load_then_sigterm(&mut requester, &api_requester).await;

    requester.start_again();
    // Results of executions the provider ran meanwhile come back through its outbox.
    assert_all_present_and_ending(&api_requester, &acked, Duration::from_secs(90)).await;
    let (_, e) = api_requester
        .exec("echo", "echo", json!({"message": "after"}))
        .await;
    assert_eq!(e["outputs"]["message"], "after", "{e}");
    assert_eq!(e["executor"], provider.public_key.as_str(), "{e}");
}
