//! Bans and reputation on real nodes and real Docker: a requester that bans one of two
//! providers of echo sends it nothing, before and after its own restart (the ban is on
//! disk), shows the ban and what it learned of the other provider in `GET /v1/peers`,
//! names bans in `why`, and uses a banned provider again once the ban is lifted.

mod common;

use common::Api;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::{Value, json};

fn joined(bootstrap: &NodeProcess) -> NodeProcess {
    NodeProcess::start(&["--bootstrap", &bootstrap.p2p_addr()])
}

/// The reputation record of `node` in `GET /v1/peers`.
async fn reputation_of(api: &Api, node: &str) -> Option<Value> {
    let (status, v) = api.get("/v1/peers").await;
    assert_eq!(status, 200, "{v}");
    v["reputation"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["node"] == node).cloned())
}

/// Run `n` echo executions on `api`, one after the other; their executors.
async fn executors(api: &Api, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let (status, e) = api.exec("echo", "echo", json!({"count": i})).await;
        assert_eq!(status, 201, "{e}");
        assert_eq!(e["status"], "Completed", "{e}");
        out.push(e["executor"].as_str().unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_banned_provider_gets_no_work_even_after_the_requester_restarts() {
    let b = NodeProcess::start(&[]);
    let d = joined(&b);
    let mut c = joined(&b);
    let (api_b, api_d) = (Api::new(&b), Api::new(&d));
    api_b
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    api_d
        .deploy_and_start(&service_dir("echo"), json!({}))
        .await;
    let api_c = Api::new(&c);
    api_c.wait_providers("echo", 2).await;

    // Not a key: 404, like every other peer key in the API.
    let (status, v) = api_c
        .put("/v1/peers/not-a-key/ban", json!({"reason": "x"}))
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = api_c
        .put(
            &format!("/v1/peers/{}/ban", d.public_key),
            json!({"reason": "x".repeat(300)}),
        )
        .await;
    assert_eq!(status, 400, "a reason over 256 bytes: {v}");

    let (status, v) = api_c
        .put(
            &format!("/v1/peers/{}/ban", d.public_key),
            json!({"reason": "returned wrong outputs"}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["banned"], true, "{v}");
    assert_eq!(v["ban_reason"], "returned wrong outputs");

    // Equal providers share one-at-a-time work (recent sends count as load): without
    // the ban, some of these would go to D.
    let ran = executors(&api_c, 8).await;
    assert!(ran.iter().all(|x| *x == b.public_key), "{ran:?}");
    let rb = reputation_of(&api_c, &b.public_key).await.expect("B kept");
    assert!(rb["successes"].as_u64().unwrap() >= 8, "{rb}");
    assert!(rb["rtt_us"].as_f64().is_some(), "{rb}");
    assert_eq!(rb["banned"], false);

    // The ban is on disk: a requester killed and started again still never uses D.
    c.kill();
    c.start_again();
    let api_c = Api::new(&c);
    api_c.wait_providers("echo", 2).await;
    let rd = reputation_of(&api_c, &d.public_key)
        .await
        .expect("D's ban kept");
    assert_eq!(rd["banned"], true, "{rd}");
    assert_eq!(rd["ban_reason"], "returned wrong outputs");
    let rb = reputation_of(&api_c, &b.public_key).await.expect("B kept");
    assert!(
        rb["successes"].as_u64().unwrap() >= 8,
        "counts survive: {rb}"
    );
    let ran = executors(&api_c, 8).await;
    assert!(ran.iter().all(|x| *x == b.public_key), "{ran:?}");

    // With every provider banned, an execution waits for one, and `why` says why each
    // known provider is passed over.
    let (status, v) = api_c
        .put(&format!("/v1/peers/{}/ban", b.public_key), json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let id = api_c.exec_async("echo", "echo", json!({"count": 0})).await;
    let (_, why) = api_c.get(&format!("/v1/executions/{id}/why")).await;
    let peers = why["peers"].as_array().cloned().unwrap_or_default();
    for key in [&b.public_key, &d.public_key] {
        let p = peers
            .iter()
            .find(|p| p["node"] == key.as_str())
            .unwrap_or_else(|| panic!("{key} in {why}"));
        assert!(
            p["detail"]
                .as_str()
                .unwrap_or("")
                .contains("banned by this node"),
            "{p}"
        );
    }
    let (_, e) = api_c.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(e["status"], "Created", "nobody runs it: {e}");
    // One that gives up says the providers it knows are banned.
    let (status, e) = api_c
        .post(
            "/v1/executions?wait=true",
            json!({"service": "echo", "task": "echo", "inputs": {"count": 1}, "timeout_ms": 3000}),
        )
        .await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["status"], "Failed", "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap_or("")
            .contains("2 provider(s) of it banned by this node"),
        "{e}"
    );
    let (status, v) = api_c
        .delete(&format!("/v1/peers/{}/ban", b.public_key))
        .await;
    assert_eq!(status, 200, "{v}");
    let (_, e) = api_c
        .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
        .await;
    assert_eq!(e["status"], "Completed", "B unbanned takes it: {e}");
    assert_eq!(e["executor"], b.public_key.as_str(), "{e}");

    // Lifted: D gets work again.
    let (status, v) = api_c
        .delete(&format!("/v1/peers/{}/ban", d.public_key))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["banned"], false, "{v}");
    let ran = executors(&api_c, 12).await;
    assert!(ran.contains(&d.public_key), "{ran:?}");
}
