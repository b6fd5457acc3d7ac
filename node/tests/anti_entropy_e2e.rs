//! Anti-entropy on real nodes (loopback TCP, real Docker): three nodes that joined and
//! then stay connected, with no connection opening, each reconcile what they hold with a
//! random connected peer on their own, soon after their start (a node that missed an
//! announcement in a busy start is repaired before the next refresh, a minute or more
//! later). The schedule itself is unit-tested in `engine/net/exchange.rs`; the repair at
//! scale is measured by `mesg-sim` (docs/benchmarks.md).

mod common;

use common::Api;
use mesg_testkit::NodeProcess;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_at_rest_each_reconcile_with_a_peer_on_their_own() {
    let a = NodeProcess::start(&[]);
    let b = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let c = NodeProcess::start(&["--bootstrap", &a.p2p_addr()]);
    let started = Instant::now();
    let apis = [Api::new(&a), Api::new(&b), Api::new(&c)];

    // Every node knows the two others (their first connections' exchanges).
    for (i, api) in apis.iter().enumerate() {
        loop {
            let (_, v) = api.get("/v1/peers").await;
            let known = v["nodes"].as_array().map_or(0, Vec::len);
            if known >= 2 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "node {i} knows {known} of 2 nodes: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The first periodic reconcile comes 15 s after a node asked a peer for everything,
    // plus its own random 0-10 s, checked every 5 s: within 30 s of the start, and none
    // before 15 s.
    for (i, api) in apis.iter().enumerate() {
        if started.elapsed() < Duration::from_secs(14) {
            assert_eq!(
                reconciles(api).await,
                0.0,
                "node {i} reconciled on its own before 15 s"
            );
        }
    }
    for (i, api) in apis.iter().enumerate() {
        loop {
            if reconciles(api).await >= 1.0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(45),
                "node {i} made no periodic reconcile in {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    // And the peers answered: no node dropped anything, and every one still knows both
    // others (nothing was lost by the reconciles).
    for (i, api) in apis.iter().enumerate() {
        let dropped = api
            .metric("mesg_exchange_announcements_dropped_total")
            .await
            .unwrap_or(0.0);
        assert_eq!(dropped, 0.0, "node {i} dropped exchanged announcements");
        let (_, v) = api.get("/v1/peers").await;
        assert_eq!(
            v["nodes"].as_array().map_or(0, Vec::len),
            2,
            "node {i}: {v}"
        );
    }
}

/// Reconciles the node sent to a random peer on its own (`/metrics`).
async fn reconciles(api: &Api) -> f64 {
    api.metric("mesg_periodic_reconciles_total")
        .await
        .unwrap_or(0.0)
}
