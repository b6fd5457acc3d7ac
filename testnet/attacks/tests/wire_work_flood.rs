//! Item 12: one peer floods the work protocol (hundreds of concurrent submits) to take
//! the node's time and its instance's queue. Beyond its rate the peer gets `busy` with a
//! reason, while another node's routed execution and the node's own work complete.

use mesg_attacks::Api;
use mesg_attacks::wire::{Rogue, deploy_and_start};
use mesg_protocol::messages::{RejectCode, WorkResponse};
use mesg_protocol::{ServiceHash, now_ms};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::time::Duration;

/// A low rate so that the flood is quick: 20 requests per second, 40 at once.
const RATE: &str = "20";
const FLOOD: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_peer_is_refused_while_another_peers_work_completes() {
    let a = NodeProcess::start(&["--peer-work-rate", RATE]);
    let api_a = Api::new(&a);
    let (hash, _) = deploy_and_start(&api_a, &service_dir("echo"), false).await;
    let service: ServiceHash = hash.parse().unwrap();
    let b = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let api_b = Api::new(&b);

    let rogue = std::sync::Arc::new(Rogue::join(&a).await);
    let flood = {
        let rogue = rogue.clone();
        tokio::spawn(async move {
            let sends = (0..FLOOD).map(|_| {
                let rogue = rogue.clone();
                async move {
                    let req = rogue.request(service, "echo", now_ms());
                    rogue.submit(&req).await
                }
            });
            futures::future::join_all(sends).await
        })
    };

    // Meanwhile B (an honest peer with its own budget) routes echo to A.
    let mut routed = serde_json::Value::Null;
    for _ in 0..100 {
        let created = api_b
            .post(
                "/v1/executions",
                &json!({"service": hash, "task": "echo", "inputs": {"message": "from B"}}),
            )
            .await;
        if created.status == 201 {
            let id = created.body["id"].as_str().unwrap().to_string();
            routed = api_b
                .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
                .await
                .body;
            if routed["status"] == "Completed" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(routed["status"], "Completed", "{routed}");
    assert_eq!(routed["executor"], a.public_key.as_str(), "{routed}");

    let results = flood.await.unwrap();
    let mut accepted = 0;
    let mut rate_limited = 0;
    for r in &results {
        match r {
            Ok(WorkResponse::Accepted) => accepted += 1,
            Ok(WorkResponse::Rejected(r)) if r.code == RejectCode::Busy => {
                assert!(r.message.contains("rate limit"), "{}", r.message);
                rate_limited += 1;
            }
            // Streams beyond the per-connection limit may be dropped: also a refusal.
            _ => {}
        }
    }
    assert!(
        rate_limited >= FLOOD / 2,
        "{rate_limited} of {FLOOD} refused for the rate, {accepted} accepted"
    );
    assert!(
        accepted <= 80,
        "{accepted} of {FLOOD} accepted at 20/s with a burst of 40"
    );
    let e = api_a
        .exec_wait("echo", "echo", json!({"message": "local"}))
        .await;
    assert_eq!(e["status"], "Completed", "{e}");
}
