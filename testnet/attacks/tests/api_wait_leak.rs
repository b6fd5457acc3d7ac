//! Issue 12, item 5: `wait` on unknown, finished and abandoned executions must not
//! leave a waiter behind (the review leaked 105 MiB per 200k calls).

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, metric, start_echo};
use mesg_testkit::NodeProcess;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn waits_on_unknown_finished_and_abandoned_executions_leave_nothing() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;

    let unknown = mesg_protocol::ExecutionId::random();
    let finished = api
        .exec_wait("echo", "echo", serde_json::json!({"message": "x"}))
        .await;
    let finished = finished["id"].as_str().expect("id").to_string();
    let calls = (0..500).map(|i| {
        let api = api.clone();
        let path = if i % 2 == 0 {
            format!("/v1/executions/{unknown}/wait?timeout_ms=50")
        } else {
            format!("/v1/executions/{finished}/wait?timeout_ms=50")
        };
        async move { api.get(&path).await.status }
    });
    use futures::StreamExt;
    let statuses: Vec<u16> = futures::stream::iter(calls)
        .buffer_unordered(50)
        .collect()
        .await;
    for status in statuses {
        assert!(status == 404 || status == 200, "{status}");
    }
    let unknown_reply = api.get(&format!("/v1/executions/{unknown}/wait")).await;
    assert_eq!(unknown_reply.status, 404);
    assert_eq!(unknown_reply.body["code"], "not_found");

    // Abandoned waits on a long execution: the client gives up.
    let sleeping = api
        .post(
            "/v1/executions",
            &serde_json::json!({"service": "echo", "task": "sleep", "inputs": {"ms": 3000}}),
        )
        .await;
    let sleeping = sleeping.body["id"].as_str().expect("id").to_string();
    for _ in 0..50 {
        let _ = api
            .request(
                reqwest::Method::GET,
                &format!("/v1/executions/{sleeping}/wait?timeout_ms=60000"),
            )
            .timeout(Duration::from_millis(100))
            .send()
            .await;
    }
    honest_echo(&api, "meanwhile").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&api, "mesg_execution_waiters").await, Some(0.0));
}
