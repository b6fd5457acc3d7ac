//! Issue 18 (event catch-up): a subscriber that sees a gap in an emitter's sequence asks
//! the emitter for the events it missed (`EventsSince`). A rogue emitter, entitled to
//! emit echo's events (it announces an instance), leaves a gap and answers the catch-up
//! with a mixed list: one real event of its own after the gap, one signed by another key,
//! one of another service, one at or before the cursor, and one with a broken signature.
//! The node takes only the real one and counts the four others as dropped. Asked in turn
//! by the rogue, the node answers with its own signed events only.

use mesg_attacks::Api;
use mesg_attacks::rogue::{self, Rogue};
use mesg_node::network::{self, NetworkConfig, NetworkEvent};
use mesg_protocol::messages::{EventsSince, WorkRequest, WorkResponse};
use mesg_protocol::types::domains;
use mesg_protocol::wire::MAX_GOSSIP_MESSAGE;
use mesg_protocol::*;
use mesg_testkit::{NodeProcess, service_dir};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn signed(key: &Keypair, e: &Event) -> Signed<Event> {
    Signed::sign(
        key,
        domains::EVENT,
        e,
        now_ms(),
        600_000,
        MAX_GOSSIP_MESSAGE,
    )
    .unwrap()
}

fn with_value(api_events: &[serde_json::Value], value: &str) -> bool {
    api_events.iter().any(|e| e["data"]["value"] == value)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_catch_up_answer_is_taken_only_for_the_emitters_own_events_after_the_cursor() {
    let v = NodeProcess::start(&[]);
    let api = Api::new(&v);
    let (service, instance) = rogue::deploy_and_start(&api, &service_dir("echo")).await;
    let echo: ServiceHash = service.parse().unwrap();
    let _stream = rogue::watch_events(&api, &service).await;

    let rogue_key = Keypair::generate().unwrap();
    let other = Keypair::generate().unwrap();
    let fake = rogue::fake_instance(echo);
    let make = |key: &Keypair, service: ServiceHash, seq: u64, value: &str| Event {
        id: EventId::random(),
        service_hash: service,
        instance_hash: fake,
        key: "tick".into(),
        data: Json(json!({"value": value, "count": seq})),
        emitter: key.public(),
        created_at: now_ms(),
        cause: None,
        seq,
    };
    let mut tampered = signed(&rogue_key, &make(&rogue_key, echo, 4, "tampered"));
    let last = tampered.signature.0.len() - 1;
    tampered.signature.0[last] ^= 1;
    let answer = vec![
        // Real: the rogue's own event after the cursor.
        signed(&rogue_key, &make(&rogue_key, echo, 2, "caught-up")),
        // Signed by another node.
        signed(&other, &make(&other, echo, 3, "other-emitter")),
        // Of another service.
        signed(
            &rogue_key,
            &make(
                &rogue_key,
                ServiceHash(Hash32::sha256(b"x")),
                3,
                "other-service",
            ),
        ),
        // Not after the cursor (1).
        signed(&rogue_key, &make(&rogue_key, echo, 1, "not-after")),
        tampered,
    ];
    let asked: Arc<Mutex<Vec<EventsSince>>> = Arc::default();
    let stop = CancellationToken::new();
    let (net, mut events) = network::spawn(
        &rogue_key,
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![v.p2p_addr().parse().unwrap()],
            private_network: true,
            ..NetworkConfig::default()
        },
        &mut Default::default(),
        stop.clone(),
    )
    .unwrap();
    {
        let (net, asked) = (net.clone(), asked.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let NetworkEvent::Work {
                    request, channel, ..
                } = event
                {
                    let response = match request {
                        WorkRequest::EventsSince(since) => {
                            asked.lock().unwrap().push(since);
                            WorkResponse::Events(answer.clone())
                        }
                        _ => WorkResponse::Accepted,
                    };
                    net.respond_work(channel, response).await;
                }
            }
        });
    }
    let rogue = Rogue::from_parts(rogue_key.clone(), net.clone());
    rogue
        .announce(vec![rogue::offer(echo, 0)], vec![], 60_000)
        .await;
    rogue::wait_known(&api, &rogue.public()).await;

    // Seq 1 sets the node's cursor; seq 5 leaves a gap (2..4): the node asks after 1.
    for _ in 0..50 {
        rogue
            .publish_event(&make(&rogue_key, echo, 1, "first"))
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if with_value(&rogue::recent_events(&api).await, "first") {
            break;
        }
    }
    assert!(with_value(&rogue::recent_events(&api).await, "first"));
    rogue
        .publish_event(&make(&rogue_key, echo, 5, "after-gap"))
        .await;
    // At least the four lies (a poll may ask again after the node's cursor moved: then
    // even the real one is at or before the cursor, and dropped).
    let dropped = rogue::wait_metric(&api, "mesg_events_catch_up_dropped_total", 4.0).await;
    assert!(
        dropped >= 4.0,
        "other emitter, other service, not after, tampered"
    );
    let taken = rogue::wait_metric(&api, "mesg_events_caught_up_total", 1.0).await;
    assert_eq!(taken, 1.0, "only the real one was taken");
    let recent = rogue::recent_events(&api).await;
    assert!(
        with_value(&recent, "caught-up"),
        "the real missed event is delivered"
    );
    for lie in ["other-emitter", "other-service", "not-after", "tampered"] {
        assert!(!with_value(&recent, lie), "`{lie}` was delivered");
    }
    let since = asked
        .lock()
        .unwrap()
        .first()
        .copied()
        .expect("the node asked");
    assert_eq!(since.service_hash, echo);
    assert_eq!(since.after, 1, "asked from its cursor");

    // The other way round: the node answers with its own events of the service only.
    let done = api
        .exec_wait("echo", "tick", json!({"value": "from-the-node"}))
        .await;
    assert_eq!(done["status"], "Completed", "{done}");
    let peer = v.node_info()["peer_id"].as_str().unwrap().parse().unwrap();
    let answer = net
        .send_work(
            peer,
            WorkRequest::EventsSince(EventsSince {
                service_hash: echo,
                after: 0,
            }),
        )
        .await
        .unwrap();
    let WorkResponse::Events(list) = answer else {
        panic!("not an events answer: {answer:?}");
    };
    let node_key: PublicKey = v.public_key.parse().unwrap();
    assert!(!list.is_empty(), "the node's tick is in its log");
    for s in &list {
        let e = s
            .verify(domains::EVENT, now_ms(), MAX_GOSSIP_MESSAGE)
            .unwrap();
        assert_eq!(e.emitter, node_key, "only the node's own events");
        assert_eq!(e.instance_hash.to_string(), instance);
        assert!(e.seq >= 1);
    }
    // Nothing of a service it does not emit.
    let WorkResponse::Events(none) = net
        .send_work(
            peer,
            WorkRequest::EventsSince(EventsSince {
                service_hash: ServiceHash(Hash32::sha256(b"x")),
                after: 0,
            }),
        )
        .await
        .unwrap()
    else {
        panic!("not an events answer");
    };
    assert!(none.is_empty());
    stop.cancel();
}
