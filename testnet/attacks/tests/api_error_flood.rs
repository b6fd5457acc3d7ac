//! Issue 12, low: a 2 MB request made a 25 MB error. Lists of validation errors and
//! error messages are now bounded, saying how many more there were.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, start_echo};
use mesg_testkit::NodeProcess;
use serde_json::{Map, Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_thousands_of_errors_gets_a_small_answer() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;
    let inputs: Map<String, Value> = (0..30_000)
        .map(|i| (format!("undeclared_{i:05}_{}", "y".repeat(30)), json!(i)))
        .collect();
    let resp = api
        .request(reqwest::Method::POST, "/v1/executions")
        .json(&json!({"service": "echo", "task": "echo", "inputs": inputs}))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 400);
    let text = resp.text().await.expect("body");
    assert!(text.len() < 16 * 1024, "{} bytes of error", text.len());
    let e: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(e["code"], "invalid_inputs");
    let last = e["details"]
        .as_array()
        .and_then(|d| d.last())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert!(last.contains("29980 more errors"), "{last}");
    honest_echo(&api, "validated").await;
}
