//! Malformed Application API input (what schemathesis generates, testnet/schemathesis.sh):
//! ids that are not ids, negative or oversized counts, empty enums, bodies without their
//! content type, half objects, unsigned envelopes, a PNG posted as a package. Each must get
//! a 4xx with a stable `code` and a message that names the bad part, never a 5xx, while an
//! honest deploy and execution on the same node complete.

use futures::future::join_all;
use mesg_attacks::{Api, Reply};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};
use std::time::Duration;

/// One hostile request and the refusal it must get.
struct Case {
    method: &'static str,
    path: &'static str,
    /// `None`: no body and no content type.
    body: Option<(&'static str, Vec<u8>)>,
    status: u16,
    /// What the message (or a detail) must mention.
    mentions: &'static str,
}

/// A process file up to the `max_price` of its task step.
const STEP_CAP_TRIGGER: &str = "name: p\nsteps:\n  - trigger: {service: echo, event: tick}\n  - task: {service: echo, task: echo, ";

fn json_body(v: Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/json", v.to_string().into_bytes()))
}

fn cases() -> Vec<Case> {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\0\0\0\0".to_vec();
    vec![
        Case {
            method: "GET",
            path: "/v1/executions/0",
            body: None,
            status: 400,
            mentions: "32 hex characters",
        },
        Case {
            method: "GET",
            path: "/v1/executions/0/result",
            body: None,
            status: 400,
            mentions: "32 hex characters",
        },
        Case {
            method: "POST",
            path: "/v1/executions/0/cancel",
            body: json_body(json!({})),
            status: 400,
            mentions: "32 hex characters",
        },
        Case {
            method: "GET",
            path: "/v1/executions?status=",
            body: None,
            status: 400,
            mentions: "status",
        },
        Case {
            method: "GET",
            path: "/v1/executions?limit=-1",
            body: None,
            status: 400,
            mentions: "limit",
        },
        Case {
            method: "GET",
            path: "/v1/events?limit=18446744073709551616",
            body: None,
            status: 400,
            mentions: "limit",
        },
        Case {
            method: "GET",
            path: "/v1/processes/x/runs?limit=null",
            body: None,
            status: 400,
            mentions: "limit",
        },
        Case {
            method: "DELETE",
            path: "/v1/instances/x?keep_data=null",
            body: None,
            status: 400,
            mentions: "keep_data",
        },
        Case {
            method: "POST",
            path: "/v1/instances",
            body: None,
            status: 415,
            mentions: "application/json",
        },
        Case {
            method: "POST",
            path: "/v1/processes/validate",
            body: None,
            status: 415,
            mentions: "application/json",
        },
        Case {
            method: "POST",
            path: "/v1/executions",
            body: json_body(json!({"service": "echo", "task": "echo", "process": {}})),
            status: 400,
            mentions: "process",
        },
        Case {
            method: "POST",
            path: "/v1/executions/signed",
            body: json_body(json!({
                "header": {"version": 0, "domain": "", "signer": "", "nonce": [], "issued_at": 0, "expires_at": 0},
                "payload": "", "signature": ""
            })),
            status: 400,
            mentions: "header",
        },
        Case {
            method: "POST",
            path: "/v1/instances",
            body: json_body(
                json!({"service": "echo", "limits": {"nano_cpus": -1.6974382136056798e24}}),
            ),
            status: 400,
            mentions: "nano_cpus",
        },
        // A process step's spending cap past 64 bits, negative, or a float: refused
        // with the field named, never wrapped or rounded into a cap.
        Case {
            method: "POST",
            path: "/v1/processes",
            body: json_body(json!({"definition": format!(
                "{STEP_CAP_TRIGGER}max_price: -99999999999999999999999}}\n"
            )})),
            status: 400,
            mentions: "max_price",
        },
        Case {
            method: "POST",
            path: "/v1/processes",
            body: json_body(json!({"definition": format!(
                "{STEP_CAP_TRIGGER}max_price: 1.0e300}}\n"
            )})),
            status: 400,
            mentions: "max_price",
        },
        Case {
            method: "POST",
            path: "/v1/services",
            body: Some(("application/x-tar", png)),
            status: 400,
            mentions: "package",
        },
    ]
}

async fn send(api: &Api, case: &Case) -> Reply {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("method");
    let mut req = api.request(method, case.path);
    if let Some((content_type, bytes)) = &case.body {
        req = req
            .header("content-type", *content_type)
            .body(bytes.clone());
    }
    Api::send(req).await
}

fn check(case: &Case, reply: &Reply) {
    let what = format!(
        "{} {} -> {} {}",
        case.method, case.path, reply.status, reply.body
    );
    assert!(reply.status < 500, "a server error: {what}");
    assert_eq!(reply.status, case.status, "{what}");
    let code = reply.body["code"].as_str().unwrap_or_default();
    assert!(!code.is_empty(), "no error code: {what}");
    let text = format!("{} {}", reply.body["message"], reply.body["details"]);
    assert!(
        text.contains(case.mentions),
        "the message does not name `{}`: {what}",
        case.mentions
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_api_input_is_refused_with_a_4xx_while_honest_work_completes() {
    let node = NodeProcess::start(&[]);
    let api = Api::new(&node);

    // Honest work, started first and run alongside the hostile requests.
    let honest = {
        let api = api.clone();
        tokio::spawn(async move {
            let done = api.deploy(&service_dir("echo")).await;
            assert_eq!(done["type"], "done", "deploy: {done}");
            let started = api.post("/v1/instances", &json!({"service": "echo"})).await;
            assert_eq!(started.status, 201, "start: {}", started.body);
            let instance = started.body["hash"]
                .as_str()
                .expect("instance hash")
                .to_string();
            let mut connected = false;
            for _ in 0..400 {
                let view = api.get(&format!("/v1/instances/{instance}")).await;
                if view.body["connected"] == true {
                    connected = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(connected, "the echo instance never connected");
            api.exec_wait("echo", "echo", json!({"message": "still here"}))
                .await
        })
    };

    // Every case, ten rounds, all at once.
    let cases = cases();
    for _ in 0..10 {
        let replies = join_all(cases.iter().map(|c| send(&api, c))).await;
        for (case, reply) in cases.iter().zip(&replies) {
            check(case, reply);
        }
    }

    let execution = honest.await.expect("honest work");
    assert_eq!(execution["status"], "Completed", "{execution}");
    assert_eq!(execution["outputs"]["message"], "still here", "{execution}");
    let info = api.get("/v1/node").await;
    assert_eq!(info.status, 200, "the node still answers: {}", info.body);
}
