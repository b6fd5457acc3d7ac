//! Issue 12, item 2: any peer could publish events "of" any service, and processes and
//! event streams took them. A rogue peer publishes events of an instance it does not
//! announce, events with data outside the event's schema, events of a service whose
//! definition nobody can show, events dated years ahead, and events claiming another node
//! as emitter; none is delivered, each is counted, and a real event of another node still
//! arrives.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::{InstanceHash, ServiceHash};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn forged_events_are_dropped_and_counted_while_a_real_one_arrives() {
    let v = NodeProcess::start(&[]);
    let b = NodeProcess::start(&["--bootstrap", &v.p2p_addr()]);
    let (api_v, api_b) = (Api::new(&v), Api::new(&b));
    let (service, _) = rogue::deploy_and_start(&api_v, &service_dir("echo")).await;
    let (_, b_instance) = rogue::deploy_and_start(&api_b, &service_dir("echo")).await;
    let service_hash: ServiceHash = service.parse().unwrap();
    let b_instance: InstanceHash = b_instance.parse().unwrap();
    // V listens to echo's events from the network.
    let _stream = rogue::watch_events(&api_v, &service).await;

    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    // 1. An event "of" B's instance, valid data, but the rogue announces nothing.
    let unentitled = rogue.event(
        service_hash,
        b_instance,
        "tick",
        json!({"value": "forged", "count": 1}),
    );
    rogue.publish_event(&unentitled).await;
    rogue::wait_metric(&api_v, "mesg_events_dropped_unentitled_total", 1.0).await;

    // 2. It announces an instance of echo, then sends data outside the schema.
    rogue
        .announce(vec![rogue::offer(service_hash, 0)], vec![], 20_000)
        .await;
    let invalid = rogue.event(
        service_hash,
        rogue::fake_instance(service_hash),
        "tick",
        json!({"value": "forged", "count": "not a number"}),
    );
    let unknown_key = rogue.event(
        service_hash,
        rogue::fake_instance(service_hash),
        "no_such_event",
        json!({}),
    );
    // The announcement may still be on its way: publish until it is counted as invalid.
    let mut dropped = 0.0;
    for _ in 0..50 {
        rogue.publish_event(&invalid).await;
        rogue.publish_event(&unknown_key).await;
        dropped = rogue::metric(&api_v, "mesg_events_dropped_invalid_total").await;
        if dropped >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(dropped >= 2.0, "invalid events not counted: {dropped}");

    // 2b. Valid data from the announced instance, but dated ten years ahead: it would
    // stay first among the recent events for ever.
    let mut future = rogue.event(
        service_hash,
        rogue::fake_instance(service_hash),
        "tick",
        json!({"value": "forged", "count": 2}),
    );
    future.created_at += 10 * 365 * 24 * 3600 * 1000;
    rogue.publish_event(&future).await;
    rogue::wait_metric(&api_v, "mesg_events_dropped_invalid_total", dropped + 1.0).await;

    // 3. An event claiming B as its emitter, signed by the rogue: refused by the
    // network layer (the signer must be the claimed emitter and the publisher).
    let mut claims_b = rogue.event(
        service_hash,
        b_instance,
        "tick",
        json!({"value": "forged", "count": 3}),
    );
    claims_b.emitter = b.public_key.parse().unwrap();
    rogue.publish_event(&claims_b).await;

    // 4. An event of a service nobody can show a definition of (the rogue announces a
    // made-up service): V, watching every service's events, cannot check it and drops it.
    let _all = api_v
        .request(reqwest::Method::GET, "/v1/events/stream")
        .send()
        .await
        .unwrap();
    let made_up = ServiceHash(mesg_protocol::Hash32::sha256(b"no record anywhere"));
    rogue
        .announce(
            vec![rogue::offer(service_hash, 0), rogue::offer(made_up, 0)],
            vec![],
            20_000,
        )
        .await;
    rogue::wait_known(&api_v, &rogue.public()).await;
    let unchecked = rogue.event(
        made_up,
        rogue::fake_instance(made_up),
        "tick",
        json!({"value": "forged"}),
    );
    rogue.publish_event(&unchecked).await;
    rogue::wait_metric(&api_v, "mesg_events_dropped_unchecked_total", 1.0).await;

    // Meanwhile a real event of B arrives at V.
    let honest = api_b
        .exec_wait("echo", "tick", json!({"value": "honest"}))
        .await;
    assert_eq!(honest["status"], "Completed", "{honest}");
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = rogue::recent_events(&api_v).await;
        if seen.iter().any(|e| e["data"]["value"] == "honest") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen.iter()
            .any(|e| e["data"]["value"] == "honest" && e["emitter"] == b.public_key.as_str()),
        "B's event did not reach V: {seen:?}"
    );
    assert!(
        !seen.iter().any(|e| e["data"]["value"] == "forged"),
        "a forged event was delivered: {seen:?}"
    );
    assert!(rogue::metric(&api_v, "mesg_events_received_total").await >= 1.0);

    // Honest work on V still completes.
    let done = api_v
        .exec_wait("echo", "echo", json!({"message": "still here"}))
        .await;
    assert_eq!(done["status"], "Completed", "{done}");
    assert_eq!(done["outputs"]["message"], "still here");
    rogue.shutdown().await;
}
