//! Issue 12, item 9: resource limits from the API. 0 would lift Docker's limits and a
//! value Docker refuses used to be stored and break every later start: now 400
//! `invalid_limits`, nothing stored, and values above the operator's maxima lowered.

use mesg_attacks::Api;
use mesg_attacks::http::{honest_echo, start_echo};
use mesg_testkit::NodeProcess;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn zero_negative_and_tiny_limits_are_refused() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    start_echo(&api).await;
    let before = api.get("/v1/instances").await.body;
    for limits in [
        json!({"memory": 0}),
        json!({"nano_cpus": 0}),
        json!({"pids": 0}),
        json!({"memory": -1, "pids": -1}),
        json!({"memory": 1}),
    ] {
        let r = api
            .post(
                "/v1/instances",
                &json!({"service": "echo", "env": {"TICK_INTERVAL_MS": "1"}, "limits": limits}),
            )
            .await;
        assert_eq!(r.status, 400, "{limits}: {}", r.body);
        assert_eq!(r.body["code"], "invalid_limits", "{}", r.body);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap_or_default()
                .contains("omit it"),
            "{}",
            r.body
        );
    }
    assert_eq!(
        api.get("/v1/instances").await.body,
        before,
        "nothing stored"
    );
    honest_echo(&api, "limits refused").await;
}
