//! The Python and JavaScript example services (testnet/services/py-echo, js-echo, written
//! with sdk/python and sdk/js) on real nodes with real Docker: deployed on B from their
//! registry-free base images (testnet/images/runtime-bases.sh, allowed with
//! `--allow-image`), they answer a task routed from C and their event, emitted inside the
//! task, reaches a subscriber on C attributed to that execution.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, RUNTIME_ALLOW_ARGS, runtime_bases, service_dir};
use serde_json::json;
use std::time::Duration;

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
    panic!("no provider of {sid} announced in time");
}

async fn routed_task_and_event(sid: &str, language: &str) {
    runtime_bases();
    let b = NodeProcess::start(&RUNTIME_ALLOW_ARGS);
    let c = NodeProcess::start(&["--bootstrap", &b.p2p_addr()]);
    let (api_b, api_c) = (Api::new(&b), Api::new(&c));
    api_b.deploy_and_start(&service_dir(sid), json!({})).await;
    wait_provider(&api_c, sid).await;

    // A task routed from C to B, answered by the SDK's handler.
    let (status, e) = api_c
        .exec(sid, "echo", json!({"message": "from C", "count": 3}))
        .await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(
        e["outputs"],
        json!({"message": "from C", "count": 3, "language": language})
    );
    assert_eq!(e["executor"], b.public_key.as_str(), "ran on B");
    assert_eq!(e["requester_node"], c.public_key.as_str());

    // An event: `tick`, executed from C, emits on B inside its handler; C's subscriber
    // sees it (again if the first tick came before the subscription reached B's mesh).
    let listener = {
        let api = Api {
            base: api_c.base.clone(),
            http: api_c.http.clone(),
        };
        let path = format!("/v1/events/stream?service={sid}&event=tick");
        tokio::spawn(async move {
            api.sse_until(&path, "event", Duration::from_secs(60), |e| {
                e["data"]["value"] == "hello C"
            })
            .await
        })
    };
    let mut tick_ids = Vec::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (status, e) = api_c.exec(sid, "tick", json!({"value": "hello C"})).await;
        assert_eq!(status, 201, "{e}");
        assert_eq!(e["status"], "Completed", "{e}");
        assert_eq!(e["executor"], b.public_key.as_str());
        tick_ids.push(e["id"].as_str().unwrap().to_string());
        if listener.is_finished() {
            break;
        }
    }
    let events = listener.await.unwrap();
    let last = events.last().expect("an event arrived on C");
    assert_eq!(last["data"]["value"], "hello C");
    assert_eq!(last["emitter"], b.public_key.as_str());
    // The SDK sent the handler's execution id with the event.
    let parent = last["cause"]["parent"]["execution"]
        .as_str()
        .unwrap_or_else(|| panic!("event without a parent execution: {last}"));
    assert!(
        tick_ids.iter().any(|id| id == parent),
        "event caused by {parent}, not one of the ticks {tick_ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn py_echo_answers_a_routed_task_and_its_event_reaches_another_node() {
    routed_task_and_event("py-echo", "python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn js_echo_answers_a_routed_task_and_its_event_reaches_another_node() {
    routed_task_and_event("js-echo", "javascript").await;
}

/// `mesg service init --lang python|js|shell` scaffolds services that deploy as they are
/// and answer `hello` (emitting `greeted` for that execution).
#[tokio::test(flavor = "multi_thread")]
async fn init_templates_in_python_js_and_shell_answer_on_a_node() {
    runtime_bases();
    let busybox = std::process::Command::new(
        mesg_testkit::workspace_root().join("testnet/images/runtime-bases.sh"),
    )
    .arg("busybox")
    .output()
    .expect("runtime-bases.sh busybox");
    assert!(
        busybox.status.success(),
        "{}",
        String::from_utf8_lossy(&busybox.stderr)
    );
    let node = NodeProcess::start(&RUNTIME_ALLOW_ARGS);
    let api = Api::new(&node);
    let tmp = tempfile::tempdir().unwrap();
    for lang in ["python", "js", "shell"] {
        let dir = tmp.path().join(format!("hello-{lang}"));
        let out = std::process::Command::new(mesg_testkit::binary("mesg"))
            .args(["service", "init", "--lang", lang])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (hash, _) = api.deploy_and_start(&dir, json!({})).await;
        let (status, e) = api.exec(&hash, "hello", json!({"name": "Ada"})).await;
        assert_eq!(status, 201, "{lang}: {e}");
        assert_eq!(e["status"], "Completed", "{lang}: {e}");
        assert_eq!(e["outputs"], json!({"message": "Hello, Ada!"}), "{lang}");
        let mut found = false;
        for _ in 0..50 {
            let (_, events) = api.get(&format!("/v1/events?service={hash}")).await;
            if let Some(ev) = events["events"].as_array().and_then(|a| a.first()) {
                assert_eq!(ev["key"], "greeted", "{lang}: {ev}");
                assert_eq!(ev["data"], json!({"name": "Ada"}), "{lang}");
                assert_eq!(ev["cause"]["parent"]["execution"], e["id"], "{lang}: {ev}");
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "{lang}: no greeted event");
    }
}
