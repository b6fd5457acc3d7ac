//! Issue 12, low (event replay): events were deduplicated only in memory, so a replay of
//! a gossip event after a restart re-triggered processes. A rogue entitled to publish
//! echo's events (it announces an instance) publishes one; the node restarts; the rogue
//! comes back with the same identity and publishes the very same signed frame. The node
//! drops it as a replay (`mesg_events_dropped_replayed`) and still takes a new event.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, OnSubmit, Rogue};
use mesg_protocol::ServiceHash;
use mesg_protocol::messages::GossipMessage;
use mesg_protocol::wire::{self, MAX_GOSSIP_MESSAGE};
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn an_event_replayed_after_a_restart_is_ignored() {
    let mut v = NodeProcess::start(&[]);
    let api_v = Api::new(&v);
    let (service, _) = rogue::deploy_and_start(&api_v, &service_dir("echo")).await;
    let service_hash: ServiceHash = service.parse().unwrap();
    let stream = rogue::watch_events(&api_v, &service).await;

    let rogue = Rogue::join(&v, OnSubmit::Refuse).await;
    let key = rogue.key.clone();
    rogue
        .announce(vec![rogue::offer(service_hash, 0)], vec![], 20_000)
        .await;
    let event = rogue.event(
        service_hash,
        rogue::fake_instance(service_hash),
        "tick",
        json!({"value": "once", "count": 1}),
    );
    // Until the announcement is in, the event is refused as unentitled: sign again.
    let mut signed = None;
    for _ in 0..50 {
        let mut e = event.clone();
        e.id = mesg_protocol::EventId::random();
        let s = rogue.publish_event(&e).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        if rogue::metric(&api_v, "mesg_events_received_total").await >= 1.0 {
            signed = Some(s);
            break;
        }
    }
    let signed = signed.expect("the rogue's event was received");
    let frame = wire::encode_frame(&GossipMessage::Event(signed), MAX_GOSSIP_MESSAGE).unwrap();
    rogue.shutdown().await;
    drop(stream);

    v.restart();
    let api_v = Api::new(&v);
    let _stream = rogue::watch_events(&api_v, &service).await;
    let rogue = Rogue::join_as(key, &v, OnSubmit::Refuse).await;
    rogue
        .announce(vec![rogue::offer(service_hash, 0)], vec![], 20_000)
        .await;
    rogue::wait_known(&api_v, &rogue.public()).await;
    // Replay the exact frame until the node has seen it (the announcement must be in).
    let mut replayed = 0.0;
    for _ in 0..50 {
        rogue
            .publish_frame(rogue::events_topic(&service_hash), frame.clone())
            .await
            .ok();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        replayed = rogue::metric(&api_v, "mesg_events_dropped_replayed_total").await;
        if replayed >= 1.0 {
            break;
        }
    }
    assert!(replayed >= 1.0, "the replay was not recognised");
    assert_eq!(
        rogue::metric(&api_v, "mesg_events_received_total").await,
        0.0,
        "the replayed event was delivered again"
    );
    // A new event of the rogue (still entitled) is taken: the path works.
    let fresh = rogue.event(
        service_hash,
        rogue::fake_instance(service_hash),
        "tick",
        json!({"value": "new", "count": 2}),
    );
    rogue.publish_event(&fresh).await;
    rogue::wait_metric(&api_v, "mesg_events_received_total", 1.0).await;
    // Honest work still completes.
    let done = api_v
        .exec_wait("echo", "echo", json!({"message": "after"}))
        .await;
    assert_eq!(done["status"], "Completed", "{done}");
    rogue.shutdown().await;
}
