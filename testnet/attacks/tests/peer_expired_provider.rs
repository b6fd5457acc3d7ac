//! Issue 12, item 11 (eviction): providers whose announcement expired stayed in the table
//! for good (and a peer could claim a validity of minutes). A rogue announces a service
//! with a short validity and leaves; the node evicts it (`mesg_provider_nodes` falls back)
//! and routes nothing there, while an honest provider keeps serving.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::{Hash32, ServiceHash};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_provider_is_evicted() {
    let v = NodeProcess::start(&[]);
    let b = NodeProcess::start(&["--bootstrap", &v.p2p_addr()]);
    let (api_v, api_b) = (Api::new(&v), Api::new(&b));
    let (service, _) = rogue::deploy_and_start(&api_b, &service_dir("echo")).await;
    // B is in V's table.
    rogue::wait_metric(&api_v, "mesg_provider_nodes", 1.0).await;

    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let made_up = ServiceHash(Hash32::sha256(b"a service nobody runs"));
    rogue
        .announce(vec![rogue::offer(made_up, 0)], vec![], 2_000)
        .await;
    rogue::wait_metric(&api_v, "mesg_provider_nodes", 2.0).await;
    rogue.shutdown().await;

    // Expired after 2 s, evicted at the next announce interval (5 s).
    let mut size = 2.0;
    for _ in 0..150 {
        size = rogue::metric(&api_v, "mesg_provider_nodes").await;
        if size <= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(size, 1.0, "the expired provider was not evicted");
    let services = api_v.get("/v1/network/services").await.body;
    assert!(
        !services.to_string().contains(&made_up.to_string()),
        "{services}"
    );
    // Honest work still goes to B.
    let done = api_v
        .exec_wait(&service, "echo", json!({"message": "hi"}))
        .await;
    assert_eq!(done["status"], "Completed", "{done}");
    assert_eq!(done["executor"], b.public_key.as_str(), "{done}");
}
