//! Issue 18 (peers behind NAT): the new network inputs of circuit relay v2.
//!
//! - Relayed addresses in announcements (`<relay>/p2p/<relay id>/p2p-circuit`) make a
//!   node dial the relay they name. A rogue announces more of them than allowed, the
//!   last one naming a victim as its relay, and malformed ones naming a second victim;
//!   then it leaves, so the node redials it at those addresses. Neither victim is ever
//!   dialled (at most `MAX_CIRCUIT_ADDRS` relayed addresses are taken, malformed ones
//!   never), and honest work completes.
//! - Relay reservations: a node relays nothing unless its operator runs it with
//!   `--relay-server`. A peer asking a default node for a reservation never gets one;
//!   the same peer gets one from a node with `--relay-server` (whose limits are libp2p's
//!   relay v2 limits with mesg's figures: `mesg_node::network::nat`).

use mesg_attacks::Api;
use mesg_attacks::rogue::{OnSubmit, Rogue};
use mesg_node::network::addrs::MAX_CIRCUIT_ADDRS;
use mesg_node::network::{self, Multiaddr, NetworkConfig, PeerId};
use mesg_protocol::Keypair;
use mesg_testkit::{NodeProcess, free_port, service_dir};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A TCP listener on loopback that counts the connections it gets.
fn victim() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            if s.is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread")]
async fn relayed_addresses_from_peers_are_capped_and_checked() {
    let node = NodeProcess::start(&[]);
    let (capped_port, capped) = victim();
    let (malformed_port, malformed) = victim();
    let relay = PeerId::random();
    let mut addrs: Vec<String> = (0..MAX_CIRCUIT_ADDRS)
        .map(|_| {
            format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{}/p2p-circuit",
                free_port(),
                PeerId::random()
            )
        })
        .collect();
    addrs.push(format!(
        "/ip4/127.0.0.1/tcp/{capped_port}/p2p/{relay}/p2p-circuit"
    ));
    let rogue = Rogue::join(&node, OnSubmit::Refuse).await;
    // Malformed first (they must not take a place either): no relay id, two circuits.
    let mut all = vec![
        format!("/ip4/127.0.0.1/tcp/{malformed_port}/p2p-circuit"),
        format!("/ip4/127.0.0.1/tcp/{malformed_port}/p2p/{relay}/p2p-circuit/p2p-circuit"),
    ];
    all.extend(addrs);
    rogue.announce(vec![], all, 20_000).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    rogue.shutdown().await;
    // The node redials the departed rogue at what it took.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        capped.load(Ordering::SeqCst),
        0,
        "the node dialled a relay past the cap"
    );
    assert_eq!(
        malformed.load(Ordering::SeqCst),
        0,
        "the node dialled a malformed relayed address"
    );

    // Honest work between the node and a helper completes.
    let addr = node.p2p_addr();
    let helper = NodeProcess::start(&["--bootstrap", addr.as_str()]);
    let done =
        mesg_attacks::rogue::deploy_and_start(&Api::new(&helper), &service_dir("echo")).await;
    let api = Api::new(&node);
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        last = api
            .post(
                "/v1/executions",
                &json!({"service": done.0, "task": "echo", "inputs": {"message": "hi"}}),
            )
            .await
            .body;
        if let Some(id) = last["id"].as_str() {
            let e = api
                .get(&format!("/v1/executions/{id}/wait?timeout_ms=20000"))
                .await
                .body;
            if e["status"] == "Completed" {
                assert_eq!(capped.load(Ordering::SeqCst), 0);
                assert_eq!(malformed.load(Ordering::SeqCst), 0);
                return;
            }
            last = e;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("honest work did not complete: {last}");
}

/// A peer of `node` that asks it for a relay reservation; whether it got one within
/// `within` (a relayed listen address through the node).
async fn reservation_from(node: &NodeProcess, within: Duration) -> bool {
    let peer_id = node.node_info()["peer_id"]
        .as_str()
        .expect("peer id")
        .to_string();
    let relay: Multiaddr = format!("{}/p2p/{peer_id}", node.p2p_addr())
        .parse()
        .unwrap();
    let stop = CancellationToken::new();
    let key = Keypair::generate().unwrap();
    let (net, mut events) = network::spawn(
        &key,
        NetworkConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![node.p2p_addr().parse().unwrap()],
            private_network: true,
            relays: vec![relay],
            ..NetworkConfig::default()
        },
        &mut Default::default(),
        stop.clone(),
    )
    .expect("peer network");
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let deadline = tokio::time::Instant::now() + within;
    let mut reserved = false;
    while tokio::time::Instant::now() < deadline {
        let addrs = net.listen_addrs().await.unwrap_or_default();
        if addrs.iter().any(|a| a.to_string().contains("/p2p-circuit")) {
            reserved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    reserved
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_relays_only_when_its_operator_asks() {
    let default = NodeProcess::start(&[]);
    assert!(
        !reservation_from(&default, Duration::from_secs(6)).await,
        "a node without --relay-server gave a relay reservation"
    );
    let relay = NodeProcess::start(&["--relay-server"]);
    assert!(
        reservation_from(&relay, Duration::from_secs(20)).await,
        "a node with --relay-server refused a reservation"
    );
}
