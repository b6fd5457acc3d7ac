//! Issue 15, the request side on one real node: `POST /v1/executions` takes a `verify`
//! spec (`"2/3"` or an object), checks it, refuses it on a task that is not deterministic
//! (nothing recorded), and takes a verified request of a deterministic task, which this
//! lone node cannot verify (no other provider): undecided, with its record. The rounds
//! on several real nodes are in verified_e2e.rs.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

/// A copy of echo whose `echo` task is deterministic, with a default `verify`.
fn deterministic_echo() -> std::path::PathBuf {
    mesg_testkit::service_variant(
        "echo",
        "verify-e2e",
        &[
            ("sid: echo\n", "sid: echo-det\n"),
            (
                "    description: Return the inputs unchanged.\n",
                "    description: Return the inputs unchanged.\n    deterministic: true\n    verify: 2/3\n",
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_is_checked_refused_on_non_deterministic_tasks_and_accepted_on_deterministic_ones() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);
    api.deploy_and_start(&service_dir("echo"), json!({})).await;
    let det = deterministic_echo();
    api.deploy_and_start(&det, json!({})).await;

    let body = |service: &str, verify: serde_json::Value| json!({"service": service, "task": "echo", "inputs": {"message": "v"}, "verify": verify});
    // Not deterministic: refused with the reason, nothing recorded.
    let (status, err) = api.post("/v1/executions", body("echo", json!("2/3"))).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("bad_request")),
        "{err}"
    );
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("not deterministic"),
        "{err}"
    );
    // Out of range: refused with the rule.
    for (bad, word) in [
        (json!("3/2"), "quorum 3 is more than replicas 2"),
        (json!({"replicas": 20, "quorum": 2}), "more than 16"),
        (json!(7), "expected text like"),
    ] {
        let (status, err) = api
            .post("/v1/executions", body("echo-det", bad.clone()))
            .await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err.to_string().contains(word), "{bad}: {err}");
    }
    let (_, list) = api.get("/v1/executions").await;
    assert_eq!(
        list["executions"].as_array().unwrap().len(),
        0,
        "nothing was recorded"
    );

    // Deterministic: accepted as text, as an object, and by the task's default. A
    // verified execution runs on other nodes only (a node does not vote on its own
    // request): this lone node has none, so the round ends undecided, never stuck.
    for verify in [
        json!("2/3"),
        json!({"replicas": 3, "quorum": 3}),
        json!(null),
    ] {
        let (status, e) = api
            .post("/v1/executions?wait=true", body("echo-det", verify.clone()))
            .await;
        assert!(status == 200 || status == 201, "{verify}: {status} {e}");
        assert_eq!(e["status"], "Failed", "{verify}: {e}");
        let error = e["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("verification undecided") && error.contains("no other provider"),
            "{verify}: {e}"
        );
        let id = e["id"].as_str().unwrap();
        let (status, record) = api.get(&format!("/v1/executions/{id}/attempts")).await;
        assert_eq!(status, 200, "{record}");
        assert_eq!(record["attempts"].as_array().unwrap().len(), 0, "{record}");
        assert_eq!(
            record["decision"]["undecided"]["reason"], "no_more_executors",
            "{record}"
        );
    }
    // An execution that is not verified has no record.
    let (_, e) = api.exec("echo", "echo", json!({"message": "plain"})).await;
    let (status, _) = api
        .get(&format!(
            "/v1/executions/{}/attempts",
            e["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 404);
    let _ = std::fs::remove_dir_all(det);
}
