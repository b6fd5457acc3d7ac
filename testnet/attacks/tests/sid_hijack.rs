//! Issue 12, item 3: service names can be hijacked.
//!
//! An honest node A deploys `echo`; a rogue node R deploys a different service under the
//! same sid (a copy of echo with another description, so another hash) and announces it.
//! A fresh node C that sees both must refuse `echo` as ambiguous (listing both hashes and
//! publishers) instead of taking whichever announcement came first; once the operator
//! chooses A's publisher (`echo@KEY`), the sid stays pinned to it, across a restart, and
//! never resolves to R, even when R is the only one left announcing it; a node pinned to
//! A by `--pin` that meets only R refuses `echo`. An execution by hash works throughout.

use mesg_attacks::Api;
use mesg_attacks::names::{deploy_and_start, impostor, wait_sid_services};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_rogue_announcing_echo_never_gets_echo_executions() {
    let mut a = NodeProcess::start(&[]);
    let mut r = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let (api_a, api_r) = (Api::new(&a), Api::new(&r));
    let honest = deploy_and_start(&api_a, &service_dir("echo"), None).await;
    let (rogue_dir, _guard) = impostor("echo", "echo", "Not the real echo.");
    let rogue = deploy_and_start(&api_r, &rogue_dir, None).await;
    assert_ne!(honest, rogue);

    let mut c = NodeProcess::start(&["--bootstrap", &a.p2p_addr(), "--bootstrap", &r.p2p_addr()]);
    let api_c = Api::new(&c);
    let seen = wait_sid_services(&api_c, "echo", 2).await;
    // Both are shown with their publishers (each node's key: deployed without account).
    for s in &seen {
        let expected = if s["service_hash"] == honest.as_str() {
            &a.public_key
        } else {
            &r.public_key
        };
        assert_eq!(s["publisher"], expected.as_str(), "{s}");
    }

    // Ambiguous: refused with a specific code, the candidates listed.
    let refused = api_c
        .post(
            "/v1/executions",
            &json!({"service": "echo", "task": "echo", "inputs": {"message": "hi"}}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(refused.body["code"], "ambiguous_sid", "{}", refused.body);
    let message = refused.body["message"].as_str().unwrap_or_default();
    for needle in [&honest, &rogue, &a.public_key, &r.public_key] {
        assert!(message.contains(needle.as_str()), "{message}");
    }
    assert_eq!(refused.body["details"].as_array().map(Vec::len), Some(2));

    // By hash: unambiguous, honest work completes.
    let e = api_c
        .exec_wait(&honest, "echo", json!({"message": "by hash"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["executor"], a.public_key.as_str(), "{e}");

    // The operator chooses A's publisher once: `echo` is pinned to it from now on.
    let chosen = format!("echo@{}", a.public_key);
    let e = api_c.exec_wait(&chosen, "echo", json!({"count": 1})).await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["service_hash"], honest.as_str(), "{e}");
    for i in 0..3 {
        let e = api_c.exec_wait("echo", "echo", json!({"count": i})).await;
        assert_eq!(e["status"], "Completed", "{e}");
        assert_eq!(e["service_hash"], honest.as_str(), "{e}");
        assert_eq!(e["executor"], a.public_key.as_str(), "{e}");
    }

    // A goes away and C restarts (the pin and A's claim are in its store): only R
    // announces `echo` now, and C still never gives R `echo` work: `echo` is A's service,
    // which nobody runs at the moment.
    a.kill();
    c.restart();
    let api_c = Api::new(&c);
    let seen = wait_sid_services(&api_c, "echo", 1).await;
    assert!(seen.iter().all(|s| s["service_hash"] == rogue.as_str()));
    let created = api_c
        .post(
            "/v1/executions",
            &json!({"service": "echo", "task": "echo", "inputs": {}, "timeout_ms": 3000}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["service_hash"],
        honest.as_str(),
        "{}",
        created.body
    );
    let id = created.body["id"].as_str().unwrap_or_default().to_string();
    let ended = api_c
        .get(&format!("/v1/executions/{id}/wait?timeout_ms=10000"))
        .await
        .body;
    assert_ne!(ended["executor"], r.public_key.as_str(), "{ended}");
    assert_ne!(ended["status"], "Completed", "{ended}");

    // A node pinned to A by its operator that meets only R refuses `echo` outright.
    let pin = format!("echo={}", a.public_key);
    let d = NodeProcess::start(&["--bootstrap", &r.p2p_addr(), "--pin", &pin]);
    let api_d = Api::new(&d);
    wait_sid_services(&api_d, "echo", 1).await;
    let refused = api_d
        .post(
            "/v1/executions",
            &json!({"service": "echo", "task": "echo", "inputs": {}}),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.body["code"], "sid_pinned_elsewhere",
        "{}",
        refused.body
    );
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(&a.public_key), "{message}");
    assert!(message.contains(&rogue), "{message}");
    // R's own service stays usable by hash, for whoever wants it.
    let e = api_c
        .exec_wait(&rogue, "echo", json!({"message": "x"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
    assert_eq!(e["executor"], r.public_key.as_str(), "{e}");
    r.kill();
}
